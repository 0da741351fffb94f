//! Prometheus metrics of the agent (prefix `lvmpin_agent_`).

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub kind: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VgLabels {
    pub vg: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub vg: String,
    pub pool: String,
}

pub struct Metrics {
    pub provision_seconds: Histogram,
    pub operations: Family<OperationLabels, Counter>,
    pub vg_size_bytes: Family<VgLabels, Gauge>,
    pub vg_free_bytes: Family<VgLabels, Gauge>,
    pub thin_pool_data_percent: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    pub thin_pool_metadata_percent: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    pub thin_pool_size_bytes: Family<PoolLabels, Gauge>,
    pub thin_pool_promised_bytes: Family<PoolLabels, Gauge>,
    pub orphan_volumes: Gauge,
    pub report_timestamp_seconds: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            // 5 ms .. ~80 s: from a fake backend up to a loaded lvm2.
            provision_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 15)),
            operations: Family::default(),
            vg_size_bytes: Family::default(),
            vg_free_bytes: Family::default(),
            thin_pool_data_percent: Family::default(),
            thin_pool_metadata_percent: Family::default(),
            thin_pool_size_bytes: Family::default(),
            thin_pool_promised_bytes: Family::default(),
            orphan_volumes: Gauge::default(),
            report_timestamp_seconds: Gauge::default(),
        }
    }
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("lvmpin_agent");
        r.register(
            "provision_duration_seconds",
            "Time from starting to provision a claim to its PV being created",
            m.provision_seconds.clone(),
        );
        r.register(
            "operations",
            "Volume operations by kind (provision, delete, expand, reschedule, recreate_pv) and result",
            m.operations.clone(),
        );
        r.register(
            "vg_size_bytes",
            "Size of each managed volume group",
            m.vg_size_bytes.clone(),
        );
        r.register(
            "vg_free_bytes",
            "Free bytes of each managed volume group",
            m.vg_free_bytes.clone(),
        );
        r.register(
            "thin_pool_data_percent",
            "Data space used in each thin pool of a managed volume group, in percent (lvs data_percent)",
            m.thin_pool_data_percent.clone(),
        );
        r.register(
            "thin_pool_metadata_percent",
            "Metadata space used in each thin pool of a managed volume group, in percent (lvs metadata_percent)",
            m.thin_pool_metadata_percent.clone(),
        );
        r.register(
            "thin_pool_size_bytes",
            "Size of each thin pool of a managed volume group",
            m.thin_pool_size_bytes.clone(),
        );
        r.register(
            "thin_pool_promised_bytes",
            "Virtual bytes the thin LVs of each thin pool were given (what the pool has promised)",
            m.thin_pool_promised_bytes.clone(),
        );
        r.register(
            "orphan_volumes",
            "LVs tagged as lvmpin's that no PV or claim wants (found at startup, or left by a PV create that met another PV of the same name; never deleted)",
            m.orphan_volumes.clone(),
        );
        r.register(
            "report_timestamp_seconds",
            "Unix time of the successful scan (lastScanTime) in the last LvmNode report this agent wrote; the extender and controller judge an agent silent by it",
            m.report_timestamp_seconds.clone(),
        );
        m
    }

    /// Records the scan time of a written report; an unparsable time leaves
    /// the gauge as it was.
    pub fn report_written(&self, last_scan_time: Option<&str>) {
        if let Some(t) = last_scan_time.and_then(report_timestamp) {
            self.report_timestamp_seconds.set(t);
        }
    }

    pub fn operation(&self, kind: &'static str, result: &'static str) {
        self.operations
            .get_or_create(&OperationLabels { kind, result })
            .inc();
    }

    pub fn observe_provision(&self, started: Instant) {
        self.provision_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    pub fn set_thin_pool(&self, vg: &str, pool: &str, data_percent: f64, metadata_percent: f64) {
        let labels = PoolLabels {
            vg: vg.to_string(),
            pool: pool.to_string(),
        };
        self.thin_pool_data_percent
            .get_or_create(&labels)
            .set(data_percent);
        self.thin_pool_metadata_percent
            .get_or_create(&labels)
            .set(metadata_percent);
    }

    /// The pool's size and the virtual bytes its thin LVs were promised;
    /// promised over size is its real overprovisioning.
    pub fn set_thin_pool_bytes(&self, vg: &str, pool: &str, size: u64, promised: u64) {
        let labels = PoolLabels {
            vg: vg.to_string(),
            pool: pool.to_string(),
        };
        self.thin_pool_size_bytes
            .get_or_create(&labels)
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        self.thin_pool_promised_bytes
            .get_or_create(&labels)
            .set(i64::try_from(promised).unwrap_or(i64::MAX));
    }

    pub fn set_vg(&self, vg: &str, size: u64, free: u64) {
        let labels = VgLabels { vg: vg.to_string() };
        self.vg_size_bytes
            .get_or_create(&labels)
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        self.vg_free_bytes
            .get_or_create(&labels)
            .set(i64::try_from(free).unwrap_or(i64::MAX));
    }
}

/// Unix seconds of an RFC 3339 time.
pub fn report_timestamp(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_time_becomes_unix_seconds() {
        let m = Metrics::default();
        m.report_written(Some("2026-01-01T00:00:00Z"));
        assert_eq!(m.report_timestamp_seconds.get(), 1_767_225_600);
        // A status that never scanned, or garbage, keeps the last value.
        m.report_written(None);
        m.report_written(Some("yesterday"));
        assert_eq!(m.report_timestamp_seconds.get(), 1_767_225_600);
        assert_eq!(
            report_timestamp("2026-01-01T01:00:00+01:00"),
            Some(1_767_225_600)
        );
    }

    #[test]
    fn encodes_with_prefix_and_help() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.operation("provision", "success");
        m.set_vg("vg0", 10, 4);
        m.set_thin_pool("vg0", "pool0", 81.5, 3.25);
        m.set_thin_pool_bytes("vg0", "pool0", 100, 250);
        m.orphan_volumes.set(2);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("lvmpin_agent_operations_total{kind=\"provision\",result=\"success\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("lvmpin_agent_vg_free_bytes{vg=\"vg0\"} 4"),
            "{out}"
        );
        assert!(out.contains("lvmpin_agent_orphan_volumes 2"), "{out}");
        assert!(
            out.contains("lvmpin_agent_thin_pool_promised_bytes{vg=\"vg0\",pool=\"pool0\"} 250"),
            "{out}"
        );
        assert!(
            out.contains("lvmpin_agent_thin_pool_data_percent{vg=\"vg0\",pool=\"pool0\"} 81.5"),
            "{out}"
        );
        assert!(
            out.contains("lvmpin_agent_thin_pool_metadata_percent{vg=\"vg0\",pool=\"pool0\"} 3.25"),
            "{out}"
        );
        assert!(
            out.contains("# HELP lvmpin_agent_provision_duration_seconds"),
            "{out}"
        );
    }
}
