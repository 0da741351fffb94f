//! Node predicates of kube-scheduler's in-tree plugins that matter for volume
//! placement (readiness and NodeUnschedulable are `lvmpin_api::node`):
//! NodeAffinity's `nodeSelector`, and the
//! node-selector terms used by PV `nodeAffinity` (VolumeBinding's bound-claim check).

use k8s_openapi::api::core::v1::{Node, NodeSelector, NodeSelectorRequirement, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// `spec.nodeSelector` must be a subset of the node's labels.
pub fn matches_node_selector(pod: &Pod, node: &Node) -> bool {
    let Some(sel) = pod.spec.as_ref().and_then(|s| s.node_selector.as_ref()) else {
        return true;
    };
    let labels = node.metadata.labels.as_ref();
    sel.iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let as_int = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(as_int),
                values.first().and_then(|b| as_int(b)),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// A metav1 `LabelSelector` against the node's labels, as
/// `metav1.LabelSelectorAsSelector(...).Matches`: an empty selector matches
/// every node, an unknown operator none.
pub fn label_selector_matches(sel: &LabelSelector, node: &Node) -> bool {
    let labels = node.metadata.labels.as_ref();
    let value = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let by_label = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| value(k) == Some(v.as_str()));
    by_label
        && sel.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => value(&e.key).is_some_and(|v| values.iter().any(|x| x == v)),
                "NotIn" => value(&e.key).is_none_or(|v| !values.iter().any(|x| x == v)),
                "Exists" => value(&e.key).is_some(),
                "DoesNotExist" => value(&e.key).is_none(),
                _ => false,
            }
        })
}

/// Terms are ORed; within a term every label expression and field expression
/// must hold. An empty term matches nothing, as in the API's semantics.
pub fn selector_matches(sel: &NodeSelector, node: &Node) -> bool {
    let labels = node.metadata.labels.as_ref();
    let name = node.metadata.name.as_deref();
    sel.node_selector_terms.iter().any(|term| {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        exprs
            .iter()
            .all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
            && fields.iter().all(|r| {
                let v = if r.key == "metadata.name" { name } else { None };
                requirement_matches(r, v)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::node;
    use k8s_openapi::api::core::v1::NodeSelectorTerm;
    use std::collections::BTreeMap;

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn sel(
        exprs: Vec<NodeSelectorRequirement>,
        fields: Vec<NodeSelectorRequirement>,
    ) -> NodeSelector {
        NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(exprs),
                match_fields: Some(fields),
            }],
        }
    }

    #[test]
    fn selector_table() {
        let n = node("n1");
        let key = lvmpin_api::names::TOPOLOGY_KEY;
        let cases = [
            (sel(vec![req(key, "In", &["n1"])], vec![]), true),
            (sel(vec![req(key, "In", &["n2"])], vec![]), false),
            (sel(vec![req(key, "NotIn", &["n2"])], vec![]), true),
            (sel(vec![req("zone", "Exists", &[])], vec![]), false),
            (sel(vec![req("zone", "DoesNotExist", &[])], vec![]), true),
            (sel(vec![], vec![req("metadata.name", "In", &["n1"])]), true),
            (
                sel(vec![], vec![req("metadata.name", "In", &["n2"])]),
                false,
            ),
            (sel(vec![], vec![]), false),
            (sel(vec![req(key, "Bogus", &["n1"])], vec![]), false),
        ];
        for (i, (s, want)) in cases.iter().enumerate() {
            assert_eq!(selector_matches(s, &n), *want, "case {i}");
        }
    }

    #[test]
    fn node_selector() {
        let mut p = crate::workload::pod("ns", "p", &[]);
        assert!(matches_node_selector(&p, &node("n1")));
        p.spec.as_mut().unwrap().node_selector = Some(BTreeMap::from([(
            "kubernetes.io/hostname".into(),
            "n2".into(),
        )]));
        assert!(!matches_node_selector(&p, &node("n1")));
        assert!(matches_node_selector(&p, &node("n2")));
    }
}
