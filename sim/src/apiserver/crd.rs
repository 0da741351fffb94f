//! CustomResourceDefinitions: creating one validates it, serves its types and
//! marks it Established; removing one stops serving them and drops their objects.

use serde_json::{Value, json};

use super::meta;
use super::resources::types_from_crd;
use super::status::ApiError;
use super::store::{ObjKey, Store};

impl Store {
    /// Validates a CRD, serves its types and marks it Established.
    pub(super) fn accept_crd(&mut self, crd: &mut Value) -> Result<(), ApiError> {
        let name = meta::name(crd).to_string();
        let types = types_from_crd(crd).map_err(|e| {
            ApiError::invalid(
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                &name,
                e,
            )
        })?;
        let Some(first) = types.first() else {
            return Err(ApiError::invalid(
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                &name,
                "spec.versions: no served version",
            ));
        };
        let want = format!("{}.{}", first.plural, first.group);
        if name != want {
            return Err(ApiError::invalid(
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                &name,
                format!(
                    "metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group ({want})"
                ),
            ));
        }
        let now = self.now();
        let stored: Vec<Value> = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .map(|vs| {
                vs.iter()
                    .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                    .filter_map(|v| v.get("name").cloned())
                    .collect()
            })
            .unwrap_or_default();
        let cond = |ty: &str, reason: &str| json!({"type": ty, "status": "True", "reason": reason, "message": "", "lastTransitionTime": now});
        crd["status"] = json!({
            "conditions": [cond("NamesAccepted", "NoConflicts"), cond("Established", "InitialNamesAccepted")],
            "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(json!({})),
            "storedVersions": stored,
        });
        self.registry.remove(&first.group, &first.plural);
        for t in types {
            self.registry.add(t);
        }
        Ok(())
    }

    pub(super) fn drop_crd_types(&mut self, crd: &Value) {
        let Ok(types) = types_from_crd(crd) else {
            return;
        };
        let Some(t) = types.first() else { return };
        let key = t.key();
        self.registry.remove(&t.group, &t.plural);
        let keys: Vec<ObjKey> = self
            .objects
            .get(&key)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for ok in keys {
            self.remove(&key, &ok, None, false);
        }
    }
}
