//! `LvmNode`: one per node, written by that node's agent, read by the extender.
//!
//! It is the capacity source of placement, so it carries just what placement and
//! operators need: per volume group size and free bytes, the volumes lvmpin owns
//! there, thin pools and health.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "lvmpin.io",
    version = "v1alpha1",
    kind = "LvmNode",
    plural = "lvmnodes",
    shortname = "lvmn",
    status = "LvmNodeStatus",
    printcolumn = r#"{"name":"VGs","type":"string","jsonPath":".status.summary.volumeGroups"}"#,
    printcolumn = r#"{"name":"Size","type":"string","jsonPath":".status.summary.size"}"#,
    printcolumn = r#"{"name":"Free","type":"string","jsonPath":".status.summary.free"}"#,
    printcolumn = r#"{"name":"Volumes","type":"integer","jsonPath":".status.summary.volumes"}"#,
    printcolumn = r#"{"name":"Healthy","type":"boolean","jsonPath":".status.summary.healthy"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.nodeName","priority":1}"#,
    printcolumn = r#"{"name":"Last Scan","type":"date","jsonPath":".status.lastScanTime","priority":1}"#
)]
#[serde(rename_all = "camelCase")]
pub struct LvmNodeSpec {
    /// The node this report describes; the object is named after it too.
    pub node_name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LvmNodeStatus {
    #[serde(default)]
    pub volume_groups: Vec<VolumeGroupStatus>,
    #[serde(default)]
    pub conditions: Vec<NodeCondition>,
    /// RFC 3339 time of the scan this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_time: Option<String>,
    /// Totals over `volumeGroups`, for `kubectl get lvmnodes`: a CRD's printer
    /// columns are single JSONPath values and cannot sum a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<LvmNodeSummary>,
}

/// What `kubectl get lvmnodes` shows per node, computed from the volume
/// groups by [`LvmNodeSummary::of`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LvmNodeSummary {
    /// The reported VG names, comma-separated.
    pub volume_groups: String,
    /// Total size of the VGs, for display (binary units, one decimal).
    pub size: String,
    /// Total free bytes of the VGs, for display.
    pub free: String,
    pub size_bytes: u64,
    pub free_bytes: u64,
    /// LVs lvmpin owns, over all VGs.
    pub volumes: u32,
    /// True when there is at least one VG and every VG is healthy.
    pub healthy: bool,
}

impl LvmNodeSummary {
    pub fn of(vgs: &[VolumeGroupStatus]) -> Self {
        let size_bytes = vgs.iter().fold(0u64, |a, v| a.saturating_add(v.size_bytes));
        let free_bytes = vgs.iter().fold(0u64, |a, v| a.saturating_add(v.free_bytes));
        let volumes = vgs.iter().fold(0u32, |a, v| {
            a.saturating_add(u32::try_from(v.volumes.len()).unwrap_or(u32::MAX))
        });
        Self {
            volume_groups: vgs
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            size: display_bytes(size_bytes),
            free: display_bytes(free_bytes),
            size_bytes,
            free_bytes,
            volumes,
            healthy: !vgs.is_empty() && vgs.iter().all(|v| v.healthy),
        }
    }
}

/// Bytes in binary units with one decimal ("9.5GiB"); whole bytes below 1 KiB.
pub fn display_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeGroupStatus {
    pub name: String,
    pub size_bytes: u64,
    pub free_bytes: u64,
    /// LVM allocates in extents; placement rounds each claim up to one.
    pub extent_size_bytes: u64,
    pub lv_count: u32,
    /// Names of the LVs in this VG that lvmpin owns (tagged). The extender drops a
    /// reservation once the LV it stands for appears here, since `freeBytes`
    /// then already accounts for it.
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub thin_pools: Vec<ThinPoolStatus>,
    /// False when the VG is configured but absent, or a PV of it is missing.
    pub healthy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThinPoolStatus {
    pub name: String,
    pub size_bytes: u64,
    pub data_percent: f64,
    pub metadata_percent: f64,
    /// Sum of the virtual sizes of the thin LVs in the pool (lvmpin's and
    /// any other's): what it has promised. Absent from agents older than
    /// thin accounting; placement then offers the pool nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promised_bytes: Option<u64>,
}

impl ThinPoolStatus {
    /// The pool as thin accounting reads it; None without `promisedBytes`.
    pub fn usage(&self) -> Option<crate::thin::PoolUsage> {
        Some(crate::thin::PoolUsage {
            size_bytes: self.size_bytes,
            data_percent: self.data_percent,
            metadata_percent: self.metadata_percent,
            promised_bytes: self.promised_bytes?,
        })
    }
}

/// Condition types on an LvmNode.
pub mod condition {
    /// True when every configured VG is present with all its PVs.
    pub const VOLUME_GROUPS_HEALTHY: &str = "VolumeGroupsHealthy";
    /// True when the last scan succeeded.
    pub const SCAN_SUCCEEDED: &str = "ScanSucceeded";
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeCondition {
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

impl LvmNodeStatus {
    pub fn volume_group(&self, name: &str) -> Option<&VolumeGroupStatus> {
        self.volume_groups.iter().find(|vg| vg.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::{CustomResourceExt, Resource};

    #[test]
    fn crd_is_cluster_scoped_with_status() {
        let crd = LvmNode::crd();
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.group, "lvmpin.io");
        assert_eq!(LvmNode::plural(&()), "lvmnodes");
        let v = &crd.spec.versions[0];
        assert!(v.subresources.as_ref().unwrap().status.is_some());
    }

    #[test]
    fn printer_columns_read_the_summary() {
        let crd = LvmNode::crd();
        let cols = crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap_or_default();
        let shown: Vec<(&str, &str)> = cols
            .iter()
            .filter(|c| c.priority.unwrap_or(0) == 0)
            .map(|c| (c.name.as_str(), c.json_path.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("VGs", ".status.summary.volumeGroups"),
                ("Size", ".status.summary.size"),
                ("Free", ".status.summary.free"),
                ("Volumes", ".status.summary.volumes"),
                ("Healthy", ".status.summary.healthy"),
                ("Age", ".metadata.creationTimestamp"),
            ]
        );
        // Each summary path is a field the status serialises under that name.
        let status = LvmNodeStatus {
            summary: Some(LvmNodeSummary::of(&[])),
            ..Default::default()
        };
        let json = serde_json::to_value(&status).unwrap();
        for (_, path) in shown.iter().filter(|(_, p)| p.starts_with(".status.")) {
            let pointer = path.trim_start_matches(".status").replace('.', "/");
            assert!(json.pointer(&pointer).is_some(), "{path} not in {json}");
        }
    }

    fn vg(name: &str, size: u64, free: u64, volumes: usize, healthy: bool) -> VolumeGroupStatus {
        VolumeGroupStatus {
            name: name.into(),
            size_bytes: size,
            free_bytes: free,
            volumes: (0..volumes).map(|i| format!("pvc-{i}")).collect(),
            healthy,
            ..Default::default()
        }
    }

    #[test]
    fn summary_totals() {
        const GI: u64 = 1 << 30;
        // (volume groups, names, size, free, volumes, healthy)
        type Case = (
            Vec<VolumeGroupStatus>,
            &'static str,
            &'static str,
            &'static str,
            u32,
            bool,
        );
        let cases: Vec<Case> = vec![
            (vec![], "", "0B", "0B", 0, false),
            (
                vec![vg("lvmpin", 10 * GI, 8 * GI, 2, true)],
                "lvmpin",
                "10.0GiB",
                "8.0GiB",
                2,
                true,
            ),
            (
                vec![
                    vg("fast", 10 * GI, GI / 2, 3, true),
                    vg("slow", GI / 2, 0, 0, false),
                ],
                "fast,slow",
                "10.5GiB",
                "512.0MiB",
                3,
                false,
            ),
            (
                vec![vg("a", u64::MAX, u64::MAX, 0, true), vg("b", 1, 1, 0, true)],
                "a,b",
                "16.0EiB",
                "16.0EiB",
                0,
                true,
            ),
        ];
        for (vgs, names, size, free, volumes, healthy) in cases {
            let s = LvmNodeSummary::of(&vgs);
            assert_eq!(
                (s.volume_groups.as_str(), s.size.as_str(), s.free.as_str()),
                (names, size, free),
                "{vgs:?}"
            );
            assert_eq!((s.volumes, s.healthy), (volumes, healthy), "{vgs:?}");
            let total: u64 = vgs.iter().fold(0, |a, v| a.saturating_add(v.size_bytes));
            assert_eq!(s.size_bytes, total);
        }
    }

    #[test]
    fn display_bytes_picks_the_largest_unit_below_the_value() {
        let cases = [
            (0, "0B"),
            (1023, "1023B"),
            (1024, "1.0KiB"),
            (1536, "1.5KiB"),
            ((1 << 20) - 1, "1024.0KiB"),
            (1 << 20, "1.0MiB"),
            (3 << 40, "3.0TiB"),
        ];
        for (bytes, want) in cases {
            assert_eq!(display_bytes(bytes), want, "{bytes}");
        }
    }
}
