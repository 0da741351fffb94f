//! Object metadata rules of create and update, as pure functions over JSON:
//! what the client may set, what the server keeps, and the preconditions that
//! turn into 409s and 422s.

use serde_json::{Map, Value, json};

use super::immutable;
use super::resources::{ResourceType, StatusOnCreate};
use super::status::ApiError;

pub fn name(obj: &Value) -> &str {
    str_at(obj, "/metadata/name")
}

pub fn namespace(obj: &Value) -> &str {
    str_at(obj, "/metadata/namespace")
}

pub fn resource_version(obj: &Value) -> &str {
    str_at(obj, "/metadata/resourceVersion")
}

pub fn uid(obj: &Value) -> &str {
    str_at(obj, "/metadata/uid")
}

fn str_at<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// UIDs named in `metadata.ownerReferences`.
pub fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Keeps only the owner references whose uid passes `keep`.
pub fn retain_owners(obj: &mut Value, keep: impl Fn(&str) -> bool) {
    if let Some(refs) = obj
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    {
        refs.retain(|r| r.get("uid").and_then(Value::as_str).is_some_and(&keep));
        if refs.is_empty()
            && let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut)
        {
            m.remove("ownerReferences");
        }
    }
}

pub fn set_meta(obj: &mut Value, field: &str, v: Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert(field.to_string(), v);
    }
}

/// DNS-subdomain names (RFC 1123), which every type we serve uses.
pub fn validate_name(n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "metadata.name: Invalid value: {n:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        ))
    }
}

/// A label value or the name part of a key: up to 63 characters, alphanumeric
/// at both ends, `-`, `_` or `.` inside.
fn qualified_part(s: &str) -> bool {
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn qualified_key(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => validate_name(prefix).is_ok() && qualified_part(name),
        None => qualified_part(k),
    }
}

/// Label keys and values, and annotation keys, as the real server checks them.
pub fn validate_labels(obj: &Value) -> Result<(), String> {
    for (field, check_values) in [("labels", true), ("annotations", false)] {
        let Some(map) = obj.pointer(&format!("/metadata/{field}")) else {
            continue;
        };
        if map.is_null() {
            continue;
        }
        let map = map
            .as_object()
            .ok_or_else(|| format!("metadata.{field}: Invalid value: must be a map of strings"))?;
        for (k, v) in map {
            if !qualified_key(k) {
                return Err(format!(
                    "metadata.{field}: Invalid value: {k:?}: a qualified name must be at most 63 alphanumeric characters, '-', '_' or '.', with an optional DNS subdomain prefix and '/'"
                ));
            }
            let Some(v) = v.as_str() else {
                return Err(format!(
                    "metadata.{field}.{k}: Invalid value: must be a string"
                ));
            };
            if check_values && !v.is_empty() && !qualified_part(v) {
                return Err(format!(
                    "metadata.labels: Invalid value: {v:?}: a valid label must be an empty string or at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character"
                ));
            }
        }
    }
    Ok(())
}

fn body_object(body: Value) -> Result<Map<String, Value>, ApiError> {
    match body {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::bad_request(format!(
            "the request body must be a JSON object, got {}",
            match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            }
        ))),
    }
}

/// Checks kind/apiVersion against the URL and fills them in when absent.
fn check_type(t: &ResourceType, m: &mut Map<String, Value>) -> Result<(), ApiError> {
    match m.get("kind").and_then(Value::as_str) {
        Some(k) if !k.is_empty() && k != t.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind of the provided object ({k}) does not match the resource {} ({})",
                t.plural, t.kind
            )));
        }
        _ => {}
    }
    match m.get("apiVersion").and_then(Value::as_str) {
        Some(v) if !v.is_empty() && v != t.api_version() => {
            return Err(ApiError::bad_request(format!(
                "the apiVersion of the provided object ({v}) does not match the request ({})",
                t.api_version()
            )));
        }
        _ => {}
    }
    m.insert("kind".into(), json!(t.kind));
    m.insert("apiVersion".into(), json!(t.api_version()));
    Ok(())
}

fn check_namespace(
    t: &ResourceType,
    meta: &mut Map<String, Value>,
    ns: Option<&str>,
) -> Result<(), ApiError> {
    if t.namespaced {
        let ns = ns.ok_or_else(|| {
            ApiError::bad_request(format!("{} is namespaced: use a namespaced path", t.plural))
        })?;
        match meta.get("namespace").and_then(Value::as_str) {
            Some(b) if !b.is_empty() && b != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {}
        }
        meta.insert("namespace".into(), json!(ns));
    } else {
        meta.remove("namespace");
    }
    Ok(())
}

/// A new object as the server stores it, minus `resourceVersion` (the store
/// stamps that). `name` is the final name (from the body or generated).
pub fn prepare_create(
    t: &ResourceType,
    ns: Option<&str>,
    body: Value,
    name: &str,
    uid: &str,
    now: &str,
) -> Result<Value, ApiError> {
    let mut m = body_object(body)?;
    check_type(t, &mut m)?;
    validate_name(name).map_err(|e| ApiError::invalid(&t.group, &t.plural, name, e))?;
    let meta = m
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
    check_namespace(t, meta, ns)?;
    meta.insert("name".into(), json!(name));
    meta.insert("uid".into(), json!(uid));
    meta.insert("creationTimestamp".into(), json!(now));
    meta.insert("generation".into(), json!(1));
    for f in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    ] {
        meta.remove(f);
    }
    let out = Value::Object(m);
    validate_labels(&out).map_err(|e| ApiError::invalid(&t.group, &t.plural, name, e))?;
    let Value::Object(mut m) = out else {
        return Err(ApiError::bad_request("the object must be a JSON object"));
    };
    if t.has_status
        && let StatusOnCreate::Reset(s) = &t.status_on_create
    {
        match s {
            Some(s) => m.insert("status".into(), s.clone()),
            None => m.remove("status"),
        };
    }
    Ok(Value::Object(m))
}

/// The name a create asks for: `metadata.name`, or `None` with the
/// `generateName` prefix when only that is given.
pub fn requested_name(body: &Value) -> Result<Result<String, String>, ApiError> {
    let n = str_at(body, "/metadata/name");
    if !n.is_empty() {
        return Ok(Ok(n.to_string()));
    }
    let g = str_at(body, "/metadata/generateName");
    if !g.is_empty() {
        return Ok(Err(g.to_string()));
    }
    Err(ApiError::unprocessable(
        "metadata.name: Required value: name or generateName is required",
    ))
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateScope {
    /// The main resource: everything but `status` when the type has a status subresource.
    Main,
    /// The `/status` subresource: only `status`.
    Status,
}

/// Spec-like content: everything except metadata, status and type info.
fn spec_part(obj: &Value) -> Vec<(&String, &Value)> {
    obj.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "kind" | "apiVersion")
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Applies an update (`body` is the full new object, from PUT or from a patch
/// applied to `existing`) under the rules of `scope`. Returns the object to store,
/// minus the new `resourceVersion`.
pub fn prepare_update(
    t: &ResourceType,
    existing: &Value,
    body: Value,
    scope: UpdateScope,
) -> Result<Value, ApiError> {
    let ex_name = name(existing).to_string();
    let mut m = body_object(body)?;
    check_type(t, &mut m)?;
    let meta = m
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
    let body_name = meta.get("name").and_then(Value::as_str).unwrap_or("");
    if !body_name.is_empty() && body_name != ex_name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({ex_name})"
        )));
    }
    let ns = namespace(existing);
    check_namespace(t, meta, (!ns.is_empty()).then_some(ns))?;
    let rv = meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !rv.is_empty() && rv != resource_version(existing) {
        return Err(ApiError::stale(&t.group, &t.plural, &ex_name));
    }
    let mut new = match scope {
        UpdateScope::Main => {
            meta.insert("name".into(), json!(ex_name));
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match existing.pointer(&format!("/metadata/{f}")) {
                    Some(v) => meta.insert(f.into(), v.clone()),
                    None => meta.remove(f),
                };
            }
            meta.remove("managedFields");
            if t.has_status {
                match existing.get("status") {
                    Some(s) => m.insert("status".into(), s.clone()),
                    None => m.remove("status"),
                };
            }
            Value::Object(m)
        }
        UpdateScope::Status => {
            let mut new = existing.clone();
            if let Some(o) = new.as_object_mut() {
                match m.remove("status") {
                    Some(s) => o.insert("status".into(), s),
                    None => o.remove("status"),
                };
            }
            new
        }
    };
    if scope == UpdateScope::Main
        && let Some(why) = immutable::violation(t, existing, &new)
    {
        return Err(ApiError::invalid(&t.group, &t.plural, &ex_name, why));
    }
    validate_labels(&new).map_err(|e| ApiError::invalid(&t.group, &t.plural, &ex_name, e))?;
    if is_deleting(existing) {
        let old = finalizers(existing);
        if let Some(added) = finalizers(&new).into_iter().find(|f| !old.contains(f)) {
            return Err(ApiError::invalid(
                &t.group,
                &t.plural,
                &ex_name,
                format!(
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers [{added:?}]"
                ),
            ));
        }
    }
    if spec_part(existing) != spec_part(&new) {
        let g = existing
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        set_meta(&mut new, "generation", json!(g + 1));
    }
    Ok(new)
}

/// True when two stored objects differ in more than their resourceVersion,
/// so a no-op write neither bumps the version nor emits an event.
pub fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        v
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::Registry;

    fn pods() -> ResourceType {
        Registry::with_builtins()
            .get("", "v1", "pods")
            .cloned()
            .unwrap()
    }

    fn stored_pod() -> Value {
        json!({"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": "5",
                "creationTimestamp": "t0", "generation": 1},
            "spec": {"containers": []}, "status": {"phase": "Pending"}})
    }

    #[test]
    fn create_fills_server_fields_and_resets_pod_status() {
        let body = json!({"metadata": {"name": "p", "resourceVersion": "77"}, "status": {"phase": "Running"}});
        let o = prepare_create(&pods(), Some("ns"), body, "p", "u1", "t0").unwrap();
        assert_eq!(o["kind"], "Pod");
        assert_eq!(o["metadata"]["namespace"], "ns");
        assert_eq!(o["metadata"]["uid"], "u1");
        assert!(o["metadata"].get("resourceVersion").is_none());
        assert_eq!(o["status"], json!({"phase": "Pending"}));
    }

    #[test]
    fn create_rejects_bad_input() {
        let t = pods();
        let cases = [
            (json!([1]), 400),
            (json!({"kind": "Node", "metadata": {"name": "p"}}), 400),
            (
                json!({"metadata": {"name": "p", "namespace": "other"}}),
                400,
            ),
            (json!({"metadata": "x"}), 400),
        ];
        for (body, code) in cases {
            let e = prepare_create(&t, Some("ns"), body.clone(), "p", "u", "t").unwrap_err();
            assert_eq!(e.code, code, "{body}");
        }
        let e = prepare_create(&t, Some("ns"), json!({}), "Bad_Name", "u", "t").unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(requested_name(&json!({})).unwrap_err().code, 422);
        assert_eq!(
            requested_name(&json!({"metadata": {"generateName": "x-"}})).unwrap(),
            Err("x-".to_string())
        );
    }

    #[test]
    fn update_checks_resource_version_and_keeps_status() {
        let t = pods();
        let ex = stored_pod();
        let mut body = ex.clone();
        body["metadata"]["resourceVersion"] = json!("4");
        assert_eq!(
            prepare_update(&t, &ex, body, UpdateScope::Main)
                .unwrap_err()
                .code,
            409
        );

        let mut body = ex.clone();
        body["status"]["phase"] = json!("Running");
        body["spec"]["activeDeadlineSeconds"] = json!(30);
        body["metadata"]["uid"] = json!("forged");
        let new = prepare_update(&t, &ex, body.clone(), UpdateScope::Main).unwrap();
        assert_eq!(new["status"]["phase"], "Pending");
        assert_eq!(new["spec"]["activeDeadlineSeconds"], 30);
        assert_eq!(new["metadata"]["uid"], "u1");
        assert_eq!(new["metadata"]["generation"], 2);

        let new = prepare_update(&t, &ex, body, UpdateScope::Status).unwrap();
        assert_eq!(new["status"]["phase"], "Running");
        assert!(new["spec"].get("activeDeadlineSeconds").is_none());
        let mut bind = ex.clone();
        bind["spec"]["nodeName"] = json!("n1");
        let err = prepare_update(&t, &ex, bind, UpdateScope::Main).unwrap_err();
        assert_eq!(err.code, 422, "pods bind through pods/binding only");
        assert_eq!(new["metadata"]["generation"], 1);
    }

    #[test]
    fn no_new_finalizers_while_deleting() {
        let t = pods();
        let mut ex = stored_pod();
        ex["metadata"]["deletionTimestamp"] = json!("t1");
        ex["metadata"]["finalizers"] = json!(["a"]);
        let mut body = ex.clone();
        body["metadata"]["finalizers"] = json!(["a", "b"]);
        assert_eq!(
            prepare_update(&t, &ex, body, UpdateScope::Main)
                .unwrap_err()
                .code,
            422
        );
        let mut body = ex.clone();
        body["metadata"]["finalizers"] = json!([]);
        let new = prepare_update(&t, &ex, body, UpdateScope::Main).unwrap();
        assert_eq!(new["metadata"]["deletionTimestamp"], "t1");
    }

    #[test]
    fn label_rules() {
        let with = |labels: Value| json!({"metadata": {"labels": labels}});
        let cases = [
            (
                json!({"app": "web", "lvm.lvmpin.io/vg": "vg-1", "e": ""}),
                true,
            ),
            (json!({"app": "-web"}), false),
            (json!({"app": "x".repeat(64)}), false),
            (json!({"Bad Key": "x"}), false),
            (json!({"UPPER.example.com/x": "y"}), false),
            (json!({"app": 5}), false),
            (json!(null), true),
            (json!("str"), false),
        ];
        for (labels, ok) in cases {
            assert_eq!(
                validate_labels(&with(labels.clone())).is_ok(),
                ok,
                "{labels}"
            );
        }
        let ann = json!({"metadata": {"annotations": {"note": "any text: at all!"}}});
        assert!(validate_labels(&ann).is_ok());
    }

    #[test]
    fn retain_owners_drops_empty_list() {
        let mut o = json!({"metadata": {"ownerReferences": [{"uid": "a"}, {"uid": "b"}]}});
        retain_owners(&mut o, |u| u == "b");
        assert_eq!(owner_uids(&o), vec!["b".to_string()]);
        retain_owners(&mut o, |_| false);
        assert!(o["metadata"].get("ownerReferences").is_none());
    }
}
