//! The HTTP shell: routes, body parsing, answers in kube-scheduler's format.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::context::App;
use crate::engine::{self, ZoneNote};
use crate::error::Error;
use crate::events::{self, Offered};
use crate::facts::pod_facts;
use crate::wire::{
    AskedNodes, ExtenderArgs, ExtenderBindingArgs, ExtenderBindingResult, ExtenderFilterResult,
    HostPriority, NodeListOut,
};

pub fn router(app: Arc<App>, url_prefix: &str, body_limit: usize) -> Router {
    let prefix = url_prefix.trim_end_matches('/');
    let debug = crate::debug::routes(app.clone());
    Router::new()
        .route(&format!("{prefix}/filter"), post(filter))
        .route(&format!("{prefix}/prioritize"), post(prioritize))
        .route(&format!("{prefix}/bind"), post(bind))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(app)
        .merge(debug)
}

fn bad_request(e: Error) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{e}\n"),
    )
        .into_response()
}

fn json<T: serde::Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode response: {e}\n"),
        )
            .into_response(),
    }
}

async fn filter(AxState(app): AxState<Arc<App>>, body: Bytes) -> Response {
    let _timer = app.metrics.timer("filter");
    let args = match ExtenderArgs::parse(&body) {
        Ok(a) => a,
        Err(e) => return bad_request(e),
    };
    let asked = match args.asked_nodes() {
        Ok(a) => a,
        Err(e) => return bad_request(e),
    };
    if !app.leadership.is_leader() {
        return json(&ExtenderFilterResult::error(Error::NotLeader.to_string()));
    }
    let pod = pod_facts(&args.pod);
    let names: Vec<&str> = asked.names.iter().map(|n| n.as_ref()).collect();
    if !pod.claims.is_empty()
        && let Some(waiting) = app.readiness.waiting()
    {
        // Half-filled caches would under-count reservations or call nodes
        // without reports unresolvable; a retry later is the honest answer.
        return json(&ExtenderFilterResult::error(waiting));
    }
    let outcome = {
        let mut state = app.lock();
        let o = engine::filter(&mut state, &app.settings, &pod, &names, Instant::now());
        app.metrics
            .reservations
            .set(state.reservations.len() as i64);
        o
    };
    if let Some(e) = outcome.error {
        // Our caches lag behind kube-scheduler's (a claim it already sees).
        // An Error would make an ignorable extender be skipped, placing the
        // pod with no reservation; every node failing (resolvably) makes
        // kube-scheduler try again on its next cluster event instead.
        app.metrics.verdicts("retry", 1);
        tracing::info!(pod = %format!("{}/{}", pod.namespace, pod.name), reason = %e, "filter asks for a retry");
        let reason = format!("lvmpin: {e}; retrying");
        let failed = names.iter().map(|n| (*n, reason.clone())).collect();
        return json(&answer(&asked, &names, &[], failed, Default::default()));
    }
    match &outcome.zone {
        Some(
            note @ ZoneNote::Malformed {
                statefulset,
                message,
                ..
            },
        ) => {
            app.metrics.zone(note);
            tracing::warn!(
                pod = %format!("{}/{}", pod.namespace, pod.name),
                statefulset = %statefulset,
                error = %message,
                "zone ratio annotations do not parse; placing the pod without them"
            );
        }
        Some(note) => app.metrics.zone(note),
        None => {}
    }
    if let Some(e) = outcome
        .zone
        .as_ref()
        .and_then(|n| events::zone_event(&pod, n))
        && app.events.offer(e) == Offered::Dropped
    {
        app.metrics.events_dropped.inc();
    }
    if outcome.untouched {
        app.metrics.verdicts("untouched", 1);
    } else {
        app.metrics.verdicts("pass", outcome.pass.len());
        app.metrics
            .verdicts("unresolvable", outcome.unresolvable.len());
        app.metrics.verdicts("not_chosen", outcome.not_chosen);
        tracing::debug!(
            pod = %format!("{}/{}", pod.namespace, pod.name),
            pass = ?outcome.pass.iter().map(|i| names[*i]).collect::<Vec<_>>(),
            "filtered"
        );
    }
    let unresolvable = outcome
        .unresolvable
        .into_iter()
        .map(|(i, r)| (names[i], r))
        .collect();
    json(&answer(
        &asked,
        &names,
        &outcome.pass,
        Default::default(),
        unresolvable,
    ))
}

/// The filter answer: the passing nodes (by index into `names`), as names
/// or as the raw Node objects kube-scheduler sent, and the failures.
fn answer<'a>(
    asked: &'a AskedNodes<'a>,
    names: &[&'a str],
    pass: &[usize],
    failed: BTreeMap<&'a str, String>,
    unresolvable: BTreeMap<&'a str, String>,
) -> ExtenderFilterResult<'a> {
    ExtenderFilterResult {
        nodes: asked.raw.as_ref().map(|raw| NodeListOut {
            api_version: "v1",
            kind: "NodeList",
            metadata: Default::default(),
            items: pass.iter().map(|i| raw[*i]).collect(),
        }),
        node_names: pass.iter().map(|i| names[*i]).collect(),
        failed_nodes: failed,
        failed_and_unresolvable_nodes: unresolvable,
        error: String::new(),
    }
}

async fn prioritize(AxState(app): AxState<Arc<App>>, body: Bytes) -> Response {
    let _timer = app.metrics.timer("prioritize");
    let args = match ExtenderArgs::parse(&body) {
        Ok(a) => a,
        Err(e) => return bad_request(e),
    };
    let asked = match args.asked_nodes() {
        Ok(a) => a,
        Err(e) => return bad_request(e),
    };
    if !app.leadership.is_leader() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", Error::NotLeader),
        )
            .into_response();
    }
    let pod = pod_facts(&args.pod);
    let names: Vec<&str> = asked.names.iter().map(|n| n.as_ref()).collect();
    if !pod.claims.is_empty()
        && let Some(waiting) = app.readiness.waiting()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{waiting}\n")).into_response();
    }
    let scores = {
        let state = app.lock();
        engine::prioritize(&state, &app.settings, &pod, &names, Instant::now())
    };
    let list: Vec<HostPriority> = names
        .iter()
        .zip(scores)
        .map(|(n, score)| HostPriority {
            host: std::borrow::Cow::Borrowed(n),
            score,
        })
        .collect();
    json(&list)
}

async fn bind(AxState(app): AxState<Arc<App>>, body: Bytes) -> Response {
    let _timer = app.metrics.timer("bind");
    let args = match ExtenderBindingArgs::parse(&body) {
        Ok(a) => a,
        Err(e) => return bad_request(e),
    };
    let result = match (&app.binder, app.leadership.is_leader()) {
        (_, false) => Err(Error::NotLeader),
        (None, true) => Err(Error::Config {
            flag: "bind",
            message: "this extender has no Kubernetes client".into(),
        }),
        (Some(binder), true) => binder.bind(&app.state, &args).await,
    };
    let label = match &result {
        Ok(()) => "bound",
        Err(e) => e.metric_label(),
    };
    app.metrics
        .bind_results
        .get_or_create(&crate::metrics::ResultLabel { result: label })
        .inc();
    let error = match result {
        Ok(()) => String::new(),
        Err(e) => {
            tracing::warn!(pod = %format!("{}/{}", args.pod_namespace, args.pod_name), node = %args.node, error = %e, "bind failed");
            e.to_string()
        }
    };
    json(&ExtenderBindingResult { error })
}

async fn readyz(AxState(app): AxState<Arc<App>>) -> Response {
    if let Some(waiting) = app.readiness.waiting() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{waiting}\n")).into_response();
    }
    if !app.leadership.is_leader() {
        // Followers stay out of the Service so kube-scheduler reaches the leader.
        return (StatusCode::SERVICE_UNAVAILABLE, "not the leader\n").into_response();
    }
    "ok\n".into_response()
}

async fn metrics(AxState(app): AxState<Arc<App>>) -> Response {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &app.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
