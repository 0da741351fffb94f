//! Server-side printing: the `Table` form kubectl asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, so `kubectl get`
//! shows the usual columns (claim status, volume, node...) instead of only names.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::resources::ResourceType;

/// One column: header, type, and how to read the cell from an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub type_: String,
    pub priority: i64,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A dotted JSON path such as `.spec.nodeName`.
    Path(String),
    Age,
    /// A timestamp at a dotted path, printed as an age (CRD `date` columns).
    Date(String),
    /// Computed by a built-in printer.
    Builtin(&'static str),
}

fn col(name: &str, source: Source, priority: i64) -> Column {
    Column {
        name: name.into(),
        type_: "string".into(),
        priority,
        source,
    }
}

fn path(p: &str) -> Source {
    Source::Path(p.into())
}

/// The columns of a built-in type (Name and Age for any other).
pub fn builtin_columns(t: &ResourceType) -> Vec<Column> {
    let name = col("Name", path(".metadata.name"), 0);
    let age = col("Age", Source::Age, 0);
    let mut cols = vec![name];
    match (t.group.as_str(), t.plural.as_str()) {
        ("", "pods") => cols.extend([
            col("Status", Source::Builtin("podStatus"), 0),
            col("Age", Source::Age, 0),
            col("Node", path(".spec.nodeName"), 1),
        ]),
        ("", "persistentvolumeclaims") => cols.extend([
            col("Status", path(".status.phase"), 0),
            col("Volume", path(".spec.volumeName"), 0),
            col("Capacity", path(".status.capacity.storage"), 0),
            col("StorageClass", path(".spec.storageClassName"), 0),
            age,
            col(
                "Selected Node",
                path(".metadata.annotations.volume\\.kubernetes\\.io/selected-node"),
                1,
            ),
        ]),
        ("", "persistentvolumes") => cols.extend([
            col("Capacity", path(".spec.capacity.storage"), 0),
            col(
                "Reclaim Policy",
                path(".spec.persistentVolumeReclaimPolicy"),
                0,
            ),
            col("Status", path(".status.phase"), 0),
            col("Claim", Source::Builtin("pvClaim"), 0),
            col("StorageClass", path(".spec.storageClassName"), 0),
            age,
        ]),
        ("", "nodes") => cols.extend([col("Status", Source::Builtin("nodeReady"), 0), age]),
        ("storage.k8s.io", "storageclasses") => cols.extend([
            col("Provisioner", path(".provisioner"), 0),
            col("ReclaimPolicy", path(".reclaimPolicy"), 0),
            col("VolumeBindingMode", path(".volumeBindingMode"), 0),
            age,
        ]),
        ("", "events") => cols.extend([
            col("Type", path(".type"), 0),
            col("Reason", path(".reason"), 0),
            col("Object", Source::Builtin("eventObject"), 0),
            col("Message", path(".message"), 0),
        ]),
        _ => cols.push(age),
    }
    cols
}

/// Columns from a CRD version's `additionalPrinterColumns`, after Name.
pub fn crd_columns(crd: &Value, version: &str) -> Option<Vec<Column>> {
    let v = crd
        .pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(version))?;
    let extra = v.get("additionalPrinterColumns")?.as_array()?;
    let mut cols = vec![col("Name", path(".metadata.name"), 0)];
    for c in extra {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        let jp = c.get("jsonPath").and_then(Value::as_str).unwrap_or("");
        let ty = c.get("type").and_then(Value::as_str).unwrap_or("string");
        cols.push(Column {
            name: name.into(),
            type_: ty.into(),
            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
            source: if ty == "date" {
                Source::Date(jp.into())
            } else {
                path(jp)
            },
        });
    }
    if !cols.iter().any(|c| c.name == "Age") {
        cols.push(col("Age", Source::Age, 0));
    }
    Some(cols)
}

/// Reads a dotted path; `\.` escapes a dot inside a key.
fn lookup<'a>(obj: &'a Value, p: &str) -> Option<&'a Value> {
    let mut cur = obj;
    let mut key = String::new();
    let mut chars = p.trim_start_matches('.').chars().peekable();
    loop {
        match chars.next() {
            Some('\\') => {
                if let Some(c) = chars.next() {
                    key.push(c);
                }
            }
            Some('.') => {
                cur = cur.get(&key)?;
                key.clear();
            }
            Some(c) => key.push(c),
            None => return cur.get(&key),
        }
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// kubectl's short human durations: 45s, 3m12s, 5h, 12d.
pub fn human_age(since: &str, now: DateTime<Utc>) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(since) else {
        return "<unknown>".into();
    };
    let s = (now - t.with_timezone(&Utc)).num_seconds().max(0);
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn cell(c: &Column, o: &Value, now: DateTime<Utc>) -> Value {
    let s = match &c.source {
        Source::Path(p) => return lookup(o, p).cloned().unwrap_or(Value::Null),
        Source::Age => human_age(&text(o.pointer("/metadata/creationTimestamp")), now),
        Source::Date(p) => {
            let v = text(lookup(o, p));
            if v.is_empty() {
                String::new()
            } else {
                human_age(&v, now)
            }
        }
        Source::Builtin("podStatus") => {
            if o.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating".into()
            } else {
                text(o.pointer("/status/phase"))
            }
        }
        Source::Builtin("pvClaim") => match o.pointer("/spec/claimRef") {
            Some(r) => format!("{}/{}", text(r.get("namespace")), text(r.get("name"))),
            None => String::new(),
        },
        Source::Builtin("nodeReady") => {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
                })
                .map(|c| text(c.get("status")));
            match ready.as_deref() {
                Some("True") => "Ready".into(),
                Some(_) => "NotReady".into(),
                None => "Unknown".into(),
            }
        }
        Source::Builtin("eventObject") => {
            let r = o.get("involvedObject");
            format!(
                "{}/{}",
                text(r.and_then(|r| r.get("kind"))).to_lowercase(),
                text(r.and_then(|r| r.get("name")))
            )
        }
        Source::Builtin(_) => String::new(),
    };
    json!(s)
}

/// A `meta.k8s.io/v1` Table of `items`, with each row's object as metadata only.
pub fn render(cols: &[Column], items: &[&Value], rv: u64, now: DateTime<Utc>) -> Value {
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| {
            let format = if c.name == "Name" { "name" } else { "" };
            json!({"name": c.name, "type": c.type_, "format": format, "description": "", "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            json!({
                "cells": cols.iter().map(|c| cell(c, o, now)).collect::<Vec<_>>(),
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                    "metadata": o.get("metadata").cloned().unwrap_or(json!({}))},
            })
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": defs, "rows": rows})
}

/// True when the client asked for a Table (kubectl get).
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::Registry;

    #[test]
    fn claim_rows() {
        let reg = Registry::with_builtins();
        let t = reg.get("", "v1", "persistentvolumeclaims").unwrap();
        let cols = builtin_columns(t);
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let pvc = json!({"metadata": {"name": "c", "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {"volume.kubernetes.io/selected-node": "n1"}},
            "spec": {"volumeName": "pv1", "storageClassName": "lvmpin"},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}});
        let table = render(&cols, &[&pvc], 7, now);
        let cells = &table["rows"][0]["cells"];
        assert_eq!(
            cells,
            &json!(["c", "Bound", "pv1", "1Gi", "lvmpin", "5m0s", "n1"])
        );
        assert_eq!(table["rows"][0]["object"]["metadata"]["name"], "c");
    }

    #[test]
    fn ages_and_accept() {
        let now = DateTime::parse_from_rfc3339("2026-01-03T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(human_age("2026-01-02T23:59:15Z", now), "45s");
        assert_eq!(human_age("2026-01-02T20:00:00Z", now), "4h0m");
        assert_eq!(human_age("2026-01-01T00:00:00Z", now), "2d");
        assert_eq!(human_age("garbage", now), "<unknown>");
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }

    #[test]
    fn lvm_node_printer_columns() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(lvmpin_api::LvmNode::crd()).unwrap();
        let cols = crd_columns(&crd, "v1alpha1").unwrap();
        let names: Vec<_> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Name",
                "VGs",
                "Size",
                "Free",
                "Volumes",
                "Healthy",
                "Age",
                "Node",
                "Last Scan"
            ]
        );
    }
}
