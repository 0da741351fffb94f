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
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.nodeName"}"#,
    printcolumn = r#"{"name":"Last Scan","type":"date","jsonPath":".status.lastScanTime"}"#
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
}
