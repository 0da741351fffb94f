//! TokenReview (authentication.k8s.io/v1) and SubjectAccessReview
//! (authorization.k8s.io/v1) creates, for components that guard their own
//! endpoints with the API server's judgement (the extender's debug views).
//!
//! The simulator has no authentication or authorization: every non-empty
//! token is the user `sim-admin` (group `system:masters`) and every access
//! is allowed. As on the real server, reviews are answered and never stored
//! (k8s.io/kubernetes, pkg/registry/authentication/tokenreview/storage.go and
//! pkg/registry/authorization/subjectaccessreview/rest.go, `REST.Create`).

use serde_json::{Value, json};

use super::resources::ResourceType;
use super::status::ApiError;

/// The one user every token stands for.
pub const SIM_USER: &str = "sim-admin";

/// The answer to a create of `t`, or None when `t` is not a review.
pub fn answer(t: &ResourceType, body: &Value) -> Option<Result<Value, ApiError>> {
    match (t.group.as_str(), t.plural.as_str()) {
        ("authentication.k8s.io", "tokenreviews") => Some(token_review(t, body)),
        ("authorization.k8s.io", "subjectaccessreviews") => Some(access_review(t, body)),
        _ => None,
    }
}

fn token_review(t: &ResourceType, body: &Value) -> Result<Value, ApiError> {
    let token = body.pointer("/spec/token").and_then(Value::as_str);
    if token.is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    Ok(json!({
        "apiVersion": t.api_version(),
        "kind": t.kind,
        "metadata": {"creationTimestamp": null},
        "spec": body.get("spec").cloned().unwrap_or(json!({})),
        "status": {
            "authenticated": true,
            "user": {"username": SIM_USER, "groups": ["system:masters", "system:authenticated"]},
        },
    }))
}

fn access_review(t: &ResourceType, body: &Value) -> Result<Value, ApiError> {
    let spec = body.get("spec").cloned().unwrap_or(json!({}));
    let has = |k: &str| spec.get(k).is_some_and(|v| !v.is_null());
    let who = spec
        .get("user")
        .and_then(Value::as_str)
        .is_some_and(|u| !u.is_empty())
        || spec
            .get("groups")
            .and_then(Value::as_array)
            .is_some_and(|g| !g.is_empty());
    let problem = if has("resourceAttributes") == has("nonResourceAttributes") {
        Some("spec: exactly one of nonResourceAttributes or resourceAttributes must be specified")
    } else if !who {
        Some("spec.user: at least one of user or group must be specified")
    } else {
        None
    };
    if let Some(p) = problem {
        return Err(ApiError::invalid(&t.group, &t.plural, "", p));
    }
    Ok(json!({
        "apiVersion": t.api_version(),
        "kind": t.kind,
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": {"allowed": true, "reason": "the lvmpin simulator authorizes every request"},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::Registry;

    fn ty(group: &str, plural: &str) -> ResourceType {
        Registry::with_builtins()
            .get(group, "v1", plural)
            .cloned()
            .unwrap()
    }

    #[test]
    fn reviews_table() {
        let tr = ty("authentication.k8s.io", "tokenreviews");
        let sar = ty("authorization.k8s.io", "subjectaccessreviews");
        let attrs = json!({"verb": "get", "group": "lvmpin.io", "resource": "lvmnodes"});
        let cases: Vec<(&ResourceType, Value, Option<&str>)> = vec![
            (
                &tr,
                json!({"spec": {"token": "t"}}),
                Some("/status/authenticated"),
            ),
            (&tr, json!({"spec": {"token": ""}}), None),
            (&tr, json!({}), None),
            (
                &sar,
                json!({"spec": {"user": "u", "resourceAttributes": attrs}}),
                Some("/status/allowed"),
            ),
            (
                &sar,
                json!({"spec": {"groups": ["g"], "resourceAttributes": attrs}}),
                Some("/status/allowed"),
            ),
            (&sar, json!({"spec": {"resourceAttributes": attrs}}), None),
            (&sar, json!({"spec": {"user": "u"}}), None),
            (
                &sar,
                json!({"spec": {"user": "u", "resourceAttributes": attrs, "nonResourceAttributes": {"path": "/x", "verb": "get"}}}),
                None,
            ),
        ];
        for (t, body, ok_at) in cases {
            let got = answer(t, &body).expect("a review type");
            match (got, ok_at) {
                (Ok(v), Some(ptr)) => {
                    assert_eq!(v.pointer(ptr), Some(&json!(true)), "{body}");
                    assert_eq!(v["kind"], json!(t.kind));
                }
                (Err(_), None) => {}
                (got, _) => panic!("{body}: {got:?}"),
            }
        }
        let ok = answer(&tr, &json!({"spec": {"token": "t"}}))
            .unwrap()
            .unwrap();
        assert_eq!(ok.pointer("/status/user/username"), Some(&json!(SIM_USER)));
        assert!(answer(&ty("", "pods"), &json!({})).is_none());
    }
}
