//! End-to-end: the simulated control plane in-process, the real
//! `lvmpin-scheduler-extender` and `lvmpin-agent` binaries as processes, one
//! loop-backed VG per simulated node (metadata-only LVM when the kernel has no
//! device-mapper). Run as root:
//! `cargo build -p lvmpin-scheduler-extender -p lvmpin-provisioner --bins && cargo test -p lvmpin-e2e --test e2e`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event as CoreEvent, PersistentVolumeClaim, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use lvmpin_api::LvmNode;
use lvmpin_e2e::{
    Mode, assert_consistent, assert_no_overcommit, claims, set, start, volumes, wait_claims_bound,
};
use lvmpin_sim::testbed::{Testbed, TestbedOptions};
use lvmpin_sim::wait;
use lvmpin_sim::workload;

const MI: u64 = 1 << 20;

fn opts(nodes: usize, vg_bytes: u64) -> TestbedOptions {
    TestbedOptions {
        nodes,
        vg_bytes,
        ..TestbedOptions::default()
    }
}

async fn bound_count(tb: &Testbed) -> usize {
    Api::<Pod>::all(tb.client())
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
                .count()
        })
        .unwrap_or(0)
}

async fn wait_bound_count(tb: &Testbed, n: usize, timeout: Duration) {
    let r = wait::until(
        &format!("{n} pods bound"),
        timeout,
        Duration::from_millis(100),
        || async { (bound_count(tb).await >= n).then_some(()) },
    )
    .await;
    if let Err(e) = r {
        panic!("{}", tb.with_logs(e));
    }
}

fn all_pods(s: &workload::StatefulSetLike) -> Vec<String> {
    (0..s.replicas).map(|i| s.pod_name(i)).collect()
}

async fn wait_set_bound(
    tb: &Testbed,
    s: &workload::StatefulSetLike,
    timeout: Duration,
) -> BTreeMap<String, String> {
    match tb.wait_bound(&s.namespace, &all_pods(s), timeout).await {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// Smallest extent-aligned VG capacity over all nodes, from `vgs`.
fn min_vg_bytes(tb: &Testbed) -> u64 {
    tb.disks
        .iter()
        .map(|d| d.vg_size_free().expect("vgs").1)
        .min()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_pods_and_their_two_claims_land_on_one_node() {
    let tb = start(opts(3, 512 * MI)).await;
    let s = set("web", 6, &[("data", "64Mi"), ("log", "16Mi")]);
    tb.create_statefulset(&s).await.unwrap();
    let placed = wait_set_bound(&tb, &s, Duration::from_secs(90)).await;
    assert_eq!(placed.len(), 6);
    wait_claims_bound(&tb, Duration::from_secs(30)).await;
    assert_consistent(&tb).await;
    assert_no_overcommit(&tb);
    let st = tb.stats();
    assert_eq!(st.reschedules, 0, "{st:?}");
    tb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_200_pods_on_10_tight_nodes_never_overcommits_and_never_reschedules() {
    let tb = start(opts(10, 256 * MI)).await;
    // 12 MiB claims: each VG (about 252 MiB) takes 21, so 200 pods leave ten slots.
    let per_node = min_vg_bytes(&tb) / (12 * MI);
    assert!(
        per_node * 10 >= 200,
        "VGs too small for the scenario: {per_node} per node"
    );
    let s = set("burst", 200, &[("data", "12Mi")]);
    tb.create_statefulset(&s).await.unwrap();
    wait_set_bound(&tb, &s, Duration::from_secs(150)).await;
    wait_claims_bound(&tb, Duration::from_secs(30)).await;
    assert_no_overcommit(&tb);
    assert_consistent(&tb).await;
    let st = tb.stats();
    if st.reschedules != 0 {
        let e = lvmpin_sim::error::Error::ApiServer(format!(
            "decisive mode must never need a reschedule: {st:?}; {:?}",
            lvmpin_e2e::failed_scheduling(&tb).await
        ));
        panic!("{}", tb.with_logs(e));
    }
    tb.shutdown().await;
}

/// Negative control for the overcommit checks: without the extender, the
/// scheduler sends a tight burst to one node and the agent must reschedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_extender_a_tight_burst_needs_reschedules() {
    let tb = start(TestbedOptions {
        scheduler_uses_extender: false,
        ..opts(2, 128 * MI)
    })
    .await;
    let s = set("blind", 14, &[("data", "12Mi")]);
    tb.create_statefulset(&s).await.unwrap();
    let r = wait::until(
        "an agent to reschedule",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async { (tb.stats().reschedules > 0).then_some(()) },
    )
    .await;
    if let Err(e) = r {
        panic!("{}", tb.with_logs(e));
    }
    assert_no_overcommit(&tb);
    tb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_mode_with_full_node_objects_places_everything() {
    let tb = start(TestbedOptions {
        mode: Mode::Advisory,
        node_cache_capable: false,
        ..opts(3, 256 * MI)
    })
    .await;
    let s = set("adv", 30, &[("data", "16Mi")]);
    tb.create_statefulset(&s).await.unwrap();
    wait_set_bound(&tb, &s, Duration::from_secs(120)).await;
    wait_claims_bound(&tb, Duration::from_secs(30)).await;
    assert_no_overcommit(&tb);
    assert_consistent(&tb).await;
    tb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_burst_and_restarted_leaves_one_lv_and_one_pv_per_claim() {
    let mut tb = start(opts(4, 512 * MI)).await;
    let s = set("crash", 60, &[("data", "8Mi")]);
    tb.create_statefulset(&s).await.unwrap();
    wait_bound_count(&tb, 10, Duration::from_secs(60)).await;
    tb.agents[1].kill().await;
    let at_kill = bound_count(&tb).await;
    assert!(
        at_kill < s.replicas,
        "the burst was over before the agent was killed"
    );
    eprintln!("agent killed with {at_kill}/{} pods bound", s.replicas);
    // Restart once work for the dead agent has piled up (a claim selected for
    // its node and not provisioned), or after 5 s at most.
    let node = tb.node_names[1].clone();
    let api = Api::<PersistentVolumeClaim>::all(tb.client());
    let _ = wait::until(
        "work queued for the stopped agent",
        Duration::from_secs(5),
        Duration::from_millis(100),
        || {
            let api = api.clone();
            let node = node.clone();
            async move {
                let l = api.list(&ListParams::default()).await.ok()?;
                l.items
                    .iter()
                    .any(|c| {
                        let sel = c
                            .metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(lvmpin_api::names::ANN_SELECTED_NODE));
                        sel == Some(&node)
                            && c.spec
                                .as_ref()
                                .and_then(|s| s.volume_name.as_ref())
                                .is_none()
                    })
                    .then_some(())
            }
        },
    )
    .await;
    tb.agents[1].start().unwrap();
    wait_set_bound(&tb, &s, Duration::from_secs(150)).await;
    wait_claims_bound(&tb, Duration::from_secs(60)).await;
    assert_consistent(&tb).await;
    assert_no_overcommit(&tb);
    tb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extender_restarted_mid_burst_still_never_overcommits() {
    let mut tb = start(opts(4, 256 * MI)).await;
    let per_node = min_vg_bytes(&tb) / (12 * MI);
    // Nearly full: an extender that forgot its reservations would overcommit.
    let pods = (per_node * 4 - 2) as usize;
    let s = set("ext", pods, &[("data", "12Mi")]);
    tb.create_statefulset(&s).await.unwrap();
    wait_bound_count(&tb, pods / 3, Duration::from_secs(90)).await;
    tb.extender.kill().await;
    let at_kill = bound_count(&tb).await;
    assert!(
        at_kill < pods,
        "the burst was over before the extender was killed"
    );
    eprintln!("extender killed with {at_kill}/{pods} pods bound");
    tb.extender.start().unwrap();
    if let Err(e) = tb.wait_extender_ready(Duration::from_secs(30)).await {
        panic!("{e}");
    }
    wait_set_bound(&tb, &s, Duration::from_secs(150)).await;
    wait_claims_bound(&tb, Duration::from_secs(60)).await;
    assert_no_overcommit(&tb);
    assert_consistent(&tb).await;
    let st = tb.stats();
    if st.reschedules != 0 {
        let e = lvmpin_sim::error::Error::ApiServer(format!(
            "an agent had to reschedule, so the extender overcommitted a VG: {st:?}; {:?}",
            lvmpin_e2e::failed_scheduling(&tb).await
        ));
        panic!("{}", tb.with_logs(e));
    }
    tb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_claims_removes_their_lvs_and_pvs() {
    let tb = start(opts(2, 256 * MI)).await;
    let s = set("gone", 4, &[("data", "16Mi")]);
    tb.create_statefulset(&s).await.unwrap();
    wait_set_bound(&tb, &s, Duration::from_secs(90)).await;
    wait_claims_bound(&tb, Duration::from_secs(30)).await;
    assert_eq!(volumes(&tb).await.len(), 4);
    let pods = Api::<Pod>::namespaced(tb.client(), "default");
    let claims_api = Api::<PersistentVolumeClaim>::namespaced(tb.client(), "default");
    for i in 0..s.replicas {
        pods.delete(&s.pod_name(i), &DeleteParams::default())
            .await
            .unwrap();
        for c in s.claim_names(i) {
            claims_api
                .delete(&c, &DeleteParams::default())
                .await
                .unwrap();
        }
    }
    let r = wait::until(
        "PVs and LVs gone",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            let pvs = volumes(&tb).await;
            let lvs: usize = tb.lvs().ok()?.values().map(Vec::len).sum();
            (pvs.is_empty() && lvs == 0 && claims(&tb).await.is_empty()).then_some(())
        },
    )
    .await;
    if let Err(e) = r {
        panic!("{}", tb.with_logs(e));
    }
    assert_no_overcommit(&tb);
    tb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vgextend_is_seen_within_one_scan_interval() {
    let mut tb = start(opts(1, 128 * MI)).await;
    let node = tb.node_names[0].clone();
    let api = Api::<LvmNode>::all(tb.client());
    let size_of = |n: &LvmNode, vg: &str| {
        n.status
            .as_ref()
            .and_then(|s| s.volume_group(vg))
            .map(|g| g.size_bytes)
    };
    let before = size_of(&api.get(&node).await.unwrap(), &tb.vg).unwrap();
    // A claim bigger than the VG stays pending until the extender sees the growth.
    let s = set("grow", 1, &[("data", "200Mi")]);
    tb.create_statefulset(&s).await.unwrap();
    tb.vgextend(&node, 256 * MI).unwrap();
    let extended = Instant::now();
    let (vg, api2) = (tb.vg.clone(), api.clone());
    // Scan interval 1 s. On top of it comes one scan (an lvm fullreport) and the
    // status write, which on a loaded 2-core CI runner can take a second or two.
    let r = wait::until(
        "LvmNode to show the grown VG",
        Duration::from_secs(4),
        Duration::from_millis(50),
        || {
            let (api, vg, node) = (api2.clone(), vg.clone(), node.clone());
            async move {
                let n = api.get(&node).await.ok()?;
                (size_of(&n, &vg)? > before).then_some(())
            }
        },
    )
    .await;
    if let Err(e) = r {
        panic!("{}", tb.with_logs(e));
    }
    eprintln!("vgextend reported after {:?}", extended.elapsed());
    // The scheduler's backoff is at most 10 s; then the extender must accept it.
    wait_set_bound(&tb, &s, Duration::from_secs(40)).await;
    wait_claims_bound(&tb, Duration::from_secs(30)).await;
    assert_consistent(&tb).await;
    tb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_size_annotation_gets_an_event_and_nothing_is_created() {
    let tb = start(opts(2, 256 * MI)).await;
    let claim =
        workload::with_local_disk_size(workload::claim("default", "bad", "lvmpin", "16Mi"), "lots");
    Api::<PersistentVolumeClaim>::namespaced(tb.client(), "default")
        .create(&PostParams::default(), &claim)
        .await
        .unwrap();
    Api::<Pod>::namespaced(tb.client(), "default")
        .create(
            &PostParams::default(),
            &workload::pod("default", "bad-0", &["bad".into()]),
        )
        .await
        .unwrap();
    let client = tb.client();
    let r = wait::until(
        "a Warning event naming the bad annotation",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let client = client.clone();
            async move {
                let new: Vec<String> = Api::<Event>::namespaced(client.clone(), "default")
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items.into_iter().filter_map(|e| e.note).collect())
                    .unwrap_or_default();
                let old: Vec<String> = Api::<CoreEvent>::namespaced(client, "default")
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items.into_iter().filter_map(|e| e.message).collect())
                    .unwrap_or_default();
                new.into_iter().chain(old).find(|m| {
                    m.contains(lvmpin_api::names::ANN_LOCAL_DISK_SIZE) || m.contains("lots")
                })
            }
        },
    )
    .await;
    let msg = match r {
        Ok(m) => m,
        Err(e) => panic!("{}", tb.with_logs(e)),
    };
    eprintln!("event: {msg}");
    // Let every agent finish one more scan, then nothing may exist.
    let api = Api::<LvmNode>::all(tb.client());
    let scans = |l: &kube::core::ObjectList<LvmNode>| -> Vec<Option<String>> {
        l.items
            .iter()
            .map(|n| n.status.as_ref().and_then(|s| s.last_scan_time.clone()))
            .collect()
    };
    let first = scans(&api.list(&ListParams::default()).await.unwrap());
    let _ = wait::until(
        "another agent scan",
        Duration::from_secs(5),
        Duration::from_millis(200),
        || {
            let api = api.clone();
            let first = first.clone();
            async move {
                let now = scans(&api.list(&ListParams::default()).await.ok()?);
                now.iter().zip(&first).all(|(a, b)| a != b).then_some(())
            }
        },
    )
    .await;
    assert!(volumes(&tb).await.is_empty(), "no PV may be created");
    let lvs: usize = tb.lvs().unwrap().values().map(Vec::len).sum();
    assert_eq!(lvs, 0, "no LV may be created");
    let pod = Api::<Pod>::namespaced(tb.client(), "default")
        .get("bad-0")
        .await
        .unwrap();
    assert!(
        pod.spec.unwrap().node_name.is_none(),
        "the pod cannot start without its volume"
    );
    tb.shutdown().await;
}
