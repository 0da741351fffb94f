//! When a PV of ours may lose its LV. Pure.
//!
//! The order in the shell (`reconcile_pv.rs`) is: remove the LV, delete the PV
//! object, then drop our finalizer — the order of the external provisioner
//! library (sig-storage-lib-external-provisioner `controller/controller.go`,
//! `deleteVolumeOperation`; docs/protocols.md, "Deletion and finalizers").
//! The finalizer therefore holds the PV for as long as the LV may exist, and
//! a crash at any point leaves a Released PV with the finalizer, which the
//! next run finishes (every step is idempotent).

use k8s_openapi::api::core::v1::PersistentVolume;
use lvmpin_api::VolumeId;
use lvmpin_api::names::{DRIVER_NAME, PV_FINALIZER};
use serde_json::{Value, json};

use crate::pv_body::pinned_node;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeletionStep {
    /// Not ours, not on this node, or still in use.
    Ignore,
    /// Released but the policy is Retain: keep the LV and the PV.
    Retain,
    /// Not Delete, yet our finalizer is there (PVs made before it was
    /// limited to Delete, or a policy changed by hand): drop it, so that
    /// deleting the PV object is not blocked for ever. The LV stays.
    DropFinalizer,
    /// Released with the Delete policy: remove the LV, then the PV.
    Delete {
        volume: VolumeId,
        /// The PV object still needs a delete call.
        delete_object: bool,
    },
}

pub fn has_finalizer(pv: &PersistentVolume) -> bool {
    pv.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == PV_FINALIZER))
}

pub fn plan(pv: &PersistentVolume, node: &str) -> DeletionStep {
    let Some(spec) = pv.spec.as_ref() else {
        return DeletionStep::Ignore;
    };
    let Some(csi) = spec.csi.as_ref().filter(|c| c.driver == DRIVER_NAME) else {
        return DeletionStep::Ignore;
    };
    // Only the agent of the node that holds the disk may touch it.
    if pinned_node(pv) != Some(node) {
        return DeletionStep::Ignore;
    }
    let delete_policy = spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete");
    if !delete_policy && has_finalizer(pv) {
        return DeletionStep::DropFinalizer;
    }
    let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase != Some("Released") {
        return DeletionStep::Ignore;
    }
    if !delete_policy {
        return DeletionStep::Retain;
    }
    let Ok(volume) = csi.volume_handle.parse::<VolumeId>() else {
        // A handle we cannot read names no LV we could prove is ours.
        return DeletionStep::Ignore;
    };
    let deleting = pv.metadata.deletion_timestamp.is_some();
    if !has_finalizer(pv) {
        // Without our finalizer (removed by us after the LV went, or by an
        // operator) the LV is already gone or deliberately released to a human.
        return if deleting {
            DeletionStep::Ignore
        } else {
            DeletionStep::Delete {
                volume,
                delete_object: true,
            }
        };
    }
    DeletionStep::Delete {
        volume,
        delete_object: !deleting,
    }
}

/// JSON patch removing our finalizer, with a `test` so that a concurrent change
/// to the list fails the patch (409/422) instead of removing someone else's.
pub fn finalizer_removal_patch(pv: &PersistentVolume) -> Option<Value> {
    let idx = pv
        .metadata
        .finalizers
        .as_ref()?
        .iter()
        .position(|f| f == PV_FINALIZER)?;
    let path = format!("/metadata/finalizers/{idx}");
    Some(json!([
        {"op": "test", "path": path, "value": PV_FINALIZER},
        {"op": "remove", "path": path},
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvmpin_testkit::pv_from_json;

    fn pv(
        node: &str,
        phase: &str,
        policy: &str,
        finalizers: &[&str],
        deleting: bool,
    ) -> PersistentVolume {
        let mut v = json!({
            "metadata": {"name": "pvc-u1", "finalizers": finalizers},
            "spec": {
                "persistentVolumeReclaimPolicy": policy,
                "csi": {"driver": DRIVER_NAME, "volumeHandle": "vg0/pvc-u1"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "topology.lvm.lvmpin.io/node", "operator": "In", "values": [node]}]}]}}
            },
            "status": {"phase": phase}
        });
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        pv_from_json(v)
    }

    #[test]
    fn table() {
        let vol = VolumeId::new("vg0", "pvc-u1");
        let del = |delete_object| DeletionStep::Delete {
            volume: vol.clone(),
            delete_object,
        };
        let fin = [PV_FINALIZER];
        let cases = vec![
            (
                "bound",
                pv("n1", "Bound", "Delete", &fin, false),
                DeletionStep::Ignore,
            ),
            (
                "released",
                pv("n1", "Released", "Delete", &fin, false),
                del(true),
            ),
            (
                "released, deleting",
                pv("n1", "Released", "Delete", &fin, true),
                del(false),
            ),
            (
                "retain with our finalizer",
                pv("n1", "Released", "Retain", &fin, false),
                DeletionStep::DropFinalizer,
            ),
            (
                "retain, bound, with our finalizer",
                pv("n1", "Bound", "Retain", &fin, false),
                DeletionStep::DropFinalizer,
            ),
            (
                "retain, being deleted",
                pv("n1", "Released", "Retain", &fin, true),
                DeletionStep::DropFinalizer,
            ),
            (
                "retain",
                pv("n1", "Released", "Retain", &[], false),
                DeletionStep::Retain,
            ),
            (
                "other node",
                pv("n2", "Released", "Delete", &fin, false),
                DeletionStep::Ignore,
            ),
            (
                "finalizer gone, not deleted",
                pv("n1", "Released", "Delete", &[], false),
                del(true),
            ),
            (
                "finalizer gone, deleting",
                pv("n1", "Released", "Delete", &[], true),
                DeletionStep::Ignore,
            ),
        ];
        for (name, pv, want) in cases {
            assert_eq!(plan(&pv, "n1"), want, "{name}");
        }
    }

    #[test]
    fn finalizer_patch_targets_our_entry() {
        let p = pv(
            "n1",
            "Released",
            "Delete",
            &["kubernetes.io/pv-protection", PV_FINALIZER],
            true,
        );
        assert_eq!(
            finalizer_removal_patch(&p),
            Some(json!([
                {"op": "test", "path": "/metadata/finalizers/1", "value": PV_FINALIZER},
                {"op": "remove", "path": "/metadata/finalizers/1"}
            ]))
        );
        assert_eq!(
            finalizer_removal_patch(&pv("n1", "Released", "Delete", &[], true)),
            None
        );
    }
}
