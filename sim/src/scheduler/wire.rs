//! kube-scheduler extender v1 wire format (k8s.io/kube-scheduler/extender/v1).
//!
//! The Go structs carry no json tags, so keys are the Go field names in
//! PascalCase; Go writes nil slices as `null` and reads responses with
//! case-insensitive key matching, ignoring unknown keys. Requests here are built
//! the way Go would marshal them; responses are read the way Go would.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde::Serialize;
use serde_json::{Map, Value};

/// `ExtenderArgs`. Exactly one of `Nodes` and `NodeNames` is non-null,
/// depending on the extender's `nodeCacheCapable`.
#[derive(Debug, Serialize)]
pub struct ExtenderArgs<'a> {
    #[serde(rename = "Pod")]
    pub pod: &'a Pod,
    #[serde(rename = "Nodes")]
    pub nodes: Option<NodeList<'a>>,
    #[serde(rename = "NodeNames")]
    pub node_names: Option<Vec<&'a str>>,
}

/// `v1.NodeList` as Go marshals it: empty TypeMeta is omitted, ListMeta is `{}`.
#[derive(Debug, Serialize)]
pub struct NodeList<'a> {
    pub metadata: Map<String, Value>,
    pub items: Vec<&'a Node>,
}

impl<'a> ExtenderArgs<'a> {
    pub fn new(pod: &'a Pod, nodes: &[&'a Node], node_cache_capable: bool) -> Self {
        if node_cache_capable {
            Self {
                pod,
                nodes: None,
                node_names: Some(
                    nodes
                        .iter()
                        .map(|n| n.metadata.name.as_deref().unwrap_or(""))
                        .collect(),
                ),
            }
        } else {
            Self {
                pod,
                nodes: Some(NodeList {
                    metadata: Map::new(),
                    items: nodes.to_vec(),
                }),
                node_names: None,
            }
        }
    }
}

/// `ExtenderBindingArgs`.
#[derive(Debug, Serialize, PartialEq)]
pub struct ExtenderBindingArgs {
    #[serde(rename = "PodName")]
    pub pod_name: String,
    #[serde(rename = "PodNamespace")]
    pub pod_namespace: String,
    #[serde(rename = "PodUID")]
    pub pod_uid: String,
    #[serde(rename = "Node")]
    pub node: String,
}

/// The parts of `ExtenderFilterResult` the scheduler acts on.
#[derive(Debug, Default, PartialEq)]
pub struct FilterResult {
    /// Node names that passed: from `NodeNames` (cache-capable) or `Nodes.items`.
    pub nodes: Vec<String>,
    /// True when `nodes` came from `NodeNames`, which must name requested nodes.
    pub from_names: bool,
    /// `FailedNodes` and `FailedAndUnresolvableNodes`: node → reason.
    pub failed: Vec<(String, String)>,
    pub unresolvable: Vec<(String, String)>,
    pub error: String,
}

/// Go's encoding/json field lookup: exact key first, then case-insensitive.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn string_map(v: Option<&Value>) -> Result<Vec<(String, String)>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(format!("reason for node {k:?} is not a string: {other}")),
            })
            .collect(),
        Some(other) => Err(format!("expected a map of node to reason, got {other}")),
    }
}

/// Decode a filter response; `cache_capable` says which node field is read,
/// as kube-scheduler reads `NodeNames` only for cache-capable extenders.
pub fn parse_filter_result(body: &[u8], cache_capable: bool) -> Result<FilterResult, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(obj) = v else {
        return Err("response is not a JSON object".into());
    };
    let error = match field(&obj, "Error") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(format!("Error is not a string: {other}")),
    };
    // extender.go: NodeNames is read only for cache-capable extenders and only
    // when non-null; otherwise the names come from Nodes.items.
    let names = match field(&obj, "NodeNames") {
        Some(Value::Array(a)) if cache_capable => Some(
            a.iter()
                .map(|n| {
                    n.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("node name {n} is not a string"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None | Some(Value::Null) | Some(Value::Array(_)) => None,
        Some(other) => return Err(format!("NodeNames is not a list: {other}")),
    };
    let from_names = names.is_some();
    let nodes = match names {
        Some(n) => n,
        None => match field(&obj, "Nodes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(list)) => match field(list, "items") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|n| {
                        n.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .ok_or_else(|| "a node in Nodes.items has no metadata.name".to_string())
                    })
                    .collect::<Result<_, _>>()?,
                Some(other) => return Err(format!("Nodes.items is not a list: {other}")),
            },
            Some(other) => return Err(format!("Nodes is not a NodeList: {other}")),
        },
    };
    Ok(FilterResult {
        nodes,
        from_names,
        failed: string_map(field(&obj, "FailedNodes"))?,
        unresolvable: string_map(field(&obj, "FailedAndUnresolvableNodes"))?,
        error,
    })
}

/// Decode a prioritize response: a bare list of `HostPriority{Host, Score}`.
pub fn parse_priorities(body: &[u8]) -> Result<Vec<(String, i64)>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        other => return Err(format!("expected a list of HostPriority, got {other}")),
    };
    items
        .iter()
        .map(|item| {
            let obj = item.as_object().ok_or("a HostPriority is not an object")?;
            let host = field(obj, "Host")
                .and_then(Value::as_str)
                .ok_or("HostPriority without Host")?;
            let score = field(obj, "Score")
                .and_then(Value::as_i64)
                .ok_or("HostPriority without an integer Score")?;
            Ok((host.to_string(), score))
        })
        .collect()
}

/// Decode `ExtenderBindingResult`: an empty or missing `Error` is success.
pub fn parse_binding_result(body: &[u8]) -> Result<(), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = v.as_object().ok_or("response is not a JSON object")?;
    match field(obj, "Error") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s.is_empty() => Ok(()),
        Some(Value::String(s)) => Err(s.clone()),
        Some(other) => Err(format!("Error is not a string: {other}")),
    }
}

/// kube-scheduler rejects the whole call when an extender returns a node it was
/// not asked about ("claims a filtered node ... not found in the input node list").
pub fn check_subset(requested: &[&str], returned: &[String]) -> Result<(), String> {
    let asked: BTreeSet<&str> = requested.iter().copied().collect();
    match returned.iter().find(|n| !asked.contains(n.as_str())) {
        Some(n) => Err(format!(
            "extender returned node {n:?} that was not in the request"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn args_follow_go_marshalling() {
        let pod = Pod::default();
        let n = crate::workload::node("n1");
        let v = serde_json::to_value(ExtenderArgs::new(&pod, &[&n], true)).unwrap();
        assert_eq!(v["Nodes"], Value::Null);
        assert_eq!(v["NodeNames"], json!(["n1"]));
        assert!(v.get("Pod").is_some());
        let v = serde_json::to_value(ExtenderArgs::new(&pod, &[&n], false)).unwrap();
        assert_eq!(v["NodeNames"], Value::Null);
        assert_eq!(v["Nodes"]["metadata"], json!({}));
        assert_eq!(v["Nodes"]["items"][0]["metadata"]["name"], "n1");
        let b = ExtenderBindingArgs {
            pod_name: "p".into(),
            pod_namespace: "ns".into(),
            pod_uid: "u".into(),
            node: "n1".into(),
        };
        assert_eq!(
            serde_json::to_value(b).unwrap(),
            json!({"PodName":"p","PodNamespace":"ns","PodUID":"u","Node":"n1"})
        );
    }

    #[test]
    fn filter_results_are_read_case_insensitively() {
        let r = parse_filter_result(
            br#"{"nodenames":["a"],"failedAndUnresolvableNodes":{"b":"no room"},"Error":""}"#,
            true,
        )
        .unwrap();
        assert_eq!(r.nodes, vec!["a"]);
        assert_eq!(r.unresolvable, vec![("b".into(), "no room".into())]);
        let r = parse_filter_result(
            br#"{"Nodes":{"items":[{"metadata":{"name":"x"}}]},"NodeNames":null,"FailedNodes":null}"#,
            false,
        )
        .unwrap();
        assert_eq!(r.nodes, vec!["x"]);
        // Cache-capable with NodeNames null: kube-scheduler falls back to Nodes.
        let r = parse_filter_result(
            br#"{"NodeNames":null,"Nodes":{"items":[{"metadata":{"name":"y"}}]}}"#,
            true,
        )
        .unwrap();
        assert_eq!((r.nodes, r.from_names), (vec!["y".to_string()], false));
        // Not cache-capable: NodeNames is ignored.
        let r = parse_filter_result(br#"{"NodeNames":["z"]}"#, false).unwrap();
        assert!(r.nodes.is_empty());
        let r = parse_filter_result(br#"{"NodeNames":null,"Error":"boom"}"#, true).unwrap();
        assert!(r.nodes.is_empty());
        assert_eq!(r.error, "boom");
        for bad in [
            &b"[]"[..],
            b"{",
            br#"{"NodeNames":"a"}"#,
            br#"{"FailedNodes":{"a":1}}"#,
        ] {
            assert!(
                parse_filter_result(bad, true).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn priorities_and_binding() {
        assert_eq!(
            parse_priorities(br#"[{"Host":"a","Score":7},{"host":"b","score":0}]"#).unwrap(),
            vec![("a".into(), 7), ("b".into(), 0)]
        );
        assert!(parse_priorities(br#"[{"Host":"a","Score":"7"}]"#).is_err());
        assert!(parse_priorities(br#"{}"#).is_err());
        assert_eq!(parse_binding_result(br#"{"Error":""}"#), Ok(()));
        assert_eq!(parse_binding_result(br#"{}"#), Ok(()));
        assert_eq!(parse_binding_result(br#"{"error":"no"}"#), Err("no".into()));
    }

    #[test]
    fn subset_rule() {
        assert!(check_subset(&["a", "b"], &["b".into()]).is_ok());
        assert!(check_subset(&["a"], &["c".into()]).is_err());
    }
}
