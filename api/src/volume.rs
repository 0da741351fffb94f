//! Reading lvmpin's PersistentVolumes, shared by every component that needs
//! to know where a volume lives.

use k8s_openapi::api::core::v1::PersistentVolume;

use crate::names::{ANN_PROVISIONED_BY, DRIVER_NAME, TOPOLOGY_KEY};

/// The node a PV is pinned to: the first `In` value of a
/// `topology.lvm.lvmpin.io/node` requirement in its required node affinity,
/// as the agent writes it.
pub fn pinned_node(pv: &PersistentVolume) -> Option<&str> {
    let terms = &pv
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_expressions
            .iter()
            .flatten()
            .find(|e| e.key == TOPOLOGY_KEY && e.operator == "In")
            .and_then(|e| e.values.as_ref()?.first())
            .map(String::as_str)
    })
}

/// Whether lvmpin's agent created this PV.
pub fn provisioned_by_lvmpin(pv: &PersistentVolume) -> bool {
    pv.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_PROVISIONED_BY))
        .is_some_and(|p| p == DRIVER_NAME)
}
