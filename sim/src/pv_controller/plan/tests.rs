// Tables read better with owned fixtures cloned inline.
#![allow(clippy::cloned_ref_to_slice_refs)]

use super::*;
use crate::workload;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

fn class(mode: &str) -> StorageClass {
    let mut sc = workload::storage_class("lvm", "vg0");
    sc.volume_binding_mode = Some(mode.to_string());
    sc
}

fn pvc(name: &str, uid: &str) -> PersistentVolumeClaim {
    let mut c = workload::claim("ns", name, "lvm", "1Gi");
    c.metadata.uid = Some(uid.to_string());
    c.metadata.resource_version = Some("7".into());
    c
}

fn pv(name: &str, claim: Option<(&str, &str)>, size: &str) -> PersistentVolume {
    PersistentVolume {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_string()),
            annotations: Some(BTreeMap::from([(
                ANN_PROVISIONED_BY.to_string(),
                "lvm.lvmpin.io".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            capacity: Some(BTreeMap::from([(
                "storage".to_string(),
                Quantity(size.into()),
            )])),
            persistent_volume_reclaim_policy: Some("Delete".into()),
            claim_ref: claim.map(|(n, uid)| ObjectReference {
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some("ns".into()),
                name: Some(n.into()),
                uid: Some(uid.into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn with_phase(mut v: PersistentVolume, p: &str) -> PersistentVolume {
    v.status = Some(PersistentVolumeStatus {
        phase: Some(p.into()),
        ..Default::default()
    });
    v
}

fn run(v: &[PersistentVolume], c: &[PersistentVolumeClaim], s: &[StorageClass]) -> Vec<Action> {
    plan(
        &v.iter().collect::<Vec<_>>(),
        &c.iter().collect::<Vec<_>>(),
        &s.iter().collect::<Vec<_>>(),
    )
}

fn ann(c: &PersistentVolumeClaim, k: &str) -> Option<String> {
    c.metadata.annotations.as_ref()?.get(k).cloned()
}

#[test]
fn prebound_volume_binds_volume_then_claim() {
    let claim = pvc("a", "u1");
    let vol = pv("pvc-u1", Some(("a", "u1")), "1Gi");
    let acts = run(&[vol], &[claim], &[class("WaitForFirstConsumer")]);
    assert_eq!(acts.len(), 2, "{acts:?}");
    let Action::VolumeStatus(v) = &acts[0] else {
        panic!("{acts:?}")
    };
    assert_eq!(volume_phase(v), Some(PHASE_BOUND));
    let Action::ClaimUpdate(c) = &acts[1] else {
        panic!("{acts:?}")
    };
    assert_eq!(volume_name_of(c), Some("pvc-u1"));
    assert_eq!(ann(c, ANN_BIND_COMPLETED).as_deref(), Some("yes"));
    assert_eq!(ann(c, ANN_BOUND_BY_CONTROLLER).as_deref(), Some("yes"));
    assert_eq!(
        c.metadata.resource_version.as_deref(),
        Some("7"),
        "update carries the RV read"
    );
}

/// syncUnboundClaim looks for a matching volume before it provisions: a claim
/// whose pre-bound PV is already there is bound without ever getting the
/// storage-provisioner annotation, even with its node selected.
#[test]
fn matching_volume_wins_over_provisioning() {
    let claim = workload_selected(pvc("a", "u1"), "n1");
    let vol = pv("pvc-u1", Some(("a", "u1")), "1Gi");
    let acts = run(&[vol], &[claim], &[class("WaitForFirstConsumer")]);
    let [Action::VolumeStatus(_), Action::ClaimUpdate(c)] = acts.as_slice() else {
        panic!("{acts:?}")
    };
    assert_eq!(volume_name_of(c), Some("pvc-u1"));
    assert_eq!(ann(c, ANN_STORAGE_PROVISIONER), None);
    assert_eq!(ann(c, ANN_BETA_STORAGE_PROVISIONER), None);
}

#[test]
fn bound_claim_gets_status_from_volume() {
    let vol = with_phase(pv("pvc-u1", Some(("a", "u1")), "2Gi"), PHASE_BOUND);
    let mut claim = pvc("a", "u1");
    let claim = {
        let Action::ClaimUpdate(c) = &run(&[vol.clone()], &[claim.clone()], &[])[0] else {
            panic!()
        };
        claim = c.clone();
        claim
    };
    let acts = run(&[vol], &[claim], &[]);
    let [Action::ClaimStatus(c)] = acts.as_slice() else {
        panic!("{acts:?}")
    };
    let st = c.status.as_ref().unwrap();
    assert_eq!(st.phase.as_deref(), Some(PHASE_BOUND));
    assert_eq!(st.capacity.as_ref().unwrap()["storage"].0, "2Gi");
    assert_eq!(
        st.access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_string()][..])
    );
}

#[test]
fn fully_bound_pair_needs_nothing() {
    let vol = with_phase(pv("pvc-u1", Some(("a", "u1")), "1Gi"), PHASE_BOUND);
    let mut claim = pvc("a", "u1");
    claim.spec.as_mut().unwrap().volume_name = Some("pvc-u1".into());
    claim.metadata.annotations = Some(BTreeMap::from([(ANN_BIND_COMPLETED.into(), "yes".into())]));
    claim.status = Some(PersistentVolumeClaimStatus {
        phase: Some(PHASE_BOUND.into()),
        ..Default::default()
    });
    assert!(run(&[vol], &[claim], &[]).is_empty());
}

#[test]
fn too_small_or_wrong_mode_volume_does_not_bind() {
    let claim = pvc("a", "u1");
    let small = pv("pvc-u1", Some(("a", "u1")), "512Mi");
    assert_eq!(
        run(&[small], &[claim.clone()], &[]),
        vec![Action::VolumeStatus(set_volume_phase(
            &pv("pvc-u1", Some(("a", "u1")), "512Mi"),
            PHASE_AVAILABLE
        ))]
    );
    let mut block = pv("pvc-u1", Some(("a", "u1")), "1Gi");
    block.spec.as_mut().unwrap().volume_mode = Some("Block".into());
    let acts = run(&[block], &[claim], &[]);
    assert!(
        acts.iter().all(|a| !matches!(a, Action::ClaimUpdate(_))),
        "{acts:?}"
    );
}

#[test]
fn claim_gone_or_recreated_releases_volume() {
    let vol = with_phase(pv("pvc-u1", Some(("a", "u1")), "1Gi"), PHASE_BOUND);
    let acts = run(&[vol.clone()], &[], &[]);
    assert!(
        matches!(&acts[..], [Action::ReleaseVolume(v)] if volume_phase(v) == Some(PHASE_RELEASED))
    );
    // Same name, new uid: the old volume is released too.
    let acts = run(&[vol], &[pvc("a", "u2")], &[]);
    assert!(matches!(&acts[0], Action::ReleaseVolume(_)), "{acts:?}");
    // Already released: nothing more.
    let rel = with_phase(pv("pvc-u1", Some(("a", "u1")), "1Gi"), PHASE_RELEASED);
    assert!(run(&[rel], &[], &[]).is_empty());
}

#[test]
fn volume_without_claim_or_uid_is_available() {
    assert!(
        matches!(&run(&[pv("x", None, "1Gi")], &[], &[])[..], [Action::VolumeStatus(v)] if volume_phase(v) == Some(PHASE_AVAILABLE))
    );
    let mut reservation = pv("x", Some(("a", "u1")), "1Gi");
    reservation
        .spec
        .as_mut()
        .unwrap()
        .claim_ref
        .as_mut()
        .unwrap()
        .uid = None;
    let acts = run(&[reservation], &[], &[]);
    assert!(
        matches!(&acts[..], [Action::VolumeStatus(v)] if volume_phase(v) == Some(PHASE_AVAILABLE)),
        "{acts:?}"
    );
}

#[test]
fn provisioner_annotation_waits_for_selected_node_under_wffc() {
    let claim = pvc("a", "u1");
    assert!(run(&[], &[claim.clone()], &[class("WaitForFirstConsumer")]).is_empty());
    let selected = workload_selected(claim.clone(), "n1");
    let acts = run(&[], &[selected.clone()], &[class("WaitForFirstConsumer")]);
    let [Action::ClaimUpdate(c)] = acts.as_slice() else {
        panic!("{acts:?}")
    };
    assert_eq!(
        ann(c, ANN_STORAGE_PROVISIONER).as_deref(),
        Some("lvm.lvmpin.io")
    );
    assert_eq!(
        ann(c, ANN_BETA_STORAGE_PROVISIONER).as_deref(),
        Some("lvm.lvmpin.io")
    );
    // No-op once the GA key holds the provisioner.
    assert!(run(&[], &[c.clone()], &[class("WaitForFirstConsumer")]).is_empty());
    // Immediate classes get it right away; unknown classes never.
    assert_eq!(run(&[], &[claim.clone()], &[class("Immediate")]).len(), 1);
    assert!(run(&[], &[selected], &[]).is_empty());
}

#[test]
fn beta_class_annotation_wins() {
    let mut claim = workload_selected(pvc("a", "u1"), "n1");
    claim.spec.as_mut().unwrap().storage_class_name = Some("other".into());
    claim
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ANN_BETA_STORAGE_CLASS.into(), "lvm".into());
    assert_eq!(claim_class(&claim), Some("lvm"));
    assert_eq!(
        run(&[], &[claim], &[class("WaitForFirstConsumer")]).len(),
        1
    );
}

#[test]
fn bound_claim_without_volume_is_lost() {
    let mut claim = pvc("a", "u1");
    claim.spec.as_mut().unwrap().volume_name = Some("pvc-u1".into());
    claim.metadata.annotations = Some(BTreeMap::from([(ANN_BIND_COMPLETED.into(), "yes".into())]));
    let acts = run(&[], &[claim], &[]);
    assert!(matches!(&acts[..], [Action::ClaimStatus(c)] if claim_phase(c) == Some(PHASE_LOST)));
}

fn workload_selected(mut c: PersistentVolumeClaim, node: &str) -> PersistentVolumeClaim {
    c.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ANN_SELECTED_NODE.into(), node.into());
    c
}
