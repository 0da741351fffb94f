//! What only the upstream control plane can show: the RBAC, admission policy
//! and CRD schema from `manifests/base` at work on a real kube-apiserver, and
//! kube-controller-manager's garbage collector. These run on `kube-local`
//! whatever `LVMPIN_CONTROL_PLANE` says (the simulator has no authorization).

use std::time::Duration;

use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use lvmpin_api::LvmNode;
use lvmpin_e2e::{Backend, start_on};
use lvmpin_sim::testbed::kube_local::client_from_kubeconfig;
use lvmpin_sim::testbed::{Testbed, TestbedOptions};
use lvmpin_sim::wait;
use serde_json::json;

const MI: u64 = 1 << 20;

async fn cluster(nodes: usize) -> Testbed {
    start_on(
        Backend::Kube,
        TestbedOptions {
            nodes,
            vg_bytes: 64 * MI,
            ..TestbedOptions::default()
        },
    )
    .await
}

/// The client an agent runs with: its service account's token, bound to the
/// stand-in pod on its node.
async fn agent_client(tb: &Testbed, node: &str) -> Client {
    let path = tb.dir.path().join(format!("agent-{node}.kubeconfig"));
    client_from_kubeconfig(&path).await.unwrap()
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn free_bytes_patch(free: u64) -> serde_json::Value {
    json!({"status": {"volumeGroups": [{
        "name": "vg-forged", "sizeBytes": 1u64 << 40, "freeBytes": free,
        "extentSizeBytes": 4u64 << 20, "healthy": true, "lvCount": 0
    }]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_may_write_only_its_own_lvmnode() {
    let tb = cluster(2).await;
    let agent0 = agent_client(&tb, "node-0").await;
    let as_agent0 = Api::<LvmNode>::all(agent0);
    let patch = free_bytes_patch(1 << 40);
    // Its own report: allowed (the running agent writes it all the time).
    as_agent0
        .patch_status("node-0", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("an agent writes its own node's LvmNode");
    // Another node's report: RBAC allows it, the admission policy denies it.
    let e = as_agent0
        .patch_status("node-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect_err("forging node-1's free space must be denied");
    assert_eq!(status_code(&e), Some(403), "{e}");
    assert!(
        e.to_string()
            .contains("only write the LvmNode named after its own node"),
        "{e}"
    );
    // Nor may it create a report for a node that is not its own.
    let forged: LvmNode = serde_json::from_value(json!({
        "apiVersion": "lvmpin.io/v1alpha1", "kind": "LvmNode",
        "metadata": {"name": "node-9"}, "spec": {"nodeName": "node-9"}
    }))
    .unwrap();
    let e = as_agent0
        .create(&PostParams::default(), &forged)
        .await
        .expect_err("creating another node's LvmNode must be denied");
    assert_eq!(status_code(&e), Some(403), "{e}");
    // And RBAC keeps it away from what it has no business with.
    let e = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(
        agent_client(&tb, "node-0").await,
        "lvmpin-system",
    )
    .list(&Default::default())
    .await
    .expect_err("an agent cannot read secrets");
    assert_eq!(status_code(&e), Some(403), "{e}");
    tb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crd_schema_rejects_a_bad_status() {
    let tb = cluster(1).await;
    let api = Api::<LvmNode>::all(tb.client());
    let negative = json!({"status": {"volumeGroups": [{
        "name": "vg", "sizeBytes": -1, "freeBytes": 0,
        "extentSizeBytes": 4u64 << 20, "healthy": true, "lvCount": 0
    }]}});
    let missing = json!({"status": {"volumeGroups": [{"name": "vg", "sizeBytes": 1}]}});
    let wrong_type = json!({"status": {"volumeGroups": [{
        "name": "vg", "sizeBytes": "lots", "freeBytes": 0,
        "extentSizeBytes": 4u64 << 20, "healthy": true, "lvCount": 0
    }]}});
    for (what, body) in [
        ("negative size", negative),
        ("missing fields", missing),
        ("wrong type", wrong_type),
    ] {
        let e = api
            .patch_status("node-0", &PatchParams::default(), &Patch::Merge(&body))
            .await
            .expect_err(what);
        assert_eq!(status_code(&e), Some(422), "{what}: {e}");
    }
    tb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_node_takes_its_lvmnode_with_it() {
    let mut tb = cluster(2).await;
    // The node is gone, and its agent with it.
    tb.agents[1].stop(Duration::from_secs(5)).await;
    let lvm_nodes = Api::<LvmNode>::all(tb.client());
    let owner = lvm_nodes
        .get("node-1")
        .await
        .unwrap()
        .metadata
        .owner_references;
    assert!(
        owner.is_some_and(|o| o.iter().any(|r| r.kind == "Node" && r.name == "node-1")),
        "the agent makes its Node the LvmNode's owner"
    );
    Api::<k8s_openapi::api::core::v1::Node>::all(tb.client())
        .delete("node-1", &Default::default())
        .await
        .unwrap();
    let r = wait::until(
        "the garbage collector to delete LvmNode node-1",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            lvm_nodes
                .get_opt("node-1")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    if let Err(e) = r {
        panic!("{}", tb.with_logs(e));
    }
    assert!(lvm_nodes.get_opt("node-0").await.unwrap().is_some());
    tb.shutdown().await;
}

/// Each agent keeps one CSIStorageCapacity per class for its node, and its
/// numbers follow the VG as `vgs` sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csi_storage_capacity_tracks_each_volume_group() {
    let tb = cluster(2).await;
    let s = lvmpin_e2e::set("cap", 3, &[("data", "8Mi")]);
    tb.create_statefulset(&s).await.unwrap();
    tb.wait_bound(
        "default",
        &(0..3).map(|i| s.pod_name(i)).collect::<Vec<_>>(),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    lvmpin_e2e::wait_claims_bound(&tb, Duration::from_secs(30)).await;
    let current = lvmpin_e2e::wait_capacity_current(&tb, Duration::from_secs(10)).await;
    for (node, obj) in current {
        assert_eq!(obj.storage_class_name, tb.class);
        assert_eq!(
            obj.node_topology.and_then(|t| t.match_labels).unwrap()["topology.lvm.lvmpin.io/node"],
            node
        );
        let owner = obj.metadata.owner_references.unwrap_or_default();
        assert!(
            owner.iter().any(|o| o.kind == "LvmNode" && o.name == node),
            "{owner:?}"
        );
    }
    lvmpin_e2e::assert_invariants(&tb, &lvmpin_e2e::Expected::default()).await;
    tb.shutdown().await;
}
