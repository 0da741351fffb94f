//! Finding the LV a restore or clone starts from (the API reads of
//! `restore_plan`), checked against this node's scan.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use lvmpin_api::ClaimSource;
use lvmpin_api::VolumeId;
use lvmpin_api::snapshot::{VolumeSnapshot, VolumeSnapshotContent};

use crate::backend::VolumeBackend;
use crate::claim_plan::ProvisionSpec;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::provision::volume_named;
use crate::restore_plan::{Found, check_restore, claim_volume, describe, snapshot_volume};

/// The source LV (in the claim's VG, on this node, no larger than the
/// claim) of `spec`'s restore or clone; `Error::Source` says why not.
pub async fn source_volume<B: VolumeBackend>(
    ctx: &Context<B>,
    class: &str,
    spec: &ProvisionSpec,
    source: &ClaimSource,
) -> Result<VolumeId> {
    let ns = &spec.claim_namespace;
    let what = describe(ns, source);
    let id = match source {
        ClaimSource::Snapshot(name) => {
            let snapshots: Api<VolumeSnapshot> = Api::namespaced(ctx.client.clone(), ns);
            let snapshot = snapshots.get_opt(name).await?;
            let content_name = snapshot
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .and_then(|s| s.bound_volume_snapshot_content_name.clone());
            let content = match content_name {
                Some(c) => {
                    Api::<VolumeSnapshotContent>::all(ctx.client.clone())
                        .get_opt(&c)
                        .await?
                }
                None => None,
            };
            snapshot_volume(&what, snapshot.as_ref(), content.as_ref())
        }
        ClaimSource::Claim(name) => {
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
            let claim = claims.get_opt(name).await?;
            let volume = claim
                .as_ref()
                .and_then(|c| c.spec.as_ref())
                .and_then(|s| s.volume_name.clone())
                .filter(|v| !v.is_empty());
            let pv = match volume {
                Some(v) => volume_named(ctx, &v).await?,
                None => None,
            };
            claim_volume(&what, class, claim.as_ref(), pv.as_deref())
        }
    }
    .map_err(Error::Source)?;
    let scan = ctx.backend.scan().await?;
    let found = scan
        .volume(&id.vg, &id.lv)
        .filter(|_| ctx.config.volume_groups.contains(&id.vg))
        .map(|v| Found {
            size_bytes: v.size_bytes,
            thin: v.pool.is_some(),
        });
    check_restore(
        &what,
        &ctx.config.node_name,
        &spec.vg,
        spec.size_bytes,
        &id,
        found,
    )
    .map_err(Error::Source)?;
    Ok(id)
}
