//! LVs that carry our owner tags but that nothing wants any more: reported
//! to people, never removed (data whose release cannot be proven stays).

use k8s_openapi::api::core::v1::ObjectReference;
use lvmpin_api::LvmNode;
use tracing::warn;

use crate::context::Context;
use crate::events;

fn lvm_node_ref(node: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("lvmpin.io/v1alpha1".into()),
        kind: Some(<LvmNode as kube::Resource>::kind(&()).into_owned()),
        name: Some(node.to_string()),
        ..Default::default()
    }
}

/// Reports an LV that carries our tags but that no PV and no claim wants: an
/// Event on this node's LvmNode, a warning in the log and the orphan gauge.
/// Never removes it: data whose release cannot be proven stays for a human.
pub async fn report_orphan<B>(ctx: &Context<B>, vg: &str, lv: &str, reason: &str) {
    warn!(%vg, %lv, %reason, "orphan logical volume");
    let count = {
        let mut orphans = ctx.orphans.lock().unwrap_or_else(|e| e.into_inner());
        orphans.insert(format!("{vg}/{lv}"));
        orphans.len()
    };
    ctx.metrics
        .orphan_volumes
        .set(i64::try_from(count).unwrap_or(i64::MAX));
    events::warn(
        &ctx.recorder,
        &lvm_node_ref(&ctx.config.node_name),
        "OrphanVolume",
        "Recover",
        format!("logical volume {vg}/{lv}: {reason}"),
    )
    .await;
}
