//! The HTTP shell: shared state, the axum router and dispatch of each request
//! to discovery or to the resource handlers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::discovery;
use super::handlers;
use super::metrics::{Metrics, RequestLabels, VerbLabels};
use super::openapi;
use super::route::{self, Route};
use super::status::{ApiError, json_response};
use super::store::Store;

pub struct Shared {
    store: Mutex<Store>,
    pub metrics: Metrics,
    registry: Registry,
    /// Per storage key, the newest resourceVersion written there: a watch
    /// wakes only for writes to its own type, so hundreds of idle watches on
    /// other types cost a write nothing.
    notify: Mutex<HashMap<String, watch::Sender<u64>>>,
    pub shutdown: CancellationToken,
    pub server_address: String,
}

impl Shared {
    pub fn new(store: Store, server_address: String, shutdown: CancellationToken) -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        Shared {
            store: Mutex::new(store),
            metrics,
            registry,
            notify: Mutex::new(HashMap::new()),
            shutdown,
            server_address,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave a half-written object:
        // every store write completes before it returns, so keep serving.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a write and wakes the watches of every type it changed.
    pub fn write<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        let mut store = self.lock();
        let r = f(&mut store);
        let rv = store.resource_version();
        let keys = store.take_dirty();
        drop(store);
        if !keys.is_empty() {
            self.metrics.resource_version.set(rv as i64);
            let senders = self.notify.lock().unwrap_or_else(|e| e.into_inner());
            for k in keys {
                if let Some(tx) = senders.get(&k) {
                    tx.send_replace(rv);
                }
            }
        }
        r
    }

    /// Wakes on writes to objects stored under `key`.
    pub fn subscribe(&self, key: &str) -> watch::Receiver<u64> {
        let mut senders = self.notify.lock().unwrap_or_else(|e| e.into_inner());
        senders
            .entry(key.to_string())
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe()
    }
}

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
        return match prometheus_client::encoding::text::encode(&mut out, &shared.registry) {
            Ok(()) => out.into_response(),
            Err(e) => ApiError::internal(format!("encoding metrics: {e}")).into_response(),
        };
    }
    let query: HashMap<String, String> = match Query::try_from_uri(uri) {
        Ok(Query(q)) => q,
        Err(e) => {
            return ApiError::bad_request(format!("invalid query string: {e}")).into_response();
        }
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
