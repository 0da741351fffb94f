//! Counters of the scheduler driver: read by tests and the bench through
//! [`SchedulerStats::snapshot`], scraped as Prometheus metrics by `serve`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone)]
pub struct SchedulerStats {
    /// Scheduling cycles started.
    pub attempts: Counter,
    /// Pods bound to a node.
    pub bound: Counter,
    /// Attempts that ended with the pod sent back to the queue, for any reason.
    pub retries: Counter,
    /// Retries because the provisioner removed or changed `selected-node`.
    pub reschedules: Counter,
    /// PreBind claim writes that failed with 409 (a premature write by someone else).
    pub conflicts: Counter,
    /// Scheduling cycles that ended without a node: none feasible, or an
    /// extender error.
    pub unschedulable: Counter,
    /// Extender calls that failed.
    pub extender_errors: Counter,
    /// From the start of the successful scheduling cycle to the pod's binding.
    pub binding_seconds: Histogram,
}

impl Default for SchedulerStats {
    fn default() -> Self {
        Self {
            attempts: Counter::default(),
            bound: Counter::default(),
            retries: Counter::default(),
            reschedules: Counter::default(),
            conflicts: Counter::default(),
            unschedulable: Counter::default(),
            extender_errors: Counter::default(),
            binding_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
        }
    }
}

/// A plain copy for assertions and printing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub attempts: u64,
    pub bound: u64,
    pub retries: u64,
    pub reschedules: u64,
    pub conflicts: u64,
    pub unschedulable: u64,
    pub extender_errors: u64,
}

impl SchedulerStats {
    /// Register under the `lvmpin_sim_scheduler_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("lvmpin_sim_scheduler");
        r.register(
            "attempts",
            "Scheduling cycles started",
            self.attempts.clone(),
        );
        r.register("bound", "Pods bound to a node", self.bound.clone());
        r.register(
            "retries",
            "Attempts that sent the pod back to the queue with backoff",
            self.retries.clone(),
        );
        r.register(
            "reschedules",
            "Retries because a provisioner removed or changed volume.kubernetes.io/selected-node",
            self.reschedules.clone(),
        );
        r.register(
            "conflicts",
            "PreBind claim updates rejected with 409 because the claim changed after the cycle started",
            self.conflicts.clone(),
        );
        r.register(
            "unschedulable",
            "Cycles that found no feasible node",
            self.unschedulable.clone(),
        );
        r.register(
            "extender_errors",
            "Extender calls that failed",
            self.extender_errors.clone(),
        );
        r.register(
            "binding_duration_seconds",
            "Seconds from the start of the scheduling cycle to the pod's binding",
            self.binding_seconds.clone(),
        );
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            attempts: self.attempts.get(),
            bound: self.bound.get(),
            retries: self.retries.get(),
            reschedules: self.reschedules.get(),
            conflicts: self.conflicts.get(),
            unschedulable: self.unschedulable.get(),
            extender_errors: self.extender_errors.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_counters_are_the_snapshot() {
        let s = SchedulerStats::default();
        let mut reg = Registry::default();
        s.register(&mut reg);
        s.bound.inc();
        s.reschedules.inc();
        s.binding_seconds.observe(0.02);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(
            text.contains("lvmpin_sim_scheduler_bound_total 1"),
            "{text}"
        );
        assert!(
            text.contains("lvmpin_sim_scheduler_binding_duration_seconds_count 1"),
            "{text}"
        );
        assert_eq!(s.snapshot().reschedules, 1);
    }
}
