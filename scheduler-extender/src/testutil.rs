//! Builders for test objects, shared by unit tests, integration tests and the
//! benchmark. Not part of the extender's API.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use lvmpin_api::names::{ANN_LOCAL_DISK_SIZE, ANN_SELECTED_NODE};

use crate::facts::{ClaimFacts, ClassFacts, LvmFacts, NodeLvm, PodFacts, VgState, claim_facts};

/// A ReadWriteOnce claim in namespace `ns` of class `fast`, uid `uid-<name>`.
pub struct ClaimB {
    pvc: PersistentVolumeClaim,
}

impl ClaimB {
    pub fn new(name: &str) -> Self {
        let mut pvc = PersistentVolumeClaim::default();
        pvc.metadata.namespace = Some("ns".into());
        pvc.metadata.name = Some(name.into());
        pvc.metadata.uid = Some(format!("uid-{name}"));
        pvc.spec = Some(PersistentVolumeClaimSpec {
            storage_class_name: Some("fast".into()),
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            ..Default::default()
        });
        Self { pvc }
    }

    pub fn access_modes(mut self, modes: &[&str]) -> Self {
        self.spec().access_modes = Some(modes.iter().map(|m| m.to_string()).collect());
        self
    }

    pub fn data_source(mut self, kind: &str, name: &str) -> Self {
        self.spec().data_source = Some(k8s_openapi::api::core::v1::TypedLocalObjectReference {
            api_group: None,
            kind: kind.into(),
            name: name.into(),
        });
        self
    }

    fn spec(&mut self) -> &mut PersistentVolumeClaimSpec {
        self.pvc.spec.get_or_insert_with(Default::default)
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        self.pvc.metadata.namespace = Some(ns.into());
        self
    }

    pub fn request(mut self, q: &str) -> Self {
        self.spec().resources = Some(VolumeResourceRequirements {
            requests: Some(BTreeMap::from([("storage".into(), Quantity(q.into()))])),
            ..Default::default()
        });
        self
    }

    pub fn size(self, bytes: u64) -> Self {
        self.request(&bytes.to_string())
    }

    pub fn class(mut self, c: &str) -> Self {
        self.spec().storage_class_name = Some(c.into());
        self
    }

    pub fn no_class(mut self) -> Self {
        self.spec().storage_class_name = None;
        self
    }

    fn annotate(mut self, k: &str, v: &str) -> Self {
        self.pvc
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(k.into(), v.into());
        self
    }

    pub fn annotation(self, size: &str) -> Self {
        self.annotate(ANN_LOCAL_DISK_SIZE, size)
    }

    pub fn selected(self, node: &str) -> Self {
        self.annotate(ANN_SELECTED_NODE, node)
    }

    pub fn bound(mut self, pv: &str) -> Self {
        self.spec().volume_name = Some(pv.into());
        self
    }

    pub fn pvc(self) -> PersistentVolumeClaim {
        self.pvc
    }

    pub fn build(self) -> ClaimFacts {
        match claim_facts(&self.pvc) {
            Some(c) => c,
            None => unreachable!("builder always sets namespace and name"),
        }
    }
}

pub fn class(name: &str, vg: Option<&str>) -> ClassFacts {
    ClassFacts {
        name: name.into(),
        ours: true,
        volume_group: vg.map(Into::into),
        thin_pool: None,
    }
}

/// A pod `p` (uid `pod-uid`) in namespace `ns` mounting the named claims.
pub fn pod_with(claims: &[&str]) -> PodFacts {
    PodFacts {
        uid: "pod-uid".into(),
        namespace: "ns".into(),
        name: "p".into(),
        node: None,
        owner: None,
        claims: claims.iter().map(|c| c.to_string()).collect(),
    }
}

/// A node report with one healthy VG.
pub fn lvm_node(node: &str, vg: &str, size: u64, free: u64, extent: u64) -> LvmFacts {
    LvmFacts {
        node: node.into(),
        lvm: Some(NodeLvm {
            vgs: vec![VgState {
                name: vg.into(),
                size,
                free,
                extent,
                healthy: true,
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}
