//! JSON patches more than one lvmpin component sends.

use serde_json::{Value, json};

use crate::names::ANN_SELECTED_NODE;

/// RFC 6901 escaping of one path segment.
fn pointer_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The reschedule signal: remove `volume.kubernetes.io/selected-node` from a
/// claim (as sig-storage-lib-external-provisioner does in
/// `controller/controller.go`, `rescheduleProvisioning`; docs/protocols.md,
/// "Reschedule"), so kube-scheduler's PreBind fails and the pod
/// is placed again. The `test` makes it apply only while the annotation still
/// names `node`: a newer choice of the scheduler is left alone.
pub fn remove_selected_node_patch(node: &str) -> Value {
    let path = format!(
        "/metadata/annotations/{}",
        pointer_segment(ANN_SELECTED_NODE)
    );
    json!([
        {"op": "test", "path": path, "value": node},
        {"op": "remove", "path": path},
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_slash() {
        assert_eq!(
            remove_selected_node_patch("n1"),
            json!([
                {"op": "test", "path": "/metadata/annotations/volume.kubernetes.io~1selected-node", "value": "n1"},
                {"op": "remove", "path": "/metadata/annotations/volume.kubernetes.io~1selected-node"}
            ])
        );
    }
}
