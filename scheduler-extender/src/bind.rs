//! The bind verb: make sure every claim of ours names the node, then bind.
//!
//! kube-scheduler's PreBind has normally written `selected-node` already; we
//! write it only when it is missing (merge patch), and refuse when a claim
//! names another node, since the agent there may already be creating its LV.

use std::sync::Mutex;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use lvmpin_api::names::ANN_SELECTED_NODE;
use serde_json::json;

use crate::engine::{self, State};
use crate::error::Error;
use crate::facts::{PodFacts, pod_facts};
use crate::index::Index;
use crate::wire::ExtenderBindingArgs;

/// Claims (names in the pod's namespace) that need `selected-node` written.
pub fn claims_to_annotate(ix: &Index, pod: &PodFacts, node: &str) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for key in pod.claim_keys() {
        let Some(claim) = ix.claims.get(&key) else {
            return Err(Error::ClaimNotCached(key.to_string()));
        };
        let ours = claim
            .class
            .as_ref()
            .and_then(|c| ix.classes.get(c))
            .is_some_and(|c| c.ours);
        if !ours || claim.is_bound() {
            continue;
        }
        match claim.selected_node.as_deref() {
            Some(n) if n == node => {}
            Some(other) => {
                return Err(Error::SelectedElsewhere {
                    claim: key.to_string(),
                    annotation: ANN_SELECTED_NODE,
                    found: other.to_string(),
                    node: node.to_string(),
                });
            }
            None => out.push(key.name.to_string()),
        }
    }
    Ok(out)
}

/// The `Binding` kube-scheduler's default binder would post.
pub fn binding_body(args: &ExtenderBindingArgs) -> serde_json::Value {
    let mut metadata = json!({ "name": args.pod_name, "namespace": args.pod_namespace });
    if !args.pod_uid.is_empty() {
        metadata["uid"] = json!(args.pod_uid);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": metadata,
        "target": { "apiVersion": "v1", "kind": "Node", "name": args.node },
    })
}

pub struct Binder {
    pub client: Client,
}

impl Binder {
    /// Binds with the index in `state` (the extender's watch caches).
    pub async fn bind(
        &self,
        state: &Mutex<State>,
        args: &ExtenderBindingArgs,
    ) -> Result<(), Error> {
        let cached = engine::lock(state).index.pods.get(&args.pod_uid).cloned();
        let pod = match cached {
            Some(p) => p,
            // The pod watch may lag the scheduler; bind is rare enough to read once.
            None => {
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), &args.pod_namespace);
                let p = pods
                    .get(&args.pod_name)
                    .await
                    .map_err(|source| Error::Kube {
                        action: format!("get pod {}/{}", args.pod_namespace, args.pod_name),
                        source,
                    })?;
                pod_facts(&p)
            }
        };
        let to_annotate = claims_to_annotate(&engine::lock(state).index, &pod, &args.node)?;
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &args.pod_namespace);
        for name in &to_annotate {
            let patch = json!({ "metadata": { "annotations": { ANN_SELECTED_NODE: args.node } } });
            claims
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|source| Error::Kube {
                    action: format!("annotate claim {}/{name}", args.pod_namespace),
                    source,
                })?;
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &args.pod_namespace);
        pods.create_subresource::<_, serde_json::Value>(
            "binding",
            &args.pod_name,
            &PostParams::default(),
            &binding_body(args),
        )
        .await
        .map_err(|source| Error::Kube {
            action: format!(
                "bind pod {}/{} to node {}",
                args.pod_namespace, args.pod_name, args.node
            ),
            source,
        })?;
        Ok(())
    }
}
