//! The same scenarios on both control planes: the simulator must agree with
//! upstream kube-scheduler, kube-controller-manager and kube-apiserver on
//! what an operator can see (placement balance, reschedules, Events). Where
//! they may differ for a reason that does not matter, the comparison leaves
//! that out and says why.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use lvmpin_e2e::{
    Backend, Expected, assert_invariants, reschedules, set, start_on, wait_claims_bound,
};
use lvmpin_sim::testbed::{Testbed, TestbedOptions};
use lvmpin_sim::workload::StatefulSetLike;

const MI: u64 = 1 << 20;

/// What an operator sees once a set is placed and bound.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// Pods per node, sorted: which node gets which pod depends on the order
    /// pods reach the queue (random in both), the balance does not.
    pods_per_node: Vec<usize>,
    reschedules: u64,
    /// (reporting component, type, reason) of every Event from lvmpin's
    /// processes, plus the scheduler's `Scheduled`. Counts are left out:
    /// Events are aggregated differently (series) by the two API servers'
    /// clients, and one claim may be reconciled more than once.
    events: BTreeSet<(String, String, String)>,
    /// Pods with a `Scheduled` Event.
    scheduled: usize,
}

async fn outcome(tb: &Testbed, s: &StatefulSetLike) -> Outcome {
    let pods: Vec<String> = (0..s.replicas).map(|i| s.pod_name(i)).collect();
    let placed = tb
        .wait_bound(&s.namespace, &pods, Duration::from_secs(150))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_claims_bound(tb, Duration::from_secs(60)).await;
    assert_invariants(tb, &Expected::default()).await;
    let mut counts: BTreeMap<&String, usize> = tb.node_names.iter().map(|n| (n, 0)).collect();
    for node in placed.values() {
        *counts.entry(node).or_default() += 1;
    }
    let mut pods_per_node: Vec<usize> = counts.into_values().collect();
    pods_per_node.sort_unstable();
    let events = Api::<Event>::all(tb.client())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let mut scheduled = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for e in &events {
        let reason = e.reason.clone().unwrap_or_default();
        let controller = e.reporting_controller.clone().unwrap_or_default();
        if reason == "Scheduled" {
            scheduled.extend(e.regarding.as_ref().and_then(|r| r.name.clone()));
            seen.insert((
                "scheduler".into(),
                e.type_.clone().unwrap_or_default(),
                reason,
            ));
        } else if controller.starts_with("lvmpin") {
            seen.insert((controller, e.type_.clone().unwrap_or_default(), reason));
        }
    }
    Outcome {
        pods_per_node,
        reschedules: reschedules(tb).await,
        events: seen,
        scheduled: scheduled.len(),
    }
}

async fn on(backend: Backend, opts: TestbedOptions, s: &StatefulSetLike) -> Outcome {
    let tb = start_on(backend, opts).await;
    tb.create_statefulset(s).await.unwrap();
    let o = outcome(&tb, s).await;
    tb.shutdown().await;
    o
}

async fn compare(opts: TestbedOptions, s: StatefulSetLike) {
    let sim = on(Backend::Sim, opts.clone(), &s).await;
    let kube = on(Backend::Kube, opts, &s).await;
    eprintln!("simulator: {sim:?}\nupstream:  {kube:?}");
    assert_eq!(sim, kube, "the simulator disagrees with upstream");
    assert_eq!(kube.scheduled, s.replicas);
    assert_eq!(kube.reschedules, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_looks_the_same_on_both_control_planes() {
    let opts = TestbedOptions {
        nodes: 3,
        vg_bytes: 256 * MI,
        ..TestbedOptions::default()
    };
    compare(opts, set("web", 6, &[("data", "64Mi"), ("log", "16Mi")])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tight_burst_looks_the_same_on_both_control_planes() {
    // 60 claims of 8 MiB on 4 VGs of 128 MiB (31 usable extents of 4 MiB):
    // 15 fit per node, so the burst fills every VG and any overcommit or
    // lost reservation shows as a reschedule or an unbound pod.
    let opts = TestbedOptions {
        nodes: 4,
        vg_bytes: 128 * MI,
        ..TestbedOptions::default()
    };
    compare(opts, set("burst", 60, &[("data", "8Mi")])).await;
}
