//! The two patch formats the server accepts, applied to an object's JSON:
//! JSON merge patch (RFC 7386) and JSON patch (RFC 6902). Server-side apply and
//! strategic merge patch are refused: lvmpin's binaries use neither.

use serde_json::Value;

use super::status::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
}

/// The patch format named by a request's `Content-Type`.
pub fn patch_kind(content_type: &str) -> Result<PatchKind, ApiError> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
            Err(ApiError::unsupported_media_type(
                "server-side apply is not supported by the lvmpin simulator: use a merge patch (application/merge-patch+json) or a JSON patch (application/json-patch+json)",
            ))
        }
        "application/strategic-merge-patch+json" => Err(ApiError::unsupported_media_type(
            "strategic merge patch is not supported by the lvmpin simulator: use a merge patch (application/merge-patch+json) or a JSON patch (application/json-patch+json)",
        )),
        other => Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format ({other:?}) - accepted media types include: application/json-patch+json, application/merge-patch+json"
        ))),
    }
}

/// `doc` with the patch in `body` applied. Malformed patches are 400s; a JSON
/// patch that cannot be applied (failed `test`, missing path) is a 422 as in
/// the real server.
pub fn apply(kind: PatchKind, doc: &Value, body: &[u8]) -> Result<Value, ApiError> {
    match kind {
        PatchKind::Merge => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid merge patch JSON: {e}")))?;
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "a merge patch for an object must be a JSON object",
                ));
            }
            let mut out = doc.clone();
            json_patch::merge(&mut out, &patch);
            Ok(out)
        }
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            let mut out = doc.clone();
            json_patch::patch(&mut out, &ops).map_err(|e| {
                ApiError::unprocessable(format!("the JSON patch could not be applied: {e}"))
            })?;
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types() {
        assert_eq!(
            patch_kind("application/merge-patch+json").unwrap(),
            PatchKind::Merge
        );
        assert_eq!(
            patch_kind("application/json-patch+json; charset=utf-8").unwrap(),
            PatchKind::Json
        );
        for ct in [
            "application/apply-patch+yaml",
            "application/strategic-merge-patch+json",
            "text/plain",
            "",
        ] {
            assert_eq!(patch_kind(ct).unwrap_err().code, 415, "{ct}");
        }
    }

    #[test]
    fn merge_patch_sets_and_removes() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let out = apply(
            PatchKind::Merge,
            &doc,
            br#"{"metadata":{"labels":{"a":null,"c":"3"}}}"#,
        )
        .unwrap();
        assert_eq!(out, json!({"metadata": {"labels": {"b": "2", "c": "3"}}}));
        assert_eq!(
            apply(PatchKind::Merge, &doc, b"{nope").unwrap_err().code,
            400
        );
        assert_eq!(apply(PatchKind::Merge, &doc, b"[]").unwrap_err().code, 400);
    }

    #[test]
    fn json_patch_with_escapes_and_test() {
        let doc = json!({"metadata": {"annotations": {"lvm.lvmpin.io/x": "1"}}});
        let ok = br#"[{"op":"test","path":"/metadata/annotations/lvm.lvmpin.io~1x","value":"1"},
                      {"op":"replace","path":"/metadata/annotations/lvm.lvmpin.io~1x","value":"2"}]"#;
        let out = apply(PatchKind::Json, &doc, ok).unwrap();
        assert_eq!(out["metadata"]["annotations"]["lvm.lvmpin.io/x"], "2");
        let failing =
            br#"[{"op":"test","path":"/metadata/annotations/lvm.lvmpin.io~1x","value":"9"}]"#;
        assert_eq!(apply(PatchKind::Json, &doc, failing).unwrap_err().code, 422);
        assert_eq!(
            apply(PatchKind::Json, &doc, br#"[{"op":"bogus"}]"#)
                .unwrap_err()
                .code,
            400
        );
        let missing = br#"[{"op":"remove","path":"/spec/x"}]"#;
        assert_eq!(apply(PatchKind::Json, &doc, missing).unwrap_err().code, 422);
    }
}
