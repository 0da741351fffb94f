//! Claim reconciler: provisioning, reschedule and expansion.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use crate::api_util::{is_conflict, json_patch};
use crate::backend::{CreateVolume, Owner, VolumeBackend};
use crate::claim_plan::{ClaimDecision, ProvisionSpec, claim_class_name, decide};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::events;
use crate::expansion::{self, ExpansionStep};
use crate::pv_body;
use crate::volumes::{ensure_volume, extend_volume};
use lvmpin_api::patch::remove_selected_node_patch;

const CLASS_WAIT: Duration = Duration::from_secs(5);
/// Retry delay for a claim whose provisioning another call is running.
pub const IN_FLIGHT_WAIT: Duration = Duration::from_secs(2);

fn key(pvc: &PersistentVolumeClaim) -> String {
    format!(
        "pvc/{}/{}",
        pvc.namespace().unwrap_or_default(),
        pvc.name_any()
    )
}

pub async fn reconcile<B: VolumeBackend>(
    pvc: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context<B>>,
) -> Result<Action> {
    let action = reconcile_inner(&pvc, &ctx).await?;
    ctx.backoff.reset(&key(&pvc));
    Ok(action)
}

pub fn error_policy<B: VolumeBackend>(
    pvc: Arc<PersistentVolumeClaim>,
    err: &Error,
    ctx: Arc<Context<B>>,
) -> Action {
    let delay = ctx.backoff.next(&key(&pvc), err.is_permanent());
    warn!(claim = %key(&pvc), error = %err, retry_in = ?delay, "claim reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_inner<B: VolumeBackend>(
    pvc: &PersistentVolumeClaim,
    ctx: &Context<B>,
) -> Result<Action> {
    let class = claim_class_name(pvc).and_then(|n| ctx.caches.class(n));
    let bound = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|v| !v.is_empty());
    if bound {
        return expand(pvc, class.as_deref(), ctx).await;
    }
    match decide(pvc, class.as_deref(), &ctx.config.node_name) {
        ClaimDecision::Ignore(_) => Ok(Action::await_change()),
        ClaimDecision::WaitForClass(name) => {
            info!(claim = %key(pvc), class = name, "storage class not cached yet");
            Ok(Action::requeue(CLASS_WAIT))
        }
        ClaimDecision::Refuse { reason, message } => {
            ctx.metrics.operation("provision", "refused");
            events::warn(
                &ctx.recorder,
                &pvc.object_ref(&()),
                reason,
                "Provisioning",
                message,
            )
            .await;
            Ok(Action::await_change())
        }
        ClaimDecision::Provision(spec) => {
            let Some(class) = class else {
                return Ok(Action::requeue(CLASS_WAIT));
            };
            provision(ctx, pvc, &class, &spec).await
        }
    }
}

/// Creates the LV (idempotently) and its PV, or reschedules the claim.
pub async fn provision<B: VolumeBackend>(
    ctx: &Context<B>,
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
    spec: &ProvisionSpec,
) -> Result<Action> {
    let started = Instant::now();
    if let Some(existing) = ctx.caches.volume(&spec.volume_name) {
        let wanted = pv_body::build(spec, pvc, class, &ctx.config.node_name, spec.size_bytes);
        match pv_body::compare_existing(&wanted, &existing) {
            // Done already; the PV controller completes the binding.
            pv_body::ExistingPv::Same => return Ok(Action::await_change()),
            // Someone else's PV holds the name: making an LV now would only
            // make an orphan.
            pv_body::ExistingPv::Different(reason) => {
                let e = Error::ForeignVolume {
                    name: spec.volume_name.clone(),
                    claim: spec.claim_uid.clone(),
                    reason,
                };
                ctx.metrics.operation("provision", e.metric_label());
                events::warn(
                    &ctx.recorder,
                    &pvc.object_ref(&()),
                    "ProvisioningFailed",
                    "Provisioning",
                    e.to_string(),
                )
                .await;
                return Err(e);
            }
        }
    }
    // One provisioning per claim at a time: kube's Controller does not run
    // one object twice at once, but startup recovery and direct callers can,
    // and a second run would repeat lvm and the PV create and announce
    // success twice.
    let Some(_in_flight) = ctx.begin_provisioning(&spec.claim_uid) else {
        info!(claim = %key(pvc), "provisioning already under way; retrying later");
        return Ok(Action::requeue(IN_FLIGHT_WAIT));
    };
    let req = CreateVolume {
        vg: spec.vg.clone(),
        name: spec.volume_name.clone(),
        size_bytes: spec.size_bytes,
        thin_pool: spec.thin_pool.clone(),
        owner: Owner {
            claim_uid: spec.claim_uid.clone(),
            claim_namespace: spec.claim_namespace.clone(),
            claim_name: spec.claim_name.clone(),
            pv_name: spec.volume_name.clone(),
        },
    };
    // A class may name a VG this agent was not told to manage; for this node
    // that VG does not exist.
    let created = if let Some(problem) = &ctx.config.host_problem {
        // Reported unhealthy in the LvmNode too, so the claim goes elsewhere.
        Err(Error::Unsupported {
            message: problem.clone(),
        })
    } else if ctx.config.volume_groups.contains(&spec.vg) {
        ensure_volume(ctx, req).await
    } else {
        Err(Error::VgNotFound {
            vg: spec.vg.clone(),
        })
    };
    let volume = match created {
        Ok(v) => v,
        // A thin pool missing here is as final as a missing VG.
        Err(e) if e.needs_reschedule() || missing_pool(&e, spec) => {
            ctx.metrics.operation("provision", e.metric_label());
            reschedule(ctx, pvc, &e).await?;
            return Ok(Action::await_change());
        }
        Err(e) => {
            ctx.metrics.operation("provision", e.metric_label());
            if e.is_permanent() {
                events::warn(
                    &ctx.recorder,
                    &pvc.object_ref(&()),
                    "ProvisioningFailed",
                    "Provisioning",
                    e.to_string(),
                )
                .await;
            }
            return Err(e);
        }
    };
    let pv = pv_body::build(spec, pvc, class, &ctx.config.node_name, volume.size_bytes);
    let created = match create_pv(ctx, spec, &pv).await {
        Ok(c) => c,
        Err(e) => {
            ctx.metrics.operation("provision", e.metric_label());
            if e.is_permanent() {
                events::warn(
                    &ctx.recorder,
                    &pvc.object_ref(&()),
                    "ProvisioningFailed",
                    "Provisioning",
                    e.to_string(),
                )
                .await;
            }
            return Err(e);
        }
    };
    if created == PvCreated::AlreadyThere {
        // An earlier call made it and announced it (or crashed first: the
        // PV is there either way, and one success Event is the contract).
        ctx.metrics.operation("provision", "already_provisioned");
        return Ok(Action::await_change());
    }
    ctx.metrics.observe_provision(started);
    ctx.metrics.operation("provision", "success");
    info!(claim = %key(pvc), pv = %spec.volume_name, bytes = volume.size_bytes, "provisioned");
    events::normal(
        &ctx.recorder,
        &pvc.object_ref(&()),
        "ProvisioningSucceeded",
        "Provisioning",
        format!(
            "Successfully provisioned volume {} on node {}",
            spec.volume_name, ctx.config.node_name
        ),
    )
    .await;
    Ok(Action::await_change())
}

fn missing_pool(err: &Error, spec: &ProvisionSpec) -> bool {
    matches!(err, Error::LvNotFound { lv, .. } if spec.thin_pool.as_deref() == Some(lv.as_str()))
}

/// Whether `create_pv` made the PV or found it made by an earlier attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvCreated {
    Created,
    AlreadyThere,
}

/// Creates the PV. A 409 is success only when the existing PV is ours for the
/// same claim, node and LV (an earlier attempt that crashed before it could
/// note the success). Otherwise the LV has no PV: it is reported as an orphan
/// (kept, like every LV whose release cannot be proven) and the claim is not
/// provisioned.
pub async fn create_pv<B>(
    ctx: &Context<B>,
    spec: &ProvisionSpec,
    pv: &PersistentVolume,
) -> Result<PvCreated> {
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match api.create(&PostParams::default(), pv).await {
        Ok(_) => Ok(PvCreated::Created),
        Err(e) if is_conflict(&e) => {
            let name = pv.name_any();
            let existing = api.get(&name).await?;
            match pv_body::compare_existing(pv, &existing) {
                pv_body::ExistingPv::Same => Ok(PvCreated::AlreadyThere),
                pv_body::ExistingPv::Different(reason) => {
                    crate::startup::report_orphan(
                        ctx,
                        &spec.vg,
                        &spec.volume_name,
                        &format!(
                            "made for claim {}/{} (uid {}), but PV {name} already exists and {reason}",
                            spec.claim_namespace, spec.claim_name, spec.claim_uid
                        ),
                    )
                    .await;
                    Err(Error::ForeignVolume {
                        name,
                        claim: spec.claim_uid.clone(),
                        reason,
                    })
                }
            }
        }
        Err(e) => Err(e.into()),
    }
}

async fn reschedule<B: VolumeBackend>(
    ctx: &Context<B>,
    pvc: &PersistentVolumeClaim,
    cause: &Error,
) -> Result<()> {
    let node = &ctx.config.node_name;
    warn!(claim = %key(pvc), error = %cause, "cannot create the volume here; asking for a reschedule");
    events::warn(
        &ctx.recorder,
        &pvc.object_ref(&()),
        "ProvisioningFailed",
        "Provisioning",
        format!("node {node} cannot hold this volume ({cause}); removing selected-node so the pod is scheduled again"),
    )
    .await;
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &pvc.namespace().unwrap_or_default());
    let patch = json_patch(remove_selected_node_patch(node))?;
    match api
        .patch(&pvc.name_any(), &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => {
            ctx.metrics.operation("reschedule", "success");
            Ok(())
        }
        Err(e) => {
            ctx.metrics.operation("reschedule", "kube");
            Err(e.into())
        }
    }
}

async fn expand<B: VolumeBackend>(
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

async fn run_expansion<B: VolumeBackend>(
    ctx: &Context<B>,
    pvc: &PersistentVolumeClaim,
    pv: &PersistentVolume,
    new_size: u64,
    start: bool,
) -> Result<()> {
    let ns = pvc.namespace().unwrap_or_default();
    let name = pvc.name_any();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pp = PatchParams::default();
    let mut current = pvc.clone();
    if start {
        if expansion::has_node_expansion_annotation(&current) {
            current = claims
                .patch(
                    &name,
                    &pp,
                    &Patch::Merge(expansion::node_expansion_annotation_patch(None)),
                )
                .await?;
        }
        events::normal(
            &ctx.recorder,
            &pvc.object_ref(&()),
            "Resizing",
            "Resize",
            format!(
                "lvmpin agent on {} is resizing volume {}",
                ctx.config.node_name,
                pv.name_any()
            ),
        )
        .await;
        let body = expansion::start_patch(&current, new_size, &ctx.now());
        current = claims.patch_status(&name, &pp, &Patch::Merge(body)).await?;
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
                claim: format!("{ns}/{name}"),
                message: e.to_string(),
            })?;
    let uid = pvc.metadata.uid.as_deref().unwrap_or_default();
    let volume = extend_volume(ctx, &id.vg, &id.lv, new_size, uid, &pv.name_any()).await?;
    volumes
        .patch(
            &pv.name_any(),
            &pp,
            &Patch::Merge(expansion::pv_capacity_patch(volume.size_bytes)),
        )
        .await?;
    if expansion::is_block(&current) {
        let body = expansion::finished_patch(&current, volume.size_bytes, path);
        claims.patch_status(&name, &pp, &Patch::Merge(body)).await?;
        claims
            .patch(
                &name,
                &pp,
                &Patch::Merge(expansion::node_expansion_annotation_patch(Some("true"))),
            )
            .await?;
        events::normal(
            &ctx.recorder,
            &pvc.object_ref(&()),
            "VolumeResizeSuccessful",
            "Resize",
            format!("resize volume {} finished", pv.name_any()),
        )
        .await;
    } else {
        let body = expansion::node_pending_patch(&current, new_size, &ctx.now(), path);
        claims.patch_status(&name, &pp, &Patch::Merge(body)).await?;
        events::normal(
            &ctx.recorder,
            &pvc.object_ref(&()),
            "FileSystemResizeRequired",
            "Resize",
            "Require file system resize of volume on node".to_string(),
        )
        .await;
    }
    Ok(())
}
