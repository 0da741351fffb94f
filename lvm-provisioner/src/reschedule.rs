//! The reschedule signal: remove `volume.kubernetes.io/selected-node` from the
//! claim (as external-provisioner does in `controller.go`,
//! `rescheduleProvisioning`), so kube-scheduler's PreBind fails and the pod is
//! scheduled again, and the extender drops its reservation.

use serde_json::{Value, json};

use lvmpin_api::names::ANN_SELECTED_NODE;

/// JSON patch that removes selected-node only while it still names `node`: if
/// the scheduler has meanwhile chosen another node, the `test` fails and that
/// newer choice is left alone.
pub fn remove_selected_node_patch(node: &str) -> Value {
    let path = format!(
        "/metadata/annotations/{}",
        ANN_SELECTED_NODE.replace('~', "~0").replace('/', "~1")
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
