//! Prometheus metrics of the extender (prefix `lvmpin_extender_`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::ZoneNote;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabel {
    pub verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabel {
    /// pass, unresolvable, not_chosen, untouched, retry
    pub verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ZoneLabel {
    /// `namespace/name`
    pub statefulset: String,
    pub zone: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone)]
pub struct Metrics {
    pub request_seconds: Family<VerbLabel, Histogram>,
    pub filter_verdicts: Family<VerdictLabel, Counter>,
    pub reservations: Gauge,
    pub bind_results: Family<ResultLabel, Counter>,
    pub zone_pods: Family<ZoneLabel, Gauge>,
    pub zone_target: Family<ZoneLabel, Gauge>,
    pub zone_ratio_errors: Family<ReasonLabel, Counter>,
    /// Events the filter could not queue (the publishing task fell behind).
    pub events_dropped: Counter,
    /// The zones each StatefulSet has gauges for, so they can be removed
    /// with the StatefulSet or its ratio.
    zone_series: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            request_seconds: Family::new_with_constructor(|| {
                // 50 µs .. ~3.3 s: a filter should take well under a millisecond,
                // a bind waits on the API server.
                Histogram::new(exponential_buckets(0.00005, 3.0, 11))
            }),
            filter_verdicts: Family::default(),
            reservations: Gauge::default(),
            bind_results: Family::default(),
            zone_pods: Family::default(),
            zone_target: Family::default(),
            zone_ratio_errors: Family::default(),
            events_dropped: Counter::default(),
            zone_series: Arc::default(),
        };
        let r = registry.sub_registry_with_prefix("lvmpin_extender");
        r.register(
            "request_duration_seconds",
            "Time to answer a kube-scheduler extender call, per verb",
            m.request_seconds.clone(),
        );
        r.register(
            "filter_verdicts",
            "Per-node filter verdicts (pass, unresolvable, not_chosen) and per-pod outcomes (untouched, retry)",
            m.filter_verdicts.clone(),
        );
        r.register(
            "reservations",
            "Pods holding an in-memory capacity reservation",
            m.reservations.clone(),
        );
        r.register(
            "bind_results",
            "Results of the bind verb",
            m.bind_results.clone(),
        );
        r.register(
            "zone_pods",
            "Pods of a zone-ratio StatefulSet (or its group) per zone, as counted at its last filter",
            m.zone_pods.clone(),
        );
        r.register(
            "zone_target",
            "Pods per zone that a zone-ratio StatefulSet's (or group's) replicas should reach",
            m.zone_target.clone(),
        );
        r.register(
            "zone_ratio_errors",
            "Pods placed without their StatefulSet's zone ratio because its annotations do not parse, per reason (weights, policy, key, group)",
            m.zone_ratio_errors.clone(),
        );
        r.register(
            "events_dropped",
            "Zone-ratio Events not published because the queue to the API server was full",
            m.events_dropped.clone(),
        );
        m
    }

    /// Removes the zone gauges of StatefulSets not in `live` (deleted, or
    /// without a zone ratio now).
    pub fn retain_zone_series(&self, live: &BTreeSet<String>) {
        let mut series = self.zone_series.lock().unwrap_or_else(|p| p.into_inner());
        series.retain(|statefulset, zones| {
            if live.contains(statefulset) {
                return true;
            }
            for zone in zones.iter() {
                let label = ZoneLabel {
                    statefulset: statefulset.clone(),
                    zone: zone.clone(),
                };
                self.zone_pods.remove(&label);
                self.zone_target.remove(&label);
            }
            false
        });
    }

    /// Records what a pod's zone ratio did.
    pub fn zone(&self, note: &ZoneNote) {
        match note {
            ZoneNote::Malformed { reason, .. } => {
                self.zone_ratio_errors
                    .get_or_create(&ReasonLabel { reason })
                    .inc();
            }
            ZoneNote::Counted {
                statefulset,
                counts,
                targets,
                ..
            } => {
                let mut series = self.zone_series.lock().unwrap_or_else(|p| p.into_inner());
                let zones = series.entry(statefulset.clone()).or_default();
                for (family, values) in [(&self.zone_pods, counts), (&self.zone_target, targets)] {
                    for (zone, n) in values {
                        zones.insert(zone.clone());
                        family
                            .get_or_create(&ZoneLabel {
                                statefulset: statefulset.clone(),
                                zone: zone.clone(),
                            })
                            .set(i64::from(*n));
                    }
                }
            }
        }
    }

    /// Observes the elapsed time into the verb's histogram when dropped.
    pub fn timer(&self, verb: &'static str) -> Timer<'_> {
        Timer {
            metrics: self,
            verb,
            start: Instant::now(),
        }
    }

    pub fn verdicts(&self, verdict: &'static str, n: usize) {
        self.filter_verdicts
            .get_or_create(&VerdictLabel { verdict })
            .inc_by(n as u64);
    }
}

pub struct Timer<'a> {
    metrics: &'a Metrics,
    verb: &'static str,
    start: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.metrics
            .request_seconds
            .get_or_create(&VerbLabel { verb: self.verb })
            .observe(self.start.elapsed().as_secs_f64());
    }
}
