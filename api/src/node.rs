//! Facts about Node objects that several components judge the same way.

use k8s_openapi::api::core::v1::Node;

/// Ready condition True and not cordoned: a node new pods may go to
/// (kube-scheduler's NodeUnschedulable plugin and the node lifecycle's
/// Ready condition).
pub fn is_schedulable(node: &Node) -> bool {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let cordoned = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    ready && !cordoned
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};

    fn node(ready: &str, unschedulable: Option<bool>) -> Node {
        Node {
            spec: Some(NodeSpec {
                unschedulable,
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ready_and_not_cordoned() {
        let cases = [
            ("True", None, true),
            ("True", Some(false), true),
            ("True", Some(true), false),
            ("False", None, false),
            ("Unknown", None, false),
        ];
        for (ready, cordoned, want) in cases {
            assert_eq!(
                is_schedulable(&node(ready, cordoned)),
                want,
                "{ready} {cordoned:?}"
            );
        }
        assert!(!is_schedulable(&Node::default()), "no status: not ready");
    }
}
