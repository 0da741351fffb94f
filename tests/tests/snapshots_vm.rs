//! Thin snapshots, restores and clones end to end: the upstream control
//! plane (kube-local: kube-apiserver, kube-controller-manager and
//! kube-scheduler with the extender configuration users deploy), the
//! upstream snapshot-controller with `--enable-distributed-snapshotting`,
//! the real extender, and the real agent on a real kernel: it runs in the
//! QEMU guest (`lvmpin_e2e::vm_node`) with a thin pool, against the host's
//! API server. The guest also plays the node's kubelet: it stages and
//! publishes the volumes the host names and checks their files by sha256.
//!
//! This test never skips: it needs QEMU and the kernel package as the other
//! VM tests do (hack/vm/README.md), and Go for kube-local and the
//! snapshot-controller.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use lvmpin_api::snapshot::{VolumeSnapshot, VolumeSnapshotContent};
use lvmpin_e2e::vm_node::{NODE, VG, VmNode, start_cluster};
use lvmpin_sim::testbed::Testbed;
use lvmpin_sim::{wait, workload};

const MI: u64 = 1 << 20;
/// Everything on the guest's side runs under instruction emulation.
const WAIT: Duration = Duration::from_secs(240);
const NS: &str = "default";
const CLASS: &str = "thin";

async fn until<T, F, Fut>(tb: &Testbed, node: &VmNode, what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match wait::until(what, WAIT, Duration::from_millis(250), f).await {
        Ok(v) => v,
        Err(e) => panic!("{}\nguest console:\n{}", tb.with_logs(e), node.console()),
    }
}

/// What kubelet would be given for a bound claim's volume.
struct Mounted {
    pv: String,
    handle: String,
    fs_type: String,
    context: BTreeMap<String, String>,
    node_affinity: Vec<String>,
}

/// Waits for `claim` to be bound, then stages and publishes its volume in
/// the guest as kubelet would.
async fn bound_and_mounted(
    tb: &Testbed,
    node: &mut VmNode,
    claims: &Api<PersistentVolumeClaim>,
    claim: &str,
) -> Mounted {
    let pv = until(tb, node, &format!("claim {claim} bound"), || {
        let claims = claims.clone();
        async move {
            let c = claims.get(claim).await.ok()?;
            (c.status?.phase.as_deref() == Some("Bound"))
                .then_some(c.spec?.volume_name)
                .flatten()
        }
    })
    .await;
    let spec = Api::<PersistentVolume>::all(tb.client())
        .get(&pv)
        .await
        .unwrap()
        .spec
        .unwrap();
    let node_affinity = spec
        .node_affinity
        .and_then(|a| a.required)
        .map(|r| r.node_selector_terms)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|t| t.match_expressions.unwrap_or_default())
        .flat_map(|e| e.values.unwrap_or_default())
        .collect();
    let csi = spec.csi.unwrap();
    let volume = Mounted {
        pv,
        handle: csi.volume_handle,
        fs_type: csi.fs_type.unwrap_or_else(|| "ext4".into()),
        context: csi.volume_attributes.unwrap_or_default(),
        node_affinity,
    };
    node.mount(&volume.handle, &volume.fs_type, &volume.context)
        .await
        .unwrap();
    volume
}

async fn create_snapshot_class(tb: &Testbed) {
    let (class, ar) = workload::volume_snapshot_class("thin", "Delete");
    Api::<DynamicObject>::all_with(tb.client(), &ar)
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
}

/// Names of the guest's LVs that start with `prefix`.
async fn lvs_named(node: &mut VmNode, prefix: &str) -> Vec<String> {
    node.lvs()
        .await
        .unwrap()
        .into_keys()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thin_snapshot_restore_and_clone_with_the_upstream_control_plane() {
    let (tb, mut node) = start_cluster(CLASS, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let client = tb.client();

    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS);
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    let schedule = async |claim: PersistentVolumeClaim, pod: &str| {
        let name = claim.metadata.name.clone().unwrap();
        claims.create(&PostParams::default(), &claim).await.unwrap();
        pods.create(&PostParams::default(), &workload::pod(NS, pod, &[name]))
            .await
            .unwrap();
    };

    // A thin source, written through the guest's mount.
    schedule(workload::claim(NS, "src", CLASS, "64Mi"), "writer").await;
    let placed = tb
        .wait_bound(NS, &["writer".to_string()], WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(placed["writer"], NODE);
    let src = bound_and_mounted(&tb, &mut node, &claims, "src").await;
    assert_eq!(src.node_affinity, vec![NODE.to_string()]);
    let sha_a = node.write(&src.handle, "a.bin", 1).await.unwrap();

    // The snapshot: the controller makes the content, the guest's agent
    // the thin snapshot LV, and the controller marks the snapshot ready.
    create_snapshot_class(&tb).await;
    let snapshots = Api::<VolumeSnapshot>::namespaced(client.clone(), NS);
    snapshots
        .create(
            &PostParams::default(),
            &workload::volume_snapshot("snap", "src", "thin"),
        )
        .await
        .unwrap();
    let content_name = until(&tb, &node, "VolumeSnapshot snap readyToUse", || {
        let snapshots = snapshots.clone();
        async move {
            let status = snapshots.get("snap").await.ok()?.status?;
            (status.ready_to_use == Some(true))
                .then_some(status.bound_volume_snapshot_content_name)
                .flatten()
        }
    })
    .await;
    let contents = Api::<VolumeSnapshotContent>::all(client.clone());
    let content = contents.get(&content_name).await.unwrap();
    assert_eq!(content.managed_by(), Some(NODE));
    let status = content.status.clone().unwrap();
    assert_eq!(status.restore_size, Some((64 * MI) as i64));
    assert!(status.creation_time.is_some_and(|t| t > 0));
    let snap_lv = format!("snap-{}", content.metadata.uid.clone().unwrap());
    assert_eq!(
        status.snapshot_handle.as_deref(),
        Some(format!("{VG}/{snap_lv}").as_str())
    );
    assert_eq!(lvs_named(&mut node, "snap-").await, vec![snap_lv.clone()]);

    // Written after the snapshot: no restore may hold it.
    let sha_b = node.write(&src.handle, "b.bin", 2).await.unwrap();

    // A restore, larger than its source.
    schedule(
        workload::restore_claim(NS, "restored", CLASS, "96Mi", "snap"),
        "reader",
    )
    .await;
    let restored = bound_and_mounted(&tb, &mut node, &claims, "restored").await;
    assert_eq!(restored.node_affinity, vec![NODE.to_string()]);
    assert_eq!(
        node.read(&restored.handle, "a.bin").await.unwrap(),
        Some(sha_a.clone())
    );
    assert_eq!(node.read(&restored.handle, "b.bin").await.unwrap(), None);
    // kubelet calls no NodeExpandVolume for a restore: NodeStage must have
    // grown the source's 64 MiB filesystem to the 96 MiB LV.
    let size = node.fs_size(&restored.handle).await.unwrap();
    assert!(size > 80 * MI, "restore's filesystem is {size} bytes");

    // A clone of the live source: both files, then each side on its own.
    schedule(
        workload::clone_claim(NS, "clone", CLASS, "64Mi", "src"),
        "cloner",
    )
    .await;
    let clone = bound_and_mounted(&tb, &mut node, &claims, "clone").await;
    assert_eq!(clone.node_affinity, vec![NODE.to_string()]);
    assert_eq!(
        node.read(&clone.handle, "a.bin").await.unwrap(),
        Some(sha_a.clone())
    );
    assert_eq!(
        node.read(&clone.handle, "b.bin").await.unwrap(),
        Some(sha_b.clone())
    );
    node.write(&clone.handle, "c.bin", 3).await.unwrap();
    node.write(&src.handle, "d.bin", 4).await.unwrap();
    assert_eq!(node.read(&src.handle, "c.bin").await.unwrap(), None);
    assert_eq!(node.read(&clone.handle, "d.bin").await.unwrap(), None);

    // The source goes (pod, mount, claim; reclaim policy Delete): its LV
    // goes, the snapshot stays and still restores exactly a.bin.
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    pods.delete("writer", &now).await.unwrap();
    node.unmount(&src.handle).await.unwrap();
    claims
        .delete("src", &DeleteParams::default())
        .await
        .unwrap();
    let src_lv = src.handle.rsplit('/').next().unwrap().to_string();
    until(&tb, &node, "the source's PV and LV gone", || {
        let pv = src.pv.clone();
        let client = client.clone();
        async move {
            let pv_gone = Api::<PersistentVolume>::all(client)
                .get_opt(&pv)
                .await
                .ok()?
                .is_none();
            pv_gone.then_some(())
        }
    })
    .await;
    let lvs = node.lvs().await.unwrap();
    assert!(!lvs.contains_key(&src_lv), "{lvs:?}");
    assert!(lvs.contains_key(&snap_lv), "{lvs:?}");
    schedule(
        workload::restore_claim(NS, "restored2", CLASS, "64Mi", "snap"),
        "reader2",
    )
    .await;
    let restored2 = bound_and_mounted(&tb, &mut node, &claims, "restored2").await;
    assert_eq!(
        node.read(&restored2.handle, "a.bin").await.unwrap(),
        Some(sha_a.clone())
    );
    assert_eq!(node.read(&restored2.handle, "b.bin").await.unwrap(), None);

    // Deleting the VolumeSnapshot (policy Delete): content and LV go, the
    // restores made from it stay whole.
    snapshots
        .delete("snap", &DeleteParams::default())
        .await
        .unwrap();
    until(
        &tb,
        &node,
        "the VolumeSnapshot and its content gone",
        || lvmpin_e2e::snapshot_and_content_gone(&client, NS, "snap", &content_name),
    )
    .await;
    assert_eq!(lvs_named(&mut node, "snap-").await, Vec::<String>::new());
    assert_eq!(
        node.read(&restored.handle, "a.bin").await.unwrap(),
        Some(sha_a)
    );
    let warnings: Vec<String> = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client, NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        // Volumes and snapshots only: the API server's own start-up repairs
        // warn about its Service too.
        .filter(|e| {
            e.regarding
                .as_ref()
                .and_then(|r| r.kind.as_deref())
                .is_some_and(|k| {
                    matches!(
                        k,
                        "PersistentVolumeClaim"
                            | "PersistentVolume"
                            | "VolumeSnapshot"
                            | "VolumeSnapshotContent"
                            | "LvmNode"
                    )
                })
        })
        .map(|e| format!("{:?}: {:?}", e.reason, e.note))
        .collect();

    for v in [&restored, &clone, &restored2] {
        node.unmount(&v.handle).await.unwrap();
    }
    let run = node.stop().await.unwrap();
    for line in run.console.lines().filter(|l| l.starts_with("GUEST:")) {
        println!("{line}");
    }
    assert!(
        run.success,
        "guest failed:\n{}\n{}",
        run.console, run.stderr
    );
    assert!(warnings.is_empty(), "Warning events: {warnings:#?}");
    tb.shutdown().await;
}
