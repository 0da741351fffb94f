//! The API server's own metrics, served at `/metrics`: requests by verb,
//! resource and code, request latency, open watches and the current version.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub resource: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<VerbLabels, Histogram>,
    pub watches: Gauge,
    pub resource_version: Gauge,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 4.0, 10))
            }),
            watches: Gauge::default(),
            resource_version: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("lvmpin_sim_apiserver");
        r.register(
            "requests",
            "API requests handled, by verb, resource and HTTP code",
            m.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time to answer a request (for watches: to start the stream)",
            m.duration.clone(),
        );
        r.register("watches", "Watch streams currently open", m.watches.clone());
        r.register(
            "resource_version",
            "The newest resourceVersion handed out",
            m.resource_version.clone(),
        );
        m
    }
}

/// Decrements the open-watch gauge when a watch stream ends, however it ends.
pub struct WatchGuard(pub Gauge);

impl WatchGuard {
    pub fn new(g: &Gauge) -> Self {
        g.inc();
        WatchGuard(g.clone())
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
