//! Well-known names. Change them here and everywhere follows.

/// Provisioner name in StorageClasses and CSI driver name.
pub const DRIVER_NAME: &str = "lvm.lvmpin.io";
/// API group of our custom resources.
pub const API_GROUP: &str = "lvmpin.io";
/// Node label and CSI topology segment that pins a volume to its node.
pub const TOPOLOGY_KEY: &str = "topology.lvm.lvmpin.io/node";

/// PVC annotation declaring the local disk size (a Kubernetes quantity).
pub const ANN_LOCAL_DISK_SIZE: &str = "lvmpin.io/local-disk-size";
/// Written by kube-scheduler's volume binding in PreBind; removing it asks for a reschedule.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Set by the PV controller on claims it hands to an external provisioner.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Beta class annotation; wins over `spec.storageClassName` when present.
pub const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// Set on PVs we create, naming the provisioner.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// StorageClass parameter naming the volume group.
pub const PARAM_VOLUME_GROUP: &str = "lvmpin.io/volume-group";
/// StorageClass parameter naming a thin pool inside the volume group (optional).
pub const PARAM_THIN_POOL: &str = "lvmpin.io/thin-pool";
/// Thin classes: the pool's virtual capacity is its size times this ratio
/// (a positive decimal, default 1; see `thin.rs`).
pub const PARAM_THIN_OVERPROVISION_RATIO: &str = "lvmpin.io/thin-overprovision-ratio";
/// Thin classes: no new volume once the pool's data use reaches this percent.
pub const PARAM_THIN_DATA_LIMIT: &str = "lvmpin.io/thin-data-percent-limit";
/// Thin classes: no new volume once the pool's metadata use reaches this percent.
pub const PARAM_THIN_METADATA_LIMIT: &str = "lvmpin.io/thin-metadata-percent-limit";
/// StorageClass parameter for the filesystem type.
pub const PARAM_FSTYPE: &str = "csi.storage.k8s.io/fstype";

/// StorageClass parameter, or claim annotation (which wins), naming what
/// lvmpin does with a bound claim whose node was deleted: `keep` or
/// `recreate` (see docs/operations.md).
pub const NODE_LOSS_POLICY: &str = "lvmpin.io/node-loss-policy";

/// Label on PVs the agent creates: the node that holds the volume (the
/// value is `lvm-provisioner/src/node_scope.rs` `node_label_value`), so each
/// agent watches only its own node's PVs by label selector.
pub const LABEL_NODE: &str = "lvmpin.io/node";

/// Finalizer on PVs we create: the PV stays while its LV exists.
pub const PV_FINALIZER: &str = "lvmpin.io/lv-protection";

/// Standard zone label used for spreading replicas.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// StatefulSet annotation: weights per zone for placing its pods, as
/// `zone-a=2,zone-b=2,zone-c=1` (integers ≥ 0; 0 marks a standby zone;
/// unlisted zones are not used). See docs/zone-ratio.md.
pub const ANN_ZONE_WEIGHTS: &str = "lvmpin.io/zone-weights";
/// StatefulSet annotation: the node label whose values are the zones of
/// `lvmpin.io/zone-weights` (default `topology.kubernetes.io/zone`).
pub const ANN_ZONE_KEY: &str = "lvmpin.io/zone-key";
/// StatefulSet annotation: `Preferred` (default) falls back to another zone
/// when the next zone has no room; `Required` leaves the pod pending.
pub const ANN_ZONE_POLICY: &str = "lvmpin.io/zone-policy";
/// StatefulSet annotation naming one of its labels: StatefulSets of a
/// namespace whose annotation names the same label key, with the same label
/// value, share one count of pods per zone.
pub const ANN_ZONE_GROUP: &str = "lvmpin.io/zone-group";

/// LV name for a claim: the same as the PV name the external provisioner would
/// choose, so that an operator can match `lvs` output to `kubectl get pv` by eye.
pub fn volume_name_for_claim(claim_uid: &str) -> String {
    format!("pvc-{claim_uid}")
}
