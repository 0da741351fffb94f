//! PVs of this node made before the agent labelled its PVs (earlier
//! versions): labelled once at startup, before the label-selected PV watch
//! starts, so that the watch sees every PV of this node from its first list.

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::api_util::is_not_found;
use crate::error::Result;
use crate::node_scope::unlabelled_selector;
use crate::pv_body::label_patch;

/// PVs per list page: memory stays at one page whatever the cluster holds.
const PAGE: u32 = 500;

/// Lists the PVs that carry no `lvmpin.io/node` label (after an upgrade: the
/// old PVs of every node and other drivers' PVs; later: other drivers' PVs
/// only), page by page, and labels those of this node. Returns how many it
/// labelled.
pub async fn label_own_pvs(client: &Client, node: &str) -> Result<usize> {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let mut params = ListParams::default()
        .labels(&unlabelled_selector())
        .limit(PAGE);
    let mut labelled = 0;
    loop {
        let page = api.list(&params).await?;
        for pv in &page.items {
            let Some(patch) = label_patch(pv, node) else {
                continue;
            };
            match api
                .patch(
                    &pv.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => labelled += 1,
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(labelled),
        }
    }
}
