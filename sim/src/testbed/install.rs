//! Installing lvmpin on a real API server the way an operator would: the
//! objects from `manifests/base` (namespace, CRD, CSIDriver, service accounts,
//! RBAC and the admission policy), then one identity per process. The extender
//! and each agent talk to the API server with tokens of their own service
//! accounts, so a missing RBAC rule or a policy that denies a write fails the
//! scenario instead of being hidden by an admin client.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, GroupVersionKind, PostParams};
use kube::config::Kubeconfig;
use kube::core::ObjectMeta;
use kube::{Api, Client};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::testbed::process::workspace_root;
use crate::wait;

pub const NAMESPACE: &str = "lvmpin-system";
pub const AGENT_SA: &str = "lvmpin-agent";
pub const EXTENDER_SA: &str = "lvmpin-scheduler-extender";
pub const CONTROLLER_SA: &str = "lvmpin-controller";

/// The files of `manifests/base` that a test cluster needs; the workloads
/// (DaemonSet, Deployment) are replaced by the testbed's own processes.
const BASE_FILES: &[&str] = &[
    "namespace.yaml",
    "crds.yaml",
    "csidriver.yaml",
    "agent/serviceaccount.yaml",
    "agent/rbac.yaml",
    "extender/serviceaccount.yaml",
    "extender/rbac.yaml",
    "controller/serviceaccount.yaml",
    "controller/rbac.yaml",
    "viewer.yaml",
];

/// Every YAML document of one file, as dynamic objects.
pub fn read_manifest(path: &Path) -> Result<Vec<DynamicObject>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_json::Value::deserialize(doc)
            .map_err(|e| Error::ApiServer(format!("{}: {e}", path.display())))?;
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_json::from_value(value)
            .map_err(|e| Error::ApiServer(format!("{}: {e}", path.display())))?;
        out.push(obj);
    }
    Ok(out)
}

/// Create one object, whatever its kind, through discovery.
pub async fn create_object(client: &Client, obj: &DynamicObject) -> Result<()> {
    let types = obj
        .types
        .as_ref()
        .ok_or_else(|| Error::ApiServer("manifest object without apiVersion/kind".into()))?;
    let gvk = GroupVersionKind::try_from(types)
        .map_err(|e| Error::ApiServer(format!("bad apiVersion {}: {e}", types.api_version)))?;
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = match (&caps.scope, obj.metadata.namespace.as_deref()) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => {
            Api::namespaced_with(client.clone(), ns, &resource)
        }
        (kube::discovery::Scope::Namespaced, None) => {
            Api::default_namespaced_with(client.clone(), &resource)
        }
        (kube::discovery::Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
    };
    api.create(&PostParams::default(), obj).await?;
    Ok(())
}

/// What the simulator takes of `manifests/base`: it has no authorization or
/// admission, and serves LvmNode built in, but its scheduler reads the
/// CSIDriver's `storageCapacity`, as kube-scheduler does.
const SIM_FILES: &[&str] = &["namespace.yaml", "csidriver.yaml"];

async fn apply_files(client: &Client, files: &[&str]) -> Result<()> {
    let base = workspace_root().join("manifests").join("base");
    for file in files {
        for obj in read_manifest(&base.join(file))? {
            create_object(client, &obj).await?;
        }
    }
    Ok(())
}

/// The part of `manifests/base` the simulator uses.
pub async fn install_sim(client: &Client) -> Result<()> {
    apply_files(client, SIM_FILES).await
}

/// Apply `manifests/base` (but its workloads) and wait for the CRD to serve.
pub async fn install_base(client: &Client) -> Result<()> {
    apply_files(client, BASE_FILES).await?;
    wait_established(client, "lvmnodes.lvmpin.io").await
}

/// Wait until the API server serves the CRD `name`.
pub async fn wait_established(client: &Client, name: &str) -> Result<()> {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    wait::until(
        &format!("the {name} CRD to be established"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let crds = crds.clone();
            async move {
                let crd = crds.get(name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        },
    )
    .await
}

/// Server and CA of the admin kubeconfig, for writing token kubeconfigs.
#[derive(Debug, Clone)]
pub struct ClusterAccess {
    pub server: String,
    pub ca_data: String,
}

impl ClusterAccess {
    pub fn from_kubeconfig(path: &Path) -> Result<Self> {
        let kc = Kubeconfig::read_from(path)
            .map_err(|e| Error::ApiServer(format!("reading {}: {e}", path.display())))?;
        let cluster = kc
            .clusters
            .first()
            .and_then(|c| c.cluster.clone())
            .ok_or_else(|| Error::ApiServer(format!("{}: no cluster", path.display())))?;
        Ok(ClusterAccess {
            server: cluster.server.unwrap_or_default(),
            ca_data: cluster.certificate_authority_data.unwrap_or_default(),
        })
    }

    /// A kubeconfig that authenticates with `token` and nothing else.
    pub fn write_token_kubeconfig(&self, path: &Path, user: &str, token: &str) -> Result<()> {
        let kc = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kube-local", "cluster": {
                "server": self.server,
                "certificate-authority-data": self.ca_data,
            }}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": user, "context": {"cluster": "kube-local", "user": user}}],
            "current-context": user,
        });
        std::fs::write(path, kc.to_string()).map_err(|e| Error::io(path, e))
    }
}

/// A token of `sa`, bound to `pod` when given (then the API server adds the
/// pod's node name to the token, which the LvmNode policy checks).
async fn token(client: &Client, sa: &str, pod: Option<&Pod>) -> Result<String> {
    let bound = pod.map(|p| BoundObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: p.metadata.name.clone(),
        uid: p.metadata.uid.clone(),
    });
    let req = TokenRequest {
        metadata: ObjectMeta::default(),
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            bound_object_ref: bound,
            expiration_seconds: Some(24 * 3600),
        },
        status: None,
    };
    let out = Api::<ServiceAccount>::namespaced(client.clone(), NAMESPACE)
        .create_token_request(sa, &PostParams::default(), &req)
        .await?;
    out.status
        .map(|s| s.token)
        .ok_or_else(|| Error::ApiServer(format!("TokenRequest for {sa} returned no token")))
}

/// A kubeconfig with a token of `service_account` (in lvmpin-system).
pub async fn service_account_kubeconfig(
    client: &Client,
    access: &ClusterAccess,
    dir: &Path,
    service_account: &str,
) -> Result<PathBuf> {
    let token = token(client, service_account, None).await?;
    let path = dir.join(format!("{service_account}.kubeconfig"));
    access.write_token_kubeconfig(&path, service_account, &token)?;
    Ok(path)
}

/// An agent's kubeconfig. In a cluster the DaemonSet pod's projected token is
/// bound to that pod; here a stand-in pod on the node plays that part.
pub async fn agent_kubeconfig(
    client: &Client,
    access: &ClusterAccess,
    dir: &Path,
    node: &str,
) -> Result<PathBuf> {
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(format!("lvmpin-agent-{node}")),
            namespace: Some(NAMESPACE.into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "lvmpin-agent".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.to_string()),
            service_account_name: Some(AGENT_SA.into()),
            containers: vec![Container {
                name: "agent".into(),
                image: Some("lvmpin/agent:test".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let pod = Api::<Pod>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &pod)
        .await?;
    let token = token(client, AGENT_SA, Some(&pod)).await?;
    let path = dir.join(format!("agent-{node}.kubeconfig"));
    access.write_token_kubeconfig(&path, AGENT_SA, &token)?;
    Ok(path)
}
