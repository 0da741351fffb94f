//! Placement without the extender, or after losing it: the CSIStorageCapacity
//! objects the agents publish are what kube-scheduler's VolumeBinding plugin
//! filters by (the CSIDriver sets `storageCapacity: true`). Runs on
//! `kube-local` by default, on the simulator with `LVMPIN_CONTROL_PLANE=sim`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use lvmpin_e2e::{
    Backend, Expected, assert_invariants, pods, reschedules, set, start, start_on,
    wait_capacity_current, wait_claims_bound,
};

use lvmpin_sim::testbed::{Testbed, TestbedOptions};
use lvmpin_sim::{wait, workload};

const MI: u64 = 1 << 20;
const EXTENT: u64 = 4 * MI;

/// How many volumes of `size` bytes the VGs hold now, in whole extents.
fn volumes_that_fit(tb: &Testbed, size: u64) -> u64 {
    tb.node_names
        .iter()
        .map(|n| {
            let (_, free) = tb.disk(n).unwrap().vg_size_free().unwrap();
            (free / EXTENT) / size.div_ceil(EXTENT)
        })
        .sum()
}

fn count_by_node(pods: &[Pod]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for p in pods
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some("default"))
    {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            *out.entry(n).or_default() += 1;
        }
    }
    out
}

/// Set-up (a), the stock scheduler alone. One pod at a time, each created once
/// the agents have published the previous volume, until every VG is full:
/// the small node fills up and is then filtered out, so no agent ever has to
/// hand a claim back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_scheduler_alone_fills_every_node_without_a_reschedule() {
    let mut tb = start(TestbedOptions {
        nodes: 2,
        vg_bytes: 64 * MI,
        scheduler_uses_extender: false,
        ..TestbedOptions::default()
    })
    .await;
    tb.vgextend("node-1", 128 * MI).unwrap();
    let n = volumes_that_fit(&tb, 12 * MI);
    wait_capacity_current(&tb, Duration::from_secs(30)).await;
    let claims = Api::<PersistentVolumeClaim>::namespaced(tb.client(), "default");
    let pods_api = Api::<Pod>::namespaced(tb.client(), "default");
    for i in 0..n {
        let name = format!("seq-{i}");
        claims
            .create(
                &PostParams::default(),
                &workload::claim("default", &name, &tb.class, "12Mi"),
            )
            .await
            .unwrap();
        pods_api
            .create(
                &PostParams::default(),
                &workload::pod("default", &name, std::slice::from_ref(&name)),
            )
            .await
            .unwrap();
        if let Err(e) = tb
            .wait_bound("default", &[name], Duration::from_secs(60))
            .await
        {
            panic!("{}", tb.with_logs(e));
        }
        wait_claims_bound(&tb, Duration::from_secs(30)).await;
        wait_capacity_current(&tb, Duration::from_secs(30)).await;
    }
    let placed = count_by_node(&pods(&tb).await);
    eprintln!("{n} pods placed one at a time: {placed:?}");
    assert_eq!(reschedules(&tb).await, 0, "placed: {placed:?}");
    assert_eq!(volumes_that_fit(&tb, 12 * MI), 0, "every VG is full");
    assert_invariants(&tb, &Expected::default()).await;
    tb.shutdown().await;
}

/// Set-up (b), the extender ignorable: a first set is placed with it, then
/// it is killed for good and a second set arrives. kube-scheduler goes on
/// without it on CSIStorageCapacity alone: every pod lands, and no claim is
/// lost or provisioned twice. Claims placed while the capacity objects lagged
/// are handed back by the agents and placed again; their number is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extender_lost_for_good_mid_burst_scheduling_goes_on() {
    let mut tb = start(TestbedOptions {
        nodes: 4,
        vg_bytes: 256 * MI,
        ..TestbedOptions::default()
    })
    .await;
    // A little room is left: without the extender's reservations, a burst may
    // strand a few extents per node until the agents give the claims back.
    let total = (volumes_that_fit(&tb, 12 * MI) - 4) as usize;
    let before = set("before", total / 2, &[("data", "12Mi")]);
    let after = set("after", total - total / 2, &[("data", "12Mi")]);
    let names = |s: &lvmpin_sim::workload::StatefulSetLike| -> Vec<String> {
        (0..s.replicas).map(|i| s.pod_name(i)).collect()
    };
    tb.create_statefulset(&before).await.unwrap();
    if let Err(e) = tb
        .wait_bound("default", &names(&before), Duration::from_secs(120))
        .await
    {
        panic!("{}", tb.with_logs(e));
    }
    tb.extender.kill().await;
    tb.create_statefulset(&after).await.unwrap();
    if let Err(e) = tb
        .wait_bound("default", &names(&after), Duration::from_secs(240))
        .await
    {
        panic!("{}", tb.with_logs(e));
    }
    wait_claims_bound(&tb, Duration::from_secs(60)).await;
    assert_invariants(&tb, &Expected::default()).await;
    eprintln!(
        "{} pods with the extender, {} after it was killed: {} reschedules",
        before.replicas,
        after.replicas,
        reschedules(&tb).await
    );
    tb.shutdown().await;
}

const MANAGED: &str = "lvmpin.io/local-storage";

fn requests_managed(p: &Pod) -> bool {
    p.spec.iter().flat_map(|s| &s.containers).any(|c| {
        c.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .is_some_and(|l| l.contains_key(MANAGED))
    })
}

/// Set-up (c), upstream only (the simulator has no admission): with
/// `decisive-managed.yaml` and the MutatingAdmissionPolicy of
/// `manifests/managed-resource`, pods that mount a claim get the extended
/// resource and go through the extender; a pod without claims is scheduled
/// without ever reaching it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_resource_sends_only_pods_with_claims_to_the_extender() {
    let tb = start_on(
        Backend::Kube,
        TestbedOptions {
            nodes: 2,
            vg_bytes: 256 * MI,
            scheduler_file: Some("decisive-managed".into()),
            ..TestbedOptions::default()
        },
    )
    .await;
    let client = tb.client();
    let policy = lvmpin_sim::testbed::process::workspace_root()
        .join("manifests/managed-resource/policy.yaml");
    for obj in lvmpin_sim::testbed::install::read_manifest(&policy).unwrap() {
        lvmpin_sim::testbed::install::create_object(&client, &obj)
            .await
            .unwrap();
    }
    // The API server loads new policies asynchronously: probe with dry runs.
    let pods_api = Api::<Pod>::namespaced(client.clone(), "default");
    let probe = workload::pod("default", "probe", &["probe-claim".into()]);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let r = wait::until(
        "the policy to take effect",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { requests_managed(&pods_api.create(&dry, &probe).await.ok()?).then_some(()) },
    )
    .await;
    if let Err(e) = r {
        panic!("{}", tb.with_logs(e));
    }

    let s = set("managed", 4, &[("data", "8Mi")]);
    tb.create_statefulset(&s).await.unwrap();
    let names: Vec<String> = (0..s.replicas).map(|i| s.pod_name(i)).collect();
    if let Err(e) = tb
        .wait_bound("default", &names, Duration::from_secs(90))
        .await
    {
        panic!("{}", tb.with_logs(e));
    }
    pods_api
        .create(
            &PostParams::default(),
            &workload::pod("default", "plain", &[]),
        )
        .await
        .unwrap();
    if let Err(e) = tb
        .wait_bound("default", &["plain".to_string()], Duration::from_secs(60))
        .await
    {
        panic!("{}", tb.with_logs(e));
    }
    for p in pods(&tb).await {
        let name = p.metadata.name.clone().unwrap_or_default();
        if p.metadata.namespace.as_deref() != Some("default") {
            continue;
        }
        assert_eq!(requests_managed(&p), name != "plain", "{name}");
    }
    wait_claims_bound(&tb, Duration::from_secs(30)).await;
    assert_invariants(&tb, &Expected::default()).await;
    let metrics = tb.extender_metrics().await.unwrap();
    let counter = |name: &str, label: &str| lvmpin_e2e::counter(&metrics, name, label);
    let filters = counter(
        "lvmpin_extender_request_duration_seconds_count",
        "verb=\"filter\"",
    );
    let untouched = counter(
        "lvmpin_extender_filter_verdicts_total",
        "verdict=\"untouched\"",
    );
    assert!(filters >= 4.0, "filter calls: {filters}\n{metrics}");
    assert_eq!(
        untouched, 0.0,
        "a pod without claims reached the extender\n{metrics}"
    );
    pods_api
        .delete("plain", &DeleteParams::default())
        .await
        .unwrap();
    tb.shutdown().await;
}
