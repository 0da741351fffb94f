//! Kubernetes objects for tables of test cases: one claim builder, a
//! StorageClass, PVs from JSON, and the PV the agent is expected to create.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimStatus, TypedLocalObjectReference, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use lvmpin_api::names::{
    ANN_BETA_STORAGE_CLASS, ANN_LOCAL_DISK_SIZE, ANN_SELECTED_NODE, DRIVER_NAME, LABEL_NODE,
    PV_FINALIZER, TOPOLOGY_KEY,
};
use serde_json::{Value, json};

pub fn class(name: &str, provisioner: &str, params: &[(&str, &str)]) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        provisioner: provisioner.into(),
        parameters: Some(
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        ..Default::default()
    }
}

pub struct ClaimBuilder(PersistentVolumeClaim);

impl ClaimBuilder {
    pub fn new(namespace: &str, name: &str, uid: &str) -> Self {
        Self(PersistentVolumeClaim {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                uid: Some(uid.into()),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                ..Default::default()
            }),
            status: None,
        })
    }

    fn spec(&mut self) -> &mut PersistentVolumeClaimSpec {
        self.0.spec.get_or_insert_with(Default::default)
    }

    fn annotate(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    pub fn class(mut self, class: &str) -> Self {
        self.spec().storage_class_name = Some(class.into());
        self
    }

    pub fn no_class(mut self) -> Self {
        self.spec().storage_class_name = None;
        self
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.0.metadata.namespace = Some(namespace.into());
        self
    }

    pub fn beta_class(self, class: &str) -> Self {
        self.annotate(ANN_BETA_STORAGE_CLASS, class)
    }

    pub fn size(mut self, q: &str) -> Self {
        self.spec().resources = Some(VolumeResourceRequirements {
            requests: Some(BTreeMap::from([("storage".into(), Quantity(q.into()))])),
            ..Default::default()
        });
        self
    }

    /// `size` as a plain byte count.
    pub fn size_bytes(self, bytes: u64) -> Self {
        self.size(&bytes.to_string())
    }

    pub fn data_source(mut self, kind: &str, name: &str) -> Self {
        self.spec().data_source = Some(TypedLocalObjectReference {
            api_group: None,
            kind: kind.into(),
            name: name.into(),
        });
        self
    }

    /// A data source in an API group (`VolumeSnapshot` in
    /// `snapshot.storage.k8s.io` for a restore).
    pub fn data_source_in(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.spec().data_source = Some(TypedLocalObjectReference {
            api_group: Some(group.into()),
            kind: kind.into(),
            name: name.into(),
        });
        self
    }

    pub fn local_disk_size(self, q: &str) -> Self {
        self.annotate(ANN_LOCAL_DISK_SIZE, q)
    }

    pub fn selected_node(self, node: &str) -> Self {
        self.annotate(ANN_SELECTED_NODE, node)
    }

    pub fn annotation(self, key: &str, value: &str) -> Self {
        self.annotate(key, value)
    }

    pub fn volume(mut self, pv: &str) -> Self {
        self.spec().volume_name = Some(pv.into());
        self
    }

    pub fn access_modes(mut self, modes: &[&str]) -> Self {
        self.spec().access_modes = Some(modes.iter().map(|m| m.to_string()).collect());
        self
    }

    pub fn block(mut self) -> Self {
        self.spec().volume_mode = Some("Block".into());
        self
    }

    pub fn resource_version(mut self, rv: &str) -> Self {
        self.0.metadata.resource_version = Some(rv.into());
        self
    }

    /// Bound with `status.capacity.storage = capacity`.
    pub fn bound(mut self, pv: &str, capacity: &str) -> Self {
        self.spec().volume_name = Some(pv.into());
        self.0.status = Some(PersistentVolumeClaimStatus {
            phase: Some("Bound".into()),
            capacity: Some(BTreeMap::from([(
                "storage".into(),
                Quantity(capacity.into()),
            )])),
            ..Default::default()
        });
        self
    }

    pub fn status(mut self, f: impl FnOnce(&mut PersistentVolumeClaimStatus)) -> Self {
        f(self.0.status.get_or_insert_with(Default::default));
        self
    }

    pub fn build(self) -> PersistentVolumeClaim {
        self.0
    }
}

/// Parses JSON into a PV; tests write PVs the way they appear on the wire.
pub fn pv_from_json(v: serde_json::Value) -> PersistentVolume {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("bad PV literal: {e}"))
}

/// The PV the agent must create for claim `ns/data` (uid `u1`, 1Gi, class
/// `fast`, reclaim `Delete`) on node `n1` in VG `vg0`, as it goes on the wire.
/// Tests change single fields of it for their case.
pub fn expected_pv() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": "pvc-u1",
            "labels": {LABEL_NODE: "n1"},
            "annotations": {"pv.kubernetes.io/provisioned-by": DRIVER_NAME},
            "finalizers": [PV_FINALIZER]
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "1Gi"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "namespace": "ns", "name": "data", "uid": "u1", "resourceVersion": "1"},
            "csi": {"driver": DRIVER_NAME, "volumeHandle": "vg0/pvc-u1", "fsType": "ext4",
                    "volumeAttributes": {"vg": "vg0", "lv": "pvc-u1"}},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": TOPOLOGY_KEY, "operator": "In", "values": ["n1"]}]}]}},
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": "fast"
        }
    })
}
