//! Owns the controller's tasks: the watch caches, the metrics server and the
//! reconcile loop, all stopped by one cancellation token.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use lvmpin_api::LvmNode;
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::facts;
use crate::http::{HttpState, router};
use crate::plan::{self, Absence, Facts};

/// A watch cache that pokes `changed` after every event.
fn cache<K>(api: Api<K>, changed: Arc<Notify>, stop: CancellationToken) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone + Default,
{
    let (store, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                ev = stream.next() => match ev {
                    Some(Err(e)) => tracing::debug!(error = %e, "watch error; retrying"),
                    Some(Ok(_)) => changed.notify_one(),
                    None => return,
                },
            }
        }
    });
    store
}

struct Caches {
    nodes: Store<Node>,
    reports: Store<LvmNode>,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    pods: Store<Pod>,
    classes: Store<StorageClass>,
}

impl Caches {
    async fn synced(&self) {
        let _ = self.nodes.wait_until_ready().await;
        let _ = self.reports.wait_until_ready().await;
        let _ = self.claims.wait_until_ready().await;
        let _ = self.volumes.wait_until_ready().await;
        let _ = self.pods.wait_until_ready().await;
        let _ = self.classes.wait_until_ready().await;
    }

    fn facts(&self, ctx: &Context, absence: &mut Absence) -> Facts {
        let classes = facts::class_policies(&self.classes.state());
        let claims: Vec<_> = self
            .claims
            .state()
            .iter()
            .filter_map(|c| facts::claim(c, &classes))
            .collect();
        let volumes: Vec<_> = self
            .volumes
            .state()
            .iter()
            .filter_map(|v| facts::volume(v))
            .collect();
        let present: BTreeSet<String> = self
            .nodes
            .state()
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        let referenced = claims
            .iter()
            .filter_map(|c| c.selected_node.as_deref())
            .chain(volumes.iter().filter_map(|v| v.node.as_deref()));
        let gone = absence.update(
            &present,
            referenced,
            Instant::now(),
            ctx.settings.node_gone_grace,
        );
        let silent = facts::silent_nodes(
            &self.reports.state(),
            chrono::Utc::now(),
            ctx.settings.agent_silence,
        )
        .into_iter()
        .filter(|(n, _)| present.contains(n))
        .collect();
        // Pods matter only to recreate claims of a gone node; most passes
        // find none, so the pod cache is not walked for them.
        let pods = if gone.is_empty() {
            Vec::new()
        } else {
            self.pods
                .state()
                .iter()
                .filter_map(|p| facts::pod(p))
                .collect()
        };
        Facts {
            gone,
            silent,
            claims,
            volumes,
            pods,
        }
    }
}

/// Runs until `stop` is cancelled.
pub async fn run(
    ctx: Arc<Context>,
    registry: Registry,
    listen: SocketAddr,
    stop: CancellationToken,
) -> Result<()> {
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Listen {
            addr: listen,
            source,
        })?;
    let app = router(HttpState {
        registry: Arc::new(registry),
        ready: ready.clone(),
    });
    let http_stop = stop.clone();
    tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(http_stop.cancelled_owned());
        if let Err(e) = server.await {
            tracing::error!(error = %e, "metrics server failed");
        }
    });

    let changed = Arc::new(Notify::new());
    let c = ctx.client.clone();
    let caches = Caches {
        nodes: cache(Api::all(c.clone()), changed.clone(), stop.clone()),
        reports: cache(Api::all(c.clone()), changed.clone(), stop.clone()),
        claims: cache(Api::all(c.clone()), changed.clone(), stop.clone()),
        volumes: cache(Api::all(c.clone()), changed.clone(), stop.clone()),
        pods: cache(Api::all(c.clone()), changed.clone(), stop.clone()),
        classes: cache(Api::all(c), changed.clone(), stop.clone()),
    };
    tokio::select! {
        _ = stop.cancelled() => return Ok(()),
        _ = caches.synced() => {}
    }
    ready.store(true, Ordering::Release);
    tracing::info!("caches synced");
    let mut absence = Absence::default();
    loop {
        let facts = caches.facts(&ctx, &mut absence);
        ctx.metrics.gone_nodes.set(facts.gone.len() as i64);
        for action in plan::plan(&facts) {
            crate::actions::run(&ctx, action).await;
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(ctx.settings.resync) => {}
            _ = changed.notified() => {
                // Let a burst of watch events land before the next pass.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
