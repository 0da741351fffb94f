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
//!   together, as external-resizer's status helpers in `pkg/util` do;
//! - With the gate off (Kubernetes 1.30 and 1.31) the API server drops both
//!   fields from every PVC write (kubernetes `pkg/api/persistentvolumeclaim`
//!   `DropDisabledFieldsFromStatus`), so nothing waiting for them ever sees
//!   them. When the claim read back after our first write lacks
//!   `allocatedResources`, the agent follows the resizer's older path instead
//!   (`pkg/controller/controller.go`): conditions `Resizing` and
//!   `FileSystemResizePending` only, and the PV capacity; kubelet's legacy
//!   path then grows the filesystem because the PV is larger than the claim.
//! - LVM rounds sizes up to whole extents and `lvmpin.io/local-disk-size` may
//!   make a volume bigger than its request, so a capacity above the request is
//!   normal. Only a request below what was allocated before is a shrink.

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

/// Which of the resizer's two protocols the API server lets us follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizePath {
    /// RecoverVolumeExpansionFailure on: allocatedResources and statuses.
    Recovery,
    /// Gate off: the server drops those fields; conditions only.
    Legacy,
}

/// The path to follow given the claim as the API server returned it after we
/// wrote `allocatedResources` (or as cached, when resuming): the field is
/// missing only where the server drops it.
pub fn resize_path(pvc: &PersistentVolumeClaim) -> ResizePath {
    let allocated = pvc
        .status
        .as_ref()
        .and_then(|s| s.allocated_resources.as_ref())
        .is_some_and(|m| m.contains_key("storage"));
    if allocated {
        ResizePath::Recovery
    } else {
        ResizePath::Legacy
    }
}

fn has_condition(pvc: &PersistentVolumeClaim, type_: &str) -> bool {
    pvc.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == "True")
}

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
        Some(_) => {}
        // The legacy path's marks (no statuses: the server dropped them).
        None if has_condition(pvc, COND_FS_RESIZE_PENDING) => {
            return ExpansionStep::WaitingForNode;
        }
        None if has_condition(pvc, COND_RESIZING) && requested > capacity => {
            return ExpansionStep::Resume {
                new_size: requested,
            };
        }
        None => {}
    }
    // A capacity above the request is extent rounding or the declared
    // local-disk-size; only going below what was allocated is a shrink.
    let allocated = storage_of(status.and_then(|s| s.allocated_resources.as_ref()));
    if let Some(allocated) = allocated
        && requested < allocated
        && requested < capacity
    {
        return ExpansionStep::RefuseShrink {
            requested,
            capacity: allocated,
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

/// The resizer's recovery step 1 (docs/protocols.md, "Volume expansion").
/// Status patches carry no resourceVersion here: the executor guards each
/// with the version of the claim it last read back.
pub fn start_patch(pvc: &PersistentVolumeClaim, new_size: u64, now: &str) -> Value {
    json!({
        "status": {
            "conditions": with_condition(pvc, Some(condition(COND_RESIZING, None, now))),
            "allocatedResources": {"storage": bytes_quantity(new_size)},
            "allocatedResourceStatuses": {"storage": CONTROLLER_RESIZE_IN_PROGRESS},
        }
    })
}

/// Hands the claim to kubelet for NodeExpandVolume.
pub fn node_pending_patch(
    pvc: &PersistentVolumeClaim,
    new_size: u64,
    now: &str,
    path: ResizePath,
) -> Value {
    if path == ResizePath::Legacy {
        return json!({
            "status": {
                "conditions": with_condition(
                    pvc,
                    Some(condition(COND_FS_RESIZE_PENDING, Some(FS_RESIZE_PENDING_MESSAGE), now)),
                ),
            }
        });
    }
    json!({
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
pub fn finished_patch(pvc: &PersistentVolumeClaim, new_size: u64, path: ResizePath) -> Value {
    if path == ResizePath::Legacy {
        return json!({
            "status": {
                "capacity": {"storage": bytes_quantity(new_size)},
                "conditions": with_condition(pvc, None),
            }
        });
    }
    json!({
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

/// One write of a resize. A plan is a list of them in the order they must
/// happen; `resize::apply` runs it, one write after the other.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Merge patch of the claim (metadata).
    Claim(Value),
    /// Merge patch of the claim's status subresource, guarded by the
    /// resourceVersion of the claim the previous write returned.
    ClaimStatus(Value),
    /// Merge patch of the PV.
    Volume(Value),
    /// A Normal Event on the claim.
    Event {
        reason: &'static str,
        message: String,
    },
}

/// Before lvextend: clear a stale node-expansion mark, announce, and record
/// the size being allocated.
pub fn start_writes(
    pvc: &PersistentVolumeClaim,
    pv_name: &str,
    node: &str,
    new_size: u64,
    now: &str,
) -> Vec<Write> {
    let mut out = Vec::new();
    if has_node_expansion_annotation(pvc) {
        out.push(Write::Claim(node_expansion_annotation_patch(None)));
    }
    out.push(Write::Event {
        reason: "Resizing",
        message: format!("lvmpin agent on {node} is resizing volume {pv_name}"),
    });
    out.push(Write::ClaimStatus(start_patch(pvc, new_size, now)));
    out
}

/// After lvextend: the PV's new capacity, then either the end of the resize
/// (a raw block volume has no filesystem to grow) or the hand-over to kubelet.
pub fn finish_writes(
    pvc: &PersistentVolumeClaim,
    pv_name: &str,
    new_size: u64,
    volume_size: u64,
    path: ResizePath,
    now: &str,
) -> Vec<Write> {
    let mut out = vec![Write::Volume(pv_capacity_patch(volume_size))];
    if is_block(pvc) {
        out.push(Write::ClaimStatus(finished_patch(pvc, volume_size, path)));
        out.push(Write::Claim(node_expansion_annotation_patch(Some("true"))));
        out.push(Write::Event {
            reason: "VolumeResizeSuccessful",
            message: format!("resize volume {pv_name} finished"),
        });
    } else {
        out.push(Write::ClaimStatus(node_pending_patch(
            pvc, new_size, now, path,
        )));
        out.push(Write::Event {
            reason: "FileSystemResizeRequired",
            message: "Require file system resize of volume on node".to_string(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeClaimCondition;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use lvmpin_testkit::{ClaimBuilder, class, pv_from_json};
    use std::collections::BTreeMap;

    fn storage(q: &str) -> BTreeMap<String, Quantity> {
        [("storage".to_string(), Quantity(q.into()))].into()
    }

    fn cond(type_: &str) -> PersistentVolumeClaimCondition {
        PersistentVolumeClaimCondition {
            type_: type_.into(),
            status: "True".into(),
            ..Default::default()
        }
    }

    /// A bound claim: request, status.capacity, allocatedResources, conditions.
    fn bound(
        request: &str,
        capacity: &str,
        allocated: Option<&str>,
        conditions: &[&str],
    ) -> PersistentVolumeClaim {
        ClaimBuilder::new("ns", "data", "u1")
            .size(request)
            .bound("pvc-u1", capacity)
            .local_disk_size(capacity)
            .status(|s| {
                s.allocated_resources = allocated.map(storage);
                s.conditions = Some(conditions.iter().map(|c| cond(c)).collect());
            })
            .build()
    }
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
                "capacity above the request: extent rounding",
                claim("1000Mi", None),
                Some(&ours),
                &sc,
                ExpansionStep::Nothing,
            ),
            (
                "capacity above the request: declared local-disk-size",
                bound("1Gi", "4Gi", None, &[]),
                Some(&ours),
                &sc,
                ExpansionStep::Nothing,
            ),
            (
                "grown before, capacity still above the request",
                bound("3Gi", "4Gi", Some("3Gi"), &[]),
                Some(&ours),
                &sc,
                ExpansionStep::Nothing,
            ),
            (
                "shrink below what was allocated",
                bound("1Gi", "2Gi", Some("2Gi"), &[]),
                Some(&ours),
                &sc,
                ExpansionStep::RefuseShrink {
                    requested: 1 << 30,
                    capacity: 2 << 30,
                },
            ),
            (
                "legacy: kubelet's turn",
                bound("2Gi", "1Gi", None, &[COND_FS_RESIZE_PENDING]),
                Some(&ours),
                &sc,
                ExpansionStep::WaitingForNode,
            ),
            (
                "legacy: resume after a crash",
                bound("2Gi", "1Gi", None, &[COND_RESIZING]),
                Some(&ours),
                &fixed,
                ExpansionStep::Resume { new_size: g2 },
            ),
            (
                "legacy: stale Resizing, nothing to grow",
                bound("1Gi", "1Gi", None, &[COND_RESIZING]),
                Some(&ours),
                &sc,
                ExpansionStep::Nothing,
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
    fn writes_come_in_protocol_order() {
        let kinds = |w: &[Write]| -> Vec<&'static str> {
            w.iter()
                .map(|w| match w {
                    Write::Claim(_) => "claim",
                    Write::ClaimStatus(_) => "status",
                    Write::Volume(_) => "pv",
                    Write::Event { reason, .. } => reason,
                })
                .collect()
        };
        let t = "2026-01-01T00:00:00Z";
        let plain = ClaimBuilder::new("ns", "data", "u1")
            .size("2Gi")
            .bound("pvc-u1", "1Gi")
            .build();
        let marked = ClaimBuilder::new("ns", "data", "u1")
            .size("2Gi")
            .bound("pvc-u1", "1Gi")
            .annotation(ANN_NODE_EXPANSION_NOT_REQUIRED, "true")
            .build();
        let block = ClaimBuilder::new("ns", "data", "u1")
            .size("2Gi")
            .bound("pvc-u1", "1Gi")
            .block()
            .build();
        let g2 = 2 << 30;
        let cases: Vec<(&str, Vec<Write>, Vec<&str>)> = vec![
            (
                "start",
                start_writes(&plain, "pvc-u1", "n1", g2, t),
                vec!["Resizing", "status"],
            ),
            (
                "start after an earlier block resize",
                start_writes(&marked, "pvc-u1", "n1", g2, t),
                vec!["claim", "Resizing", "status"],
            ),
            (
                "filesystem: hand over to kubelet",
                finish_writes(&plain, "pvc-u1", g2, g2, ResizePath::Recovery, t),
                vec!["pv", "status", "FileSystemResizeRequired"],
            ),
            (
                "block: done here",
                finish_writes(&block, "pvc-u1", g2, g2, ResizePath::Recovery, t),
                vec!["pv", "status", "claim", "VolumeResizeSuccessful"],
            ),
        ];
        for (name, writes, want) in cases {
            assert_eq!(kinds(&writes), want, "{name}");
        }
        // The PV gets the LV's real size, which extent rounding may raise.
        let rounded = finish_writes(&plain, "pvc-u1", g2, g2 + 4096, ResizePath::Legacy, t);
        assert_eq!(rounded[0], Write::Volume(pv_capacity_patch(g2 + 4096)));
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
            json!({"status": {
                "conditions": [{"type": "ModifyingVolume", "status": "True"},
                               {"type": "Resizing", "status": "True", "lastTransitionTime": t}],
                "allocatedResources": {"storage": "2Gi"},
                "allocatedResourceStatuses": {"storage": "ControllerResizeInProgress"}}})
        );
        assert_eq!(
            node_pending_patch(&pvc, 2 << 30, t, ResizePath::Recovery)["status"]["allocatedResourceStatuses"],
            json!({"storage": "NodeResizePending"})
        );
        assert_eq!(
            finished_patch(&pvc, 2 << 30, ResizePath::Recovery)["status"],
            json!({"capacity": {"storage": "2Gi"},
                   "conditions": [{"type": "ModifyingVolume", "status": "True"}],
                   "allocatedResources": {"storage": "2Gi"},
                   "allocatedResourceStatuses": {"storage": null}})
        );
        // The legacy path writes conditions (and capacity) only.
        assert_eq!(
            node_pending_patch(&pvc, 2 << 30, t, ResizePath::Legacy),
            json!({"status": {
                "conditions": [{"type": "ModifyingVolume", "status": "True"},
                               {"type": "FileSystemResizePending", "status": "True", "lastTransitionTime": t,
                                "message": FS_RESIZE_PENDING_MESSAGE}]}})
        );
        assert_eq!(
            finished_patch(&pvc, 2 << 30, ResizePath::Legacy)["status"],
            json!({"capacity": {"storage": "2Gi"},
                   "conditions": [{"type": "ModifyingVolume", "status": "True"}]})
        );
    }

    #[test]
    fn resize_path_table() {
        let base = || {
            ClaimBuilder::new("ns", "data", "u1")
                .size("2Gi")
                .bound("pvc-u1", "1Gi")
        };
        let cases = vec![
            (
                "allocatedResources read back",
                base().status(|s| s.allocated_resources = Some(storage("2Gi"))),
                ResizePath::Recovery,
            ),
            ("dropped by the API server", base(), ResizePath::Legacy),
            (
                "statuses without allocatedResources",
                base().status(|s| {
                    s.allocated_resource_statuses = Some(
                        [(
                            "storage".to_string(),
                            CONTROLLER_RESIZE_IN_PROGRESS.to_string(),
                        )]
                        .into(),
                    )
                }),
                ResizePath::Legacy,
            ),
            (
                "allocated for another resource only",
                base().status(|s| {
                    s.allocated_resources =
                        Some([("other".to_string(), Quantity("1".into()))].into())
                }),
                ResizePath::Legacy,
            ),
        ];
        for (name, pvc, want) in cases {
            assert_eq!(resize_path(&pvc.build()), want, "{name}");
        }
    }
}
