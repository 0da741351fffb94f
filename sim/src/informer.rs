//! Watch caches (kube-rs reflectors) that wake their owner on every change,
//! the way client-go informers feed a controller's work queue.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Aborts the task when dropped, so a component's background work ends with it.
#[derive(Debug)]
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct Informer<K: Resource + 'static>
where
    K::DynamicType: Hash + Eq + Clone,
{
    pub store: Store<K>,
    _task: AbortOnDrop,
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Hash + Eq + Clone + Default,
{
    /// Start watching `api`; `wake` is notified after every applied change.
    pub fn start(api: Api<K>, wake: Arc<Notify>) -> Self {
        let (store, writer) = reflector::store();
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff();
        let task = tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                if let Err(e) = ev {
                    tracing::debug!(error = %e, "watch error; retrying with backoff");
                }
                wake.notify_one();
            }
        });
        Self {
            store,
            _task: AbortOnDrop(task),
        }
    }

    /// Wait until the initial list has been applied.
    pub async fn synced(&self) {
        let _ = self.store.wait_until_ready().await;
    }
}
