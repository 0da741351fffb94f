//! PV reconciler: deletion of released volumes (see `deletion.rs` for the order).

use std::sync::Arc;

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, DeleteParams, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use crate::api_util::{is_not_found, json_patch};
use crate::backend::VolumeBackend;
use crate::context::Context;
use crate::deletion::{self, DeletionStep};
use crate::error::{Error, Result};
use crate::events;
use crate::volumes::remove_volume;

fn key(pv: &PersistentVolume) -> String {
    format!("pv/{}", pv.name_any())
}

pub async fn reconcile<B: VolumeBackend>(
    pv: Arc<PersistentVolume>,
    ctx: Arc<Context<B>>,
) -> Result<Action> {
    let result = reconcile_inner(&pv, &ctx).await;
    if result.is_ok() {
        ctx.backoff.reset(&key(&pv));
    }
    result
}

pub fn error_policy<B: VolumeBackend>(
    pv: Arc<PersistentVolume>,
    err: &Error,
    ctx: Arc<Context<B>>,
) -> Action {
    let delay = ctx.backoff.next(&key(&pv), err.is_permanent());
    warn!(pv = %pv.name_any(), error = %err, retry_in = ?delay, "volume reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_inner<B: VolumeBackend>(
    pv: &PersistentVolume,
    ctx: &Context<B>,
) -> Result<Action> {
    let (volume, delete_object) = match deletion::plan(pv, &ctx.config.node_name) {
        DeletionStep::Ignore | DeletionStep::Retain => return Ok(Action::await_change()),
        DeletionStep::DropFinalizer => {
            drop_finalizer(ctx, pv).await?;
            info!(pv = %pv.name_any(), "dropped the LV finalizer of a PV that is not reclaimed by deletion");
            return Ok(Action::await_change());
        }
        DeletionStep::Delete {
            volume,
            delete_object,
        } => (volume, delete_object),
    };
    let name = pv.name_any();
    if let Err(e) = remove_volume(ctx, &volume.vg, &volume.lv, &name).await {
        ctx.metrics.operation("delete", e.metric_label());
        if e.is_permanent() {
            events::warn(
                &ctx.recorder,
                &pv.object_ref(&()),
                "VolumeDeleteFailed",
                "Delete",
                e.to_string(),
            )
            .await;
        }
        return Err(e);
    }
    info!(pv = %name, lv = %volume, "removed logical volume");
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    if delete_object {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return done(ctx, delete_object),
            Err(e) => return Err(e.into()),
        }
    }
    drop_finalizer(ctx, pv).await?;
    done(ctx, delete_object)
}

async fn drop_finalizer<B>(ctx: &Context<B>, pv: &PersistentVolume) -> Result<()> {
    let Some(ops) = deletion::finalizer_removal_patch(pv) else {
        return Ok(());
    };
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match api
        .patch(&pv.name_any(), &PatchParams::default(), &json_patch(ops)?)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Counts a deletion once: the pass that deleted the PV object, not the
/// follow-up pass that only drops the finalizer.
fn done<B>(ctx: &Context<B>, counted: bool) -> Result<Action> {
    if counted {
        ctx.metrics.operation("delete", "success");
    }
    Ok(Action::await_change())
}
