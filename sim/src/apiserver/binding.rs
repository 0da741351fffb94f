//! The `pods/binding` subresource: how a scheduler assigns a pod to a node.
//! It sets `spec.nodeName` once (409 if the pod is already bound or being
//! deleted) and marks the pod scheduled.

use serde_json::{Value, json};

use super::meta;
use super::resources::ResourceType;
use super::status::ApiError;
use super::store::Store;

impl Store {
    /// Binds a pod to a node as the `pods/binding` subresource does.
    pub fn bind(
        &mut self,
        pods: &ResourceType,
        ns: &str,
        name: &str,
        binding: &Value,
    ) -> Result<(), ApiError> {
        let target = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::invalid("", "bindings", name, "target.name: Required value")
            })?;
        let bname = meta::name(binding);
        if !bname.is_empty() && bname != name {
            return Err(ApiError::bad_request(format!(
                "the name of the binding ({bname}) does not match the pod on the URL ({name})"
            )));
        }
        let pod = self.get(pods, Some(ns), name)?;
        let uid = binding
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !uid.is_empty() && uid != meta::uid(&pod) {
            return Err(ApiError::conflict(
                "",
                "pods",
                name,
                "the UID in the binding does not match the pod",
            ));
        }
        if meta::is_deleting(&pod) {
            return Err(ApiError::conflict(
                "",
                "pods",
                name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        let bound = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !bound.is_empty() {
            return Err(ApiError::conflict(
                "",
                "pods",
                name,
                &format!("pod {name} is already assigned to node {bound:?}"),
            ));
        }
        let mut new = (*pod).clone();
        let now = self.now();
        let Some(obj) = new.as_object_mut() else {
            return Err(ApiError::internal(format!(
                "stored pod {name} is not an object"
            )));
        };
        // No schema checks on create: a malformed spec or status is replaced, not indexed into.
        for part in ["spec", "status"] {
            if !obj.get(part).is_some_and(Value::is_object) {
                obj.insert(part.to_string(), json!({}));
            }
        }
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("nodeName".into(), json!(target));
        }
        let conds = obj
            .get_mut("status")
            .and_then(Value::as_object_mut)
            .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
        if let Some(Value::Array(conds)) = conds {
            conds.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            conds.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
        }
        self.write(&pods.key(), new, Some(pod));
        Ok(())
    }
}
