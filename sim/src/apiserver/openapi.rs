//! Just enough OpenAPI v3 for kubectl to see that the server does field
//! validation itself (`fieldValidation` on every PATCH), so `kubectl create -f`
//! works without `--validate=false`. No schemas are published; `/openapi/v2`
//! stays 404.

use serde_json::{Map, Value, json};

use super::resources::{Registry, ResourceType};

/// `api/v1` or `apis/<group>/<version>`: the key kubectl looks documents up by.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

pub fn root(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for t in reg.iter() {
        let p = gv_path(&t.group, &t.version);
        let url = format!("/openapi/v3/{p}");
        paths.insert(p, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

fn item_path(t: &ResourceType) -> String {
    let base = format!("/{}", gv_path(&t.group, &t.version));
    if t.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
    } else {
        format!("{base}/{}/{{name}}", t.plural)
    }
}

/// The document of one group/version (`rest` is e.g. `api/v1`), if served.
pub fn group_version(reg: &Registry, rest: &str) -> Option<Value> {
    let mut paths = Map::new();
    for t in reg.iter().filter(|t| gv_path(&t.group, &t.version) == rest) {
        let op = json!({
            "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind},
            "parameters": [
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}}
            ],
            "responses": {"200": {"description": "OK"}},
        });
        paths.insert(item_path(t), json!({"patch": op}));
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (lvmpin simulator)", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_patch_declares_field_validation() {
        let reg = Registry::with_builtins();
        assert_eq!(
            root(&reg)["paths"]["apis/storage.k8s.io/v1"]["serverRelativeURL"],
            "/openapi/v3/apis/storage.k8s.io/v1"
        );
        let doc = group_version(&reg, "api/v1").unwrap();
        let op = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Pod");
        assert_eq!(op["parameters"][0]["name"], "fieldValidation");
        assert!(group_version(&reg, "apis/nope/v1").is_none());
    }
}
