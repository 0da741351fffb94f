//! The agent's part of VolumeSnapshots: for each VolumeSnapshotContent the
//! snapshot-controller labels with this node (`managed-by`, distributed
//! snapshotting), it does what the upstream csi-snapshotter sidecar does for
//! a CSI driver (the step is `snapshot_plan::content_step`): takes the thin
//! snapshot, fills the content's status, and on deletion applies the
//! deletion policy and drops the finalizer. A pre-provisioned content
//! (`spec.source.snapshotHandle`) is checked against this node's lvmpin
//! snapshot LVs instead; one that no node has claimed yet is labelled by
//! the agent that holds its LV. Snapshots stay off, without errors, while the
//! snapshot CRDs are not installed.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Client, Resource, ResourceExt};
use lvmpin_api::VolumeId;
use lvmpin_api::snapshot::{
    ANN_BEING_CREATED, CONTENT_FINALIZER, LABEL_MANAGED_BY, VolumeSnapshot, VolumeSnapshotContent,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api_util::json_patch;
use crate::backend::{CreateSnapshot, SnapshotOwner, VolumeBackend};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::events;
use crate::snapshot_plan::{
    ContentStep, HandleTarget, check_refusal, content_step, creation_time_nanos, snapshot_refusal,
    unclaimed_handle,
};

/// How often a missing snapshot API is looked for again.
const RECHECK: Duration = Duration::from_secs(300);

/// Whether the API server serves VolumeSnapshotContents (a 404 means the
/// CRDs are not installed).
pub async fn snapshot_api_present(client: &Client) -> std::result::Result<bool, kube::Error> {
    let api = Api::<VolumeSnapshotContent>::all(client.clone());
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits for the snapshot API, then runs the content controller until
/// `shutdown`. Only this node's contents are watched (by label).
pub async fn run<B: VolumeBackend>(ctx: Arc<Context<B>>, shutdown: CancellationToken) {
    let mut logged = false;
    loop {
        let present = tokio::select! {
            _ = shutdown.cancelled() => return,
            present = snapshot_api_present(&ctx.client) => present,
        };
        match present {
            Ok(true) => break,
            Ok(false) if !logged => {
                info!(
                    "snapshot.storage.k8s.io CRDs are not installed: VolumeSnapshots are off; looking again every {RECHECK:?}"
                );
                logged = true;
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, "cannot look up the snapshot API"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RECHECK) => {}
        }
    }
    let selector = format!("{LABEL_MANAGED_BY}={}", ctx.config.node_name);
    info!(%selector, "watching this node's VolumeSnapshotContents");
    let api = Api::<VolumeSnapshotContent>::all(ctx.client.clone());
    let own = Controller::new(api.clone(), watcher::Config::default().labels(&selector))
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = ?e, "snapshot content controller");
            }
        });
    // Contents without the label: the snapshot-controller labels every
    // content it creates, so these are pre-provisioned ones (or another
    // driver's, skipped unread).
    let unlabelled = format!("!{LABEL_MANAGED_BY}");
    let unclaimed = Controller::new(api, watcher::Config::default().labels(&unlabelled))
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile_unclaimed, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = ?e, "unclaimed snapshot content controller");
            }
        });
    futures::join!(own, unclaimed);
}

/// Labels a pre-provisioned content with this node when its handle names one
/// of this node's lvmpin snapshot LVs (`snapshot_plan::unclaimed_handle`).
/// Anything else is left alone: the LV may be on another node.
pub async fn reconcile_unclaimed<B: VolumeBackend>(
    content: Arc<VolumeSnapshotContent>,
    ctx: Arc<Context<B>>,
) -> Result<Action> {
    let Some(snapshot) = unclaimed_handle(&content, &ctx.config.volume_groups) else {
        return Ok(Action::await_change());
    };
    let scan = ctx.backend.scan().await?;
    if HandleTarget::of(scan.volume(&snapshot.vg, &snapshot.lv)) != HandleTarget::Snapshot {
        return Ok(Action::await_change());
    }
    let name = content.name_any();
    // The resourceVersion makes the label a compare-and-swap: of two agents
    // that both answer, the second gets a conflict and, on its retry, finds
    // the content labelled.
    let patch = json!({"metadata": {
        "resourceVersion": content.resource_version(),
        "labels": {LABEL_MANAGED_BY: ctx.config.node_name},
    }});
    Api::<VolumeSnapshotContent>::all(ctx.client.clone())
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    info!(content = %name, %snapshot, "pre-provisioned content claimed for this node");
    ctx.backoff.reset(&format!("VolumeSnapshotContent/{name}"));
    Ok(Action::await_change())
}

pub fn error_policy<B: VolumeBackend>(
    content: Arc<VolumeSnapshotContent>,
    err: &Error,
    ctx: Arc<Context<B>>,
) -> Action {
    ctx.metrics.operation("snapshot", err.metric_label());
    let key = format!("VolumeSnapshotContent/{}", content.name_any());
    let delay = ctx.backoff.next(&key, err.is_permanent());
    warn!(content = %content.name_any(), error = %err, retry_in = ?delay, "snapshot content reconcile failed");
    Action::requeue(delay)
}

pub async fn reconcile<B: VolumeBackend>(
    content: Arc<VolumeSnapshotContent>,
    ctx: Arc<Context<B>>,
) -> Result<Action> {
    let name = content.name_any();
    let api = Api::<VolumeSnapshotContent>::all(ctx.client.clone());
    let step = content_step(&content);
    tracing::debug!(content = %name, ?step, "snapshot content step");
    match step {
        ContentStep::Ignore(_) | ContentStep::Done => {}
        ContentStep::ClearBeingCreated => clear_being_created(&api, &name).await?,
        ContentStep::Create { source, name: lv } => {
            create(&ctx, &api, &content, &source, &lv).await?;
        }
        ContentStep::Check { snapshot } => check(&ctx, &api, &content, &snapshot).await?,
        ContentStep::CheckFailed(message) => {
            refuse(&ctx, &api, &content, Failure::Check, &message).await?;
        }
        ContentStep::Delete { snapshot } => {
            let removed = ctx
                .backend
                .remove_snapshot(&snapshot.vg, &snapshot.lv, &owner(&content))
                .await;
            match removed {
                Ok(()) => {}
                // A pre-provisioned content usually names a snapshot LV made
                // for another content (re-imported after Retain), whose tags
                // name that one: nothing proves the LV is this content's, so
                // it stays, the finalizer goes, and a Warning Event says so.
                Err(Error::OwnedByAnother { .. })
                    if content.spec.source.snapshot_handle.is_some() =>
                {
                    let note = format!(
                        "snapshot {snapshot} is left in place: its lvmpin tags name another VolumeSnapshotContent, so deletionPolicy Delete does not remove it"
                    );
                    warn!(content = %name, %note, "snapshot not deleted");
                    events::warn(
                        &ctx.recorder,
                        &content.object_ref(&()),
                        "SnapshotDeleteSkipped",
                        "DeleteSnapshot",
                        note,
                    )
                    .await;
                }
                Err(e) => return Err(e),
            }
            ctx.status_dirty.notify_one();
            // As the sidecar's `clearVolumeContentStatus`: the handle goes
            // with the snapshot, so a retry does not delete twice.
            let clear = json!({"status": {"snapshotHandle": null, "readyToUse": null,
                "creationTime": null, "restoreSize": null}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&clear))
                .await?;
            ctx.metrics.operation("snapshot_delete", "success");
            info!(content = %name, snapshot = %snapshot, "snapshot deleted");
            release_finalizer(&api, &content).await?;
        }
        ContentStep::ReleaseFinalizer => release_finalizer(&api, &content).await?,
    }
    ctx.backoff.reset(&format!("VolumeSnapshotContent/{name}"));
    Ok(Action::await_change())
}

fn owner(content: &VolumeSnapshotContent) -> SnapshotOwner {
    SnapshotOwner {
        content_uid: content.uid().unwrap_or_default(),
        content_name: content.name_any(),
    }
}

async fn create<B: VolumeBackend>(
    ctx: &Context<B>,
    api: &Api<VolumeSnapshotContent>,
    content: &VolumeSnapshotContent,
    source: &VolumeId,
    lv: &str,
) -> Result<()> {
    let name = content.name_any();
    // The checks read the scan only, so they come before the annotation: a
    // refused content is then left alone until it changes (setting and
    // clearing the annotation on every pass would wake this reconciler with
    // its own writes, for ever).
    let scan = ctx.backend.scan().await?;
    let found = scan
        .volume(&source.vg, &source.lv)
        .filter(|_| ctx.config.volume_groups.contains(&source.vg));
    let mut refusal = snapshot_refusal(
        source,
        found.map(|v| (v.pool.as_deref(), v.owner.is_some())),
    );
    if let Some(taken) = scan.volume(&source.vg, lv)
        && taken.snapshot_owner.as_ref() != Some(&owner(content))
    {
        refusal = Some(format!(
            "logical volume {}/{lv} exists and its tags do not name this content",
            source.vg
        ));
    }
    if let Some(message) = refusal {
        // A final error: the error is on the status and told on both objects.
        refuse(ctx, api, content, Failure::Create, &message).await?;
        return Ok(());
    }
    // Before the lvm call, as the sidecar: the snapshot-controller does not
    // let the content go while a create may be in flight.
    if !content.annotations().contains_key(ANN_BEING_CREATED) {
        let patch = json!({"metadata": {"annotations": {ANN_BEING_CREATED: "yes"}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    let Some(source_volume) = found else {
        return Ok(());
    };
    let restore_size = i64::try_from(source_volume.size_bytes).unwrap_or(i64::MAX);
    let made = ctx
        .backend
        .create_snapshot(CreateSnapshot {
            vg: source.vg.clone(),
            name: lv.to_string(),
            source: source.lv.clone(),
            owner: owner(content),
        })
        .await;
    let made = match made {
        Ok(v) => v,
        // Final errors: retrying cannot make the source thin.
        Err(e @ (Error::InvalidSource { .. } | Error::OwnedByAnother { .. })) => {
            refuse(ctx, api, content, Failure::Create, &e.to_string()).await?;
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    ctx.status_dirty.notify_one();
    let created = made
        .created_unix
        .map(creation_time_nanos)
        .unwrap_or_else(now_nanos);
    let status = json!({"status": {
        "snapshotHandle": VolumeId::new(made.vg.clone(), made.name.clone()).to_string(),
        "readyToUse": true,
        "creationTime": created,
        "restoreSize": restore_size,
        "error": null,
    }});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    clear_being_created(api, &name).await?;
    ctx.metrics.operation("snapshot", "success");
    info!(content = %name, snapshot = %format!("{}/{}", made.vg, made.name), "snapshot taken");
    Ok(())
}

/// A pre-provisioned content: the sidecar's `checkandUpdateContentStatus`,
/// with the scan in place of ListSnapshots. Reads only; the status is filled
/// when the handle names an lvmpin snapshot LV in a VG this agent serves.
async fn check<B: VolumeBackend>(
    ctx: &Context<B>,
    api: &Api<VolumeSnapshotContent>,
    content: &VolumeSnapshotContent,
    snapshot: &VolumeId,
) -> Result<()> {
    let scan = ctx.backend.scan().await?;
    let found = scan
        .volume(&snapshot.vg, &snapshot.lv)
        .filter(|_| ctx.config.volume_groups.contains(&snapshot.vg));
    let target = HandleTarget::of(found);
    if let Some(message) = check_refusal(snapshot, &ctx.config.node_name, target) {
        refuse(ctx, api, content, Failure::Check, &message).await?;
        return Ok(());
    }
    let Some(lv) = found else {
        return Ok(());
    };
    let created = lv
        .created_unix
        .map(creation_time_nanos)
        .unwrap_or_else(now_nanos);
    // A thin snapshot is as large as its origin was when taken: the size a
    // restore needs at least.
    let status = json!({"status": {
        "snapshotHandle": snapshot.to_string(),
        "readyToUse": true,
        "creationTime": created,
        "restoreSize": i64::try_from(lv.size_bytes).unwrap_or(i64::MAX),
        "error": null,
    }});
    let name = content.name_any();
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    ctx.metrics.operation("snapshot_check", "success");
    info!(content = %name, %snapshot, "pre-provisioned snapshot found and ready");
    Ok(())
}

fn now_nanos() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
}

/// Which sidecar step failed; the wording and Event reasons are the
/// sidecar's (`createSnapshot`, `checkandUpdateContentStatus`).
#[derive(Debug, Clone, Copy)]
enum Failure {
    Create,
    Check,
}

impl Failure {
    fn prefix(self) -> &'static str {
        match self {
            Failure::Create => "Failed to create snapshot",
            Failure::Check => "Failed to check and update snapshot content",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Failure::Create => "SnapshotCreationFailed",
            Failure::Check => "SnapshotContentCheckandUpdateFailed",
        }
    }

    fn action(self) -> &'static str {
        match self {
            Failure::Create => "CreateSnapshot",
            Failure::Check => "ListSnapshots",
        }
    }
}

/// The sidecar's `updateContentErrorStatusWithEvent`: the same message is
/// written (and told) once.
async fn refuse<B: VolumeBackend>(
    ctx: &Context<B>,
    api: &Api<VolumeSnapshotContent>,
    content: &VolumeSnapshotContent,
    failure: Failure,
    message: &str,
) -> Result<()> {
    let name = content.name_any();
    let note = format!("{}: {message}", failure.prefix());
    let same = content
        .status
        .as_ref()
        .and_then(|s| s.error.as_ref())
        .and_then(|e| e.message.as_deref())
        == Some(note.as_str());
    if content.annotations().contains_key(ANN_BEING_CREATED) {
        clear_being_created(api, &name).await?;
    }
    if same {
        return Ok(());
    }
    let time = ctx.now();
    let status = json!({"status": {"readyToUse": false, "error": {"message": note, "time": time}}});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    ctx.metrics.operation("snapshot", "refused");
    warn!(content = %name, %message, "snapshot refused");
    let (reason, action) = (failure.reason(), failure.action());
    events::warn(
        &ctx.recorder,
        &content.object_ref(&()),
        reason,
        action,
        note.clone(),
    )
    .await;
    let r = &content.spec.volume_snapshot_ref;
    if let (Some(ns), Some(snap)) = (&r.namespace, &r.name) {
        let regarding = ObjectReference {
            api_version: Some(VolumeSnapshot::api_version(&()).into_owned()),
            kind: Some(VolumeSnapshot::kind(&()).into_owned()),
            namespace: Some(ns.clone()),
            name: Some(snap.clone()),
            uid: r.uid.clone(),
            ..Default::default()
        };
        events::warn(&ctx.recorder, &regarding, reason, action, note).await;
    }
    Ok(())
}

async fn clear_being_created(api: &Api<VolumeSnapshotContent>, name: &str) -> Result<()> {
    let patch = json!({"metadata": {"annotations": {ANN_BEING_CREATED: null}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Drops our finalizer with a JSON patch that first tests the list, so a
/// finalizer added meanwhile is never lost.
async fn release_finalizer(
    api: &Api<VolumeSnapshotContent>,
    content: &VolumeSnapshotContent,
) -> Result<()> {
    let current = content.finalizers().to_vec();
    if !current.iter().any(|f| f == CONTENT_FINALIZER) {
        return Ok(());
    }
    let kept: Vec<&String> = current.iter().filter(|f| *f != CONTENT_FINALIZER).collect();
    let patch = json_patch(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": current},
        {"op": "replace", "path": "/metadata/finalizers", "value": kept},
    ]))?;
    api.patch(&content.name_any(), &PatchParams::default(), &patch)
        .await?;
    Ok(())
}
