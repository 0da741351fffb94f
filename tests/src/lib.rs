//! Helpers shared by the end-to-end tests; the check of the cluster's end
//! state against what LVM reports on each simulated node is in [`invariants`].

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::ListParams;
use lvmpin_sim::testbed::{Testbed, TestbedOptions};

pub mod helm;
pub mod invariants;
pub mod vm_node;

pub use invariants::{Expected, assert_invariants};
pub use lvmpin_sim::testbed::{Backend, Mode};
pub use lvmpin_sim::workload::StatefulSetLike;

/// The e2e tests need loop devices and LVM; they fail (not skip) otherwise.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the e2e tests create loop devices and LVM volume groups: run them as root"
    );
}

/// The control plane of the e2e suite: upstream Kubernetes (`kube-local`)
/// unless `LVMPIN_CONTROL_PLANE=sim` asks for the Go-free simulator.
pub fn backend() -> Backend {
    Backend::from_env_or(Backend::Kube).unwrap_or_else(|e| panic!("{e}"))
}

pub async fn start(opts: TestbedOptions) -> Testbed {
    start_on(backend(), opts).await
}

pub async fn start_on(backend: Backend, opts: TestbedOptions) -> Testbed {
    require_root();
    let opts = TestbedOptions { backend, ..opts };
    match Testbed::start(opts).await {
        Ok(tb) => tb,
        Err(e) => panic!("testbed did not start: {e}"),
    }
}

pub fn set(name: &str, replicas: usize, templates: &[(&str, &str)]) -> StatefulSetLike {
    StatefulSetLike {
        namespace: "default".into(),
        name: name.into(),
        replicas,
        class: "lvmpin".into(),
        templates: templates
            .iter()
            .map(|(t, s)| (t.to_string(), s.to_string()))
            .collect(),
    }
}

pub async fn claims(tb: &Testbed) -> Vec<PersistentVolumeClaim> {
    Api::<PersistentVolumeClaim>::all(tb.client())
        .list(&ListParams::default())
        .await
        .expect("list claims")
        .items
}

pub async fn volumes(tb: &Testbed) -> Vec<PersistentVolume> {
    Api::<PersistentVolume>::all(tb.client())
        .list(&ListParams::default())
        .await
        .expect("list PVs")
        .items
}

/// One counter (summed over matching label sets) from Prometheus text; 0 when
/// absent.
pub fn counter(metrics: &str, name: &str, label: &str) -> f64 {
    lvmpin_sim::bench::sample_sum(metrics, name, label).unwrap_or(0.0)
}

/// Agents' reschedule requests so far (from their Events).
pub async fn reschedules(tb: &Testbed) -> u64 {
    tb.reschedules().await.expect("list events")
}

pub async fn pods(tb: &Testbed) -> Vec<Pod> {
    Api::<Pod>::all(tb.client())
        .list(&ListParams::default())
        .await
        .expect("list pods")
        .items
}

/// Wait until each node's CSIStorageCapacity shows what `vgs` says is free
/// there (whole 4 MiB extents, no spare), i.e. the agents have published
/// every change so far. Returns the objects by node.
pub async fn wait_capacity_current(
    tb: &Testbed,
    timeout: Duration,
) -> BTreeMap<String, k8s_openapi::api::storage::v1::CSIStorageCapacity> {
    let api = Api::<k8s_openapi::api::storage::v1::CSIStorageCapacity>::namespaced(
        tb.client(),
        "lvmpin-system",
    );
    let mut out = BTreeMap::new();
    for node in &tb.node_names {
        let (_, free) = tb
            .disk(node)
            .expect("node disk")
            .vg_size_free()
            .expect("vgs");
        let want = (free / (4 << 20) * (4 << 20)).to_string();
        let name = format!("lvmpin.{}.{node}", tb.class);
        let r = lvmpin_sim::wait::until(
            &format!("{name} to show {want} bytes"),
            timeout,
            Duration::from_millis(100),
            || async {
                let o = api.get_opt(&name).await.ok()??;
                (o.capacity.as_ref()?.0 == want).then_some(o)
            },
        )
        .await;
        match r {
            Ok(o) => {
                out.insert(node.clone(), o);
            }
            Err(e) => panic!("{}", tb.with_logs(e)),
        }
    }
    out
}

/// Wait until every claim is Bound (phase written by the PV controller).
/// Waits until every pod of `s` is bound; pod → node.
pub async fn wait_set_bound(
    tb: &Testbed,
    s: &StatefulSetLike,
    timeout: Duration,
) -> BTreeMap<String, String> {
    let pods: Vec<String> = (0..s.replicas).map(|i| s.pod_name(i)).collect();
    match tb.wait_bound(&s.namespace, &pods, timeout).await {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

pub async fn wait_claims_bound(tb: &Testbed, timeout: Duration) {
    let api = Api::<PersistentVolumeClaim>::all(tb.client());
    let r = lvmpin_sim::wait::until(
        "every claim to be Bound",
        timeout,
        Duration::from_millis(250),
        || {
            let api = api.clone();
            async move {
                let l = api.list(&ListParams::default()).await.ok()?;
                l.items
                    .iter()
                    .all(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
                    .then_some(())
            }
        },
    )
    .await;
    if let Err(e) = r {
        panic!("{}", tb.with_logs(e));
    }
}

/// Notes of the scheduler's FailedScheduling events, for failure messages.
pub async fn failed_scheduling(tb: &Testbed) -> Vec<String> {
    use k8s_openapi::api::events::v1::Event;
    Api::<Event>::all(tb.client())
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
                .map(|e| {
                    let obj = e.regarding.and_then(|r| r.name).unwrap_or_default();
                    format!("{obj}: {}", e.note.unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the VolumeSnapshot `namespace/snapshot` and its content `content`
/// are both gone (`None` also while the API server cannot be read).
pub async fn snapshot_and_content_gone(
    client: &kube::Client,
    namespace: &str,
    snapshot: &str,
    content: &str,
) -> Option<()> {
    use lvmpin_api::snapshot::{VolumeSnapshot, VolumeSnapshotContent};
    let snapshots = Api::<VolumeSnapshot>::namespaced(client.clone(), namespace);
    let contents = Api::<VolumeSnapshotContent>::all(client.clone());
    let snap_gone = snapshots.get_opt(snapshot).await.ok()?.is_none();
    let content_gone = contents.get_opt(content).await.ok()?.is_none();
    (snap_gone && content_gone).then_some(())
}
