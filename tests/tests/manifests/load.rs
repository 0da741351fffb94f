//! Reading the YAML under `manifests/` into typed objects.
//!
//! Every document is decoded into its k8s-openapi type (or one of ours) chosen
//! by apiVersion and kind; unknown kinds are errors. k8s-openapi ignores unknown
//! fields, so each object is encoded again and compared with the input: a
//! misspelled field (say `mountPropogation`) shows up as a lost field.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Pod, PodTemplateSpec, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::storage::v1::{CSIDriver, StorageClass};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::scheduler_config::KubeSchedulerConfiguration;

/// A Kubernetes object we know how to check.
#[derive(Clone, Debug)]
pub enum Object {
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    Role(Role),
    RoleBinding(RoleBinding),
    DaemonSet(DaemonSet),
    Deployment(Deployment),
    StatefulSet(StatefulSet),
    Service(Service),
    PodDisruptionBudget(PodDisruptionBudget),
    CsiDriver(CSIDriver),
    StorageClass(StorageClass),
    Crd(CustomResourceDefinition),
    ValidatingAdmissionPolicy(ValidatingAdmissionPolicy),
    ValidatingAdmissionPolicyBinding(ValidatingAdmissionPolicyBinding),
    /// Metadata only: the workspace's k8s-openapi (API 1.33) has no type for
    /// these (GA in 1.36); kube-apiserver validates them in
    /// tests/tests/capacity.rs.
    MutatingAdmissionPolicy(ObjectMeta),
    MutatingAdmissionPolicyBinding(ObjectMeta),
    PersistentVolumeClaim(PersistentVolumeClaim),
    Pod(Pod),
    ConfigMap(ConfigMap),
    /// Metadata only: prometheus-operator's kinds have no k8s-openapi type;
    /// their specs are checked in tests/tests/manifests/monitoring.rs.
    PrometheusRule(ObjectMeta),
    PodMonitor(ObjectMeta),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::ServiceAccount(_) => "ServiceAccount",
            Object::ClusterRole(_) => "ClusterRole",
            Object::ClusterRoleBinding(_) => "ClusterRoleBinding",
            Object::Role(_) => "Role",
            Object::RoleBinding(_) => "RoleBinding",
            Object::DaemonSet(_) => "DaemonSet",
            Object::Deployment(_) => "Deployment",
            Object::StatefulSet(_) => "StatefulSet",
            Object::Service(_) => "Service",
            Object::PodDisruptionBudget(_) => "PodDisruptionBudget",
            Object::CsiDriver(_) => "CSIDriver",
            Object::StorageClass(_) => "StorageClass",
            Object::Crd(_) => "CustomResourceDefinition",
            Object::ValidatingAdmissionPolicy(_) => "ValidatingAdmissionPolicy",
            Object::ValidatingAdmissionPolicyBinding(_) => "ValidatingAdmissionPolicyBinding",
            Object::MutatingAdmissionPolicy(_) => "MutatingAdmissionPolicy",
            Object::MutatingAdmissionPolicyBinding(_) => "MutatingAdmissionPolicyBinding",
            Object::PersistentVolumeClaim(_) => "PersistentVolumeClaim",
            Object::Pod(_) => "Pod",
            Object::ConfigMap(_) => "ConfigMap",
            Object::PrometheusRule(_) => "PrometheusRule",
            Object::PodMonitor(_) => "PodMonitor",
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::ServiceAccount(o) => &o.metadata,
            Object::ClusterRole(o) => &o.metadata,
            Object::ClusterRoleBinding(o) => &o.metadata,
            Object::Role(o) => &o.metadata,
            Object::RoleBinding(o) => &o.metadata,
            Object::DaemonSet(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::StatefulSet(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::PodDisruptionBudget(o) => &o.metadata,
            Object::CsiDriver(o) => &o.metadata,
            Object::StorageClass(o) => &o.metadata,
            Object::Crd(o) => &o.metadata,
            Object::ValidatingAdmissionPolicy(o) => &o.metadata,
            Object::ValidatingAdmissionPolicyBinding(o) => &o.metadata,
            Object::MutatingAdmissionPolicy(m)
            | Object::MutatingAdmissionPolicyBinding(m)
            | Object::PrometheusRule(m)
            | Object::PodMonitor(m) => m,
            Object::PersistentVolumeClaim(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
        }
    }

    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or("")
    }

    pub fn namespace(&self) -> Option<&str> {
        self.meta().namespace.as_deref()
    }

    pub fn is_namespaced(&self) -> bool {
        !matches!(
            self,
            Object::Namespace(_)
                | Object::ClusterRole(_)
                | Object::ClusterRoleBinding(_)
                | Object::CsiDriver(_)
                | Object::StorageClass(_)
                | Object::Crd(_)
                | Object::ValidatingAdmissionPolicy(_)
                | Object::ValidatingAdmissionPolicyBinding(_)
                | Object::MutatingAdmissionPolicy(_)
                | Object::MutatingAdmissionPolicyBinding(_)
        )
    }

    /// The pod template of a workload.
    pub fn pod_template(&self) -> Option<&PodTemplateSpec> {
        match self {
            Object::DaemonSet(o) => o.spec.as_ref().map(|s| &s.template),
            Object::Deployment(o) => o.spec.as_ref().map(|s| &s.template),
            Object::StatefulSet(o) => o.spec.as_ref().map(|s| &s.template),
            _ => None,
        }
    }
}

/// `kustomization.yaml`, with the fields our kustomizations use. Unknown
/// fields are errors so that a feature this test does not model (patches,
/// generators) is noticed rather than ignored.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Kustomization {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub resources: Vec<String>,
}

/// What one YAML file holds.
#[derive(Clone, Debug)]
pub enum FileContent {
    Objects(Vec<Object>),
    Kustomization(Kustomization),
    SchedulerConfig(Box<KubeSchedulerConfiguration>),
}

/// Decodes one YAML file (one or more documents).
pub fn parse_file(name: &str, text: &str) -> Result<FileContent, String> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(de).map_err(|e| format!("{name}: document {i}: {e}"))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    if docs.is_empty() {
        return Err(format!("{name}: no YAML documents"));
    }
    let is_kustomization = Path::new(name)
        .file_name()
        .is_some_and(|f| f == "kustomization.yaml");
    if is_kustomization {
        let [doc] = docs.as_slice() else {
            return Err(format!("{name}: a kustomization must be one document"));
        };
        let k: Kustomization =
            serde_json::from_value(doc.clone()).map_err(|e| format!("{name}: {e}"))?;
        if k.api_version != "kustomize.config.k8s.io/v1beta1" || k.kind != "Kustomization" {
            return Err(format!(
                "{name}: expected kustomize.config.k8s.io/v1beta1 Kustomization, got {} {}",
                k.api_version, k.kind
            ));
        }
        return Ok(FileContent::Kustomization(k));
    }
    if docs.len() == 1 && docs[0].get("kind") == Some(&Value::from("KubeSchedulerConfiguration")) {
        let c: KubeSchedulerConfiguration =
            serde_json::from_value(docs[0].clone()).map_err(|e| format!("{name}: {e}"))?;
        return Ok(FileContent::SchedulerConfig(Box::new(c)));
    }
    let mut objects = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        objects.push(parse_object(doc).map_err(|e| format!("{name}: document {i}: {e}"))?);
    }
    Ok(FileContent::Objects(objects))
}

fn typed<T>(doc: &Value, wrap: fn(T) -> Object) -> Result<Object, String>
where
    T: DeserializeOwned + serde::Serialize,
{
    let obj: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let again = serde_json::to_value(&obj).map_err(|e| e.to_string())?;
    if let Some(path) = first_difference(doc, &again, String::new()) {
        return Err(format!(
            "field {path} is not part of the typed object (misspelled or misplaced?)"
        ));
    }
    Ok(wrap(obj))
}

fn metadata_only(doc: &Value) -> Result<ObjectMeta, String> {
    let meta = doc.get("metadata").cloned().unwrap_or(Value::Null);
    serde_json::from_value(meta).map_err(|e| format!("metadata: {e}"))
}

/// Decodes one document by its apiVersion and kind.
pub fn parse_object(doc: &Value) -> Result<Object, String> {
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    match (api_version, kind) {
        ("v1", "Namespace") => typed(doc, Object::Namespace),
        ("v1", "ServiceAccount") => typed(doc, Object::ServiceAccount),
        ("v1", "Service") => typed(doc, Object::Service),
        ("v1", "PersistentVolumeClaim") => typed(doc, Object::PersistentVolumeClaim),
        ("v1", "Pod") => typed(doc, Object::Pod),
        ("v1", "ConfigMap") => typed(doc, Object::ConfigMap),
        ("monitoring.coreos.com/v1", "PrometheusRule") => {
            metadata_only(doc).map(Object::PrometheusRule)
        }
        ("monitoring.coreos.com/v1", "PodMonitor") => metadata_only(doc).map(Object::PodMonitor),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => typed(doc, Object::ClusterRole),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            typed(doc, Object::ClusterRoleBinding)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => typed(doc, Object::Role),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => typed(doc, Object::RoleBinding),
        ("apps/v1", "DaemonSet") => typed(doc, Object::DaemonSet),
        ("apps/v1", "Deployment") => typed(doc, Object::Deployment),
        ("apps/v1", "StatefulSet") => typed(doc, Object::StatefulSet),
        ("policy/v1", "PodDisruptionBudget") => typed(doc, Object::PodDisruptionBudget),
        ("storage.k8s.io/v1", "CSIDriver") => typed(doc, Object::CsiDriver),
        ("storage.k8s.io/v1", "StorageClass") => typed(doc, Object::StorageClass),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => typed(doc, Object::Crd),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy") => {
            typed(doc, Object::ValidatingAdmissionPolicy)
        }
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding") => {
            typed(doc, Object::ValidatingAdmissionPolicyBinding)
        }
        ("admissionregistration.k8s.io/v1", "MutatingAdmissionPolicy") => {
            metadata_only(doc).map(Object::MutatingAdmissionPolicy)
        }
        ("admissionregistration.k8s.io/v1", "MutatingAdmissionPolicyBinding") => {
            metadata_only(doc).map(Object::MutatingAdmissionPolicyBinding)
        }
        _ => Err(format!(
            "unknown kind {kind:?} of apiVersion {api_version:?}: teach tests/tests/manifests/load.rs about it"
        )),
    }
}

/// The first path at which `input` has something `typed` lost or changed.
pub fn first_difference(input: &Value, typed: &Value, path: String) -> Option<String> {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => a.iter().find_map(|(k, v)| match b.get(k) {
            Some(w) => first_difference(v, w, format!("{path}.{k}")),
            None => Some(format!("{path}.{k}")),
        }),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, format!("{path}[{i}]"))),
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => None,
        (a, b) if a == b => None,
        _ => Some(path),
    }
}

/// Every `.yaml` file under `root`, keyed by its path relative to `root`
/// (with `/` separators).
pub fn read_tree(root: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let ext = path.extension().and_then(|e| e.to_str());
            if matches!(ext, Some("yml")) {
                return Err(format!("{}: use the .yaml extension", path.display()));
            }
            if ext != Some("yaml") {
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .map_err(|e| e.to_string())?
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            out.insert(rel, text);
        }
    }
    Ok(out)
}
