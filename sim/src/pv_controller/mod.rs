//! The PV controller's binding of pre-bound PVs to their claims, as a kube-rs
//! client loop. Decisions live in [`plan`]; this module only watches and writes.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::Notify;

use crate::informer::Informer;
use plan::Action;

/// How often a pass runs without any watch event, to retry failed writes.
const RESYNC: Duration = Duration::from_secs(2);
/// Writes in flight at once; each targets a different object.
const CONCURRENCY: usize = 16;

/// Runs until the task is dropped or aborted.
pub async fn run(client: Client) {
    let wake = Arc::new(Notify::new());
    let pvs = Informer::start(Api::<PersistentVolume>::all(client.clone()), wake.clone());
    let pvcs = Informer::start(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        wake.clone(),
    );
    let classes = Informer::start(Api::<StorageClass>::all(client.clone()), wake.clone());
    pvs.synced().await;
    pvcs.synced().await;
    classes.synced().await;
    tracing::info!("pv controller: caches synced");
    loop {
        let _ = tokio::time::timeout(RESYNC, wake.notified()).await;
        let (v, c, s) = (pvs.store.state(), pvcs.store.state(), classes.store.state());
        let actions = plan::plan(
            &v.iter().map(|x| x.as_ref()).collect::<Vec<_>>(),
            &c.iter().map(|x| x.as_ref()).collect::<Vec<_>>(),
            &s.iter().map(|x| x.as_ref()).collect::<Vec<_>>(),
        );
        if actions.is_empty() {
            continue;
        }
        // Volume writes finish before claim writes start (bind() order).
        let (first, second): (Vec<_>, Vec<_>) = actions.into_iter().partition(|a| a.order() == 0);
        for batch in [first, second] {
            futures::stream::iter(batch)
                .for_each_concurrent(CONCURRENCY, |a| execute(&client, a))
                .await;
        }
    }
}

async fn execute(client: &Client, action: Action) {
    let pp = PostParams::default();
    let result = match &action {
        Action::VolumeStatus(pv) => {
            let name = pv.metadata.name.clone().unwrap_or_default();
            Api::<PersistentVolume>::all(client.clone())
                .replace_status(&name, &pp, pv)
                .await
                .map(|_| ())
        }
        Action::ReleaseVolume(pv) => release(client, pv).await,
        Action::ClaimUpdate(pvc) | Action::ClaimStatus(pvc) => {
            let ns = pvc
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let name = pvc.metadata.name.clone().unwrap_or_default();
            let api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns);
            if matches!(action, Action::ClaimUpdate(_)) {
                api.replace(&name, &pp, pvc).await.map(|_| ())
            } else {
                api.replace_status(&name, &pp, pvc).await.map(|_| ())
            }
        }
    };
    match result {
        Ok(()) => tracing::debug!(?action, "pv controller write done"),
        // A conflict means the object changed; the watch event brings a new pass.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
            tracing::debug!(code = s.code, "pv controller write skipped")
        }
        Err(e) => tracing::warn!(error = %e, "pv controller write failed; will retry"),
    }
}

/// The controller checks the API server before releasing: a claim missing from a
/// lagging cache must not release its volume.
async fn release(client: &Client, pv: &PersistentVolume) -> kube::Result<()> {
    if let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
        let ns = r.namespace.clone().unwrap_or_else(|| "default".into());
        let api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns);
        if let Some(live) = api.get_opt(r.name.as_deref().unwrap_or("")).await?
            && live.metadata.uid == r.uid
        {
            return Ok(());
        }
    }
    let name = pv.metadata.name.clone().unwrap_or_default();
    Api::<PersistentVolume>::all(client.clone())
        .replace_status(&name, &PostParams::default(), pv)
        .await
        .map(|_| ())
}
