//! Watches of VolumeSnapshots and VolumeSnapshotContents, started only once
//! the snapshot CRDs exist: without them the extender works as before and a
//! claim restoring a snapshot is refused with that reason. The CRDs are
//! looked for once at start and then every `RECHECK` (logged once), never in
//! a tight loop.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, ListParams};
use lvmpin_api::snapshot::{VolumeSnapshot, VolumeSnapshotContent};
use tokio_util::sync::CancellationToken;

use crate::context::App;
use crate::sources::{content_facts, snapshot_facts};
use crate::watch::{Feed, as_is, run_feed};

/// How often a missing snapshot API is looked for again.
const RECHECK: Duration = Duration::from_secs(300);

/// Whether the API server serves VolumeSnapshotContents: a 404 on a list of
/// one means the CRDs are not installed; other errors are passed on.
pub async fn snapshot_api_present(client: &Client) -> Result<bool, kube::Error> {
    let api = Api::<VolumeSnapshotContent>::all(client.clone());
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits for the snapshot API, then runs both watches until `shutdown`.
pub async fn run(client: Client, app: Arc<App>, shutdown: CancellationToken) {
    let mut logged = false;
    loop {
        let present = tokio::select! {
            _ = shutdown.cancelled() => return,
            present = snapshot_api_present(&client) => present,
        };
        match present {
            Ok(true) => break,
            Ok(false) if !logged => {
                tracing::info!(
                    "snapshot.storage.k8s.io CRDs are not installed: restores from VolumeSnapshots are off; looking again every {RECHECK:?}"
                );
                logged = true;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot look up the snapshot API"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RECHECK) => {}
        }
    }
    tracing::info!("snapshot.storage.k8s.io found: watching VolumeSnapshots and their contents");
    app.lock().index.snapshots.installed = true;
    let snapshots = run_feed(
        Api::<VolumeSnapshot>::all(client.clone()),
        app.clone(),
        Feed {
            kind: "VolumeSnapshot",
            facts: snapshot_facts,
            apply: |s, f| s.index.snapshots.upsert_snapshot(f),
            delete: |s, f| s.index.snapshots.remove_snapshot(&f.key),
            prepare: as_is,
            replace: |s, all| {
                s.index.snapshots.replace_snapshots(all);
                Vec::new()
            },
        },
        shutdown.clone(),
    );
    let contents = run_feed(
        Api::<VolumeSnapshotContent>::all(client),
        app,
        Feed {
            kind: "VolumeSnapshotContent",
            facts: content_facts,
            apply: |s, f| s.index.snapshots.upsert_content(f),
            delete: |s, f| s.index.snapshots.remove_content(&f.name),
            prepare: as_is,
            replace: |s, all| {
                s.index.snapshots.replace_contents(all);
                Vec::new()
            },
        },
        shutdown,
    );
    tokio::join!(snapshots, contents);
}
