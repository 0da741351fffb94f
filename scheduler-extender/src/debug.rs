//! Read-only views for operators (`kubectl lvmpin`): each node's capacity
//! with what the extender has promised, and a dry run of `engine::filter`
//! explaining where a pod can go. Every request passes `access` first.
//!
//! The dry run runs the real filter on a copy of the state, so it records no
//! reservation and no zone pick, and its reasons are the ones kube-scheduler
//! would get for the same pod at the same moment.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lvmpin_api::debug_view::{
    ClaimView, NameKind, NodeVerdict, NodeView, NodesView, Outcome, PREFIX, VerdictKind, VgView,
    WhyView, invalid_name,
};

use crate::access::{Access, Decision};
use crate::claims::{Demand, pod_demand};
use crate::context::App;
use crate::engine::{self, Settings, State};
use crate::facts::PodFacts;
use crate::reservations::reserved_totals;

struct Debug {
    app: Arc<App>,
    access: Access,
}

/// The debug routes, reviewing callers with the binder's client (the
/// extender's one Kubernetes client).
pub fn routes(app: Arc<App>) -> Router {
    let access = Access::new(app.binder.as_ref().map(|b| b.client.clone()));
    Router::new()
        .route(&format!("{PREFIX}/nodes"), get(nodes))
        .route(&format!("{PREFIX}/why/{{namespace}}/{{pod}}"), get(why))
        .with_state(Arc::new(Debug { app, access }))
}

fn text(code: StatusCode, body: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{body}\n"),
    )
        .into_response()
}

/// None when allowed, else the refusal to send.
async fn refused(d: &Debug, headers: &HeaderMap) -> Option<Response> {
    match d.access.check(headers).await {
        Decision::Allowed { .. } => None,
        Decision::Unauthenticated(why) => Some(text(StatusCode::UNAUTHORIZED, why)),
        Decision::Forbidden(why) => Some(text(StatusCode::FORBIDDEN, why)),
        Decision::Unavailable(why) => Some(text(StatusCode::SERVICE_UNAVAILABLE, why)),
    }
}

fn json<T: serde::Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode: {e}"),
        ),
    }
}

async fn nodes(AxState(d): AxState<Arc<Debug>>, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&d, &headers).await {
        return r;
    }
    if let Some(waiting) = d.app.readiness.waiting() {
        return text(StatusCode::SERVICE_UNAVAILABLE, waiting);
    }
    let view = nodes_view(&d.app.lock(), Instant::now());
    json(&view)
}

async fn why(
    AxState(d): AxState<Arc<Debug>>,
    Path((namespace, pod)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refused(&d, &headers).await {
        return r;
    }
    if let Some(why) = invalid_name(NameKind::Label, &namespace) {
        return text(StatusCode::BAD_REQUEST, format!("namespace {why}"));
    }
    if let Some(why) = invalid_name(NameKind::Subdomain, &pod) {
        return text(StatusCode::BAD_REQUEST, format!("pod name {why}"));
    }
    if let Some(waiting) = d.app.readiness.waiting() {
        return text(StatusCode::SERVICE_UNAVAILABLE, waiting);
    }
    if !d.app.leadership.is_leader() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "this replica is not the leader; its reservations are not the ones in force".into(),
        );
    }
    // Under the lock, as a filter request. Copying the whole state under it
    // instead held the lock 30-56 ms at 10,000 nodes and 100,000 claims (in
    // process), a stall for every filter behind it; this run holds it 6-7 ms.
    let view = why_view(
        &mut d.app.lock(),
        &d.app.settings,
        &namespace,
        &pod,
        Instant::now(),
    );
    match view {
        Some(v) => json(&v),
        None => text(
            StatusCode::NOT_FOUND,
            format!("the extender's cache has no pod {namespace}/{pod}"),
        ),
    }
}

/// Each node with its VGs and the bytes reserved there, by name.
pub fn nodes_view(state: &State, now: Instant) -> NodesView {
    let reserved = reserved_totals(&state.index, &state.reservations, now, &[]);
    let mut nodes: Vec<NodeView> = state
        .index
        .nodes
        .iter()
        .map(|(name, e)| {
            let lvm = e.lvm.as_ref();
            let on_node = reserved.get(name);
            NodeView {
                name: name.clone(),
                known: e.known,
                up: e.up,
                zone: e.zone.clone(),
                last_report: lvm.and_then(|l| l.last_report.clone()),
                silent_since: e.silent_since.clone(),
                volume_groups: lvm
                    .map(|l| {
                        l.vgs
                            .iter()
                            .map(|vg| VgView {
                                name: vg.name.clone(),
                                size_bytes: vg.size,
                                free_bytes: vg.free,
                                reserved_bytes: on_node
                                    .and_then(|m| m.get(&vg.name))
                                    .copied()
                                    .unwrap_or(0),
                                volumes: u32::try_from(vg.volumes.len()).unwrap_or(u32::MAX),
                                healthy: vg.healthy,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    for n in &mut nodes {
        n.volume_groups.sort_by(|a, b| a.name.cmp(&b.name));
    }
    NodesView { nodes }
}

/// Runs `engine::filter` on `state` for the pod `namespace/name` against
/// every Node the extender knows, and says per node what the filter decided.
/// What the filter records (holds, zone picks) is put back as it was: asking
/// why must not reserve anything. None when the pod is not in the cache.
pub fn why_view(
    state: &mut State,
    settings: &Settings,
    namespace: &str,
    name: &str,
    now: Instant,
) -> Option<WhyView> {
    let pod: PodFacts = state
        .index
        .pods
        .values()
        .find(|p| p.namespace == namespace && p.name == name)?
        .clone();
    let reserved_on = state.reservations.get(&pod.uid).map(|h| h.node.clone());
    let ix = &state.index;
    let demand = pod_demand(
        &pod,
        &ix.claims,
        &ix.classes,
        &ix.pvs,
        &ix.snapshots,
        &ix.nodes,
    );
    let claims = claim_views(&pod, demand.as_ref().ok());
    let mut names: Vec<String> = ix
        .nodes
        .iter()
        .filter(|(_, e)| e.known)
        .map(|(n, _)| n.clone())
        .collect();
    names.sort();
    let asked: Vec<&str> = names.iter().map(String::as_str).collect();
    let reservations = state.reservations.clone();
    let zone_picks = state.index.zone_picks.clone();
    // The view cached for kube-scheduler's list of names stays; this list
    // gets one of its own for this run.
    let view = state.index.view.take();
    let out = engine::filter(state, settings, &pod, &asked, now);
    state.reservations = reservations;
    state.index.zone_picks = zone_picks;
    state.index.view = view;

    let mut view = WhyView {
        namespace: namespace.to_string(),
        pod: name.to_string(),
        bound_node: pod.node.clone(),
        reserved_on,
        claims,
        ..Default::default()
    };
    if let Some(e) = out.error {
        // The reason http.rs gives every node in this case.
        let reason = format!("lvmpin: {e}; retrying");
        view.outcome = Outcome::Retry;
        view.message = Some(e);
        view.nodes = asked
            .iter()
            .map(|n| NodeVerdict {
                node: n.to_string(),
                verdict: VerdictKind::Retry,
                reason: Some(reason.clone()),
            })
            .collect();
        return Some(view);
    }
    let mut verdicts: Vec<NodeVerdict> = asked
        .iter()
        .map(|n| NodeVerdict {
            node: n.to_string(),
            verdict: VerdictKind::NotChosen,
            reason: None,
        })
        .collect();
    for i in &out.pass {
        verdicts[*i].verdict = VerdictKind::Pass;
    }
    for (i, reason) in out.unresolvable {
        verdicts[i].verdict = VerdictKind::Unresolvable;
        verdicts[i].reason = Some(reason);
    }
    view.nodes = verdicts;
    view.outcome = match demand {
        Ok(Demand::Refused(why)) => {
            view.message = Some(why);
            Outcome::Refused
        }
        _ if out.untouched => Outcome::Untouched,
        _ if out.pass.is_empty() => Outcome::NoNode,
        _ => Outcome::Placed,
    };
    Some(view)
}

/// The pod's claims: sizes per VG for unbound ones, the node for bound ones,
/// names only for the rest (not ours, or demand unknown).
fn claim_views(pod: &PodFacts, demand: Option<&Demand>) -> Vec<ClaimView> {
    pod.claims
        .iter()
        .map(|c| {
            let mut v = ClaimView {
                name: c.clone(),
                ..Default::default()
            };
            if let Some(Demand::Needs { wants, pins, .. }) = demand {
                if let Some(w) = wants.iter().find(|w| *w.claim.name == **c) {
                    // A thin claim shows its pool, `<vg>/<pool>`.
                    v.volume_group = Some(crate::thin::reservation_key(&w.vg).to_string());
                    v.bytes = Some(w.bytes);
                }
                if let Some(p) = pins.iter().find(|p| *p.claim.name == **c) {
                    v.pinned_to = Some(p.node.clone());
                }
            }
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::NodeFacts;
    use crate::testutil::{
        IntoFacts as _, claim_named, class, lvm_node, pod_with, stateful_set, sts_pod, zoned_node,
    };

    const GI: u64 = 1 << 30;

    fn state() -> State {
        let mut s = State::default();
        s.index.upsert_class(class("fast", Some("vg1")));
        for (n, free) in [("n1", 10), ("n2", 30)] {
            s.index.upsert_node(NodeFacts {
                name: n.into(),
                up: true,
                ..Default::default()
            });
            s.index
                .upsert_lvm(lvm_node(n, "vg1", 100 * GI, free * GI, 4 << 20));
        }
        s
    }

    fn verdicts(v: &WhyView) -> Vec<(&str, VerdictKind, bool)> {
        v.nodes
            .iter()
            .map(|n| (n.node.as_str(), n.verdict, n.reason.is_some()))
            .collect()
    }

    #[test]
    fn why_table() {
        use VerdictKind::*;
        type Case = (
            &'static str,
            &'static str,
            Outcome,
            Vec<(&'static str, VerdictKind, bool)>,
        );
        let cases: Vec<Case> = vec![
            (
                "fits both: decisive picks one",
                "5Gi",
                Outcome::Placed,
                vec![("n1", NotChosen, false), ("n2", Pass, false)],
            ),
            (
                "fits one",
                "20Gi",
                Outcome::Placed,
                vec![("n1", Unresolvable, true), ("n2", Pass, false)],
            ),
            (
                "fits none",
                "50Gi",
                Outcome::NoNode,
                vec![("n1", Unresolvable, true), ("n2", Unresolvable, true)],
            ),
            (
                "bad size",
                "x",
                Outcome::Refused,
                vec![("n1", Unresolvable, true), ("n2", Unresolvable, true)],
            ),
        ];
        for (name, size, outcome, want) in cases {
            let mut s = state();
            let claim = if size == "x" {
                claim_named("a").size("1Gi").local_disk_size("x")
            } else {
                claim_named("a").size(size)
            };
            s.index.upsert_claim(claim.facts());
            s.index.upsert_pod(pod_with(&["a"]));
            let v = why_view(&mut s, &Settings::default(), "ns", "p", Instant::now()).unwrap();
            assert_eq!(v.outcome, outcome, "{name}");
            assert_eq!(verdicts(&v), want, "{name}");
        }
    }

    #[test]
    fn why_gives_the_filters_reasons_and_leaves_no_trace() {
        let mut s = state();
        s.index.upsert_claim(claim_named("a").size("50Gi").facts());
        s.index.upsert_pod(pod_with(&["a"]));
        let now = Instant::now();
        let v = why_view(&mut s.clone(), &Settings::default(), "ns", "p", now).unwrap();
        let real = engine::filter(
            &mut s.clone(),
            &Settings::default(),
            &pod_with(&["a"]),
            &["n1", "n2"],
            now,
        );
        let reasons: Vec<String> = v.nodes.iter().filter_map(|n| n.reason.clone()).collect();
        let want: Vec<String> = real.unresolvable.into_iter().map(|(_, r)| r).collect();
        assert_eq!(reasons, want);
        assert_eq!(v.claims[0].bytes, Some(50 * GI));
        assert_eq!(v.claims[0].volume_group.as_deref(), Some("vg1"));

        // A fitting pod: the dry run reserves nothing in the real state.
        let mut s = state();
        s.index.upsert_claim(claim_named("a").size("5Gi").facts());
        s.index.upsert_pod(pod_with(&["a"]));
        let v = why_view(&mut s, &Settings::default(), "ns", "p", now).unwrap();
        assert_eq!(v.outcome, Outcome::Placed);
        assert!(s.reservations.is_empty());
        assert_eq!(v.reserved_on, None);
        // Nor does it record a zone pick for a StatefulSet with a ratio.
        let mut s = state();
        s.index.upsert_node(zoned_node("n2", "zone-a"));
        s.index.upsert_sts(stateful_set(
            "db",
            1,
            &[(lvmpin_api::names::ANN_ZONE_WEIGHTS, "zone-a=1")],
            &[],
        ));
        let pod = sts_pod("db", 0);
        s.index
            .upsert_claim(claim_named(&pod.claims[0]).size("5Gi").facts());
        s.index.upsert_pod(pod);
        let v = why_view(&mut s, &Settings::default(), "ns", "db-0", now).unwrap();
        assert_eq!(v.outcome, Outcome::Placed);
        assert!(s.reservations.is_empty());
        assert!(s.index.zone_picks.is_empty());
    }

    #[test]
    fn why_unknown_pod_and_missing_claim() {
        let mut s = state();
        assert!(why_view(&mut s, &Settings::default(), "ns", "p", Instant::now()).is_none());
        let mut s = state();
        s.index.upsert_pod(pod_with(&["gone"]));
        let v = why_view(&mut s, &Settings::default(), "ns", "p", Instant::now()).unwrap();
        assert_eq!(v.outcome, Outcome::Retry);
        assert!(v.message.as_deref().is_some_and(|m| m.contains("ns/gone")));
        assert!(v.nodes.iter().all(|n| n.verdict == VerdictKind::Retry));
    }

    #[test]
    fn nodes_view_shows_reserved_bytes() {
        let mut s = state();
        s.index.upsert_claim(claim_named("a").size("5Gi").facts());
        let pod = pod_with(&["a"]);
        s.index.upsert_pod(pod.clone());
        let now = Instant::now();
        let out = engine::filter(&mut s, &Settings::default(), &pod, &["n1", "n2"], now);
        assert_eq!(out.pass, vec![1]);
        let v = nodes_view(&s, now);
        let got: Vec<(&str, u64, u64, u64)> = v
            .nodes
            .iter()
            .map(|n| {
                let vg = &n.volume_groups[0];
                (
                    n.name.as_str(),
                    vg.size_bytes,
                    vg.free_bytes,
                    vg.reserved_bytes,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("n1", 100 * GI, 10 * GI, 0),
                ("n2", 100 * GI, 30 * GI, 5 * GI)
            ]
        );
    }
}
