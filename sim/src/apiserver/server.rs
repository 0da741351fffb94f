//! The HTTP shell: the axum router and dispatch of each request to discovery
//! or to the resource handlers.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};

use super::discovery;
use super::handlers;
use super::metrics::{RequestLabels, VerbLabels};
use super::openapi;
use super::query;
use super::route::{self, Route};
use super::shared::Shared;
use super::status::{ApiError, json_response};

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .fallback(dispatch)
        // The real server's request size limit (etcd's 1.5 MiB objects, 3 MiB requests).
        .layer(DefaultBodyLimit::max(3 * 1024 * 1024))
        .with_state(shared)
}

async fn dispatch(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let verb = verb(&method, &uri);
    let resource = resource_label(uri.path());
    let span = tracing::debug_span!("request", %method, path = uri.path());
    let resp = span.in_scope(|| route_request(&shared, method, &uri, &headers, body));
    let code = resp.status().as_u16();
    tracing::debug!(parent: &span, code, "answered");
    shared
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            verb: verb.clone(),
            resource,
            code,
        })
        .inc();
    shared
        .metrics
        .duration
        .get_or_create(&VerbLabels { verb })
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// Kubernetes' verb names: a GET is get, list or watch.
fn verb(method: &Method, uri: &Uri) -> String {
    let q = uri.query().unwrap_or("");
    let watch = q.split('&').any(|kv| kv == "watch=1" || kv == "watch=true");
    match *method {
        Method::GET if watch => "watch",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "other",
    }
    .to_string()
}

/// The resource plural of a path (bounded label values: never object names).
fn resource_label(path: &str) -> String {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segs.as_slice() {
        ["api", _, rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return String::new(),
    };
    match rest {
        ["namespaces", _, plural, ..] => plural.to_string(),
        [plural, ..] => plural.to_string(),
        [] => String::new(),
    }
}

fn route_request(
    shared: &Arc<Shared>,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path() == "/metrics" {
        let mut out = String::new();
        return match prometheus_client::encoding::text::encode(&mut out, shared.registry()) {
            Ok(()) => out.into_response(),
            Err(e) => ApiError::internal(format!("encoding metrics: {e}")).into_response(),
        };
    }
    let query = match query::parse(uri) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let parsed = {
        let store = shared.lock();
        let reg = store.registry();
        route::parse(uri.path(), |g, v, p| {
            reg.get(g, v, p).is_some_and(|t| t.namespaced)
        })
    };
    let Some(r) = parsed else {
        return ApiError::no_such_path(uri.path()).into_response();
    };
    if method != Method::GET && !matches!(r, Route::Resource(_)) {
        return ApiError::method_not_allowed(format!(
            "{method} is not supported on {}",
            uri.path()
        ))
        .into_response();
    }
    match r {
        Route::Version => json_response(200, &discovery::version()),
        Route::Health => "ok".into_response(),
        Route::OpenApi => ApiError::no_such_path(uri.path()).into_response(),
        Route::OpenApiV3Root => json_response(200, &openapi::root(shared.lock().registry())),
        Route::OpenApiV3(gv) => match openapi::group_version(shared.lock().registry(), &gv) {
            Some(v) => json_response(200, &v),
            None => ApiError::no_such_path(uri.path()).into_response(),
        },
        Route::CoreVersions => {
            json_response(200, &discovery::core_versions(&shared.server_address))
        }
        Route::Groups => json_response(200, &discovery::group_list(shared.lock().registry())),
        Route::Group(g) => match discovery::group(shared.lock().registry(), &g) {
            Some(v) => json_response(200, &v),
            None => ApiError::no_such_path(uri.path()).into_response(),
        },
        Route::ResourceList { group, version } => {
            match discovery::resource_list(shared.lock().registry(), &group, &version) {
                Some(v) => json_response(200, &v),
                None => ApiError::no_such_path(uri.path()).into_response(),
            }
        }
        Route::Resource(p) => handlers::resource(shared.clone(), method, p, query, headers, body)
            .unwrap_or_else(IntoResponse::into_response),
    }
}
