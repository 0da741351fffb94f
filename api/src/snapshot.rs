//! Views of the upstream `snapshot.storage.k8s.io/v1` resources: only the
//! fields lvmpin reads or writes. The upstream CRDs (kubernetes-csi
//! external-snapshotter `client/config/crd`) are the schema; these types are
//! never turned into CRDs, and objects are changed by patches naming single
//! fields, never by replacing them, so fields missing here are kept.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the snapshot resources.
pub const SNAPSHOT_GROUP: &str = "snapshot.storage.k8s.io";
/// Kind a claim's data source names to restore a snapshot.
pub const SNAPSHOT_KIND: &str = "VolumeSnapshot";

/// Finalizer the snapshot-controller puts on a content; the sidecar's part
/// (here the agent's) removes it once the snapshot is deleted or kept
/// (external-snapshotter `pkg/utils/util.go` `VolumeSnapshotContentFinalizer`).
pub const CONTENT_FINALIZER: &str =
    "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection";
/// Set by the snapshot-controller on a content whose VolumeSnapshot is being
/// deleted: the deletion policy is to be applied (`AnnVolumeSnapshotBeingDeleted`).
pub const ANN_BEING_DELETED: &str = "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted";
/// Set by the sidecar while a create request may be in flight; the
/// controller does not let a content with it be deleted
/// (`AnnVolumeSnapshotBeingCreated`).
pub const ANN_BEING_CREATED: &str = "snapshot.storage.kubernetes.io/volumesnapshot-being-created";
/// Label the snapshot-controller started with
/// `--enable-distributed-snapshotting` puts on a new content: the node that
/// holds the source volume (`VolumeSnapshotContentManagedByLabel`, from the
/// PV's node affinity in `pkg/common-controller/snapshot_controller.go`
/// `getManagedByNode`). Each agent watches the contents labelled with its
/// node, as the upstream sidecar does with `--node-deployment`.
pub const LABEL_MANAGED_BY: &str = "snapshot.storage.kubernetes.io/managed-by";

/// `deletionPolicy` values.
pub const POLICY_DELETE: &str = "Delete";
pub const POLICY_RETAIN: &str = "Retain";

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "snapshot.storage.k8s.io",
    version = "v1",
    kind = "VolumeSnapshot",
    plural = "volumesnapshots",
    namespaced,
    status = "VolumeSnapshotStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSpec {
    #[serde(default)]
    pub source: VolumeSnapshotSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_content_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_volume_snapshot_content_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// A quantity string on the snapshot (an int64 on the content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SnapshotError>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "snapshot.storage.k8s.io",
    version = "v1",
    kind = "VolumeSnapshotContent",
    plural = "volumesnapshotcontents",
    status = "VolumeSnapshotContentStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentSpec {
    #[serde(default)]
    pub volume_snapshot_ref: SnapshotRef,
    #[serde(default)]
    pub source: ContentSource,
    #[serde(default)]
    pub deletion_policy: String,
    #[serde(default)]
    pub driver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContentSource {
    /// Dynamic snapshot: the CSI handle (`<vg>/<lv>`) of the source volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_handle: Option<String>,
    /// Pre-provisioned snapshot: the handle of an existing snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_handle: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_handle: Option<String>,
    /// Nanoseconds since the Unix epoch, as the upstream type (int64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<i64>,
    /// Bytes (int64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SnapshotError>,
}

impl VolumeSnapshotContent {
    pub fn is_ready(&self) -> bool {
        self.status.as_ref().and_then(|s| s.ready_to_use) == Some(true)
    }

    /// The node label the snapshot-controller set, if any.
    pub fn managed_by(&self) -> Option<&str> {
        self.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_MANAGED_BY))
            .map(String::as_str)
            .filter(|n| !n.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A content as the upstream snapshot-controller writes it, with fields
    /// these views do not know: they are read without error.
    #[test]
    fn reads_upstream_content() {
        let json = serde_json::json!({
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshotContent",
            "metadata": {"name": "snapcontent-1", "labels": {LABEL_MANAGED_BY: "n1"}},
            "spec": {
                "deletionPolicy": "Delete",
                "driver": "lvm.lvmpin.io",
                "source": {"volumeHandle": "vg0/pvc-1"},
                "sourceVolumeMode": "Filesystem",
                "volumeSnapshotClassName": "lvm",
                "volumeSnapshotRef": {"apiVersion": "snapshot.storage.k8s.io/v1",
                    "kind": "VolumeSnapshot", "name": "s", "namespace": "ns", "uid": "u1"}
            },
            "status": {"snapshotHandle": "vg0/snap", "readyToUse": true,
                "creationTime": 1764518400123456789_i64, "restoreSize": 1073741824}
        });
        let c: VolumeSnapshotContent = serde_json::from_value(json).unwrap();
        assert_eq!(c.managed_by(), Some("n1"));
        assert!(c.is_ready());
        assert_eq!(c.spec.source.volume_handle.as_deref(), Some("vg0/pvc-1"));
        assert_eq!(c.spec.volume_snapshot_ref.uid.as_deref(), Some("u1"));
        let s = c.status.unwrap();
        assert_eq!(s.creation_time, Some(1764518400123456789));
        assert_eq!(s.restore_size, Some(1 << 30));
    }

    #[test]
    fn reads_upstream_snapshot() {
        let json = serde_json::json!({
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {"name": "s", "namespace": "ns"},
            "spec": {"source": {"persistentVolumeClaimName": "data"}, "volumeSnapshotClassName": "lvm"},
            "status": {"boundVolumeSnapshotContentName": "snapcontent-1", "readyToUse": false,
                "restoreSize": "1Gi", "creationTime": "2026-11-30T16:00:00Z"}
        });
        let s: VolumeSnapshot = serde_json::from_value(json).unwrap();
        assert_eq!(
            s.spec.source.persistent_volume_claim_name.as_deref(),
            Some("data")
        );
        let st = s.status.unwrap();
        assert_eq!(
            st.bound_volume_snapshot_content_name.as_deref(),
            Some("snapcontent-1")
        );
        assert_eq!(st.ready_to_use, Some(false));
    }
}
