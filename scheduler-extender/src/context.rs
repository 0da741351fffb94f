//! The context every part of the extender shares (`App`), and which watch
//! caches have synced (`Readiness`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::registry::Registry;

use crate::bind::Binder;
use crate::engine::{self, Settings, State};
use crate::events::EventSink;
use crate::leader::Leadership;
use crate::metrics::Metrics;

/// Which watch caches have finished their initial list.
pub struct Readiness {
    kinds: Vec<(&'static str, AtomicBool)>,
}

impl Readiness {
    pub fn new(kinds: &[&'static str]) -> Self {
        Self {
            kinds: kinds.iter().map(|k| (*k, AtomicBool::new(false))).collect(),
        }
    }

    pub fn mark_synced(&self, kind: &str) {
        for (k, flag) in &self.kinds {
            if *k == kind {
                flag.store(true, Ordering::Release);
            }
        }
    }

    /// A message naming the caches still listing, if any.
    pub fn waiting(&self) -> Option<String> {
        let pending = self.pending();
        (!pending.is_empty()).then(|| format!("waiting for watch caches: {}", pending.join(", ")))
    }

    /// Kinds still waiting for their first full list.
    pub fn pending(&self) -> Vec<&'static str> {
        self.kinds
            .iter()
            .filter(|(_, f)| !f.load(Ordering::Acquire))
            .map(|(k, _)| *k)
            .collect()
    }
}

/// The extender's one context: the state the watches feed and the verbs read,
/// configuration, metrics, readiness, leadership, the binder and the Event queue. HTTP handlers,
/// watch feeds and the runtime's loops share it; none of them owns it.
pub struct App {
    pub state: Mutex<State>,
    pub settings: Settings,
    pub metrics: Metrics,
    pub registry: Registry,
    pub readiness: Readiness,
    pub leadership: Arc<Leadership>,
    /// None only in tests that never bind.
    pub binder: Option<Binder>,
    /// Zone-ratio Events on their way to the API server.
    pub events: EventSink,
}

impl App {
    /// An app with fresh metrics; `readiness` kinds start unsynced.
    pub fn new(
        state: State,
        settings: Settings,
        readiness: Readiness,
        leadership: Arc<Leadership>,
        binder: Option<Binder>,
    ) -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        Self {
            state: Mutex::new(state),
            settings,
            metrics,
            registry,
            readiness,
            leadership,
            binder,
            events: EventSink::default(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        engine::lock(&self.state)
    }
}
