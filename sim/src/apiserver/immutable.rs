//! Update rules of the built-in types whose spec is (mostly) immutable, as the
//! real server's validation enforces them: a claim's spec except its requests
//! (and `volumeName`, settable once by the volume controller), and a pod's spec
//! except images, deadlines, tolerations and scheduling gates. Binding a pod
//! goes through `pods/binding`, never an update of `spec.nodeName`.

use serde_json::Value;

use super::resources::ResourceType;

fn without(spec: Option<&Value>, drop: &[&str]) -> Value {
    let mut s = spec.cloned().unwrap_or(Value::Null);
    if let Some(m) = s.as_object_mut() {
        for k in drop {
            m.remove(*k);
        }
    }
    s
}

fn claim_violation(old: &Value, new: &Value) -> Option<String> {
    let strip = |spec: Option<&Value>, keep_volume: bool| {
        let mut s = without(spec, &["volumeAttributesClassName"]);
        if let Some(r) = s.get_mut("resources").and_then(Value::as_object_mut) {
            r.remove("requests");
            if r.is_empty() {
                s.as_object_mut().map(|m| m.remove("resources"));
            }
        }
        if !keep_volume {
            s.as_object_mut().map(|m| m.remove("volumeName"));
        }
        s
    };
    let volume_set = old
        .pointer("/spec/volumeName")
        .and_then(Value::as_str)
        .is_some_and(|v| !v.is_empty());
    (strip(old.get("spec"), volume_set) != strip(new.get("spec"), volume_set)).then(|| {
        "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims".to_string()
    })
}

fn pod_violation(old: &Value, new: &Value) -> Option<String> {
    const MUTABLE: &[&str] = &[
        "activeDeadlineSeconds",
        "tolerations",
        "terminationGracePeriodSeconds",
        "schedulingGates",
    ];
    let strip = |spec: Option<&Value>| {
        let mut s = without(spec, MUTABLE);
        for list in ["containers", "initContainers"] {
            if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                    c.remove("image");
                }
            }
        }
        s
    };
    (strip(old.get("spec")) != strip(new.get("spec"))).then(|| {
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations), `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative); bind pods with the pods/binding subresource".to_string()
    })
}

/// Why updating `old` to `new` is forbidden, if it is.
pub fn violation(t: &ResourceType, old: &Value, new: &Value) -> Option<String> {
    match (t.group.as_str(), t.plural.as_str()) {
        ("", "persistentvolumeclaims") => claim_violation(old, new),
        ("", "pods") => pod_violation(old, new),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::Registry;
    use serde_json::json;

    #[test]
    fn claim_and_pod_rules() {
        let reg = Registry::with_builtins();
        let pvcs = reg.get("", "v1", "persistentvolumeclaims").unwrap();
        let pods = reg.get("", "v1", "pods").unwrap();
        let claim = |class: &str, size: &str, vol: &str| {
            json!({"spec": {"storageClassName": class, "volumeName": vol,
                "resources": {"requests": {"storage": size}}}})
        };
        let cases = [
            (claim("a", "1Gi", ""), claim("a", "2Gi", ""), true),
            (claim("a", "1Gi", ""), claim("a", "1Gi", "pv1"), true),
            (claim("a", "1Gi", "pv1"), claim("a", "1Gi", "pv2"), false),
            (claim("a", "1Gi", ""), claim("b", "1Gi", ""), false),
        ];
        for (old, new, ok) in cases {
            assert_eq!(violation(pvcs, &old, &new).is_none(), ok, "{old} -> {new}");
        }
        let pod = |node: &str, image: &str| json!({"spec": {"nodeName": node, "containers": [{"name": "c", "image": image}]}});
        assert!(violation(pods, &pod("", "a"), &pod("", "b")).is_none());
        assert!(violation(pods, &pod("", "a"), &pod("n1", "a")).is_some());
    }
}
