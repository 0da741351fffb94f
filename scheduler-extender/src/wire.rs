//! kube-scheduler extender v1 wire types.
//!
//! The Go structs have no json tags, so keys are the Go field names
//! (PascalCase); Go writes nil as `null`, so every list may be null. Unknown
//! keys are ignored. Node objects are kept as raw JSON: in full-Node mode the
//! passing ones go back byte for byte, with no re-serialization cost or loss.
//! Sources: kubernetes `staging/src/k8s.io/kube-scheduler/extender/v1/types.go`
//! and docs/protocols.md, "Extender wire format".

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::Error;

/// `ExtenderArgs`, borrowing node objects from the request body.
#[derive(Deserialize, Debug)]
pub struct ExtenderArgs<'a> {
    #[serde(rename = "Pod")]
    pub pod: Pod,
    #[serde(rename = "Nodes", borrow, default)]
    pub nodes: Option<NodeListIn<'a>>,
    #[serde(rename = "NodeNames", borrow, default)]
    pub node_names: Option<Vec<Cow<'a, str>>>,
}

/// A `v1.NodeList` whose items stay raw.
#[derive(Deserialize, Debug)]
pub struct NodeListIn<'a> {
    #[serde(borrow, default)]
    pub items: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
struct NodeNameOnly<'a> {
    #[serde(borrow, default)]
    metadata: Option<MetaNameOnly<'a>>,
}

#[derive(Deserialize)]
struct MetaNameOnly<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

/// The nodes a request asks about: names, plus the raw objects in full-Node mode.
pub struct AskedNodes<'a> {
    pub names: Vec<Cow<'a, str>>,
    pub raw: Option<Vec<&'a RawValue>>,
}

impl<'a> ExtenderArgs<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Self, Error> {
        Error::parse("ExtenderArgs", body)
    }

    /// `NodeNames` when kube-scheduler sent them (nodeCacheCapable), else the
    /// names inside `Nodes`. Both null means no node was asked about.
    pub fn asked_nodes(&self) -> Result<AskedNodes<'a>, Error> {
        if let Some(names) = &self.node_names {
            return Ok(AskedNodes {
                names: names.clone(),
                raw: None,
            });
        }
        let items = self
            .nodes
            .as_ref()
            .and_then(|l| l.items.clone())
            .unwrap_or_default();
        let mut names = Vec::with_capacity(items.len());
        for (i, raw) in items.iter().enumerate() {
            let n: NodeNameOnly<'a> = serde_json::from_str(raw.get())
                .map_err(|e| Error::bad_json("Nodes.items[] (Node)", format!("item {i}: {e}")))?;
            let name = n.metadata.and_then(|m| m.name).ok_or_else(|| {
                Error::bad_json(
                    "Nodes.items[] (Node)",
                    format!("item {i} has no metadata.name"),
                )
            })?;
            names.push(name);
        }
        Ok(AskedNodes {
            names,
            raw: (self.nodes.is_some()).then_some(items),
        })
    }
}

/// `v1.NodeList` going back: passing items unchanged.
#[derive(Serialize, Debug)]
pub struct NodeListOut<'a> {
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: BTreeMap<String, String>,
    pub items: Vec<&'a RawValue>,
}

/// `ExtenderFilterResult`.
///
/// kube-scheduler (pkg/scheduler/extender.go, `HTTPExtender.Filter`) reads
/// `NodeNames` only when it configured the extender `nodeCacheCapable`;
/// otherwise it takes the passing nodes from `Nodes.items`, which must then be
/// present. We always send `NodeNames` as a list (never null: null would mean
/// "no node" in cache mode anyway) and `Nodes` only in full-Node mode.
#[derive(Serialize, Debug)]
pub struct ExtenderFilterResult<'a> {
    #[serde(rename = "Nodes")]
    pub nodes: Option<NodeListOut<'a>>,
    #[serde(rename = "NodeNames")]
    pub node_names: Vec<&'a str>,
    #[serde(rename = "FailedNodes")]
    pub failed_nodes: BTreeMap<&'a str, String>,
    #[serde(rename = "FailedAndUnresolvableNodes")]
    pub failed_and_unresolvable_nodes: BTreeMap<&'a str, String>,
    #[serde(rename = "Error")]
    pub error: String,
}

impl ExtenderFilterResult<'_> {
    pub fn error(message: String) -> Self {
        Self {
            nodes: None,
            node_names: Vec::new(),
            failed_nodes: BTreeMap::new(),
            failed_and_unresolvable_nodes: BTreeMap::new(),
            error: message,
        }
    }
}

/// `HostPriority`; prioritize answers a bare array of these.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct HostPriority<'a> {
    #[serde(rename = "Host", borrow)]
    pub host: Cow<'a, str>,
    #[serde(rename = "Score")]
    pub score: i64,
}

/// `ExtenderBindingArgs`.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
pub struct ExtenderBindingArgs {
    #[serde(rename = "PodName", default)]
    pub pod_name: String,
    #[serde(rename = "PodNamespace", default)]
    pub pod_namespace: String,
    #[serde(rename = "PodUID", default)]
    pub pod_uid: String,
    #[serde(rename = "Node", default)]
    pub node: String,
}

impl ExtenderBindingArgs {
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let args: Self = Error::parse("ExtenderBindingArgs", body)?;
        for (field, v) in [
            ("PodName", &args.pod_name),
            ("PodNamespace", &args.pod_namespace),
            ("Node", &args.node),
        ] {
            if v.is_empty() {
                return Err(Error::bad_json(
                    "ExtenderBindingArgs",
                    format!("{field} is empty or missing"),
                ));
            }
        }
        Ok(args)
    }
}

/// `ExtenderBindingResult`.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct ExtenderBindingResult {
    #[serde(rename = "Error")]
    pub error: String,
}
