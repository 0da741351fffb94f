//! An in-memory Kubernetes API server over plain HTTP on loopback, faithful
//! for what lvmpin uses: the standard REST paths for core/v1, storage,
//! coordination and custom resources; list/watch from a resourceVersion with
//! bookmarks and 410 Gone; 409s on existing names and stale versions; merge and
//! JSON patches; finalizers and ownerReference garbage collection; label and
//! field selectors; and the discovery documents kube-rs and kubectl read.
//!
//! Real binaries reach it through the kubeconfig it writes; kubectl works too
//! (server-side tables, field validation declared in a minimal OpenAPI v3).
//!
//! Not modelled, on purpose: authn/authz (TokenReview and SubjectAccessReview
//! creates are answered: any token is `sim-admin`, allowed; see `review`) and admission (no pvc-protection
//! finalizers are added), server-side apply and strategic merge patch (415),
//! `dryRun`, schema validation of custom resources, graceful pod deletion
//! (pods go at once), foreground deletion (treated as background), collection
//! of objects created with already-dangling owner references, and reading
//! lists at an older resourceVersion (lists are always current). Events of
//! `core/v1` and `events.k8s.io/v1` share one store, as in a real cluster.

mod binding;
mod convert;
mod crd;
mod discovery;
mod gc;
mod handlers;
mod immutable;
pub mod kubeconfig;
pub mod meta;
mod metrics;
mod openapi;
mod paging;
mod partial;
pub mod patch;
mod query;
pub mod resources;
mod review;
mod route;
pub mod selector;
mod server;
mod shared;
pub mod status;
pub mod store;
pub mod table;
pub mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kube::CustomResourceExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::error::Error;
use shared::Shared;
use store::Store;

#[derive(Debug, Clone)]
pub struct ApiServerOptions {
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// How many events are kept per resource type for watches to resume
    /// from (like the real server's watch cache); older versions get 410 Gone.
    pub watch_history: usize,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        ApiServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            watch_history: 10_000,
        }
    }
}

pub struct RunningApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl RunningApiServer {
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig with cluster, user and context named `lvmpin-sim`, no auth.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig::render(&self.url())
    }

    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// A client for in-process use, talking HTTP to this server.
    pub async fn client(&self) -> kube::Result<kube::Client> {
        let uri = http::Uri::builder()
            .scheme("http")
            .authority(self.addr.to_string())
            .path_and_query("/")
            .build()
            .map_err(kube::Error::HttpError)?;
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".to_string();
        kube::Client::try_from(config)
    }

    /// Ends every open watch with 410 Gone (see `Store::expire_history`).
    pub fn expire_watches(&self) {
        self.shared.write(Store::expire_history);
    }

    /// Ends open watches and stops serving.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for RunningApiServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The store as it starts: the `default` namespace and the LvmNode CRD, so
/// nothing else needs to install them.
fn seeded_store(history: usize) -> Result<Store, Error> {
    let mut store = Store::new(history);
    let reg = store.registry().clone();
    let seed_err = |what: &str, e: status::ApiError| {
        Error::ApiServer(format!("seeding {what}: {}", e.message))
    };
    let namespaces = reg
        .get("", "v1", "namespaces")
        .ok_or_else(|| Error::ApiServer("namespaces type missing".into()))?;
    for ns in ["default", "kube-system"] {
        store
            .create(
                namespaces,
                None,
                serde_json::json!({"metadata": {"name": ns}}),
            )
            .map_err(|e| seed_err("namespaces", e))?;
    }
    let crds = reg
        .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .ok_or_else(|| Error::ApiServer("CRD type missing".into()))?;
    let crd = serde_json::to_value(lvmpin_api::LvmNode::crd())
        .map_err(|e| Error::ApiServer(format!("encoding the LvmNode CRD: {e}")))?;
    store
        .create(crds, None, crd)
        .map_err(|e| seed_err("the LvmNode CRD", e))?;
    Ok(store)
}

pub async fn start(opts: ApiServerOptions) -> Result<RunningApiServer, Error> {
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| Error::ApiServer(format!("cannot listen on {}: {e}", opts.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::ApiServer(format!("no local address for {}: {e}", opts.listen)))?;
    let shutdown = CancellationToken::new();
    let store = seeded_store(opts.watch_history)?;
    let shared = Arc::new(Shared::new(store, format!("{addr}"), shutdown.clone()));
    let app = server::router(shared.clone());
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "API server stopped");
        }
    });
    tracing::info!(url = %format!("http://{addr}"), "in-memory API server listening");
    Ok(RunningApiServer {
        addr,
        shared,
        shutdown,
        task: Some(task),
    })
}
