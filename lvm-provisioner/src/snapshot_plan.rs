//! What the agent does with one of its node's VolumeSnapshotContents: the
//! part the upstream csi-snapshotter sidecar plays for a CSI driver, decided
//! by a pure function over the content (external-snapshotter
//! `pkg/sidecar-controller/snapshot_controller.go` `syncContent`,
//! `shouldDelete`; docs/protocols.md, "Snapshots").

use kube::ResourceExt;
use lvmpin_api::VolumeId;
use lvmpin_api::names::DRIVER_NAME;
use lvmpin_api::snapshot::{
    ANN_BEING_CREATED, ANN_BEING_DELETED, CONTENT_FINALIZER, POLICY_DELETE, VolumeSnapshotContent,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentStep {
    /// Not the agent's business (another driver, deletion not yet confirmed
    /// by the snapshot-controller).
    Ignore(&'static str),
    /// A pre-provisioned content (`spec.source.snapshotHandle`) not ready
    /// yet: check that the handle names an lvmpin snapshot LV on this node and
    /// fill the status from it (the sidecar's `checkandUpdateContentStatus`).
    Check { snapshot: VolumeId },
    /// A pre-provisioned content whose handle cannot name one of our LVs:
    /// the message goes on `status.error` and in a Warning Event.
    CheckFailed(String),
    /// Take the snapshot (again, after an error: creation is idempotent).
    Create {
        source: VolumeId,
        /// The snapshot LV's name, in the source's volume group
        /// (`backend::snapshot_lv_name` of the content's uid).
        name: String,
    },
    /// Ready, but the being-created annotation is still on.
    ClearBeingCreated,
    /// The deletion policy says Delete and a snapshot was made: remove it,
    /// clear the status' handle, then drop the finalizer.
    Delete { snapshot: VolumeId },
    /// Deleted with Retain (or before anything was made): drop the finalizer.
    ReleaseFinalizer,
    /// Nothing left to do.
    Done,
}

fn has_annotation(c: &VolumeSnapshotContent, key: &str) -> bool {
    c.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(key))
}

/// The sidecar's `shouldDelete`: the content is being deleted and either it
/// is an unbound pre-provisioned one, or the snapshot-controller confirmed
/// the VolumeSnapshot's deletion and no create may still be in flight.
fn should_delete(c: &VolumeSnapshotContent) -> bool {
    if c.metadata.deletion_timestamp.is_none() {
        return false;
    }
    let unbound_pre_provisioned = c.spec.source.snapshot_handle.is_some()
        && c.spec
            .volume_snapshot_ref
            .uid
            .as_deref()
            .unwrap_or("")
            .is_empty();
    if unbound_pre_provisioned {
        return true;
    }
    !has_annotation(c, ANN_BEING_CREATED) && has_annotation(c, ANN_BEING_DELETED)
}

/// The next step for a content labelled with this agent's node.
pub fn content_step(c: &VolumeSnapshotContent) -> ContentStep {
    if c.spec.driver != DRIVER_NAME {
        return ContentStep::Ignore("another driver's content");
    }
    let status = c.status.as_ref();
    if should_delete(c) {
        let handle = status.and_then(|s| s.snapshot_handle.as_deref());
        if c.spec.deletion_policy == POLICY_DELETE
            && let Some(handle) = handle
        {
            return match handle.parse() {
                Ok(snapshot) => ContentStep::Delete { snapshot },
                // Not a handle this agent wrote: nothing of ours to remove.
                Err(_) => ContentStep::ReleaseFinalizer,
            };
        }
        let finalized = c
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == CONTENT_FINALIZER);
        return if finalized {
            ContentStep::ReleaseFinalizer
        } else {
            ContentStep::Done
        };
    }
    if c.metadata.deletion_timestamp.is_some() {
        return ContentStep::Ignore("being deleted; waiting for the snapshot-controller");
    }
    if c.is_ready() {
        return if has_annotation(c, ANN_BEING_CREATED) {
            ContentStep::ClearBeingCreated
        } else {
            ContentStep::Done
        };
    }
    if let Some(handle) = c.spec.source.snapshot_handle.as_deref() {
        // As the sidecar's `syncContent`: a pre-provisioned content is
        // checked (ListSnapshots there, the scan here), never created, and
        // needs no VolumeSnapshot bound to it yet.
        return match parse_handle(handle) {
            Ok(snapshot) => ContentStep::Check { snapshot },
            Err(message) => ContentStep::CheckFailed(message),
        };
    }
    let Some(handle) = c.spec.source.volume_handle.as_deref() else {
        return ContentStep::Ignore("content names neither a volume nor a snapshot");
    };
    let Ok(source) = handle.parse::<VolumeId>() else {
        return ContentStep::Ignore("source volume handle is not <vg>/<lv>");
    };
    let bound = c
        .spec
        .volume_snapshot_ref
        .uid
        .as_deref()
        .is_some_and(|u| !u.is_empty());
    if !bound {
        return ContentStep::Ignore("no VolumeSnapshot uid yet");
    }
    let Some(uid) = c.uid().filter(|u| !u.is_empty()) else {
        return ContentStep::Ignore("content has no uid yet");
    };
    ContentStep::Create {
        source,
        name: crate::backend::snapshot_lv_name(&uid),
    }
}

/// Handles longer than this are cut in messages (a handle is user input on a
/// pre-provisioned content).
const HANDLE_ECHO: usize = 256;

/// A snapshot handle as lvmpin writes them, `<vg>/<lv>`.
fn parse_handle(handle: &str) -> Result<VolumeId, String> {
    handle.parse().map_err(|_| {
        format!(
            "snapshot handle {:?} is not <volume group>/<logical volume>",
            lvmpin_api::text::cut(handle, HANDLE_ECHO)
        )
    })
}

/// What the scan says of the LV a pre-provisioned handle names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleTarget {
    /// Not in a volume group this agent serves, or no such LV.
    Missing,
    /// A thin snapshot LV with lvmpin's snapshot tags.
    Snapshot,
    /// An LV with lvmpin's claim tags: a volume, not a snapshot.
    Volume,
    /// An LV without lvmpin's tags.
    Foreign,
}

impl HandleTarget {
    pub fn of(found: Option<&crate::backend::Volume>) -> Self {
        match found {
            None => Self::Missing,
            Some(v) if v.is_snapshot() => Self::Snapshot,
            Some(v) if v.owner.is_some() => Self::Volume,
            Some(_) => Self::Foreign,
        }
    }
}

/// Why a pre-provisioned content's handle is not one of this node's lvmpin
/// snapshots, if it is not. Only a snapshot LV carrying lvmpin's snapshot
/// tags proves the handle is ours: anything else is reported, never touched.
pub fn check_refusal(snapshot: &VolumeId, node: &str, target: HandleTarget) -> Option<String> {
    let snapshot = lvmpin_api::text::cut(&snapshot.to_string(), HANDLE_ECHO);
    match target {
        HandleTarget::Snapshot => None,
        HandleTarget::Missing => Some(format!("snapshot {snapshot} does not exist on node {node}")),
        HandleTarget::Volume => Some(format!(
            "{snapshot} is an lvmpin volume, not a snapshot; a pre-provisioned content must name a snapshot LV"
        )),
        HandleTarget::Foreign => Some(format!(
            "{snapshot} has no lvmpin snapshot tags; lvmpin uses only snapshots it made"
        )),
    }
}

/// The handle of a content no node has claimed (no `managed-by` label) that
/// this agent should look for on its node: a pre-provisioned content of this
/// driver, alive, with a handle of the `<vg>/<lv>` form in one of `vgs`.
///
/// The snapshot-controller labels only the contents it creates for a
/// VolumeSnapshot (external-snapshotter
/// `pkg/common-controller/snapshot_controller.go`, `createSnapshotContent`
/// via `getManagedByNode`); a pre-provisioned content is written by a person
/// and a node-deployed sidecar sees it only if labelled by hand
/// (`cmd/csi-snapshotter/main.go`, the `--node-deployment` label selector).
/// The agent that finds the LV among its own lvmpin snapshots labels it, so
/// that the content watch and the extender (restores) find the node.
pub fn unclaimed_handle(c: &VolumeSnapshotContent, vgs: &[String]) -> Option<VolumeId> {
    if c.spec.driver != DRIVER_NAME
        || c.managed_by().is_some()
        || c.metadata.deletion_timestamp.is_some()
    {
        return None;
    }
    let snapshot = parse_handle(c.spec.source.snapshot_handle.as_deref()?).ok()?;
    vgs.contains(&snapshot.vg).then_some(snapshot)
}

/// Why a source volume cannot be snapshotted, if it cannot: it must be one
/// of lvmpin's thin volumes. `found` is `(thin pool, owned by lvmpin)` of
/// the LV named by the handle, or None when it does not exist.
pub fn snapshot_refusal(source: &VolumeId, found: Option<(Option<&str>, bool)>) -> Option<String> {
    match found {
        None => Some(format!(
            "source volume {source} does not exist on this node"
        )),
        Some((_, false)) => Some(format!("source volume {source} is not an lvmpin volume")),
        Some((None, true)) => Some(format!(
            "source volume {source} is a linear volume; lvmpin takes snapshots of thin volumes only (StorageClass parameter lvmpin.io/thin-pool)"
        )),
        Some((Some(_), true)) => None,
    }
}

/// `status.creationTime`: nanoseconds since the epoch, as the upstream int64.
pub fn creation_time_nanos(unix_seconds: i64) -> i64 {
    unix_seconds.saturating_mul(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use lvmpin_api::snapshot::{
        LABEL_MANAGED_BY, VolumeSnapshotContentSpec, VolumeSnapshotContentStatus,
    };
    use std::collections::BTreeMap;

    #[derive(Clone, Copy, Default)]
    struct C {
        driver_other: bool,
        deleting: bool,
        being_deleted: bool,
        being_created: bool,
        retain: bool,
        handle: bool,
        ready: bool,
        pre_provisioned: bool,
        no_ref_uid: bool,
        no_finalizer: bool,
    }

    fn content(c: C) -> VolumeSnapshotContent {
        let mut obj = VolumeSnapshotContent::new(
            "snapcontent-u1",
            VolumeSnapshotContentSpec {
                driver: if c.driver_other { "other" } else { DRIVER_NAME }.into(),
                deletion_policy: if c.retain { "Retain" } else { "Delete" }.into(),
                ..Default::default()
            },
        );
        if c.pre_provisioned {
            obj.spec.source.snapshot_handle = Some("vg0/old".into());
        } else {
            obj.spec.source.volume_handle = Some("vg0/pvc-1".into());
        }
        obj.metadata.uid = Some("cu1".into());
        if !c.no_ref_uid {
            obj.spec.volume_snapshot_ref.uid = Some("u1".into());
        }
        let mut ann = BTreeMap::new();
        if c.being_deleted {
            ann.insert(ANN_BEING_DELETED.to_string(), "yes".to_string());
        }
        if c.being_created {
            ann.insert(ANN_BEING_CREATED.to_string(), "yes".to_string());
        }
        obj.metadata.annotations = Some(ann);
        if !c.no_finalizer {
            obj.metadata.finalizers = Some(vec![CONTENT_FINALIZER.into()]);
        }
        if c.deleting {
            obj.metadata.deletion_timestamp = Some(Time(Default::default()));
        }
        if c.handle || c.ready {
            obj.status = Some(VolumeSnapshotContentStatus {
                snapshot_handle: c.handle.then(|| "vg0/snap-cu1".into()),
                ready_to_use: Some(c.ready),
                ..Default::default()
            });
        }
        obj
    }

    #[test]
    fn steps() {
        let create = ContentStep::Create {
            source: VolumeId::new("vg0", "pvc-1"),
            name: "snap-cu1".into(),
        };
        let delete = ContentStep::Delete {
            snapshot: VolumeId::new("vg0", "snap-cu1"),
        };
        let d = C::default();
        let gone = C {
            deleting: true,
            being_deleted: true,
            handle: true,
            ready: true,
            ..d
        };
        let cases = [
            ("new content", d, create.clone()),
            (
                "error status: retry",
                C {
                    being_created: true,
                    ..d
                },
                create.clone(),
            ),
            (
                "ready",
                C {
                    handle: true,
                    ready: true,
                    ..d
                },
                ContentStep::Done,
            ),
            (
                "ready, annotation left",
                C {
                    handle: true,
                    ready: true,
                    being_created: true,
                    ..d
                },
                ContentStep::ClearBeingCreated,
            ),
            (
                "other driver",
                C {
                    driver_other: true,
                    ..d
                },
                ContentStep::Ignore("another driver's content"),
            ),
            (
                "no snapshot uid",
                C {
                    no_ref_uid: true,
                    ..d
                },
                ContentStep::Ignore("no VolumeSnapshot uid yet"),
            ),
            (
                "pre-provisioned",
                C {
                    pre_provisioned: true,
                    ..d
                },
                ContentStep::Check {
                    snapshot: VolumeId::new("vg0", "old"),
                },
            ),
            (
                "pre-provisioned, not bound yet",
                C {
                    pre_provisioned: true,
                    no_ref_uid: true,
                    ..d
                },
                ContentStep::Check {
                    snapshot: VolumeId::new("vg0", "old"),
                },
            ),
            (
                "pre-provisioned, ready",
                C {
                    pre_provisioned: true,
                    handle: true,
                    ready: true,
                    ..d
                },
                ContentStep::Done,
            ),
            (
                "pre-provisioned, error status: checked again",
                C {
                    pre_provisioned: true,
                    handle: false,
                    ready: false,
                    ..d
                },
                ContentStep::Check {
                    snapshot: VolumeId::new("vg0", "old"),
                },
            ),
            ("deleted with Delete", gone, delete),
            (
                "deleted with Retain",
                C {
                    retain: true,
                    ..gone
                },
                ContentStep::ReleaseFinalizer,
            ),
            (
                "deleted before a snapshot",
                C {
                    handle: false,
                    ready: false,
                    ..gone
                },
                ContentStep::ReleaseFinalizer,
            ),
            (
                "deleted, finalizer already gone",
                C {
                    handle: false,
                    ready: false,
                    no_finalizer: true,
                    ..gone
                },
                ContentStep::Done,
            ),
            (
                "deleting, not confirmed by the controller",
                C {
                    being_deleted: false,
                    ..gone
                },
                ContentStep::Ignore("being deleted; waiting for the snapshot-controller"),
            ),
            (
                "deleting while a create may be in flight",
                C {
                    being_created: true,
                    ..gone
                },
                ContentStep::Ignore("being deleted; waiting for the snapshot-controller"),
            ),
            (
                "unbound pre-provisioned, deleted",
                C {
                    pre_provisioned: true,
                    no_ref_uid: true,
                    deleting: true,
                    ..d
                },
                ContentStep::ReleaseFinalizer,
            ),
        ];
        for (name, c, want) in cases {
            assert_eq!(content_step(&content(c)), want, "{name}");
        }
    }

    #[test]
    fn malformed_pre_provisioned_handles_fail_with_a_bounded_message() {
        let long = "x".repeat(10_000);
        for (handle, want) in [
            ("old", "\"old\" is not"),
            ("", "\"\" is not"),
            ("a/b/c", "is not <volume group>/<logical volume>"),
            ("/lv", "is not"),
            (long.as_str(), "is not"),
        ] {
            let mut c = content(C {
                pre_provisioned: true,
                ..Default::default()
            });
            c.spec.source.snapshot_handle = Some(handle.into());
            match content_step(&c) {
                ContentStep::CheckFailed(m) => {
                    assert!(m.contains(want), "{handle:.40}: {m}");
                    assert!(m.len() < 400, "{handle:.40}: {} bytes", m.len());
                }
                other => panic!("{handle:.40}: {other:?}"),
            }
        }
    }

    #[test]
    fn pre_provisioned_checks() {
        use crate::backend::{Owner, SnapshotOwner, Volume};
        let id = VolumeId::new("vg0", "snap-x");
        let snap = Volume {
            snapshot_owner: Some(SnapshotOwner::default()),
            ..Default::default()
        };
        let claim = Volume {
            owner: Some(Owner::default()),
            ..Default::default()
        };
        let bare = Volume::default();
        let cases = [
            (Some(&snap), HandleTarget::Snapshot, None),
            (
                None,
                HandleTarget::Missing,
                Some("snapshot vg0/snap-x does not exist on node n1"),
            ),
            (
                Some(&claim),
                HandleTarget::Volume,
                Some("is an lvmpin volume, not a snapshot"),
            ),
            (
                Some(&bare),
                HandleTarget::Foreign,
                Some("has no lvmpin snapshot tags"),
            ),
        ];
        let long = VolumeId::new("vg0", "x".repeat(10_000));
        let m = check_refusal(&long, "n1", HandleTarget::Missing).unwrap();
        assert!(m.len() < 400 && m.contains("does not exist"), "{m:.80}");
        for (found, target, want) in cases {
            assert_eq!(HandleTarget::of(found), target);
            let got = check_refusal(&id, "n1", target);
            match (got, want) {
                (None, None) => {}
                (Some(m), Some(w)) => assert!(m.contains(w), "{m}"),
                (got, want) => panic!("{target:?}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn unclaimed_handles() {
        let vgs = vec!["vg0".to_string()];
        let pre = || {
            content(C {
                pre_provisioned: true,
                ..Default::default()
            })
        };
        assert_eq!(
            unclaimed_handle(&pre(), &vgs),
            Some(VolumeId::new("vg0", "old"))
        );
        let labelled = {
            let mut c = pre();
            c.metadata.labels = Some(
                [(LABEL_MANAGED_BY.to_string(), "n2".to_string())]
                    .into_iter()
                    .collect(),
            );
            c
        };
        let other_vg = {
            let mut c = pre();
            c.spec.source.snapshot_handle = Some("vg9/old".into());
            c
        };
        let bad = {
            let mut c = pre();
            c.spec.source.snapshot_handle = Some("old".into());
            c
        };
        let deleting = {
            let mut c = pre();
            c.metadata.deletion_timestamp = Some(Time(Default::default()));
            c
        };
        let foreign = content(C {
            pre_provisioned: true,
            driver_other: true,
            ..Default::default()
        });
        let dynamic = content(C::default());
        for (name, c) in [
            ("labelled", labelled),
            ("another VG", other_vg),
            ("malformed handle", bad),
            ("being deleted", deleting),
            ("another driver", foreign),
            ("dynamic", dynamic),
        ] {
            assert_eq!(unclaimed_handle(&c, &vgs), None, "{name}");
        }
    }

    #[test]
    fn refusals() {
        let id = VolumeId::new("vg0", "pvc-1");
        assert_eq!(snapshot_refusal(&id, Some((Some("pool"), true))), None);
        let linear = snapshot_refusal(&id, Some((None, true))).unwrap();
        assert!(linear.contains("vg0/pvc-1 is a linear volume"), "{linear}");
        assert!(
            snapshot_refusal(&id, Some((Some("pool"), false)))
                .unwrap()
                .contains("not an lvmpin volume")
        );
        assert!(
            snapshot_refusal(&id, None)
                .unwrap()
                .contains("does not exist")
        );
    }

    #[test]
    fn creation_time() {
        assert_eq!(
            creation_time_nanos(1_764_518_400),
            1_764_518_400_000_000_000
        );
        assert_eq!(creation_time_nanos(i64::MAX), i64::MAX);
    }
}
