//! Prometheus metrics of the CSI node service.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub operation: String,
    pub kind: String,
}

type HistogramFamily = Family<OperationLabels, Histogram, fn() -> Histogram>;

#[derive(Debug, Clone)]
pub struct CsiMetrics {
    pub duration: HistogramFamily,
    pub failures: Family<FailureLabels, Counter>,
}

fn histogram() -> Histogram {
    // 1 ms .. ~65 s: a bind mount is sub-millisecond, mkfs of a big LV is seconds.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for CsiMetrics {
    /// Unregistered metrics, for callers that do not export them.
    fn default() -> Self {
        Self {
            duration: Family::new_with_constructor(histogram),
            failures: Family::default(),
        }
    }
}

impl CsiMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let sub = registry.sub_registry_with_prefix("lvmpin_csi");
        sub.register(
            "operation_duration_seconds",
            "Time spent serving each CSI node operation, successful or not",
            m.duration.clone(),
        );
        sub.register(
            "operation_failures",
            "CSI node operations that returned an error, by error kind",
            m.failures.clone(),
        );
        m
    }

    pub fn observe(&self, operation: &str, elapsed: Duration, failure: Option<&str>) {
        self.duration
            .get_or_create(&OperationLabels {
                operation: operation.to_string(),
            })
            .observe(elapsed.as_secs_f64());
        if let Some(kind) = failure {
            self.failures
                .get_or_create(&FailureLabels {
                    operation: operation.to_string(),
                    kind: kind.to_string(),
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_with_help_and_labels() {
        let mut registry = Registry::default();
        let m = CsiMetrics::register(&mut registry);
        m.observe("NodeStageVolume", Duration::from_millis(3), None);
        m.observe("NodeStageVolume", Duration::from_millis(5), Some("aborted"));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for want in [
            "# HELP lvmpin_csi_operation_duration_seconds",
            "lvmpin_csi_operation_duration_seconds_count{operation=\"NodeStageVolume\"} 2",
            "lvmpin_csi_operation_failures_total{operation=\"NodeStageVolume\",kind=\"aborted\"} 1",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }
}
