//! Crash safety at startup: LVs by their owner tags against PVs and claims.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use crate::backend::{Volume, VolumeBackend};
use crate::claim_plan::{ClaimDecision, claim_class_name, decide, selected_node};
use crate::context::{CacheScope, Context};
use crate::error::Result;
use crate::orphans::report_orphan;
use crate::pv_body;
use crate::recovery::{ClaimView, RecoveryAction, plan};

fn claim_view(pvc: &PersistentVolumeClaim) -> ClaimView {
    ClaimView {
        uid: pvc.metadata.uid.clone().unwrap_or_default(),
        namespace: pvc.namespace().unwrap_or_default(),
        name: pvc.name_any(),
        volume_name: pvc.spec.as_ref().and_then(|s| s.volume_name.clone()),
        selected_node: selected_node(pvc).map(str::to_string),
    }
}

/// Needs synced caches. Returns the number of orphans found.
pub async fn recover<B: VolumeBackend>(ctx: &Context<B>) -> Result<usize> {
    let scan = ctx.backend.scan().await?;
    let ours: Vec<_> = scan
        .volumes
        .into_iter()
        .filter(|v| ctx.config.volume_groups.contains(&v.vg))
        .collect();
    let mut pv_names: BTreeSet<String> = ctx
        .caches
        .volumes
        .state()
        .iter()
        .map(|pv| pv.name_any())
        .collect();
    let mut claims = ctx.caches.claims.state();
    if ctx.cache_scope == CacheScope::Node {
        look_up_owners(ctx, &ours, &mut pv_names, &mut claims).await?;
    }
    let views: Vec<ClaimView> = claims.iter().map(|c| claim_view(c)).collect();
    let node = &ctx.config.node_name;
    let mut orphans = 0;
    for action in plan(&ours, &pv_names, &views, node) {
        match action {
            RecoveryAction::RecreatePv {
                volume,
                claim_namespace,
                claim_name,
            } => {
                let Some(pvc) = claims
                    .iter()
                    .find(|c| {
                        c.metadata.name.as_deref() == Some(&claim_name)
                            && c.metadata.namespace.as_deref() == Some(&claim_namespace)
                    })
                    .cloned()
                else {
                    continue;
                };
                let class = claim_class_name(&pvc).and_then(|n| ctx.caches.class(n));
                // Re-derive the PV from the claim as provisioning would, but
                // accept a claim that is already bound to the missing PV.
                let mut unbound = (*pvc).clone();
                if let Some(s) = unbound.spec.as_mut() {
                    s.volume_name = None;
                }
                let (ClaimDecision::Provision(spec), Some(class)) =
                    (decide(&unbound, class.as_deref(), node), class)
                else {
                    warn!(lv = %volume.name, "claim wants the LV but is not provisionable now; leaving it to the claim reconciler");
                    continue;
                };
                let Some(_in_flight) = ctx.begin_provisioning(&spec.claim_uid) else {
                    // The claim reconciler is making it right now.
                    continue;
                };
                let pv = pv_body::build(&spec, &pvc, &class, node, volume.size_bytes);
                let result = crate::provision::create_pv(ctx, &spec, &pv).await;
                ctx.metrics.operation(
                    "recreate_pv",
                    match &result {
                        Ok(_) => "success",
                        Err(e) => e.metric_label(),
                    },
                );
                match result {
                    Ok(_) => info!(pv = %spec.volume_name, "recreated missing PV"),
                    Err(e) => warn!(pv = %spec.volume_name, error = %e, "could not recreate PV"),
                }
            }
            RecoveryAction::Orphan { volume, reason } => {
                orphans += 1;
                report_orphan(ctx, &volume.vg, &volume.name, &reason).await;
            }
        }
    }
    Ok(orphans)
}

/// Completes node-scoped caches for the LVs whose PV is not cached: is the
/// PV there after all (another node's label, none, or someone else's), and
/// does the claim named in the LV's tags still exist (one that moved to
/// another node is not cached here). One GET each, only for such LVs, so the
/// plan sees what a cluster-wide cache would have shown.
async fn look_up_owners<B>(
    ctx: &Context<B>,
    volumes: &[Volume],
    pv_names: &mut BTreeSet<String>,
    claims: &mut Vec<Arc<PersistentVolumeClaim>>,
) -> Result<()> {
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    for owner in volumes.iter().filter_map(|v| v.owner.as_ref()) {
        if pv_names.contains(&owner.pv_name) {
            continue;
        }
        if pvs.get_opt(&owner.pv_name).await?.is_some() {
            pv_names.insert(owner.pv_name.clone());
            continue;
        }
        if claims
            .iter()
            .any(|c| c.metadata.uid.as_deref() == Some(owner.claim_uid.as_str()))
        {
            continue;
        }
        if owner.claim_namespace.is_empty() || owner.claim_name.is_empty() {
            continue;
        }
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(ctx.client.clone(), &owner.claim_namespace);
        if let Some(pvc) = api.get_opt(&owner.claim_name).await?
            && pvc.metadata.uid.as_deref() == Some(owner.claim_uid.as_str())
        {
            claims.push(Arc::new(pvc));
        }
    }
    Ok(())
}
