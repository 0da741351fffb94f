//! Carrying out `plan`'s actions against the API server. Every destructive
//! step first checks, live rather than from the cache, that the Node is still
//! gone, and names the exact object (uid precondition or JSON-patch test), so
//! a node that came back or an object that was replaced is left alone.

use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource};
use lvmpin_api::names::PV_FINALIZER;
use lvmpin_api::patch::remove_selected_node_patch;
use serde_json::json;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::plan::{Action, Key, Why};

/// Run one action; failures are logged and counted, and the next pass
/// tries again.
pub async fn run(ctx: &Context, action: Action) {
    let name = action_name(&action);
    let result = match action {
        Action::Reselect { claim, node, why } => reselect(ctx, &claim, &node, &why).await,
        Action::Keep {
            claim,
            uid,
            volume,
            node,
        } => {
            if !ctx.first_report(&uid) {
                return;
            }
            let note = format!(
                "volume {volume} was on node {node}, whose Node object is gone; node-loss policy \
                 keep: the claim stays and its pods cannot start. Delete the claim for a fresh, empty \
                 volume elsewhere, or set lvmpin.io/node-loss-policy=recreate"
            );
            event(
                ctx,
                claim_ref(&claim, &uid),
                EventType::Warning,
                "NodeLost",
                note,
            )
            .await;
            Ok(true)
        }
        Action::BadPolicy {
            claim,
            uid,
            node,
            message,
        } => {
            if !ctx.first_report(&uid) {
                return;
            }
            let note = format!("node {node} is gone; {message}: the claim is kept");
            event(
                ctx,
                claim_ref(&claim, &uid),
                EventType::Warning,
                "InvalidNodeLossPolicy",
                note,
            )
            .await;
            Ok(true)
        }
        Action::Recreate {
            claim,
            uid,
            volume,
            node,
            pods,
        } => recreate(ctx, &claim, &uid, &volume, &node, &pods).await,
        Action::RemoveVolume { name, uid, node } => remove_volume(ctx, &name, &uid, &node).await,
    };
    match result {
        Ok(true) => ctx.metrics.action(name, "done"),
        Ok(false) => ctx.metrics.action(name, "skipped"),
        Err(e) => {
            tracing::warn!(action = name, error = %e, "node-loss action failed; will retry");
            ctx.metrics.action(name, "failed");
        }
    }
}

fn action_name(a: &Action) -> &'static str {
    match a {
        Action::Reselect { .. } => "reselect",
        Action::Keep { .. } => "keep",
        Action::BadPolicy { .. } => "bad_policy",
        Action::Recreate { .. } => "recreate",
        Action::RemoveVolume { .. } => "remove_volume",
    }
}

fn json_patch(ops: serde_json::Value) -> Result<Patch<()>> {
    Ok(Patch::Json(serde_json::from_value::<json_patch::Patch>(
        ops,
    )?))
}

async fn ensure_gone(ctx: &Context, node: &str) -> Result<()> {
    match Api::<Node>::all(ctx.client.clone()).get_opt(node).await? {
        None => Ok(()),
        Some(_) => Err(Error::NodeBack(node.to_string())),
    }
}

/// Conflict-like answers mean the object changed or went away first.
fn changed_first(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if matches!(s.code, 404 | 409 | 422))
}

fn claim_ref(claim: &Key, uid: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: Some(claim.namespace.clone()),
        name: Some(claim.name.clone()),
        uid: Some(uid.to_string()),
        ..Default::default()
    }
}

async fn event(
    ctx: &Context,
    regarding: ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    tracing::info!(reason, object = ?regarding.name, "{note}");
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "NodeLoss".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &regarding).await {
        tracing::warn!(error = %e, reason, "could not publish event");
    }
}

async fn reselect(ctx: &Context, claim: &Key, node: &str, why: &Why) -> Result<bool> {
    if *why == Why::NodeGone {
        ensure_gone(ctx, node).await?;
    }
    let api = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &claim.namespace);
    let patched = api
        .patch(
            &claim.name,
            &PatchParams::default(),
            &json_patch(remove_selected_node_patch(node))?,
        )
        .await;
    let obj = match patched {
        Ok(o) => o,
        Err(e) if changed_first(&e) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let (reason, note) = match why {
        Why::NodeGone => (
            "SelectedNodeGone",
            format!(
                "node {node} was chosen for this claim but its Node object is gone; the claim goes back to the scheduler"
            ),
        ),
        Why::AgentSilent { last_report } => (
            "SelectedNodeSilent",
            format!(
                "node {node} was chosen for this claim but its lvmpin agent has not reported since {last_report}; the claim goes back to the scheduler"
            ),
        ),
    };
    event(ctx, obj.object_ref(&()), EventType::Warning, reason, note).await;
    Ok(true)
}

async fn recreate(
    ctx: &Context,
    claim: &Key,
    uid: &str,
    volume: &str,
    node: &str,
    pods: &[(Key, String)],
) -> Result<bool> {
    ensure_gone(ctx, node).await?;
    event(
        ctx,
        claim_ref(claim, uid),
        EventType::Warning,
        "RecreatingClaim",
        format!(
            "volume {volume} was on node {node}, whose Node object is gone; node-loss policy recreate: \
             deleting this claim and its {} pod(s) so that a fresh, empty volume is made elsewhere",
            pods.len()
        ),
    )
    .await;
    // The pods' node is gone, so no kubelet will confirm a graceful end.
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    for (pod, pod_uid) in pods {
        let api = Api::<Pod>::namespaced(ctx.client.clone(), &pod.namespace);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(pod_uid.clone()),
                resource_version: None,
            }),
            ..now.clone()
        };
        match api.delete(&pod.name, &params).await {
            Ok(_) => {}
            Err(e) if changed_first(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let api = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &claim.namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&claim.name, &params).await {
        Ok(_) => Ok(true),
        Err(e) if changed_first(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn remove_volume(ctx: &Context, name: &str, uid: &str, node: &str) -> Result<bool> {
    ensure_gone(ctx, node).await?;
    let api = Api::<PersistentVolume>::all(ctx.client.clone());
    let Some(pv) = api.get_opt(name).await? else {
        return Ok(false);
    };
    if pv.metadata.uid.as_deref() != Some(uid) {
        return Ok(false);
    }
    let finalizers = pv.metadata.finalizers.clone().unwrap_or_default();
    if let Some(i) = finalizers.iter().position(|f| f == PV_FINALIZER) {
        let patch = json!([
            {"op": "test", "path": "/metadata/uid", "value": uid},
            {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": PV_FINALIZER},
            {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
        ]);
        match api
            .patch(name, &PatchParams::default(), &json_patch(patch)?)
            .await
        {
            Ok(_) => {}
            Err(e) if changed_first(&e) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let deleted = match api.delete(name, &params).await {
        Ok(_) => true,
        Err(e) if changed_first(&e) => false,
        Err(e) => return Err(e.into()),
    };
    if deleted {
        event(
            ctx,
            pv.object_ref(&()),
            EventType::Normal,
            "StrandedVolumeRemoved",
            format!(
                "node {node} is gone with the LV behind this volume, and its claim was deleted; \
                 the PersistentVolume was removed from the API (no disk was touched)"
            ),
        )
        .await;
    }
    Ok(deleted)
}
