//! Watch caches: one kube-runtime watcher per kind, feeding the index.
//!
//! The index plays the role of a reflector's store, keeping only the facts
//! placement needs: a `reflector::Store` would hold a second, full copy of
//! every PVC and Pod, which does not fit 50,000 claims in the memory budget.
//! A relist (`Init` … `InitDone`) replaces that kind's facts at once, like a
//! store does, so objects deleted while disconnected disappear.

use std::fmt::Debug;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Resource;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use lvmpin_api::LvmNode;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::context::App;
use crate::engine::State;
use crate::facts;
use crate::index::{ClaimTable, pv_table};
use crate::runtime::Watches;

pub const KINDS: [&str; 7] = [
    "LvmNode",
    "PersistentVolumeClaim",
    "PersistentVolume",
    "StorageClass",
    "Node",
    "Pod",
    "StatefulSet",
];

/// How one kind's objects update the state.
pub(crate) struct Feed<K, F, P> {
    pub kind: &'static str,
    pub facts: fn(&K) -> Option<F>,
    pub apply: fn(&mut State, F),
    pub delete: fn(&mut State, F),
    /// The part of a relist that needs no state, or only a brief look at
    /// it (keying 100,000 claims and settling them against the reports),
    /// done before the state lock is held for the install: filters wait
    /// for that lock.
    pub prepare: fn(&App, Vec<F>) -> P,
    /// Installs a relist; returns what it replaced, freed after the lock
    /// is released for the same reason.
    pub replace: fn(&mut State, P) -> P,
}

/// `prepare` for kinds whose relist is cheap: nothing.
pub(crate) fn as_is<F>(_: &App, all: Vec<F>) -> Vec<F> {
    all
}

pub(crate) async fn run_feed<K, F, P>(
    api: Api<K>,
    app: Arc<App>,
    feed: Feed<K, F, P>,
    shutdown: CancellationToken,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: Send,
    P: Send,
{
    let mut buffer: Vec<F> = Vec::new();
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = stream.try_next() => next,
        };
        let event = match next {
            Ok(Some(e)) => e,
            Ok(None) => {
                tracing::error!(kind = feed.kind, "watch stream ended");
                return;
            }
            Err(e) => {
                // default_backoff retries; this is only reported.
                tracing::warn!(kind = feed.kind, error = %e, "watch error");
                continue;
            }
        };
        match event {
            watcher::Event::Init => buffer.clear(),
            watcher::Event::InitApply(o) => buffer.extend((feed.facts)(&o)),
            watcher::Event::InitDone => {
                let all = std::mem::take(&mut buffer);
                let n = all.len();
                let prepared = (feed.prepare)(&app, all);
                let replaced = (feed.replace)(&mut app.lock(), prepared);
                drop(replaced);
                app.readiness.mark_synced(feed.kind);
                tracing::info!(kind = feed.kind, objects = n, "watch cache synced");
            }
            watcher::Event::Apply(o) => {
                if let Some(f) = (feed.facts)(&o) {
                    (feed.apply)(&mut app.lock(), f);
                }
            }
            watcher::Event::Delete(o) => {
                if let Some(f) = (feed.facts)(&o) {
                    (feed.delete)(&mut app.lock(), f);
                }
            }
        }
    }
}

/// Terminal pods are fed as deletions: they occupy no node any more.
fn pod_entry(p: &Pod) -> Option<(facts::PodFacts, bool)> {
    Some((facts::pod_facts(p), facts::pod_is_terminal(p)))
}

/// Starts one watch task per kind on `watches`' runtime; each ends when
/// `shutdown` is cancelled.
pub fn spawn_all(
    watches: &Watches,
    app: Arc<App>,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let Watches { client, handle } = watches;
    vec![
        handle.spawn(run_feed(
            Api::<LvmNode>::all(client.clone()),
            app.clone(),
            Feed {
                kind: "LvmNode",
                facts: facts::lvm_facts,
                apply: |s, f| s.index.upsert_lvm(f),
                delete: |s, f| s.index.remove_lvm(&f.node),
                prepare: as_is,
                replace: |s, all| {
                    s.index.replace_lvm(all);
                    Vec::new()
                },
            },
            shutdown.clone(),
        )),
        handle.spawn(run_feed(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            app.clone(),
            Feed {
                kind: "PersistentVolumeClaim",
                facts: facts::claim_facts,
                apply: |s, f| s.apply_claim(f),
                delete: |s, f| s.index.remove_claim(&f.key),
                prepare: |app, all| {
                    let reports = app.lock().index.reports();
                    ClaimTable::new(all).settle(reports)
                },
                replace: |s, table| s.index.install_claims(table),
            },
            shutdown.clone(),
        )),
        handle.spawn(run_feed(
            Api::<PersistentVolume>::all(client.clone()),
            app.clone(),
            Feed {
                kind: "PersistentVolume",
                facts: facts::pv_facts,
                apply: |s, f| s.index.upsert_pv(f),
                delete: |s, f| s.index.remove_pv(&f.name),
                prepare: |_, all| pv_table(all),
                replace: |s, table| s.index.install_pvs(table),
            },
            shutdown.clone(),
        )),
        handle.spawn(run_feed(
            Api::<StorageClass>::all(client.clone()),
            app.clone(),
            Feed {
                kind: "StorageClass",
                facts: facts::class_facts,
                apply: |s, f| s.index.upsert_class(f),
                delete: |s, f| s.index.remove_class(&f.name),
                prepare: as_is,
                replace: |s, all| {
                    s.index.replace_classes(all);
                    Vec::new()
                },
            },
            shutdown.clone(),
        )),
        handle.spawn(run_feed(
            Api::<Node>::all(client.clone()),
            app.clone(),
            Feed {
                kind: "Node",
                facts: facts::node_facts,
                apply: |s, f| s.index.upsert_node(f),
                delete: |s, f| s.index.remove_node(&f.name),
                prepare: as_is,
                replace: |s, all| {
                    s.index.replace_nodes(all);
                    Vec::new()
                },
            },
            shutdown.clone(),
        )),
        handle.spawn(run_feed(
            Api::<StatefulSet>::all(client.clone()),
            app.clone(),
            Feed {
                kind: "StatefulSet",
                facts: facts::sts_facts,
                apply: |s, f| s.index.upsert_sts(f),
                delete: |s, f| s.index.remove_sts(&f.uid),
                prepare: as_is,
                replace: |s, all| {
                    s.index.replace_sts(all);
                    Vec::new()
                },
            },
            shutdown.clone(),
        )),
        handle.spawn(run_feed(
            Api::<Pod>::all(client.clone()),
            app,
            Feed {
                kind: "Pod",
                facts: pod_entry,
                apply: |s, (p, terminal)| {
                    if terminal {
                        s.index.remove_pod(&p.uid);
                    } else {
                        s.index.upsert_pod(p);
                    }
                },
                delete: |s, (p, _)| {
                    s.index.remove_pod(&p.uid);
                    s.reservations.release_pod(&p.uid);
                },
                prepare: as_is,
                replace: |s, all| {
                    s.index.replace_pods(
                        all.into_iter()
                            .filter(|(_, t)| !t)
                            .map(|(p, _)| p)
                            .collect(),
                    );
                    Vec::new()
                },
            },
            shutdown.clone(),
        )),
    ]
}
