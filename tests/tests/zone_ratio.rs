//! Zone ratios end to end (docs/zone-ratio.md): nine nodes in three zones,
//! StatefulSets whose pods carry two lvmpin claims each and whose
//! `lvmpin.io/zone-weights` ask for 2:2:1. Each scenario runs on the upstream
//! control plane (kube-local: the real StatefulSet controller and
//! kube-scheduler) and on the simulator.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use lvmpin_api::LvmNode;
use lvmpin_api::names::{ANN_ZONE_POLICY, ANN_ZONE_WEIGHTS};
use lvmpin_e2e::{Backend, Expected, StatefulSetLike, assert_invariants, set, start_on};
use lvmpin_e2e::{wait_claims_bound, wait_set_bound};
use lvmpin_sim::testbed::{Testbed, TestbedOptions, zone_of};
use lvmpin_sim::wait;

const MI: u64 = 1 << 20;
const NODES: usize = 9;
const ZONES: usize = 3;
const WEIGHTS: (&str, &str) = (ANN_ZONE_WEIGHTS, "zone-0=2,zone-1=2,zone-2=1");
const REQUIRED: (&str, &str) = (ANN_ZONE_POLICY, "Required");
/// Both claims of one pod: 96 MiB.
const TEMPLATES: &[(&str, &str)] = &[("data", "64Mi"), ("log", "32Mi")];
const BIND: Duration = Duration::from_secs(180);

fn opts() -> TestbedOptions {
    TestbedOptions {
        nodes: NODES,
        zones: ZONES,
        vg_bytes: 1024 * MI,
        ..TestbedOptions::default()
    }
}

fn zone_index(node: &str) -> usize {
    let i: usize = node
        .strip_prefix("node-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected node name {node}"));
    let zone = zone_of(i, NODES, ZONES).expect("zones are set");
    zone["zone-".len()..].parse().expect("zone-<n>")
}

/// Pods per zone once all of the set's pods are bound.
fn split(placed: &BTreeMap<String, String>) -> [usize; ZONES] {
    let mut out = [0; ZONES];
    for node in placed.values() {
        out[zone_index(node)] += 1;
    }
    out
}

/// Events lvmpin's extender wrote with `reason` about pods of `set`.
async fn zone_events(tb: &Testbed, set: &StatefulSetLike, reason: &str) -> Vec<Event> {
    let prefix = format!("{}-", set.name);
    Api::<Event>::namespaced(tb.client(), &set.namespace)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| {
            e.regarding
                .as_ref()
                .and_then(|r| r.name.as_deref())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect()
}

async fn wait_zone_events(tb: &Testbed, set: &StatefulSetLike, reason: &str, pods: usize) {
    let r = wait::until(
        &format!("{reason} Events on {pods} pods of {}", set.name),
        BIND,
        Duration::from_millis(250),
        || async {
            let mut named: Vec<String> = zone_events(tb, set, reason)
                .await
                .into_iter()
                .filter_map(|e| e.regarding.and_then(|r| r.name))
                .collect();
            named.sort();
            named.dedup();
            (named.len() >= pods).then_some(())
        },
    )
    .await;
    if let Err(e) = r {
        panic!("{}", tb.with_logs(e));
    }
}

async fn bound_pods(tb: &Testbed, set: &StatefulSetLike) -> BTreeMap<String, String> {
    Api::<Pod>::namespaced(tb.client(), &set.namespace)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let name = p.metadata.name?;
            let node = p.spec?.node_name?;
            (0..set.replicas)
                .any(|i| set.pod_name(i) == name)
                .then_some((name, node))
        })
        .collect()
}

/// Fills every VG of `zone` with an LV lvmpin does not own, and waits until
/// the agents report it.
async fn fill_zone(tb: &Testbed, zone: usize) -> Vec<String> {
    let nodes: Vec<String> = tb
        .node_names
        .iter()
        .filter(|n| zone_index(n) == zone)
        .cloned()
        .collect();
    for n in &nodes {
        let disk = tb.disk(n).expect("a disk per node");
        let (_, free) = disk.vg_size_free().unwrap();
        disk.create_foreign_lv("filler", free).unwrap();
    }
    let api = Api::<LvmNode>::all(tb.client());
    let vg = tb.vg.clone();
    let r = wait::until(
        &format!("zone-{zone}'s agents to report full VGs"),
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            for n in &nodes {
                let node = api.get(n).await.ok()?;
                let free = node.status.as_ref()?.volume_group(&vg)?.free_bytes;
                if free >= 96 * MI {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    if let Err(e) = r {
        panic!("{}", tb.with_logs(e));
    }
    nodes
}

async fn follows_the_ratio_through_scaling(backend: Backend) {
    let tb = start_on(backend, opts()).await;
    let s = set("mq", 5, TEMPLATES);
    tb.create_annotated_statefulset(&s, &[WEIGHTS])
        .await
        .unwrap();
    let five = wait_set_bound(&tb, &s, BIND).await;
    assert_eq!(split(&five), [2, 2, 1], "{five:?}");

    let s = tb.scale_statefulset(&s, 10).await.unwrap();
    let ten = wait_set_bound(&tb, &s, BIND).await;
    assert_eq!(split(&ten), [4, 4, 2], "{ten:?}");
    for (pod, node) in &five {
        assert_eq!(&ten[pod], node, "a bound pod never moves");
    }

    // Down to 3 and back: slots 3 and 4 return to their volumes' nodes.
    let s = tb.scale_statefulset(&s, 3).await.unwrap();
    let s = tb.scale_statefulset(&s, 5).await.unwrap();
    let again = wait_set_bound(&tb, &s, BIND).await;
    assert_eq!(split(&again), [2, 2, 1], "{again:?}");
    assert_eq!(again, five, "each slot is back on its volumes' node");

    // Each of the ten placements was explained on its pod.
    wait_zone_events(&tb, &s, "ZoneRatioPlaced", 10).await;
    wait_claims_bound(&tb, Duration::from_secs(60)).await;
    assert_invariants(&tb, &Expected::default()).await;
    tb.shutdown().await;
}

async fn a_full_zone_preferred_falls_back_and_required_waits(backend: Backend) {
    let tb = start_on(backend, opts()).await;
    let full = fill_zone(&tb, 2).await;

    // Preferred: the slot zone-2 should take goes to the best zone with room.
    let preferred = set("pref", 5, TEMPLATES);
    tb.create_annotated_statefulset(&preferred, &[WEIGHTS])
        .await
        .unwrap();
    let placed = wait_set_bound(&tb, &preferred, BIND).await;
    assert_eq!(split(&placed), [3, 2, 0], "{placed:?}");
    wait_zone_events(&tb, &preferred, "ZoneRatioFallback", 1).await;

    // Required: zone-0 and zone-1 take one pod each, then zone-2 is next
    // and the other three wait, each told why.
    let required = set("req", 5, TEMPLATES);
    tb.create_annotated_statefulset(&required, &[WEIGHTS, REQUIRED])
        .await
        .unwrap();
    wait_zone_events(&tb, &required, "ZoneRatioWaiting", 3).await;
    let r = wait::until(
        "two pods of req bound",
        BIND,
        Duration::from_millis(250),
        || async {
            let bound = bound_pods(&tb, &required).await;
            (bound.len() >= 2).then_some(bound)
        },
    )
    .await;
    let waiting = r.unwrap_or_else(|e| panic!("{}", tb.with_logs(e)));
    assert_eq!(split(&waiting), [1, 1, 0], "{waiting:?}");
    let mut told: Vec<String> = zone_events(&tb, &required, "ZoneRatioWaiting")
        .await
        .into_iter()
        .filter_map(|e| e.regarding.and_then(|r| r.name))
        .collect();
    told.sort();
    told.dedup();
    let unbound: Vec<String> = (0..required.replicas)
        .map(|i| required.pod_name(i))
        .filter(|p| !waiting.contains_key(p))
        .collect();
    assert_eq!(told, unbound, "the pods told to wait are the unbound ones");

    // Room in zone-2: the waiting pods go on, and the split is 2:2:1.
    for n in &full {
        tb.disk(n).unwrap().remove_lv("filler").unwrap();
    }
    let done = wait_set_bound(&tb, &required, BIND).await;
    assert_eq!(split(&done), [2, 2, 1], "{done:?}");
    for (pod, node) in &waiting {
        assert_eq!(&done[pod], node, "a bound pod never moves");
    }

    // Weights that do not parse: the pod is placed without a ratio and the
    // StatefulSet is told why.
    let bad = set("bad", 1, TEMPLATES);
    tb.create_annotated_statefulset(&bad, &[(ANN_ZONE_WEIGHTS, "zone-0=two")])
        .await
        .unwrap();
    wait_set_bound(&tb, &bad, BIND).await;
    let events = Api::<Event>::namespaced(tb.client(), &bad.namespace);
    let r = wait::until(
        "an InvalidZoneRatio Event on StatefulSet bad",
        BIND,
        Duration::from_millis(250),
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("InvalidZoneRatio")
                    && e.regarding.as_ref().is_some_and(|r| {
                        r.kind.as_deref() == Some("StatefulSet") && r.name.as_deref() == Some("bad")
                    })
            })
        },
    )
    .await;
    let event = r.unwrap_or_else(|e| panic!("{}", tb.with_logs(e)));
    let note = event.note.unwrap_or_default();
    assert!(note.contains("zone-0=two"), "{note}");

    wait_claims_bound(&tb, Duration::from_secs(60)).await;
    assert_invariants(&tb, &Expected::default()).await;
    tb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_a_2_2_1_statefulset_follows_its_ratio_through_scaling() {
    follows_the_ratio_through_scaling(Backend::Kube).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_a_2_2_1_statefulset_follows_its_ratio_through_scaling() {
    follows_the_ratio_through_scaling(Backend::Sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_a_full_zone_preferred_falls_back_and_required_waits() {
    a_full_zone_preferred_falls_back_and_required_waits(Backend::Kube).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_a_full_zone_preferred_falls_back_and_required_waits() {
    a_full_zone_preferred_falls_back_and_required_waits(Backend::Sim).await;
}
