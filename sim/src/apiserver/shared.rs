//! `Shared`: the state every request handler and watch reads: the store behind
//! one lock, the per-type wake-ups for watches, metrics and the shutdown token.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
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

    /// The registry `/metrics` encodes.
    pub fn registry(&self) -> &Registry {
        &self.registry
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
