//! Volume expansion without a CSI controller: the agent plays the part of the
//! external-resizer (kubernetes-csi/external-resizer v2.2,
//! `pkg/controller/expand_and_recover.go`, the recovery path). The facts and
//! their upstream sources are in docs/protocols.md, "Volume expansion":
//! - the resizer acts on a Bound claim whose `spec.resources.requests.storage`
//!   exceeds `status.capacity.storage` and whose PV's claimRef uid matches;
//! - with RecoverVolumeExpansionFailure on (beta and on from Kubernetes 1.32,
//!   GA in 1.34) it first patches the claim's status subresource with
//!   condition `Resizing=True`, `allocatedResources.storage=<new>` and
//!   `allocatedResourceStatuses.storage=ControllerResizeInProgress`;
//! - after ControllerExpandVolume (here: lvextend) it patches the PV's
//!   `spec.capacity`, then, when the node must grow a filesystem, sets
//!   `FileSystemResizePending=True` and `NodeResizePending`; kubelet then calls
//!   NodeExpandVolume and finishes with MarkFSResizeFinished, which sets
//!   `status.capacity`;
//! - when no node step is needed (raw block volumes) it sets the capacity,
//!   clears the resize conditions, drops the storage key from
//!   `allocatedResourceStatuses` and annotates the claim
//!   `volume.kubernetes.io/node-expansion-not-required: "true"`;
//! - kubelet's legacy path (gate off) only looks at PV capacity versus claim
//!   capacity and the legacy conditions, which the same writes keep consistent;
//! - `allocatedResources` and `allocatedResourceStatuses` are always written
//!   together, as external-resizer's status helpers in `pkg/util` do.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use lvmpin_api::parse_quantity_bytes;
use serde_json::{Value, json};

use crate::pv_body::{bytes_quantity, is_ours_for_claim, pinned_node};

pub const ANN_NODE_EXPANSION_NOT_REQUIRED: &str =
    "volume.kubernetes.io/node-expansion-not-required";
pub const CONTROLLER_RESIZE_IN_PROGRESS: &str = "ControllerResizeInProgress";
pub const NODE_RESIZE_PENDING: &str = "NodeResizePending";
pub const NODE_RESIZE_IN_PROGRESS: &str = "NodeResizeInProgress";
pub const NODE_RESIZE_INFEASIBLE: &str = "NodeResizeInfeasible";
pub const COND_RESIZING: &str = "Resizing";
pub const COND_FS_RESIZE_PENDING: &str = "FileSystemResizePending";
/// The message external-resizer writes with FileSystemResizePending.
pub const FS_RESIZE_PENDING_MESSAGE: &str =
    "Waiting for user to (re-)start a pod to finish file system resize of volume on node.";

const RESIZE_CONDITIONS: [&str; 4] = [
    COND_RESIZING,
    COND_FS_RESIZE_PENDING,
    "ControllerResizeError",
    "NodeResizeError",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpansionStep {
    Nothing,
    /// LVM cannot shrink a volume.
    RefuseShrink {
        requested: u64,
        capacity: u64,
    },
    /// Begin: mark the claim, extend, patch the PV, hand over or finish.
    Start {
        new_size: u64,
    },
    /// A previous attempt marked the claim but did not finish (crash, error).
    Resume {
        new_size: u64,
    },
    /// Our part is done; kubelet's NodeExpandVolume finishes.
    WaitingForNode,
}

fn storage_of(
    map: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
) -> Option<u64> {
    map?.get("storage")
        .and_then(|q| parse_quantity_bytes(&q.0).ok())
}

pub fn is_block(pvc: &PersistentVolumeClaim) -> bool {
    pvc.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block")
}

pub fn plan(
    pvc: &PersistentVolumeClaim,
    pv: Option<&PersistentVolume>,
    class: Option<&StorageClass>,
    node: &str,
) -> ExpansionStep {
    let Some(pv) = pv else {
        return ExpansionStep::Nothing;
    };
    let uid = pvc.metadata.uid.as_deref().unwrap_or_default();
    if !is_ours_for_claim(pv, uid) || pinned_node(pv) != Some(node) {
        return ExpansionStep::Nothing;
    }
    let status = pvc.status.as_ref();
    if status.and_then(|s| s.phase.as_deref()) != Some("Bound") {
        return ExpansionStep::Nothing;
    }
    // Admission lets a claim grow only with allowVolumeExpansion (kubernetes
    // `plugin/pkg/admission/storage/persistentvolume/resize`); a class
    // changed afterwards is not a reason to leave a started resize half done.
    let allowed = class.and_then(|c| c.allow_volume_expansion) == Some(true);
    let requested = storage_of(
        pvc.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    );
    let capacity = storage_of(status.and_then(|s| s.capacity.as_ref()));
    let (Some(requested), Some(capacity)) = (requested, capacity) else {
        return ExpansionStep::Nothing;
    };
    let resize_status = status
        .and_then(|s| s.allocated_resource_statuses.as_ref())
        .and_then(|m| m.get("storage"))
        .map(String::as_str);
    match resize_status {
        Some(NODE_RESIZE_PENDING | NODE_RESIZE_IN_PROGRESS | NODE_RESIZE_INFEASIBLE) => {
            return ExpansionStep::WaitingForNode;
        }
        Some(CONTROLLER_RESIZE_IN_PROGRESS) if requested > capacity => {
            return ExpansionStep::Resume {
                new_size: requested,
            };
        }
        _ => {}
    }
    if requested < capacity {
        return ExpansionStep::RefuseShrink {
            requested,
            capacity,
        };
    }
    if requested > capacity && allowed {
        return ExpansionStep::Start {
            new_size: requested,
        };
    }
    ExpansionStep::Nothing
}

fn condition(type_: &str, message: Option<&str>, now: &str) -> Value {
    let mut c = json!({"type": type_, "status": "True", "lastTransitionTime": now});
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

/// Conditions that are not ours to manage, kept as they are.
fn other_conditions(pvc: &PersistentVolumeClaim) -> Vec<Value> {
    pvc.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| !RESIZE_CONDITIONS.contains(&c.type_.as_str()))
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect()
}

fn with_condition(pvc: &PersistentVolumeClaim, extra: Option<Value>) -> Vec<Value> {
    let mut out = other_conditions(pvc);
    out.extend(extra);
    out
}

fn rv(pvc: &PersistentVolumeClaim) -> Value {
    json!(pvc.metadata.resource_version)
}

/// The resizer's recovery step 1, a status merge patch guarded by the
/// resourceVersion (docs/protocols.md, "Volume expansion").
pub fn start_patch(pvc: &PersistentVolumeClaim, new_size: u64, now: &str) -> Value {
    json!({
        "metadata": {"resourceVersion": rv(pvc)},
        "status": {
            "conditions": with_condition(pvc, Some(condition(COND_RESIZING, None, now))),
            "allocatedResources": {"storage": bytes_quantity(new_size)},
            "allocatedResourceStatuses": {"storage": CONTROLLER_RESIZE_IN_PROGRESS},
        }
    })
}

/// Hands the claim to kubelet for NodeExpandVolume.
pub fn node_pending_patch(pvc: &PersistentVolumeClaim, new_size: u64, now: &str) -> Value {
    json!({
        "metadata": {"resourceVersion": rv(pvc)},
        "status": {
            "conditions": with_condition(
                pvc,
                Some(condition(COND_FS_RESIZE_PENDING, Some(FS_RESIZE_PENDING_MESSAGE), now)),
            ),
            "allocatedResources": {"storage": bytes_quantity(new_size)},
            "allocatedResourceStatuses": {"storage": NODE_RESIZE_PENDING},
        }
    })
}

/// Finishes a resize that needs no node step (raw block volumes).
pub fn finished_patch(pvc: &PersistentVolumeClaim, new_size: u64) -> Value {
    json!({
        "metadata": {"resourceVersion": rv(pvc)},
        "status": {
            "capacity": {"storage": bytes_quantity(new_size)},
            "conditions": with_condition(pvc, None),
            "allocatedResources": {"storage": bytes_quantity(new_size)},
            "allocatedResourceStatuses": {"storage": null},
        }
    })
}

pub fn pv_capacity_patch(size: u64) -> Value {
    json!({"spec": {"capacity": {"storage": bytes_quantity(size)}}})
}

/// Metadata patch setting (`Some`) or removing (`None`) the
/// node-expansion-not-required annotation.
pub fn node_expansion_annotation_patch(value: Option<&str>) -> Value {
    json!({"metadata": {"annotations": {ANN_NODE_EXPANSION_NOT_REQUIRED: value}}})
}

pub fn has_node_expansion_annotation(pvc: &PersistentVolumeClaim) -> bool {
    pvc.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANN_NODE_EXPANSION_NOT_REQUIRED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_objects::{ClaimBuilder, class, pv_from_json};
    use k8s_openapi::api::core::v1::PersistentVolumeClaimCondition;
    use lvmpin_api::names::DRIVER_NAME;

    fn pv(node: &str, uid: &str) -> PersistentVolume {
        pv_from_json(json!({
            "metadata": {"name": "pvc-u1"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "claimRef": {"namespace": "ns", "name": "data", "uid": uid},
                "csi": {"driver": DRIVER_NAME, "volumeHandle": "vg0/pvc-u1"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "topology.lvm.lvmpin.io/node", "operator": "In", "values": [node]}]}]}}
            }
        }))
    }

    fn claim(request: &str, status: Option<&str>) -> PersistentVolumeClaim {
        let b = ClaimBuilder::new("ns", "data", "u1")
            .size(request)
            .bound("pvc-u1", "1Gi");
        match status {
            Some(s) => b.status(|st| {
                st.allocated_resource_statuses =
                    Some([("storage".to_string(), s.to_string())].into());
            }),
            None => b,
        }
        .build()
    }

    #[test]
    fn plan_table() {
        let mut sc = class("fast", DRIVER_NAME, &[]);
        sc.allow_volume_expansion = Some(true);
        let mut fixed = sc.clone();
        fixed.allow_volume_expansion = None;
        let ours = pv("n1", "u1");
        let elsewhere = pv("n2", "u1");
        let other_claim = pv("n1", "u9");
        let g2 = 2u64 << 30;
        let cases = vec![
            (
                "unchanged",
                claim("1Gi", None),
                Some(&ours),
                &sc,
                ExpansionStep::Nothing,
            ),
            (
                "grow",
                claim("2Gi", None),
                Some(&ours),
                &sc,
                ExpansionStep::Start { new_size: g2 },
            ),
            (
                "grow, class forbids",
                claim("2Gi", None),
                Some(&ours),
                &fixed,
                ExpansionStep::Nothing,
            ),
            (
                "resume after crash",
                claim("2Gi", Some(CONTROLLER_RESIZE_IN_PROGRESS)),
                Some(&ours),
                &fixed,
                ExpansionStep::Resume { new_size: g2 },
            ),
            (
                "kubelet's turn",
                claim("2Gi", Some(NODE_RESIZE_PENDING)),
                Some(&ours),
                &sc,
                ExpansionStep::WaitingForNode,
            ),
            (
                "shrink",
                claim("512Mi", None),
                Some(&ours),
                &sc,
                ExpansionStep::RefuseShrink {
                    requested: 512 << 20,
                    capacity: 1 << 30,
                },
            ),
            (
                "pv on another node",
                claim("2Gi", None),
                Some(&elsewhere),
                &sc,
                ExpansionStep::Nothing,
            ),
            (
                "pv of another claim",
                claim("2Gi", None),
                Some(&other_claim),
                &sc,
                ExpansionStep::Nothing,
            ),
            (
                "pv not cached",
                claim("2Gi", None),
                None,
                &sc,
                ExpansionStep::Nothing,
            ),
        ];
        for (name, pvc, pv, class, want) in cases {
            assert_eq!(plan(&pvc, pv, Some(class), "n1"), want, "{name}");
        }
    }

    #[test]
    fn patches_keep_foreign_conditions_and_drop_resize_ones() {
        let pvc = ClaimBuilder::new("ns", "data", "u1")
            .size("2Gi")
            .bound("pvc-u1", "1Gi")
            .resource_version("7")
            .status(|s| {
                s.conditions = Some(vec![
                    PersistentVolumeClaimCondition {
                        type_: "ModifyingVolume".into(),
                        status: "True".into(),
                        ..Default::default()
                    },
                    PersistentVolumeClaimCondition {
                        type_: "ControllerResizeError".into(),
                        status: "True".into(),
                        ..Default::default()
                    },
                ])
            })
            .build();
        let t = "2026-01-01T00:00:00Z";
        assert_eq!(
            start_patch(&pvc, 2 << 30, t),
            json!({"metadata": {"resourceVersion": "7"}, "status": {
                "conditions": [{"type": "ModifyingVolume", "status": "True"},
                               {"type": "Resizing", "status": "True", "lastTransitionTime": t}],
                "allocatedResources": {"storage": "2Gi"},
                "allocatedResourceStatuses": {"storage": "ControllerResizeInProgress"}}})
        );
        assert_eq!(
            node_pending_patch(&pvc, 2 << 30, t)["status"]["allocatedResourceStatuses"],
            json!({"storage": "NodeResizePending"})
        );
        assert_eq!(
            finished_patch(&pvc, 2 << 30)["status"],
            json!({"capacity": {"storage": "2Gi"},
                   "conditions": [{"type": "ModifyingVolume", "status": "True"}],
                   "allocatedResources": {"storage": "2Gi"},
                   "allocatedResourceStatuses": {"storage": null}})
        );
    }
}
