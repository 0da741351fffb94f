//! Wires the agent together: watches, reconcilers, the scan loop, startup
//! recovery and the HTTP endpoints, all stopped by one cancellation token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::backend::VolumeBackend;
use crate::context::{AgentConfig, CacheScope, Caches, Clock, Context};
use crate::error::{Error, Result};
use crate::http::{HttpState, router};
use crate::metrics::Metrics;
use crate::{
    claim_watch, lvm_node_writer, node_scope, pv_labels, reconcile_claim, reconcile_pv, startup,
    storage_capacity,
};

const RECOVERY_ATTEMPTS: u32 = 3;

pub struct Agent<B> {
    pub client: Client,
    pub backend: B,
    pub config: AgentConfig,
    pub metrics_listen: Option<SocketAddr>,
    pub clock: Clock,
    /// The CSI node service, served beside the controllers.
    pub csi: Option<CsiSetup>,
}

pub struct CsiSetup {
    pub socket: PathBuf,
    pub kubelet_dir: PathBuf,
    pub source: Arc<dyn crate::csi::VolumeSource>,
}

/// The CSI services (Identity, Node, Controller) and kubelet registration,
/// ready to run until `shutdown`. The Controller service runs on the agent's
/// own volume backend, so volumes made over CSI and by the watch obey the
/// same spare-space rule.
fn csi_server<B: VolumeBackend + Clone>(
    setup: CsiSetup,
    config: &AgentConfig,
    backend: B,
    registry: &mut Registry,
    shutdown: &CancellationToken,
) -> (
    crate::csi::RegistrationHealth,
    impl Future<Output = crate::csi::Result<()>> + use<B>,
) {
    let health = crate::csi::RegistrationHealth::default();
    let metrics = crate::csi::CsiMetrics::register(registry);
    let controller = crate::csi::ControllerService::new(
        crate::csi::Scope {
            node_name: config.node_name.clone(),
            topology_key: lvmpin_api::names::TOPOLOGY_KEY.to_string(),
            volume_groups: config.volume_groups.clone(),
        },
        config.host_problem.clone(),
        config.spare_bytes,
        backend,
        Arc::new(crate::csi::SysMounter::default()),
        metrics.clone(),
    );
    let opts = crate::csi::CsiOptions {
        node_name: config.node_name.clone(),
        csi_socket: setup.socket,
        kubelet_dir: setup.kubelet_dir,
        kubelet_endpoint: None,
        metrics,
    };
    let serve = crate::csi::serve(
        opts,
        setup.source,
        Some(controller),
        health.clone(),
        shutdown.clone().cancelled_owned(),
    );
    (health, serve)
}

/// Serves `/healthz`, `/readyz` and `/metrics` until `shutdown`.
async fn spawn_http(
    addr: SocketAddr,
    state: HttpState,
    shutdown: &CancellationToken,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Startup(format!("cannot listen on {addr}: {e}")))?;
    let app = router(state);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            error!(error = %e, "metrics server failed");
        }
    });
    info!(%addr, "serving /healthz, /readyz and /metrics");
    Ok(())
}

/// The agent without Kubernetes: only the CSI services and kubelet
/// registration, for the standard sidecar set-up (external-provisioner in
/// distributed mode and external-resizer do what the watches do otherwise;
/// see docs/install.md) and for conformance runs. Returns when `shutdown`
/// fires or the CSI server fails.
pub async fn run_csi_only<B: VolumeBackend + Clone>(
    backend: B,
    config: AgentConfig,
    csi: CsiSetup,
    metrics_listen: Option<SocketAddr>,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut registry = Registry::default();
    let (health, serve) = csi_server(csi, &config, backend, &mut registry, &shutdown);
    if let Some(addr) = metrics_listen {
        let state = HttpState {
            registry: Arc::new(registry),
            ready: Arc::new(AtomicBool::new(true)),
            csi: Some(health),
        };
        spawn_http(addr, state, &shutdown).await?;
    }
    info!(node = %config.node_name, "CSI-only mode: no Kubernetes API access");
    serve
        .await
        .map_err(|e| Error::Startup(format!("CSI server: {e}")))
}

/// Spawns a reflector for StorageClasses and returns its store.
fn class_cache(client: &Client, shutdown: &CancellationToken) -> Store<StorageClass> {
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(
            Api::<StorageClass>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                item = stream.next() => match item {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => warn!(error = %e, "storage class watch error"),
                    None => return,
                },
            }
        }
    });
    reader
}

/// Labels this node's PVs made by earlier versions (`pv_labels`), retrying
/// until it succeeds: the label-selected PV watch would miss them otherwise.
async fn label_until_done(client: &Client, node: &str) {
    let mut attempt = 0u32;
    loop {
        match pv_labels::label_own_pvs(client, node).await {
            Ok(0) => return,
            Ok(labelled) => {
                info!(
                    labelled,
                    "labelled this node's PVs made before the node label"
                );
                return;
            }
            Err(e) => {
                let delay = crate::backoff::delay(attempt, false);
                attempt = attempt.saturating_add(1);
                warn!(error = %e, retry_in = ?delay, "cannot label this node's older PVs");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Waits for a store's first full list. The store's readiness signal wakes only
/// its most recent waiter (a oneshot underneath) and the controller waits on
/// the same store, so poll again now and then instead of waiting once.
async fn wait_ready<K>(store: &Store<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    while tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready())
        .await
        .is_err()
    {}
}

/// Reconcile failures are logged by the error policies; this reports the
/// controller's own trouble (watch errors, a full queue).
fn log_controller_result<T, E: std::fmt::Debug>(
    controller: &str,
    r: std::result::Result<T, kube::runtime::controller::Error<E, watcher::Error>>,
) {
    match r {
        Ok(_) | Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
        // A retry scheduled for an object that has since been deleted.
        Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => {
            tracing::debug!(controller, %obj, "object gone before its retry")
        }
        Err(e) => warn!(controller, error = ?e, "controller error"),
    }
}

impl<B: VolumeBackend + Clone> Agent<B> {
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let Agent {
            client,
            backend,
            config,
            metrics_listen,
            clock,
            csi,
        } = self;
        let mut registry = Registry::default();
        let metrics = Arc::new(Metrics::register(&mut registry));
        // A CSI failure is logged, not fatal: the provisioning side keeps
        // working and the next restart retries the sockets.
        let (csi_health, csi_task) = csi
            .map(|setup| {
                let (health, serve) =
                    csi_server(setup, &config, backend.clone(), &mut registry, &shutdown);
                let task = tokio::spawn(async move {
                    if let Err(e) = serve.await {
                        error!(error = %e, "CSI service failed");
                    }
                });
                (health, task)
            })
            .unzip();
        let ready = Arc::new(AtomicBool::new(false));

        let classes = class_cache(&client, &shutdown);
        let node = config.node_name.clone();
        // Only this node's PVs and claims are watched and kept (see
        // `node_scope` and docs/architecture.md, "What each agent watches"):
        // with every PV and claim of the cluster in the reflector stores, one
        // agent grew with the cluster (measured on `lvmpin-sim bench
        // agent-scale`; the numbers before and after are in
        // docs/operations.md). PVs by label selector, once this node's old
        // PVs carry the label; claims by their metadata (`claim_watch`).
        let (volumes, volumes_writer) = reflector::store();
        let pv_watch = {
            let client = client.clone();
            let node = node.clone();
            futures::stream::once(async move {
                label_until_done(&client, &node).await;
                watcher(
                    Api::<PersistentVolume>::all(client),
                    watcher::Config::default().labels(&node_scope::pv_selector(&node)),
                )
            })
            .flatten()
            .reflect(volumes_writer)
            .applied_objects()
        };
        let pv_ctrl = Controller::for_stream(pv_watch, volumes.clone())
            .graceful_shutdown_on(shutdown.clone().cancelled_owned());
        let listed = {
            let volumes = volumes.clone();
            async move { wait_ready(&volumes).await }
        };
        let (claims, claim_trigger) =
            claim_watch::node_claims(client.clone(), node, volumes.clone(), listed);
        let claim_ctrl = Controller::for_stream(claim_trigger, claims.clone())
            .graceful_shutdown_on(shutdown.clone().cancelled_owned());
        let caches = Caches {
            classes,
            volumes,
            claims,
        };
        let ctx = Arc::new(
            Context::new(client, backend, config, caches.clone(), metrics, clock)
                .with_cache_scope(CacheScope::Node),
        );

        if let Some(addr) = metrics_listen {
            let state = HttpState {
                registry: Arc::new(registry),
                ready: ready.clone(),
                csi: csi_health,
            };
            spawn_http(addr, state, &shutdown).await?;
        }

        tokio::spawn(lvm_node_writer::run(ctx.clone(), shutdown.clone()));
        tokio::spawn(storage_capacity::run(ctx.clone(), shutdown.clone()));
        // Off (logged once) while the snapshot CRDs are not installed.
        tokio::spawn(crate::snapshot_contents::run(ctx.clone(), shutdown.clone()));

        {
            let ctx = ctx.clone();
            let ready = ready.clone();
            tokio::spawn(async move {
                wait_ready(&caches.classes).await;
                wait_ready(&caches.volumes).await;
                wait_ready(&caches.claims).await;
                info!("caches synced");
                // A slow or failing scan delays readiness a little but not for
                // ever: claims are reconciled (and PVs recreated) regardless.
                for attempt in 1..=RECOVERY_ATTEMPTS {
                    match startup::recover(&ctx).await {
                        Ok(orphans) => {
                            info!(orphans, "startup recovery done");
                            break;
                        }
                        Err(e) => {
                            warn!(error = %e, attempt, "startup recovery failed");
                            tokio::time::sleep(crate::backoff::delay(attempt, false)).await;
                        }
                    }
                }
                ready.store(true, Ordering::Release);
            });
        }

        let claims = claim_ctrl
            .run(
                reconcile_claim::reconcile,
                reconcile_claim::error_policy,
                ctx.clone(),
            )
            .for_each(|r| async move { log_controller_result("claims", r) });
        let volumes = pv_ctrl
            .run(
                reconcile_pv::reconcile,
                reconcile_pv::error_policy,
                ctx.clone(),
            )
            .for_each(|r| async move { log_controller_result("volumes", r) });
        tokio::join!(claims, volumes);
        ready.store(false, Ordering::Release);
        // The CSI service removes its sockets once drained, and kubelet
        // learns the driver is gone when the registration socket goes.
        // Returning first ended the process before that, leaving them.
        if let Some(task) = csi_task {
            let _ = task.await;
        }
        Ok(())
    }
}
