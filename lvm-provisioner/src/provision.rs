//! Provisioning a claim placed on this node: the LV (idempotently, owner
//! tags in the same lvcreate), then the node-pinned PV; or, when this node
//! cannot hold the volume, handing the claim back to the scheduler.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use crate::api_util::{is_conflict, json_patch};
use crate::backend::{CreateVolume, Owner, VolumeBackend};
use crate::claim_plan::ProvisionSpec;
use crate::claim_plan::claim_key as key;
use crate::context::{CacheScope, Context};
use crate::error::{Error, Result};
use crate::events;
use crate::pv_body;
use crate::volumes::ensure_volume;
use lvmpin_api::patch::remove_selected_node_patch;

/// Retry delay for a claim whose provisioning another call is running.
pub const IN_FLIGHT_WAIT: Duration = Duration::from_secs(2);

/// Creates the LV (idempotently) and its PV, or reschedules the claim.
pub async fn provision<B: VolumeBackend>(
    ctx: &Context<B>,
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
    spec: &ProvisionSpec,
) -> Result<Action> {
    let started = Instant::now();
    if let Some(existing) = volume_named(ctx, &spec.volume_name).await? {
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
                // Permanent: counted and told to the claim's owner.
                return Err(failed(ctx, pvc, e).await);
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
    // A restore or clone: the LV it starts from must be here, in the same
    // VG, thin and no larger than the claim (restore_plan.rs).
    let source = match &spec.source {
        None => None,
        Some(s) => {
            let class_name = class.metadata.name.as_deref().unwrap_or_default();
            match crate::restore::source_volume(ctx, class_name, spec, s).await {
                Ok(id) => Some(id.lv),
                Err(e @ Error::Source(_)) => {
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
                Err(e) => return Err(e),
            }
        }
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
        source,
    };
    // A class may name a VG this agent was not told to manage; for this node
    // that VG does not exist.
    let created = if let Some(problem) = &ctx.config.host_problem {
        // Reported unhealthy in the LvmNode too, so the claim goes elsewhere.
        Err(Error::Unsupported {
            message: problem.clone(),
        })
    } else if ctx.config.volume_groups.contains(&spec.vg) {
        ensure_volume(ctx, req, spec.thin_limits).await
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
        Err(e) => return Err(failed(ctx, pvc, e).await),
    };
    let pv = pv_body::build(spec, pvc, class, &ctx.config.node_name, volume.size_bytes);
    let created = match create_pv(ctx, spec, &pv).await {
        Ok(c) => c,
        Err(e) => return Err(failed(ctx, pvc, e).await),
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

/// The PV that holds a name, from the cache, or with a GET when the cache
/// holds only this node's PVs (another node's or another driver's PV may
/// hold it; finding that after lvcreate would leave an orphan LV).
pub async fn volume_named<B>(
    ctx: &Context<B>,
    name: &str,
) -> Result<Option<Arc<PersistentVolume>>> {
    if let Some(pv) = ctx.caches.volume(name) {
        return Ok(Some(pv));
    }
    if ctx.cache_scope == CacheScope::Cluster {
        return Ok(None);
    }
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    Ok(api.get_opt(name).await?.map(Arc::new))
}

/// Counts a failed provisioning and, when retrying cannot help, tells the
/// claim's owner; the error goes back to the controller's backoff.
async fn failed<B>(ctx: &Context<B>, pvc: &PersistentVolumeClaim, e: Error) -> Error {
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
    e
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
                    crate::orphans::report_orphan(
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
