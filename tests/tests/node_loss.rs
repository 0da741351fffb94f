//! Node loss, handled by `lvmpin-controller`: a claim waiting on a node whose
//! Node object is gone is placed again; a bound claim there follows its
//! node-loss policy (`keep` by default, `recreate` for middleware that
//! replicates its own data); stranded PVs are removed from the API without
//! touching a disk.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use lvmpin_api::names::{ANN_SELECTED_NODE, NODE_LOSS_POLICY};
use lvmpin_e2e::{Backend, Expected, assert_invariants, claims, set, start, start_on};
use lvmpin_sim::testbed::{Testbed, TestbedOptions};
use lvmpin_sim::{wait, workload};

const MI: u64 = 1 << 20;

fn opts(nodes: usize) -> TestbedOptions {
    TestbedOptions {
        nodes,
        vg_bytes: 256 * MI,
        // Act as soon as a Node is gone; the default grace is 30 s.
        controller_args: vec!["--node-gone-grace=1s".into(), "--resync=1s".into()],
        ..TestbedOptions::default()
    }
}

fn selected_node(c: &PersistentVolumeClaim) -> Option<&str> {
    c.metadata
        .annotations
        .as_ref()?
        .get(ANN_SELECTED_NODE)
        .map(String::as_str)
}

fn pod_nodes(pods: &[Pod]) -> BTreeMap<String, String> {
    pods.iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some("default"))
        .filter_map(|p| {
            Some((
                p.metadata.name.clone()?,
                p.spec.as_ref()?.node_name.clone()?,
            ))
        })
        .collect()
}

async fn event_reasons(tb: &Testbed) -> Vec<String> {
    Api::<Event>::all(tb.client())
        .list(&ListParams::default())
        .await
        .map(|l| l.items.into_iter().filter_map(|e| e.reason).collect())
        .unwrap_or_default()
}

async fn delete_node(tb: &Testbed, node: &str) {
    Api::<Node>::all(tb.client())
        .delete(node, &DeleteParams::default())
        .await
        .unwrap();
}

async fn until<T, F, Fut>(tb: &Testbed, what: &str, timeout: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match wait::until(what, timeout, Duration::from_millis(250), f).await {
        Ok(v) => v,
        Err(e) => panic!("{}", tb.with_logs(e)),
    }
}

/// The agent of node-2 is down, so claims placed there wait; then node-2's
/// Node object is deleted. The controller hands those claims back and every
/// pod lands on the nodes that remain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_waiting_on_a_deleted_node_are_placed_again() {
    let mut tb = start(opts(3)).await;
    tb.agents[2].kill().await;
    let s = set("lost", 6, &[("data", "8Mi")]);
    tb.create_statefulset(&s).await.unwrap();
    let waiting = until(
        &tb,
        "a claim to wait on node-2",
        Duration::from_secs(60),
        || async {
            let n = claims(&tb)
                .await
                .iter()
                .filter(|c| selected_node(c) == Some("node-2"))
                .count();
            (n > 0).then_some(n)
        },
    )
    .await;
    eprintln!("{waiting} claim(s) waiting on node-2 when it is deleted");
    delete_node(&tb, "node-2").await;
    let names: Vec<String> = (0..s.replicas).map(|i| s.pod_name(i)).collect();
    let placed = match tb
        .wait_bound("default", &names, Duration::from_secs(120))
        .await
    {
        Ok(p) => p,
        Err(e) => panic!("{}", tb.with_logs(e)),
    };
    assert!(placed.values().all(|n| n != "node-2"), "{placed:?}");
    lvmpin_e2e::wait_claims_bound(&tb, Duration::from_secs(60)).await;
    for c in claims(&tb).await {
        assert_ne!(selected_node(&c), Some("node-2"), "{:?}", c.metadata.name);
    }
    let reasons = event_reasons(&tb).await;
    assert!(
        reasons.iter().any(|r| r == "SelectedNodeGone"),
        "{reasons:?}"
    );
    assert_invariants(&tb, &Expected::default()).await;
    tb.shutdown().await;
}

/// node-2's agent stops while claims wait on it, and its Node stays. Once the
/// agent's report is older than `--agent-silence`, the controller hands those
/// claims back (an Event says why); when the agent returns, every claim is
/// served exactly once. The extender's own silence limit is set long here, so
/// that claims keep landing on node-2 and the controller's part is what is
/// seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_waiting_on_a_silent_agent_are_handed_back() {
    let mut tb = start(TestbedOptions {
        agent_args: vec!["--report-heartbeat=1s".into()],
        extender_args: vec!["--agent-silence=10m".into()],
        controller_args: vec!["--agent-silence=5s".into(), "--resync=1s".into()],
        ..opts(3)
    })
    .await;
    tb.agents[2].kill().await;
    let s = set("quiet", 6, &[("data", "8Mi")]);
    tb.create_statefulset(&s).await.unwrap();
    until(
        &tb,
        "a claim to wait on node-2",
        Duration::from_secs(60),
        || async {
            claims(&tb)
                .await
                .iter()
                .any(|c| selected_node(c) == Some("node-2"))
                .then_some(())
        },
    )
    .await;
    until(
        &tb,
        "a SelectedNodeSilent event",
        Duration::from_secs(60),
        || async {
            event_reasons(&tb)
                .await
                .iter()
                .any(|r| r == "SelectedNodeSilent")
                .then_some(())
        },
    )
    .await;
    tb.agents[2].start().unwrap();
    let names: Vec<String> = (0..s.replicas).map(|i| s.pod_name(i)).collect();
    if let Err(e) = tb
        .wait_bound("default", &names, Duration::from_secs(120))
        .await
    {
        panic!("{}", tb.with_logs(e));
    }
    lvmpin_e2e::wait_claims_bound(&tb, Duration::from_secs(60)).await;
    assert_invariants(&tb, &Expected::default()).await;
    tb.shutdown().await;
}

/// Upstream only: the StatefulSet controller recreates what the controller
/// deletes. node-1 goes away with two sets on it: replicas of the set whose
/// class says `recreate` get fresh volumes on node-0; those of the default
/// (`keep`) set keep their claims and PVs. The recreated claims' old PVs are
/// removed from the API, while node-1's LVs stay on its disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_policy_gives_replicas_fresh_volumes_and_keep_leaves_them() {
    let mut tb = start_on(Backend::Kube, opts(2)).await;
    let mut class = workload::storage_class("lvmpin-recreate", &tb.vg);
    class
        .parameters
        .get_or_insert_with(Default::default)
        .insert(NODE_LOSS_POLICY.into(), "recreate".into());
    Api::<StorageClass>::all(tb.client())
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
    // Until both agents publish capacity for the new class, kube-scheduler
    // would place its claims on one node only.
    if let Err(e) = tb
        .wait_capacity_published("lvmpin-recreate", 2, Duration::from_secs(30))
        .await
    {
        panic!("{e}");
    }
    let fresh = lvmpin_sim::workload::StatefulSetLike {
        class: "lvmpin-recreate".into(),
        ..set("fresh", 4, &[("data", "8Mi")])
    };
    let kept = set("kept", 4, &[("data", "8Mi")]);
    for s in [&fresh, &kept] {
        tb.create_statefulset(s).await.unwrap();
        let names: Vec<String> = (0..s.replicas).map(|i| s.pod_name(i)).collect();
        if let Err(e) = tb
            .wait_bound("default", &names, Duration::from_secs(90))
            .await
        {
            panic!("{}", tb.with_logs(e));
        }
    }
    lvmpin_e2e::wait_claims_bound(&tb, Duration::from_secs(60)).await;
    let before = pod_nodes(&lvmpin_e2e::pods(&tb).await);
    let on_node1 = |prefix: &str| -> Vec<String> {
        before
            .iter()
            .filter(|(p, n)| p.starts_with(prefix) && *n == "node-1")
            .map(|(p, _)| p.clone())
            .collect()
    };
    let (fresh_lost, kept_lost) = (on_node1("fresh-"), on_node1("kept-"));
    assert!(
        !fresh_lost.is_empty() && !kept_lost.is_empty(),
        "both sets need a replica on node-1: {before:?}"
    );
    let all_claims = claims(&tb).await;
    let claim_of = |pod: &str| -> PersistentVolumeClaim {
        let name = format!("data-{pod}");
        all_claims
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name.as_str()))
            .cloned()
            .unwrap()
    };
    let lvs_before = tb.lvs().unwrap()["node-1"].clone();
    // The recreated claims' old LVs stay on node-1's disk, their PVs gone.
    let stranded: Vec<String> = fresh_lost
        .iter()
        .filter_map(|p| claim_of(p).spec?.volume_name)
        .collect();

    tb.agents[1].kill().await;
    delete_node(&tb, "node-1").await;

    // The recreate set: same pod names, new claims, all on node-0.
    let claims_api = Api::<PersistentVolumeClaim>::namespaced(tb.client(), "default");
    let pvs_api = Api::<PersistentVolume>::all(tb.client());
    for pod in &fresh_lost {
        let old = claim_of(pod);
        let old_uid = old.metadata.uid.clone().unwrap();
        let old_pv = old.spec.as_ref().unwrap().volume_name.clone().unwrap();
        let name = format!("data-{pod}");
        until(
            &tb,
            &format!("{name} recreated and bound on node-0"),
            Duration::from_secs(120),
            || async {
                let c = claims_api.get_opt(&name).await.ok()??;
                let bound = c.status.as_ref()?.phase.as_deref() == Some("Bound");
                (c.metadata.uid.as_deref() != Some(old_uid.as_str())
                    && bound
                    && selected_node(&c) == Some("node-0"))
                .then_some(())
            },
        )
        .await;
        until(
            &tb,
            &format!("stranded {old_pv} removed"),
            Duration::from_secs(60),
            || async { pvs_api.get_opt(&old_pv).await.ok()?.is_none().then_some(()) },
        )
        .await;
    }
    let names: Vec<String> = (0..fresh.replicas).map(|i| fresh.pod_name(i)).collect();
    let placed = match tb
        .wait_bound("default", &names, Duration::from_secs(120))
        .await
    {
        Ok(p) => p,
        Err(e) => panic!("{}", tb.with_logs(e)),
    };
    assert!(placed.values().all(|n| n == "node-0"), "{placed:?}");

    // The keep set: its claims and PVs on node-1 are untouched, and reported.
    until(&tb, "a NodeLost event", Duration::from_secs(60), || async {
        event_reasons(&tb)
            .await
            .iter()
            .any(|r| r == "NodeLost")
            .then_some(())
    })
    .await;
    for pod in &kept_lost {
        let old = claim_of(pod);
        let now = claims_api
            .get(old.metadata.name.as_deref().unwrap())
            .await
            .unwrap();
        assert_eq!(now.metadata.uid, old.metadata.uid, "{pod}: claim kept");
        assert!(now.metadata.deletion_timestamp.is_none(), "{pod}");
        let pv = old.spec.as_ref().unwrap().volume_name.clone().unwrap();
        assert!(pvs_api.get_opt(&pv).await.unwrap().is_some(), "{pv} kept");
    }
    // No disk was touched: node-1 still has every LV it had.
    assert_eq!(tb.lvs().unwrap()["node-1"], lvs_before);
    assert_invariants(&tb, &Expected::orphan_lvs(stranded)).await;
    tb.shutdown().await;
}
