//! The resource types the server knows: the built-in table and the ones that
//! CustomResourceDefinitions add. Pure data; the store keys objects by
//! `ResourceType::key()` (group + plural) so every served version shares storage.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// What `status` a created object starts with when the type has a status subresource.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusOnCreate {
    /// Whatever the client sent (nodes, CRDs before we fill conditions).
    Keep,
    /// Replaced by this value (pods and claims start Pending, custom resources empty).
    Reset(Option<Value>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub has_status: bool,
    pub short_names: Vec<String>,
    /// Extra subresources beyond `status`, e.g. `binding` for pods.
    pub extra_subresources: Vec<String>,
    pub status_on_create: StatusOnCreate,
}

impl ResourceType {
    /// Storage key: one collection per group and plural, shared by all versions.
    pub fn key(&self) -> String {
        // events.k8s.io/v1 Events are the core Events in another shape (see `convert`).
        if self.group == "events.k8s.io" && self.plural == "events" {
            return "/events".to_string();
        }
        format!("{}/{}", self.group, self.plural)
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Its entries in an `APIResourceList`, including subresources.
    pub fn discovery_entries(&self) -> Vec<Value> {
        let mut out = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": self.short_names,
        })];
        if self.has_status {
            out.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        for sub in &self.extra_subresources {
            out.push(json!({
                "name": format!("{}/{}", self.plural, sub),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": if sub == "binding" { "Binding" } else { self.kind.as_str() },
                "verbs": ["create"],
            }));
        }
        out
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    has_status: bool,
    short: &'static [&'static str],
}

const BUILTINS: &[Builtin] = &[
    b("", "v1", "namespaces", "Namespace", false, true, &["ns"]),
    b("", "v1", "nodes", "Node", false, true, &["no"]),
    b("", "v1", "pods", "Pod", true, true, &["po"]),
    b(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        true,
        &["pvc"],
    ),
    b(
        "",
        "v1",
        "persistentvolumes",
        "PersistentVolume",
        false,
        true,
        &["pv"],
    ),
    b("", "v1", "events", "Event", true, false, &["ev"]),
    b("", "v1", "configmaps", "ConfigMap", true, false, &["cm"]),
    b("", "v1", "secrets", "Secret", true, false, &[]),
    b("", "v1", "services", "Service", true, true, &["svc"]),
    b(
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        true,
        false,
        &["sa"],
    ),
    b(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        true,
        false,
        &["ev"],
    ),
    b(
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "StorageClass",
        false,
        false,
        &["sc"],
    ),
    b(
        "storage.k8s.io",
        "v1",
        "csidrivers",
        "CSIDriver",
        false,
        false,
        &[],
    ),
    b(
        "storage.k8s.io",
        "v1",
        "csinodes",
        "CSINode",
        false,
        false,
        &[],
    ),
    b(
        "storage.k8s.io",
        "v1",
        "csistoragecapacities",
        "CSIStorageCapacity",
        true,
        false,
        &[],
    ),
    b(
        "storage.k8s.io",
        "v1",
        "volumeattachments",
        "VolumeAttachment",
        false,
        true,
        &[],
    ),
    // Answered, never stored (review.rs).
    b(
        "authentication.k8s.io",
        "v1",
        "tokenreviews",
        "TokenReview",
        false,
        false,
        &[],
    ),
    b(
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "SubjectAccessReview",
        false,
        false,
        &[],
    ),
    b(
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        true,
        false,
        &[],
    ),
    b(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        true,
        true,
        &["sts"],
    ),
    b(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        true,
        true,
        &["deploy"],
    ),
    b(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        true,
        true,
        &["rs"],
    ),
    b("apps", "v1", "daemonsets", "DaemonSet", true, true, &["ds"]),
    b(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        true,
        &["crd", "crds"],
    ),
];

const fn b(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    has_status: bool,
    short: &'static [&'static str],
) -> Builtin {
    Builtin {
        group,
        version,
        plural,
        kind,
        namespaced,
        has_status,
        short,
    }
}

/// The status a newly created built-in object starts with. The real server
/// drops client-sent status for pods, claims and volumes; volumes go straight
/// to Available here since no volume controller runs for unclaimed ones.
fn status_on_create(group: &str, plural: &str) -> StatusOnCreate {
    match (group, plural) {
        ("", "pods") => StatusOnCreate::Reset(Some(json!({"phase": "Pending"}))),
        ("", "persistentvolumeclaims") => StatusOnCreate::Reset(Some(json!({"phase": "Pending"}))),
        ("", "persistentvolumes") => StatusOnCreate::Reset(Some(json!({"phase": "Available"}))),
        ("", "namespaces") => StatusOnCreate::Reset(Some(json!({"phase": "Active"}))),
        _ => StatusOnCreate::Keep,
    }
}

pub fn builtin_types() -> Vec<ResourceType> {
    BUILTINS
        .iter()
        .map(|t| ResourceType {
            group: t.group.to_string(),
            version: t.version.to_string(),
            plural: t.plural.to_string(),
            singular: t.kind.to_ascii_lowercase(),
            kind: t.kind.to_string(),
            namespaced: t.namespaced,
            has_status: t.has_status,
            short_names: t.short.iter().map(|s| s.to_string()).collect(),
            extra_subresources: if t.plural == "pods" && t.group.is_empty() {
                vec!["binding".to_string()]
            } else {
                Vec::new()
            },
            status_on_create: status_on_create(t.group, t.plural),
        })
        .collect()
}

/// The served versions a CustomResourceDefinition object defines.
pub fn types_from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
    let spec = crd.get("spec").ok_or("spec is required")?;
    let s = |v: Option<&Value>, what: &str| -> Result<String, String> {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("{what} is required"))
    };
    let group = s(spec.get("group"), "spec.group")?;
    let names = spec.get("names").ok_or("spec.names is required")?;
    let plural = s(names.get("plural"), "spec.names.plural")?;
    let kind = s(names.get("kind"), "spec.names.kind")?;
    let singular = names
        .get("singular")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_ascii_lowercase());
    let short_names: Vec<String> = names
        .get("shortNames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let namespaced = match spec.get("scope").and_then(Value::as_str) {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        other => {
            return Err(format!(
                "spec.scope must be Namespaced or Cluster, got {other:?}"
            ));
        }
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty())
        .ok_or("spec.versions must list at least one version")?;
    let mut out = Vec::new();
    for v in versions {
        let name = s(v.get("name"), "spec.versions[].name")?;
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let has_status = v.pointer("/subresources/status").is_some();
        out.push(ResourceType {
            group: group.clone(),
            version: name,
            plural: plural.clone(),
            singular: singular.clone(),
            kind: kind.clone(),
            namespaced,
            has_status,
            short_names: short_names.clone(),
            extra_subresources: Vec::new(),
            status_on_create: if has_status {
                StatusOnCreate::Reset(None)
            } else {
                StatusOnCreate::Keep
            },
        });
    }
    Ok(out)
}

/// All served types, by (group, version, plural).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: BTreeMap<(String, String, String), ResourceType>,
}

impl Registry {
    pub fn with_builtins() -> Self {
        let mut r = Registry::default();
        for t in builtin_types() {
            r.add(t);
        }
        r
    }

    pub fn add(&mut self, t: ResourceType) {
        self.types
            .insert((t.group.clone(), t.version.clone(), t.plural.clone()), t);
    }

    /// Drops every version of `group`/`plural`.
    pub fn remove(&mut self, group: &str, plural: &str) {
        self.types
            .retain(|(g, _, p), _| !(g == group && p == plural));
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values()
    }

    /// Group name → its versions, for `/apis`.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (g, v, _) in self.types.keys() {
            let versions = out.entry(g.clone()).or_default();
            if !versions.contains(v) {
                versions.push(v.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn lvm_node_crd_gives_a_cluster_scoped_type_with_status() {
        let crd = serde_json::to_value(lvmpin_api::LvmNode::crd()).unwrap();
        let types = types_from_crd(&crd).unwrap();
        assert_eq!(types.len(), 1);
        let t = &types[0];
        assert_eq!(t.key(), "lvmpin.io/lvmnodes");
        assert_eq!(t.api_version(), "lvmpin.io/v1alpha1");
        assert!(!t.namespaced);
        assert!(t.has_status);
        assert_eq!(t.short_names, vec!["lvmn".to_string()]);
    }

    #[test]
    fn bad_crds_are_rejected_with_the_field_named() {
        let crd = json!({"spec": {"group": "x.io", "names": {"plural": "foos", "kind": "Foo"},
            "scope": "Sideways", "versions": [{"name": "v1", "served": true}]}});
        assert!(types_from_crd(&crd).unwrap_err().contains("spec.scope"));
        let crd = json!({"spec": {"names": {}}});
        assert!(types_from_crd(&crd).unwrap_err().contains("spec.group"));
    }

    #[test]
    fn pods_have_binding_and_status_in_discovery() {
        let r = Registry::with_builtins();
        let pods = r.get("", "v1", "pods").unwrap();
        let names: Vec<_> = pods
            .discovery_entries()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["pods", "pods/status", "pods/binding"]);
    }
}
