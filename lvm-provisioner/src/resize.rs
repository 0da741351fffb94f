//! Growing a bound claim's volume, in the external-resizer's place (the
//! protocol is in `expansion`, which plans; this file executes).

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use crate::backend::VolumeBackend;
use crate::claim_plan::claim_key as key;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::events;
use crate::expansion::{self, ExpansionStep, Write};
use crate::volumes::extend_volume;

pub async fn resize<B: VolumeBackend>(
    pvc: &PersistentVolumeClaim,
    class: Option<&StorageClass>,
    ctx: &Context<B>,
) -> Result<Action> {
    let pv_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    let pv = ctx.caches.volume(&pv_name);
    let step = expansion::plan(pvc, pv.as_deref(), class, &ctx.config.node_name);
    let new_size = match step {
        ExpansionStep::Nothing | ExpansionStep::WaitingForNode => return Ok(Action::await_change()),
        ExpansionStep::RefuseShrink {
            requested,
            capacity,
        } => {
            events::warn(
                &ctx.recorder,
                &pvc.object_ref(&()),
                "VolumeResizeFailed",
                "Resize",
                format!(
                    "requested {requested} bytes is less than the {capacity} bytes allocated before; LVM volumes of {} cannot shrink",
                    lvmpin_api::names::DRIVER_NAME
                ),
            )
            .await;
            ctx.metrics.operation("expand", "shrink_refused");
            return Ok(Action::await_change());
        }
        ExpansionStep::Start { new_size } | ExpansionStep::Resume { new_size } => new_size,
    };
    let Some(pv) = pv else {
        return Ok(Action::await_change());
    };
    let result = run_expansion(
        ctx,
        pvc,
        &pv,
        new_size,
        matches!(step, ExpansionStep::Start { .. }),
    )
    .await;
    ctx.metrics.operation(
        "expand",
        match &result {
            Ok(()) => "success",
            Err(e) => e.metric_label(),
        },
    );
    // API conflicts are routine (a stale cache) and retried quietly.
    if let Some(e) = result
        .as_ref()
        .err()
        .filter(|e| !matches!(e, Error::Kube(_)))
    {
        events::warn(
            &ctx.recorder,
            &pvc.object_ref(&()),
            "VolumeResizeFailed",
            "Resize",
            e.to_string(),
        )
        .await;
    }
    result.map(|()| Action::await_change())
}

/// Runs one resize: the writes before lvextend, lvextend itself (owner tags
/// checked), then the writes after it, each list in its order.
async fn run_expansion<B: VolumeBackend>(
    ctx: &Context<B>,
    pvc: &PersistentVolumeClaim,
    pv: &PersistentVolume,
    new_size: u64,
    start: bool,
) -> Result<()> {
    let pv_name = pv.name_any();
    let mut current = pvc.clone();
    if start {
        let writes = expansion::start_writes(
            &current,
            &pv_name,
            &ctx.config.node_name,
            new_size,
            &ctx.now(),
        );
        current = apply(ctx, pvc, current, &pv_name, writes).await?;
    }
    // The write succeeded; a claim read back without allocatedResources is
    // served by an API server with RecoverVolumeExpansionFailure off.
    let path = expansion::resize_path(&current);
    if path == expansion::ResizePath::Legacy {
        info!(claim = %key(pvc), "the API server keeps no allocatedResources; following the external-resizer's legacy path");
    }
    let handle = pv
        .spec
        .as_ref()
        .and_then(|s| s.csi.as_ref())
        .map(|c| c.volume_handle.clone())
        .unwrap_or_default();
    let id: lvmpin_api::VolumeId =
        handle
            .parse()
            .map_err(|e: lvmpin_api::VolumeIdError| Error::InvalidClaim {
                claim: key(pvc),
                message: e.to_string(),
            })?;
    let uid = pvc.metadata.uid.as_deref().unwrap_or_default();
    let volume = extend_volume(ctx, &id.vg, &id.lv, new_size, uid, &pv_name).await?;
    let writes = expansion::finish_writes(
        &current,
        &pv_name,
        new_size,
        volume.size_bytes,
        path,
        &ctx.now(),
    );
    apply(ctx, pvc, current, &pv_name, writes).await.map(drop)
}

/// Executes writes in order and returns the claim as the last write left it
/// (`pvc` names the claim and is what Events point at).
async fn apply<B>(
    ctx: &Context<B>,
    pvc: &PersistentVolumeClaim,
    mut claim: PersistentVolumeClaim,
    pv_name: &str,
    writes: Vec<Write>,
) -> Result<PersistentVolumeClaim> {
    let name = pvc.name_any();
    let reference = pvc.object_ref(&());
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &pvc.namespace().unwrap_or_default());
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pp = PatchParams::default();
    for write in writes {
        match write {
            Write::Claim(body) => {
                claim = claims.patch(&name, &pp, &Patch::Merge(body)).await?;
            }
            Write::ClaimStatus(mut body) => {
                body["metadata"]["resourceVersion"] = json!(claim.metadata.resource_version);
                claim = claims.patch_status(&name, &pp, &Patch::Merge(body)).await?;
            }
            Write::Volume(body) => {
                volumes.patch(pv_name, &pp, &Patch::Merge(body)).await?;
            }
            Write::Event { reason, message } => {
                events::normal(&ctx.recorder, &reference, reason, "Resize", message).await;
            }
        }
    }
    Ok(claim)
}
