//! Keeps this node's LvmNode object: created owner-referenced to the Node (so
//! it goes when the node goes), status written after every LV change and after
//! periodic scans that found a difference.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use lvmpin_api::{LvmNode, LvmNodeSpec, LvmNodeStatus};
use serde_json::json;
use tracing::{info, warn};

use crate::api_util::{is_conflict, is_not_found};
use crate::backend::VolumeBackend;
use crate::context::Context;
use crate::error::Result;
use crate::lvm_node_status::{build_status, needs_write, promised_bytes, scan_failed_status};
use crate::thin_warnings;

fn node_owner(node: &Node) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.name_any(),
        uid: node.metadata.uid.clone()?,
        ..Default::default()
    })
}

fn remember_uid<B>(ctx: &Context<B>, obj: &LvmNode) {
    *ctx.lvm_node_uid.lock().unwrap_or_else(|e| e.into_inner()) = obj.metadata.uid.clone();
}

/// Creates the LvmNode if missing and adds the Node owner reference once the
/// Node exists. Returns whether the owner reference is in place.
pub async fn ensure_lvm_node<B>(ctx: &Context<B>) -> Result<bool> {
    let node_name = &ctx.config.node_name;
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let lvm_nodes: Api<LvmNode> = Api::all(ctx.client.clone());
    let owner = match nodes.get_opt(node_name).await? {
        Some(node) => node_owner(&node),
        None => None,
    };
    match lvm_nodes.get_opt(node_name).await? {
        None => {
            let obj = LvmNode {
                metadata: ObjectMeta {
                    name: Some(node_name.clone()),
                    owner_references: owner.clone().map(|o| vec![o]),
                    ..Default::default()
                },
                spec: LvmNodeSpec {
                    node_name: node_name.clone(),
                },
                status: None,
            };
            match lvm_nodes.create(&PostParams::default(), &obj).await {
                Ok(created) => {
                    info!(node = %node_name, "created LvmNode");
                    remember_uid(ctx, &created);
                }
                Err(e) if is_conflict(&e) => {}
                Err(e) => return Err(e.into()),
            }
            Ok(owner.is_some())
        }
        Some(existing) => {
            remember_uid(ctx, &existing);
            let has_owner = existing
                .owner_references()
                .iter()
                .any(|o| o.kind == "Node" && o.name == *node_name);
            if has_owner {
                return Ok(true);
            }
            let Some(owner) = owner else {
                warn!(node = %node_name, "Node object not found; LvmNode has no owner yet");
                return Ok(false);
            };
            let patch = json!({"metadata": {"ownerReferences": [owner]}});
            lvm_nodes
                .patch(node_name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
            Ok(true)
        }
    }
}

/// One scan: report, build the status, write it when it differs from the last
/// written one. Returns whether a write happened.
pub async fn publish_status<B: VolumeBackend>(ctx: &Context<B>) -> Result<bool> {
    publish_status_from(ctx, true).await
}

/// `fresh: false` builds the status from the scan cache that our own LV
/// changes keep current, sparing an lvm call per change during bursts.
pub async fn publish_status_from<B: VolumeBackend>(ctx: &Context<B>, fresh: bool) -> Result<bool> {
    let now = ctx.now();
    let previous = ctx
        .last_status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let status = match crate::volumes::scan(ctx, fresh).await {
        Ok(report) => {
            for vg in &report.volume_groups {
                if ctx.config.volume_groups.contains(&vg.name) {
                    ctx.metrics.set_vg(&vg.name, vg.size_bytes, vg.free_bytes);
                }
            }
            for pool in &report.thin_pools {
                if ctx.config.volume_groups.contains(&pool.vg) {
                    ctx.metrics.set_thin_pool(
                        &pool.vg,
                        &pool.name,
                        pool.data_percent,
                        pool.metadata_percent,
                    );
                    ctx.metrics.set_thin_pool_bytes(
                        &pool.vg,
                        &pool.name,
                        pool.size_bytes,
                        promised_bytes(&report, &pool.vg, &pool.name),
                    );
                }
            }
            let status = build_status(
                &report,
                &ctx.config.volume_groups,
                ctx.config.host_problem.as_deref(),
                previous.as_ref(),
                &now,
            );
            warn_thin_pools(ctx, &status).await;
            status
        }
        Err(e) => {
            warn!(error = %e, "volume scan failed");
            scan_failed_status(previous.as_ref(), &e.to_string(), &now)
        }
    };
    let since = ctx
        .last_written
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .map(|t| t.elapsed());
    if !needs_write(
        previous.as_ref(),
        &status,
        since,
        ctx.config.report_heartbeat,
    ) {
        return Ok(false);
    }
    write_status(ctx, &status).await?;
    ctx.metrics.report_written(status.last_scan_time.as_deref());
    *ctx.last_status.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
    *ctx.last_written.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
    Ok(true)
}

/// A Warning Event on the LvmNode for each thin pool use that crossed its
/// threshold since the last scan (`thin_warnings`).
async fn warn_thin_pools<B>(ctx: &Context<B>, status: &LvmNodeStatus) {
    let classes = ctx.caches.classes.state();
    let classes: Vec<&k8s_openapi::api::storage::v1::StorageClass> =
        classes.iter().map(|c| c.as_ref()).collect();
    let messages = {
        let mut over = ctx.thin_over.lock().unwrap_or_else(|e| e.into_inner());
        let (now, messages) = thin_warnings::crossings(status, &classes, &over);
        *over = now;
        messages
    };
    if messages.is_empty() {
        return;
    }
    let regarding = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("lvmpin.io/v1alpha1".into()),
        kind: Some("LvmNode".into()),
        name: Some(ctx.config.node_name.clone()),
        uid: ctx
            .lvm_node_uid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        ..Default::default()
    };
    for m in messages {
        warn!(message = %m, "thin pool nearly full");
        crate::events::warn(
            &ctx.recorder,
            &regarding,
            thin_warnings::REASON,
            "Scanning",
            m,
        )
        .await;
    }
}

async fn write_status<B>(ctx: &Context<B>, status: &LvmNodeStatus) -> Result<()> {
    let api: Api<LvmNode> = Api::all(ctx.client.clone());
    let patch = Patch::Merge(json!({ "status": status }));
    let name = &ctx.config.node_name;
    match api
        .patch_status(name, &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => {
            // Deleted under us (or never made): recreate, then write once more.
            ensure_lvm_node(ctx).await?;
            api.patch_status(name, &PatchParams::default(), &patch)
                .await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs until `shutdown` fires: scans every interval and right after any LV
/// change, and keeps trying to add the Node owner reference if it was missing.
pub async fn run<B: VolumeBackend>(
    ctx: std::sync::Arc<Context<B>>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut owned = false;
    let mut fresh = true;
    loop {
        if !owned {
            match ensure_lvm_node(&ctx).await {
                Ok(o) => owned = o,
                Err(e) => warn!(error = %e, "could not ensure LvmNode"),
            }
        }
        if let Err(e) = publish_status_from(&ctx, fresh).await {
            // The last written status is unchanged, so the next scan retries.
            warn!(error = %e, "could not write LvmNode status");
        }
        // Cheap when nothing changed: the capacity task compares in memory.
        ctx.capacity_dirty.notify_one();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(ctx.config.scan_interval) => fresh = true,
            _ = ctx.status_dirty.notified() => fresh = false,
        }
    }
}
