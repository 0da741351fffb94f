//! End-to-end: a control plane (upstream kube-apiserver, kube-controller-manager
//! and kube-scheduler through `kube-local` by default; the simulator with
//! `LVMPIN_CONTROL_PLANE=sim`), the real `lvmpin-scheduler-extender` and
//! `lvmpin-agent` binaries as processes, one loop-backed VG per node
//! (metadata-only LVM when the kernel has no device-mapper). Run as root after
//! `bash hack/kube-local/build.sh`: `cargo nextest run -p lvmpin-e2e --test e2e`

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Event as CoreEvent, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use lvmpin_api::LvmNode;
use lvmpin_e2e::{
    Expected, Mode, assert_invariants, claims, reschedules, set, start, volumes, wait_claims_bound,
    wait_set_bound,
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
    assert_invariants(&tb, &Expected::default()).await;
    assert_eq!(reschedules(&tb).await, 0);
    // The scheduler (upstream kube-scheduler by default) really went through
    // the extender: its filter saw the pods and its bind verb bound them.
    let metrics = tb.extender_metrics().await.unwrap();
    let counter = |name: &str, label: &str| lvmpin_e2e::counter(&metrics, name, label);
    let filters = counter(
        "lvmpin_extender_request_duration_seconds_count",
        "verb=\"filter\"",
    );
    let binds = counter("lvmpin_extender_bind_results_total", "result=\"bound\"");
    assert!(filters >= 6.0, "filter calls: {filters}\n{metrics}");
    assert!(binds >= 6.0, "binds: {binds}\n{metrics}");
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
    assert_invariants(&tb, &Expected::default()).await;
    let n = reschedules(&tb).await;
    if n != 0 {
        let e = lvmpin_sim::error::Error::ApiServer(format!(
            "decisive mode must never need a reschedule: {n} reschedules; {:?}",
            lvmpin_e2e::failed_scheduling(&tb).await
        ));
        panic!("{}", tb.with_logs(e));
    }
    tb.shutdown().await;
}

/// Negative control for the overcommit checks: a scheduler that does not call
/// the extender cannot see that node-0 is small. The set fits the two nodes
/// together (24 x 12 MiB in 128 + 384 MiB) but not an even split, which is
/// what kube-scheduler's spreading gives (and the simulator's name order is
/// worse), so an agent must give claims back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_extender_a_tight_burst_needs_reschedules() {
    let mut tb = start(TestbedOptions {
        scheduler_uses_extender: false,
        ..opts(2, 128 * MI)
    })
    .await;
    tb.vgextend("node-1", 256 * MI).unwrap();
    let s = set("blind", 24, &[("data", "12Mi")]);
    tb.create_statefulset(&s).await.unwrap();
    let r = wait::until(
        "an agent to reschedule",
        Duration::from_secs(90),
        Duration::from_millis(100),
        || async { (reschedules(&tb).await > 0).then_some(()) },
    )
    .await;
    if let Err(e) = r {
        panic!("{}", tb.with_logs(e));
    }
    // The set fits both nodes together, so the given-back claims land too.
    wait_set_bound(&tb, &s, Duration::from_secs(150)).await;
    wait_claims_bound(&tb, Duration::from_secs(60)).await;
    assert_invariants(&tb, &Expected::default()).await;
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
    assert_invariants(&tb, &Expected::default()).await;
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
    assert_invariants(&tb, &Expected::default()).await;
    tb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extender_restarted_mid_burst_still_never_overcommits() {
    // Not ignorable here: while the extender is down, kube-scheduler must
    // wait for it, so that every placement is the extender's and any
    // reschedule would be its overcommit (the ignorable set-up is covered in
    // tests/tests/capacity.rs).
    let mut tb = start(TestbedOptions {
        extender_ignorable: Some(false),
        ..opts(4, 256 * MI)
    })
    .await;
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
    assert_invariants(&tb, &Expected::default()).await;
    let n = reschedules(&tb).await;
    if n != 0 {
        let e = lvmpin_sim::error::Error::ApiServer(format!(
            "an agent had to reschedule, so the extender overcommitted a VG: {n} reschedules; {:?}",
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
    tb.delete_set_pods(&s).await.unwrap();
    let claims_api = Api::<PersistentVolumeClaim>::namespaced(tb.client(), "default");
    for i in 0..s.replicas {
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
    assert_invariants(&tb, &Expected::default()).await;
    tb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vgextend_behind_the_agents_back_is_reported_and_unblocks_a_claim() {
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
    // The periodic scan (1 s here) must pick up a change made behind the
    // agent's back. How fast is a benchmark's question, not a test's: on a
    // loaded runner a scan plus the status write can take seconds.
    let r = wait::until(
        "LvmNode to show the grown VG",
        Duration::from_secs(30),
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
    assert_invariants(&tb, &Expected::default()).await;
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
    let refused = Expected {
        unbound_claims: vec!["default/bad".into()],
        ..Expected::default()
    };
    assert_invariants(&tb, &refused).await;
    tb.shutdown().await;
}

/// A node whose VG filled up behind the extender's back (an LV someone else
/// made, not yet in any report) cannot create the volume: its agent gives the
/// claim back, reports the real free space at once, and the scheduler places
/// the pod on the other node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_create_the_lv_gives_the_claim_back_and_the_pod_lands_elsewhere() {
    // Scans only at start: nothing but the failed create may reveal the change.
    let tb = start(TestbedOptions {
        scan_interval: "1h".into(),
        ..opts(2, 128 * MI)
    })
    .await;
    // Both nodes report the same free space, so the extender's tie-break by
    // name sends the first claim to node-0; fill node-0 now.
    let full = tb.disk("node-0").unwrap();
    let (_, free) = full.vg_size_free().unwrap();
    full.create_foreign_lv("someone-else", free).unwrap();
    let s = set("moved", 1, &[("data", "32Mi")]);
    tb.create_statefulset(&s).await.unwrap();
    let placed = wait_set_bound(&tb, &s, Duration::from_secs(90)).await;
    assert_eq!(placed["moved-0"], "node-1", "{placed:?}");
    wait_claims_bound(&tb, Duration::from_secs(30)).await;
    assert!(
        reschedules(&tb).await >= 1,
        "node-0 must have given the claim back"
    );
    full.remove_lv("someone-else").unwrap();
    assert_invariants(&tb, &Expected::default()).await;
    tb.shutdown().await;
}

/// With reclaim policy Retain, deleting the claim leaves the PV Released and
/// the LV, with its data, in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_keeps_the_volume_after_its_claim_is_deleted() {
    let tb = start(opts(1, 128 * MI)).await;
    let mut class = workload::storage_class("keep", &tb.vg);
    class.reclaim_policy = Some("Retain".into());
    Api::<StorageClass>::all(tb.client())
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
    let mut s = set("kept", 1, &[("data", "16Mi")]);
    s.class = "keep".into();
    tb.create_statefulset(&s).await.unwrap();
    wait_set_bound(&tb, &s, Duration::from_secs(90)).await;
    wait_claims_bound(&tb, Duration::from_secs(30)).await;
    let pv_name = volumes(&tb).await[0].metadata.name.clone().unwrap();
    tb.delete_set_pods(&s).await.unwrap();
    Api::<PersistentVolumeClaim>::namespaced(tb.client(), "default")
        .delete("data-kept-0", &DeleteParams::default())
        .await
        .unwrap();
    let pvs = Api::<PersistentVolume>::all(tb.client());
    let r = wait::until(
        "the PV to be Released",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            let pv = pvs.get(&pv_name).await.ok()?;
            (pv.status?.phase.as_deref() == Some("Released")).then_some(())
        },
    )
    .await;
    if let Err(e) = r {
        panic!("{}", tb.with_logs(e));
    }
    assert!(claims(&tb).await.is_empty());
    // An operator deletes the retained PV object: nothing may hold it (no
    // finalizer of ours), and the LV with the data stays for them to handle.
    pvs.delete(&pv_name, &DeleteParams::default())
        .await
        .unwrap();
    let r = wait::until(
        "the retained PV object to be deleted",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async { pvs.get_opt(&pv_name).await.ok()?.is_none().then_some(()) },
    )
    .await;
    if let Err(e) = r {
        let pv = pvs.get_opt(&pv_name).await.ok().flatten();
        let fin = pv.and_then(|p| p.metadata.finalizers);
        panic!("{}; finalizers {fin:?}", tb.with_logs(e));
    }
    let lvs = tb.lvs().unwrap();
    assert_eq!(
        lvs["node-0"].iter().filter(|(n, _)| *n == pv_name).count(),
        1,
        "the retained LV must stay: {lvs:?}"
    );
    assert_invariants(&tb, &Expected::orphan_lvs([pv_name])).await;
    tb.shutdown().await;
}

/// Controller-side expansion as external-resizer does it: the LV grows, then
/// the PV's capacity, then the claim waits for the node (NodeResizePending).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expanding_a_claim_grows_the_lv_then_the_pv_then_hands_over_to_the_node() {
    let tb = start(opts(1, 256 * MI)).await;
    let s = set("grow", 1, &[("data", "32Mi")]);
    tb.create_statefulset(&s).await.unwrap();
    wait_set_bound(&tb, &s, Duration::from_secs(90)).await;
    wait_claims_bound(&tb, Duration::from_secs(30)).await;
    let claims_api = Api::<PersistentVolumeClaim>::namespaced(tb.client(), "default");
    let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": "64Mi"}}}});
    claims_api
        .patch(
            "data-grow-0",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let r = wait::until(
        "the claim to reach NodeResizePending",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            let c = claims_api.get("data-grow-0").await.ok()?;
            let st = c.status?;
            (st.allocated_resource_statuses?
                .get("storage")
                .map(String::as_str)
                == Some("NodeResizePending"))
            .then_some(())
        },
    )
    .await;
    if let Err(e) = r {
        panic!("{}", tb.with_logs(e));
    }
    let pv = &volumes(&tb).await[0];
    let pv_name = pv.metadata.name.clone().unwrap();
    let cap = &pv.spec.as_ref().unwrap().capacity.as_ref().unwrap()["storage"];
    assert!(
        lvmpin_api::parse_quantity_bytes(&cap.0).unwrap() >= 64 * MI,
        "PV capacity {cap:?}"
    );
    let lv = tb.lvs().unwrap()["node-0"]
        .iter()
        .find(|(n, _)| *n == pv_name)
        .map(|(_, size)| *size)
        .unwrap();
    assert!(lv >= 64 * MI, "LV size {lv}");
    assert_invariants(&tb, &Expected::default()).await;
    tb.shutdown().await;
}
