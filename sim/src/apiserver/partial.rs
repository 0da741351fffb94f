//! `PartialObjectMetadata`: what a client gets when it asks for metadata only
//! (kube-rs `list_metadata`/`watch_metadata`, metadata informers), as the real
//! server answers `Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1`.

use serde_json::{Value, json};

/// True when the client's preferred form is metadata only (object or list).
pub fn wants_metadata(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=PartialObjectMetadata"))
}

pub fn metadata_only(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_everything_but_metadata() {
        let o = json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}});
        assert_eq!(
            metadata_only(&o),
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"name": "p"}})
        );
        assert!(wants_metadata(
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
        ));
        assert!(!wants_metadata("application/json"));
    }
}
