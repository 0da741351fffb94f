// Tables read better with owned fixtures cloned inline.
#![allow(clippy::cloned_ref_to_slice_refs)]

use super::*;
use crate::workload;
use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeSpec,
    VolumeNodeAffinity,
};
use lvmpin_api::names::TOPOLOGY_KEY;

fn pinned_pv(name: &str, node: &str) -> PersistentVolume {
    PersistentVolume {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: TOPOLOGY_KEY.into(),
                            operator: "In".into(),
                            values: Some(vec![node.into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn claim(name: &str, rv: &str) -> PersistentVolumeClaim {
    let mut c = workload::claim("ns", name, "lvm", "1Gi");
    c.metadata.resource_version = Some(rv.into());
    c
}

fn collect_with(
    pod: &Pod,
    claims: &[PersistentVolumeClaim],
    pvs: &[PersistentVolume],
    classes: &[StorageClass],
) -> Result<PodVolumes, String> {
    collect(
        pod,
        |n| {
            claims
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(n))
                .cloned()
        },
        |n| {
            pvs.iter()
                .find(|c| c.metadata.name.as_deref() == Some(n))
                .cloned()
        },
        |n| {
            classes
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(n))
                .cloned()
        },
    )
}

#[test]
fn prefilter_sorts_and_rejects() {
    let pod = workload::pod("ns", "p", &["a".into(), "b".into()]);
    let sc = workload::storage_class("lvm", "vg");
    let mut b = claim("b", "1");
    b.spec.as_mut().unwrap().volume_name = Some("pv-b".into());
    let vols = collect_with(
        &pod,
        &[claim("a", "1"), b.clone()],
        &[pinned_pv("pv-b", "n2")],
        &[sc.clone()],
    )
    .unwrap();
    assert_eq!(vols.to_provision.len(), 1);
    assert_eq!(vols.bound.len(), 1);
    assert_eq!(
        vols.node_fits(&workload::node("n1"), &CapacityView::default()),
        Err(REASON_NODE_CONFLICT)
    );
    assert_eq!(
        vols.node_fits(&workload::node("n2"), &CapacityView::default()),
        Ok(())
    );

    let err = collect_with(&pod, &[claim("a", "1")], &[], &[sc.clone()]).unwrap_err();
    assert!(err.contains("\"b\" not found"), "{err}");
    let err = collect_with(&pod, &[claim("a", "1"), b], &[], &[sc.clone()]).unwrap_err();
    assert!(err.contains("non-existent"), "{err}");
    let mut imm = sc.clone();
    imm.volume_binding_mode = Some("Immediate".into());
    let err = collect_with(&pod, &[claim("a", "1"), claim("b", "1")], &[], &[imm]).unwrap_err();
    assert_eq!(err, "pod has unbound immediate PersistentVolumeClaims");
}

#[test]
fn stale_selected_node_pins_and_assume_keeps_rv() {
    let pod = workload::pod("ns", "p", &["a".into()]);
    let sc = workload::storage_class("lvm", "vg");
    let mut a = claim("a", "41");
    a.metadata.annotations = Some(BTreeMap::from([(ANN_SELECTED_NODE.into(), "n2".into())]));
    let vols = collect_with(&pod, &[a], &[], &[sc]).unwrap();
    assert!(
        vols.node_fits(&workload::node("n1"), &CapacityView::default())
            .is_err()
    );
    assert!(
        vols.node_fits(&workload::node("n2"), &CapacityView::default())
            .is_ok()
    );
    let assumed = vols.assume("n2");
    assert_eq!(assumed[0].metadata.resource_version.as_deref(), Some("41"));
    assert_eq!(selected_node(&assumed[0]), Some("n2"));
}

#[test]
fn check_bindings_table() {
    let node = workload::node("n1");
    let mut written = claim("a", "10");
    written.metadata.annotations = Some(BTreeMap::from([(ANN_SELECTED_NODE.into(), "n1".into())]));
    let check = |live: Option<PersistentVolumeClaim>, pv: Option<PersistentVolume>| {
        check_bindings(
            &[written.clone()],
            &node,
            |_, _| live.clone(),
            |_| pv.clone(),
        )
    };
    // Cache behind our write: wait.
    assert_eq!(check(Some(claim("a", "9")), None), BindingCheck::Waiting);
    // Selected node removed: reschedule.
    assert!(matches!(
        check(Some(claim("a", "11")), None),
        BindingCheck::Failed {
            reschedule: true,
            ..
        }
    ));
    let mut other = written.clone();
    other.metadata.resource_version = Some("12".into());
    other.metadata.annotations = Some(BTreeMap::from([(ANN_SELECTED_NODE.into(), "n9".into())]));
    assert!(matches!(
        check(Some(other), None),
        BindingCheck::Failed {
            reschedule: true,
            ..
        }
    ));
    // Not bound yet: wait.
    assert_eq!(check(Some(written.clone()), None), BindingCheck::Waiting);
    let mut bound = written.clone();
    bound.spec.as_mut().unwrap().volume_name = Some("pv".into());
    bound
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(ANN_BIND_COMPLETED.into(), "yes".into());
    assert_eq!(check(Some(bound.clone()), None), BindingCheck::Waiting);
    assert_eq!(
        check(Some(bound.clone()), Some(pinned_pv("pv", "n1"))),
        BindingCheck::Done
    );
    assert!(matches!(
        check(Some(bound), Some(pinned_pv("pv", "n2"))),
        BindingCheck::Failed {
            reschedule: false,
            ..
        }
    ));
    assert!(matches!(
        check(None, None),
        BindingCheck::Failed {
            reschedule: false,
            ..
        }
    ));
}

fn driver(storage_capacity: Option<bool>) -> CSIDriver {
    CSIDriver {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(lvmpin_api::names::DRIVER_NAME.into()),
            ..Default::default()
        },
        spec: k8s_openapi::api::storage::v1::CSIDriverSpec {
            storage_capacity,
            ..Default::default()
        },
    }
}

fn capacity(class: &str, node: &str, cap: Option<&str>, max: Option<&str>) -> CSIStorageCapacity {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    CSIStorageCapacity {
        storage_class_name: class.into(),
        node_topology: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(TOPOLOGY_KEY.into(), node.into())])),
            match_expressions: None,
        }),
        capacity: cap.map(|c| Quantity(c.into())),
        maximum_volume_size: max.map(|c| Quantity(c.into())),
        ..Default::default()
    }
}

/// `hasEnoughCapacity`: only drivers that opt in are checked; the object must
/// be of the claim's class, reachable from the node, and large enough, where
/// `maximumVolumeSize` wins over `capacity`.
#[test]
fn capacity_filter_follows_has_enough_capacity() {
    let pod = workload::pod("ns", "p", &["a".into()]);
    let sc = workload::storage_class("lvm", "vg");
    let vols = collect_with(&pod, &[claim("a", "1")], &[], &[sc]).unwrap();
    let n1 = workload::node("n1");
    let on = |caps: Vec<CSIStorageCapacity>| CapacityView {
        drivers: vec![Arc::new(driver(Some(true)))],
        capacities: caps.into_iter().map(Arc::new).collect(),
    };
    let cases: Vec<(&str, CapacityView, Result<(), &str>)> = vec![
        ("no CSIDriver", CapacityView::default(), Ok(())),
        (
            "driver not opted in",
            CapacityView {
                drivers: vec![Arc::new(driver(None))],
                capacities: vec![],
            },
            Ok(()),
        ),
        (
            "opted in, no objects",
            on(vec![]),
            Err(REASON_NOT_ENOUGH_SPACE),
        ),
        (
            "enough",
            on(vec![capacity("lvm", "n1", Some("1Gi"), None)]),
            Ok(()),
        ),
        (
            "too small",
            on(vec![capacity("lvm", "n1", Some("1023Mi"), None)]),
            Err(REASON_NOT_ENOUGH_SPACE),
        ),
        (
            "max volume size wins over capacity",
            on(vec![capacity("lvm", "n1", Some("10Gi"), Some("512Mi"))]),
            Err(REASON_NOT_ENOUGH_SPACE),
        ),
        (
            "other class",
            on(vec![capacity("other", "n1", Some("10Gi"), None)]),
            Err(REASON_NOT_ENOUGH_SPACE),
        ),
        (
            "other node",
            on(vec![capacity("lvm", "n2", Some("10Gi"), None)]),
            Err(REASON_NOT_ENOUGH_SPACE),
        ),
        (
            "any matching object will do",
            on(vec![
                capacity("lvm", "n2", Some("10Gi"), None),
                capacity("lvm", "n1", Some("2Gi"), None),
            ]),
            Ok(()),
        ),
        (
            "no topology is unavailable",
            on(vec![CSIStorageCapacity {
                node_topology: None,
                ..capacity("lvm", "n1", Some("10Gi"), None)
            }]),
            Err(REASON_NOT_ENOUGH_SPACE),
        ),
    ];
    for (name, view, want) in cases {
        assert_eq!(vols.node_fits(&n1, &view), want, "{name}");
    }
}
