//! The PersistentVolume the agent creates for a claim, field by field as the
//! external-provisioner writes it (kubernetes-csi/external-provisioner
//! `pkg/controller/controller.go`, `Provision`; docs/protocols.md,
//! "Provisioning a PV the PV controller binds"), pinned to this node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
    VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use lvmpin_api::VolumeId;
use lvmpin_api::names::{ANN_PROVISIONED_BY, DRIVER_NAME, LABEL_NODE, PV_FINALIZER, TOPOLOGY_KEY};
use serde_json::{Value, json};

use crate::claim_plan::ProvisionSpec;
use crate::node_scope::{node_label_value, pv_labels};

/// Volume attributes handed to the CSI node service in `volume_context`.
pub const ATTR_VG: &str = "vg";
pub const ATTR_LV: &str = "lv";

/// Bytes as a Kubernetes quantity, in the largest binary unit that divides it
/// exactly, so that `kubectl get pv` shows `1Gi` rather than `1073741824`.
pub fn bytes_quantity(bytes: u64) -> Quantity {
    const UNITS: [(&str, u32); 5] = [("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)];
    for (suffix, shift) in UNITS {
        if bytes != 0 && bytes.trailing_zeros() >= shift {
            return Quantity(format!("{}{suffix}", bytes >> shift));
        }
    }
    Quantity(bytes.to_string())
}

/// `actual_bytes` is the real LV size (LVM rounds up to whole extents), so the
/// PV never claims less than the disk holds and never less than the request.
pub fn build(
    spec: &ProvisionSpec,
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    actual_bytes: u64,
) -> PersistentVolume {
    let claim_spec = pvc.spec.clone().unwrap_or_default();
    let volume_id = VolumeId::new(&spec.vg, &spec.volume_name);
    let mut attributes = BTreeMap::from([
        (ATTR_VG.to_string(), spec.vg.clone()),
        (ATTR_LV.to_string(), spec.volume_name.clone()),
    ]);
    if let Some(pool) = &spec.thin_pool {
        attributes.insert("thinPool".into(), pool.clone());
    }
    let policy = class
        .reclaim_policy
        .clone()
        .unwrap_or_else(|| "Delete".into());
    // The finalizer holds the PV while its LV may still be removed; with any
    // other policy nobody removes the LV, and it would only keep
    // `kubectl delete pv` waiting for ever.
    let finalizers = (policy == "Delete").then(|| vec![PV_FINALIZER.to_string()]);
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(spec.volume_name.clone()),
            labels: Some(pv_labels(node)),
            annotations: Some(BTreeMap::from([(
                ANN_PROVISIONED_BY.to_string(),
                DRIVER_NAME.to_string(),
            )])),
            finalizers,
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: claim_spec.access_modes,
            volume_mode: claim_spec.volume_mode,
            capacity: Some(BTreeMap::from([(
                "storage".to_string(),
                bytes_quantity(actual_bytes),
            )])),
            claim_ref: Some(ObjectReference {
                kind: Some("PersistentVolumeClaim".into()),
                api_version: Some("v1".into()),
                namespace: pvc.metadata.namespace.clone(),
                name: pvc.metadata.name.clone(),
                uid: pvc.metadata.uid.clone(),
                resource_version: pvc.metadata.resource_version.clone(),
                ..Default::default()
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: DRIVER_NAME.into(),
                volume_handle: volume_id.to_string(),
                fs_type: Some(spec.fs_type.clone()),
                volume_attributes: Some(attributes),
                ..Default::default()
            }),
            mount_options: class.mount_options.clone(),
            persistent_volume_reclaim_policy: Some(policy),
            storage_class_name: class.metadata.name.clone(),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: TOPOLOGY_KEY.into(),
                            operator: "In".into(),
                            values: Some(vec![node.to_string()]),
                        }]),
                        ..Default::default()
                    }],
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// True when `pv` is a volume we made for the claim with this uid: after a 409
/// on create this tells "our earlier attempt" from "someone else's PV".
pub fn is_ours_for_claim(pv: &PersistentVolume, claim_uid: &str) -> bool {
    let spec = pv.spec.as_ref();
    spec.and_then(|s| s.csi.as_ref())
        .is_some_and(|c| c.driver == DRIVER_NAME)
        && spec
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|r| r.uid.as_deref())
            == Some(claim_uid)
}

/// What an existing PV found under our name (a 409 on create) means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExistingPv {
    /// Ours for this claim, on this node, on this LV: an earlier attempt made
    /// it (a crash before the success was noted, or a stale cache).
    Same,
    /// Anything else: the LV we just made has no PV and must not be counted
    /// as provisioned. The string says which field disagrees.
    Different(String),
}

fn volume_handle(pv: &PersistentVolume) -> Option<&str> {
    pv.spec
        .as_ref()?
        .csi
        .as_ref()
        .filter(|c| c.driver == DRIVER_NAME)
        .map(|c| c.volume_handle.as_str())
}

/// Compares the PV we wanted to create with the one that exists under its
/// name: same claim uid (claimRef), same node (node affinity) and same CSI
/// volume handle, or it is not ours.
pub fn compare_existing(wanted: &PersistentVolume, existing: &PersistentVolume) -> ExistingPv {
    let uid = |pv: &PersistentVolume| {
        pv.spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|r| r.uid.clone())
    };
    if volume_handle(existing).is_none() {
        return ExistingPv::Different(format!("it is not a {DRIVER_NAME} volume"));
    }
    if uid(existing).is_none() || uid(existing) != uid(wanted) {
        return ExistingPv::Different(format!(
            "its claimRef uid is {:?}, not {:?}",
            uid(existing).unwrap_or_default(),
            uid(wanted).unwrap_or_default()
        ));
    }
    if pinned_node(existing) != pinned_node(wanted) {
        return ExistingPv::Different(format!(
            "it is pinned to node {:?}, not {:?}",
            pinned_node(existing).unwrap_or_default(),
            pinned_node(wanted).unwrap_or_default()
        ));
    }
    if volume_handle(existing) != volume_handle(wanted) {
        return ExistingPv::Different(format!(
            "its volume handle is {:?}, not {:?}",
            volume_handle(existing).unwrap_or_default(),
            volume_handle(wanted).unwrap_or_default()
        ));
    }
    ExistingPv::Same
}

/// A merge patch that gives one of our PVs (CSI driver ours, pinned to this
/// node: the test `deletion::plan` makes)) the node label, or `None` when the
/// PV is not ours or already carries it.
pub fn label_patch(pv: &PersistentVolume, node: &str) -> Option<Value> {
    let ours = pv
        .spec
        .as_ref()
        .and_then(|s| s.csi.as_ref())
        .is_some_and(|c| c.driver == DRIVER_NAME)
        && pinned_node(pv) == Some(node);
    let value = node_label_value(node);
    let labelled = pv.metadata.labels.as_ref().and_then(|l| l.get(LABEL_NODE)) == Some(&value);
    (ours && !labelled).then(|| json!({"metadata": {"labels": {LABEL_NODE: value}}}))
}

/// The node a PV of ours is pinned to.
pub fn pinned_node(pv: &PersistentVolume) -> Option<&str> {
    pv.spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .find(|e| e.key == TOPOLOGY_KEY && e.operator == "In")
        .and_then(|e| e.values.as_ref()?.first())
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claim_plan::{ClaimDecision, decide};
    use lvmpin_api::names::PARAM_VOLUME_GROUP;
    use lvmpin_testkit::{ClaimBuilder, class, expected_pv, pv_from_json};

    #[test]
    fn quantities() {
        assert_eq!(bytes_quantity(1 << 30).0, "1Gi");
        assert_eq!(bytes_quantity(3 << 20).0, "3Mi");
        assert_eq!(bytes_quantity((1 << 30) + (4 << 20)).0, "1028Mi");
        assert_eq!(bytes_quantity(1000).0, "1000");
        assert_eq!(bytes_quantity(0).0, "0");
    }

    #[test]
    fn existing_pv_table() {
        let sc = class("fast", DRIVER_NAME, &[(PARAM_VOLUME_GROUP, "vg0")]);
        let pvc = ClaimBuilder::new("ns", "data", "u1")
            .class("fast")
            .size("1Gi")
            .selected_node("n1")
            .build();
        let ClaimDecision::Provision(spec) = decide(&pvc, Some(&sc), "n1") else {
            panic!("expected provision")
        };
        let wanted = build(&spec, &pvc, &sc, "n1", 1 << 30);
        let edit = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = serde_json::to_value(&wanted).unwrap();
            f(&mut v);
            serde_json::from_value::<PersistentVolume>(v).unwrap()
        };
        let cases: Vec<(&str, PersistentVolume, Option<&str>)> = vec![
            ("identical", wanted.clone(), None),
            (
                "bound since, other resourceVersion and capacity",
                edit(&|v| {
                    v["spec"]["claimRef"]["resourceVersion"] = json!("9");
                    v["spec"]["capacity"]["storage"] = json!("2Gi");
                    v["status"] = json!({"phase": "Bound"});
                }),
                None,
            ),
            (
                "other claim uid",
                edit(&|v| v["spec"]["claimRef"]["uid"] = json!("u2")),
                Some("claimRef uid"),
            ),
            (
                "no claimRef",
                edit(&|v| v["spec"]["claimRef"] = json!(null)),
                Some("claimRef uid"),
            ),
            (
                "other node",
                edit(&|v| {
                    v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"]
                        [0]["values"] = json!(["n2"])
                }),
                Some("node"),
            ),
            (
                "no node affinity",
                edit(&|v| v["spec"]["nodeAffinity"] = json!(null)),
                Some("node"),
            ),
            (
                "other volume handle",
                edit(&|v| v["spec"]["csi"]["volumeHandle"] = json!("vg1/pvc-u1")),
                Some("volume handle"),
            ),
            (
                "other driver",
                edit(&|v| v["spec"]["csi"]["driver"] = json!("ebs.csi.aws.com")),
                Some("not a lvm.lvmpin.io volume"),
            ),
            (
                "not csi",
                edit(&|v| {
                    v["spec"]["csi"] = json!(null);
                    v["spec"]["hostPath"] = json!({"path": "/x"});
                }),
                Some("not a lvm.lvmpin.io volume"),
            ),
        ];
        for (name, existing, want) in cases {
            match (compare_existing(&wanted, &existing), want) {
                (ExistingPv::Same, None) => {}
                (ExistingPv::Different(why), Some(text)) => {
                    assert!(why.contains(text), "{name}: {why}")
                }
                (got, _) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn body_matches_the_external_provisioner() {
        let mut sc = class("fast", DRIVER_NAME, &[(PARAM_VOLUME_GROUP, "vg0")]);
        sc.mount_options = Some(vec!["noatime".into()]);
        sc.reclaim_policy = Some("Retain".into());
        let pvc = ClaimBuilder::new("ns", "data", "u1")
            .class("fast")
            .size("1Gi")
            .selected_node("n1")
            .block()
            .build();
        let ClaimDecision::Provision(spec) = decide(&pvc, Some(&sc), "n1") else {
            panic!("expected provision")
        };
        let pv = build(&spec, &pvc, &sc, "n1", 1 << 30);
        assert!(is_ours_for_claim(&pv, "u1"));
        assert!(!is_ours_for_claim(&pv, "u2"));
        assert_eq!(pinned_node(&pv), Some("n1"));
        let mut want = expected_pv();
        // Retain: no finalizer, the LV outlives the PV.
        want["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("finalizers");
        want["spec"]["mountOptions"] = json!(["noatime"]);
        want["spec"]["persistentVolumeReclaimPolicy"] = json!("Retain");
        want["spec"]["volumeMode"] = json!("Block");
        assert_eq!(serde_json::to_value(&pv).unwrap(), want);
    }

    fn pinned_pv(driver: &str, node: &str, label: Option<&str>) -> PersistentVolume {
        let mut v = json!({
            "metadata": {"name": "pvc-u1"},
            "spec": {
                "csi": {"driver": driver, "volumeHandle": "vg0/pvc-u1"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": lvmpin_api::names::TOPOLOGY_KEY, "operator": "In", "values": [node]}]}]}}
            }
        });
        if let Some(l) = label {
            v["metadata"]["labels"] = json!({LABEL_NODE: l});
        }
        pv_from_json(v)
    }

    #[test]
    fn label_patch_table() {
        let want = Some(json!({"metadata": {"labels": {LABEL_NODE: "n1"}}}));
        let cases = [
            (
                "ours, unlabelled",
                pinned_pv(DRIVER_NAME, "n1", None),
                want.clone(),
            ),
            (
                "ours, labelled",
                pinned_pv(DRIVER_NAME, "n1", Some("n1")),
                None,
            ),
            (
                "ours, wrong label",
                pinned_pv(DRIVER_NAME, "n1", Some("n2")),
                want.clone(),
            ),
            ("other node", pinned_pv(DRIVER_NAME, "n2", None), None),
            (
                "other driver",
                pinned_pv("ebs.csi.aws.com", "n1", None),
                None,
            ),
        ];
        for (name, pv, want) in cases {
            assert_eq!(label_patch(&pv, "n1"), want, "{name}");
        }
        assert_eq!(
            label_patch(&pv_from_json(json!({"metadata": {"name": "x"}})), "n1"),
            None
        );
    }
}
