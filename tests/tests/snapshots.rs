//! VolumeSnapshots end to end on the upstream control plane (kube-local) with
//! the upstream snapshot-controller (`--enable-distributed-snapshotting`) and
//! CRDs (`bash hack/snapshot-controller/build.sh`), the real agents and
//! extender on their service accounts' RBAC.
//!
//! On a kernel without device-mapper lvm2 runs metadata-only and cannot make
//! thin pools ("Can't create thin-pool without using device-mapper kernel
//! driver"), so the test bed's class is linear: this checks the protocol
//! around a refused snapshot (the label-scoped content watch, the content's
//! error status and Events, the extender's and agent's refusal of a restore
//! in a linear class, and the finalizer release on deletion), and
//! pre-provisioned contents (claimed by the node holding the LV, checked,
//! refused). Thin snapshots and restores with data are checked in the QEMU
//! guest.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use lvmpin_api::LvmNode;
use lvmpin_api::names::DRIVER_NAME;
use lvmpin_api::snapshot::{
    ContentSource, LABEL_MANAGED_BY, SnapshotRef, VolumeSnapshot, VolumeSnapshotContent,
    VolumeSnapshotContentSpec, VolumeSnapshotSource, VolumeSnapshotSpec,
};
use lvmpin_e2e::{Backend, failed_scheduling, start_on};
use lvmpin_sim::testbed::{Testbed, TestbedOptions};
use lvmpin_sim::{wait, workload};

const MI: u64 = 1 << 20;
const WAIT: Duration = Duration::from_secs(90);
const NS: &str = "default";

async fn until<T, F, Fut>(tb: &Testbed, what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match wait::until(what, WAIT, Duration::from_millis(200), f).await {
        Ok(v) => v,
        Err(e) => panic!("{}", tb.with_logs(e)),
    }
}

async fn create_class(tb: &Testbed) {
    let (class, ar) = workload::volume_snapshot_class("lvm", "Delete");
    Api::<DynamicObject>::all_with(tb.client(), &ar)
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
}

/// Notes of Events with `reason` about the object `name`, in `NS`.
async fn notes(tb: &Testbed, reason: &str, name: &str) -> Vec<String> {
    Api::<Event>::namespaced(tb.client(), NS)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.note)
        .collect()
}

/// Two nodes, and the snapshot-controller as docs/snapshots.md requires it.
async fn start_with_snapshot_controller() -> Testbed {
    start_on(
        Backend::Kube,
        TestbedOptions {
            nodes: 2,
            vg_bytes: 256 * MI,
            snapshot_controller: Some(vec!["--enable-distributed-snapshotting".into()]),
            ..TestbedOptions::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_a_linear_volume_is_refused_and_deleted_cleanly() {
    let tb = start_with_snapshot_controller().await;
    let client = tb.client();
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS);
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    claims
        .create(
            &PostParams::default(),
            &workload::claim(NS, "data", "lvmpin", "16Mi"),
        )
        .await
        .unwrap();
    pods.create(
        &PostParams::default(),
        &workload::pod(NS, "app", &["data".into()]),
    )
    .await
    .unwrap();
    let placed = tb
        .wait_bound(NS, &["app".to_string()], WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let node = placed["app"].clone();
    let pv_name = until(&tb, "claim data bound", || {
        let claims = claims.clone();
        async move {
            let c = claims.get("data").await.ok()?;
            c.spec?.volume_name.filter(|v| !v.is_empty())
        }
    })
    .await;
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&pv_name)
        .await
        .unwrap();
    let handle = pv.spec.unwrap().csi.unwrap().volume_handle;

    create_class(&tb).await;
    let snapshots = Api::<VolumeSnapshot>::namespaced(client.clone(), NS);
    let snap = workload::volume_snapshot("snap", "data", "lvm");
    snapshots
        .create(&PostParams::default(), &snap)
        .await
        .unwrap();

    // The controller labels the content with the source's node; that
    // node's agent refuses it on the status, as the sidecar would.
    let contents = Api::<VolumeSnapshotContent>::all(client.clone());
    let content = until(&tb, "the content's error status", || {
        let contents = contents.clone();
        async move {
            let l = contents.list(&ListParams::default()).await.ok()?;
            l.items.into_iter().find(|c| {
                c.status
                    .as_ref()
                    .and_then(|s| s.error.as_ref())
                    .and_then(|e| e.message.as_deref())
                    .is_some_and(|m| m.contains("linear volume"))
            })
        }
    })
    .await;
    assert_eq!(content.managed_by(), Some(node.as_str()));
    assert_eq!(
        content.spec.source.volume_handle.as_deref(),
        Some(handle.as_str())
    );
    let status = content.status.clone().unwrap();
    assert_eq!(status.ready_to_use, Some(false));
    assert_eq!(status.snapshot_handle, None, "nothing was made");
    let message = status.error.unwrap().message.unwrap();
    assert!(message.contains(&handle), "{message}");
    let on_snapshot = until(
        &tb,
        "a SnapshotCreationFailed Event on the VolumeSnapshot",
        || {
            let tb = &tb;
            async move {
                let n = notes(tb, "SnapshotCreationFailed", "snap").await;
                n.into_iter().next()
            }
        },
    )
    .await;
    assert!(on_snapshot.contains("linear volume"), "{on_snapshot}");
    let lvs: usize = tb.lvs().unwrap().values().map(Vec::len).sum();
    assert_eq!(lvs, 1, "only the source LV exists: {:?}", tb.lvs());
    // Refused once: the content is not written again while it stays the
    // same (checked across the node agent's next capacity scan).
    let content_name = content.metadata.name.clone().unwrap();
    let version = contents
        .get(&content_name)
        .await
        .unwrap()
        .metadata
        .resource_version;
    let nodes = Api::<LvmNode>::all(client.clone());
    let scanned = |n: &LvmNode| n.status.as_ref().and_then(|s| s.last_scan_time.clone());
    let first = scanned(&nodes.get(&node).await.unwrap());
    until(&tb, "another scan of the source's node", || {
        let nodes = nodes.clone();
        let node = node.clone();
        let first = first.clone();
        async move { (scanned(&nodes.get(&node).await.ok()?) != first).then_some(()) }
    })
    .await;
    let again = contents
        .get(&content_name)
        .await
        .unwrap()
        .metadata
        .resource_version;
    assert_eq!(again, version, "a refused content is written again");

    // A restore in the (linear) class: no node fits, the reason names it.
    let restore = workload::restore_claim(NS, "restored", "lvmpin", "16Mi", "snap");
    claims
        .create(&PostParams::default(), &restore)
        .await
        .unwrap();
    pods.create(
        &PostParams::default(),
        &workload::pod(NS, "restorer", &["restored".into()]),
    )
    .await
    .unwrap();
    let why = until(&tb, "FailedScheduling naming the linear class", || {
        let tb = &tb;
        async move {
            failed_scheduling(tb)
                .await
                .into_iter()
                .find(|n| n.starts_with("restorer:") && n.contains("is linear"))
        }
    })
    .await;
    assert!(why.contains("VolumeSnapshot default/snap"), "{why}");
    let restorer = pods.get("restorer").await.unwrap();
    assert!(restorer.spec.unwrap().node_name.is_none());

    // Deleting the snapshot (Delete policy): the controller marks the
    // content, the agent drops the finalizer, both objects go.
    pods.delete("restorer", &DeleteParams::default())
        .await
        .unwrap();
    claims
        .delete("restored", &DeleteParams::default())
        .await
        .unwrap();
    snapshots
        .delete("snap", &DeleteParams::default())
        .await
        .unwrap();
    until(&tb, "the VolumeSnapshot and its content gone", || {
        lvmpin_e2e::snapshot_and_content_gone(&client, NS, "snap", &content_name)
    })
    .await;
    let lvs: usize = tb.lvs().unwrap().values().map(Vec::len).sum();
    assert_eq!(lvs, 1, "the source LV stays: {:?}", tb.lvs());
    tb.shutdown().await;
}

/// A pre-provisioned content (`spec.source.snapshotHandle`), as a person
/// writes one to bring back a retained snapshot.
fn pre_provisioned(
    name: &str,
    handle: &str,
    snapshot: &str,
    node: Option<&str>,
) -> VolumeSnapshotContent {
    let mut c = VolumeSnapshotContent::new(
        name,
        VolumeSnapshotContentSpec {
            volume_snapshot_ref: SnapshotRef {
                namespace: Some(NS.into()),
                name: Some(snapshot.into()),
                uid: None,
            },
            source: ContentSource {
                volume_handle: None,
                snapshot_handle: Some(handle.into()),
            },
            deletion_policy: "Retain".into(),
            driver: DRIVER_NAME.into(),
            volume_snapshot_class_name: None,
        },
    );
    if let Some(node) = node {
        c.metadata.labels = Some([(LABEL_MANAGED_BY.to_string(), node.to_string())].into());
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_provisioned_contents_are_claimed_checked_and_refused() {
    let tb = start_with_snapshot_controller().await;
    tb.wait_ready(WAIT).await.unwrap_or_else(|e| panic!("{e}"));
    let client = tb.client();
    let node = tb.lvs().unwrap().keys().next().unwrap().clone();
    let disk = tb.disk(&node).unwrap();
    let vg = disk.vg.clone();
    // The LV a deleted content with Retain left behind on `node`.
    disk.create_snapshot_lv("snap-kept", 8 * MI, "old-uid", "snapcontent-old")
        .unwrap();

    let contents = Api::<VolumeSnapshotContent>::all(client.clone());
    let snapshots = Api::<VolumeSnapshot>::namespaced(client.clone(), NS);
    let pp = PostParams::default();
    // No agent holds this one: it stays unlabelled and unanswered.
    contents
        .create(
            &pp,
            &pre_provisioned(
                "pre-nowhere",
                &format!("{vg}/snap-nowhere"),
                "nowhere",
                None,
            ),
        )
        .await
        .unwrap();
    // Unlabelled, naming the kept LV: the agent of `node` claims and checks it.
    contents
        .create(
            &pp,
            &pre_provisioned("pre-kept", &format!("{vg}/snap-kept"), "kept", None),
        )
        .await
        .unwrap();
    let kept = VolumeSnapshot::new(
        "kept",
        VolumeSnapshotSpec {
            source: VolumeSnapshotSource {
                persistent_volume_claim_name: None,
                volume_snapshot_content_name: Some("pre-kept".into()),
            },
            volume_snapshot_class_name: None,
        },
    );
    snapshots.create(&pp, &kept).await.unwrap();
    // Labelled with `node` by hand, naming an LV that is not there.
    contents
        .create(
            &pp,
            &pre_provisioned(
                "pre-missing",
                &format!("{vg}/snap-missing"),
                "missing",
                Some(&node),
            ),
        )
        .await
        .unwrap();

    let ready = until(&tb, "the kept content claimed and ready", || {
        let contents = contents.clone();
        async move {
            let c = contents.get("pre-kept").await.ok()?;
            c.is_ready().then_some(c)
        }
    })
    .await;
    assert_eq!(ready.managed_by(), Some(node.as_str()));
    let status = ready.status.unwrap();
    assert_eq!(status.snapshot_handle, Some(format!("{vg}/snap-kept")));
    assert_eq!(status.restore_size, Some((8 * MI) as i64));
    assert!(status.creation_time.is_some_and(|t| t > 0));
    let bound = until(&tb, "the VolumeSnapshot ready", || {
        let snapshots = snapshots.clone();
        async move {
            let s = snapshots.get("kept").await.ok()?.status?;
            (s.ready_to_use == Some(true)).then_some(s)
        }
    })
    .await;
    assert_eq!(
        bound.bound_volume_snapshot_content_name.as_deref(),
        Some("pre-kept")
    );

    let refused = until(&tb, "the missing content's error status", || {
        let contents = contents.clone();
        async move {
            let s = contents.get("pre-missing").await.ok()?.status?;
            s.error?.message
        }
    })
    .await;
    assert!(
        refused.contains(&format!(
            "snapshot {vg}/snap-missing does not exist on node {node}"
        )),
        "{refused}"
    );
    let told = until(&tb, "a SnapshotContentCheckandUpdateFailed Event", || {
        let tb = &tb;
        async move {
            notes(tb, "SnapshotContentCheckandUpdateFailed", "pre-missing")
                .await
                .into_iter()
                .next()
        }
    })
    .await;
    assert!(told.contains("does not exist"), "{told}");

    // Across a later scan of every node, nobody claimed the content whose LV
    // is nowhere.
    let nodes = Api::<LvmNode>::all(client.clone());
    let scanned = |n: &LvmNode| n.status.as_ref().and_then(|s| s.last_scan_time.clone());
    for name in tb.lvs().unwrap().keys() {
        let first = scanned(&nodes.get(name).await.unwrap());
        until(&tb, "another scan", || {
            let nodes = nodes.clone();
            let first = first.clone();
            async move { (scanned(&nodes.get(name).await.ok()?) != first).then_some(()) }
        })
        .await;
    }
    let nowhere = contents.get("pre-nowhere").await.unwrap();
    assert_eq!(nowhere.managed_by(), None);
    assert!(nowhere.status.is_none(), "{:?}", nowhere.status);

    // Deleting with Retain: the VolumeSnapshot goes first (the controller
    // marks its content being-deleted), then the contents; the LV stays.
    snapshots
        .delete("kept", &DeleteParams::default())
        .await
        .unwrap();
    until(&tb, "the VolumeSnapshot gone", || {
        let snapshots = snapshots.clone();
        async move {
            snapshots
                .get_opt("kept")
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;
    for name in ["pre-kept", "pre-missing", "pre-nowhere"] {
        contents
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    until(&tb, "the pre-provisioned contents gone", || {
        let contents = contents.clone();
        async move {
            for name in ["pre-kept", "pre-missing", "pre-nowhere"] {
                if contents.get_opt(name).await.ok()?.is_some() {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    let lvs = tb.lvs().unwrap();
    assert!(
        lvs[&node].iter().any(|(lv, _)| lv == "snap-kept"),
        "the retained LV stays: {lvs:?}"
    );
    tb.shutdown().await;
}
