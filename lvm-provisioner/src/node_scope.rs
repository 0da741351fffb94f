//! Which PVs and claims concern this node's agent. Pure.
//!
//! Each agent keeps only its own node's objects, so its memory and its watch
//! traffic follow its node, not the cluster (docs/architecture.md, "What each
//! agent watches"):
//! - PVs: the agent labels the PVs it creates with `lvmpin.io/node` and
//!   watches by that label; `pv_body::label_patch` brings PVs made before the label
//!   existed into the same watch.
//! - Claims carry no label of ours (their owners write them), and no field
//!   selector names an annotation, so the agent watches claims' metadata
//!   only and keeps (fetching it whole) a claim that `claim_concerns_node`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use lvmpin_api::names::{ANN_SELECTED_NODE, LABEL_NODE};
use sha2::{Digest, Sha256};

/// Longest label value the API server accepts (k8s.io/apimachinery
/// `pkg/util/validation` `LabelValueMaxLength`).
const LABEL_VALUE_MAX: usize = 63;

/// The `lvmpin.io/node` value for a node. Node names are DNS subdomains of up
/// to 253 characters, and those are valid label values up to 63; a longer
/// name is replaced by its SHA-256 (hex, cut to 63 characters). A collision
/// costs only memory: every step still checks the PV's node affinity.
pub fn node_label_value(node: &str) -> String {
    if node.len() <= LABEL_VALUE_MAX {
        return node.to_string();
    }
    let hex: String = Sha256::digest(node.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    hex[..LABEL_VALUE_MAX].to_string()
}

/// The label selector of this node's PVs.
pub fn pv_selector(node: &str) -> String {
    format!("{LABEL_NODE}={}", node_label_value(node))
}

/// The label selector of PVs no agent has labelled yet (made before the
/// label existed, or by someone else): the only ones `label_patch` may need.
pub fn unlabelled_selector() -> String {
    format!("!{LABEL_NODE}")
}

/// The labels the agent puts on a PV it creates for `node`.
pub fn pv_labels(node: &str) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([(LABEL_NODE.to_string(), node_label_value(node))])
}

/// True when a claim is this agent's business: kube-scheduler selected this
/// node for it (provisioning, recovery, expansion of the volume made for it),
/// or it is bound to one of this node's PVs (`bound_here`, decided by the
/// caller from its PV cache by the claim's uid).
pub fn claim_concerns_node(meta: &ObjectMeta, node: &str, bound_here: bool) -> bool {
    let selected = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_SELECTED_NODE))
        .is_some_and(|n| n == node);
    selected || bound_here
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn label_values() {
        let long = format!("node-{}", "a".repeat(300));
        let cases = [
            ("n1", "n1".to_string()),
            (
                "ip-10-0-0-1.ec2.internal",
                "ip-10-0-0-1.ec2.internal".into(),
            ),
            (&"x".repeat(63), "x".repeat(63)),
        ];
        for (node, want) in cases {
            assert_eq!(node_label_value(node), want, "{node}");
        }
        let hashed = node_label_value(&long);
        assert_eq!(hashed.len(), 63);
        assert!(hashed.chars().all(|c| c.is_ascii_hexdigit()), "{hashed}");
        assert_ne!(hashed, node_label_value(&format!("{long}b")));
        assert_eq!(node_label_value(&"y".repeat(64)).len(), 63);
        assert_eq!(pv_selector("n1"), "lvmpin.io/node=n1");
        assert_eq!(unlabelled_selector(), "!lvmpin.io/node");
    }

    #[test]
    fn claim_relevance() {
        let meta = |node: Option<&str>| ObjectMeta {
            annotations: node.map(|n| BTreeMap::from([(ANN_SELECTED_NODE.into(), n.into())])),
            ..Default::default()
        };
        let cases = [
            ("selected here", meta(Some("n1")), false, true),
            ("selected elsewhere", meta(Some("n2")), false, false),
            ("not selected", meta(None), false, false),
            ("bound to our PV", meta(None), true, true),
            ("bound here, moved on", meta(Some("n2")), true, true),
        ];
        for (name, m, bound, want) in cases {
            assert_eq!(claim_concerns_node(&m, "n1", bound), want, "{name}");
        }
    }
}
