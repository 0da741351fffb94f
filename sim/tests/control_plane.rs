//! The simulated control plane (API server + PV controller + scheduler driver)
//! over real HTTP, with a small extender and provisioner written here so that
//! kube-scheduler's rules can be checked without the lvmpin binaries.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::api::core::v1::{
    Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, Pod, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use lvmpin_api::names::{ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER, TOPOLOGY_KEY};
use lvmpin_sim::control_plane::{ControlPlane, ControlPlaneOptions};
use lvmpin_sim::scheduler::{ExtenderConfig, SchedulerConfig};
use lvmpin_sim::{wait, workload};
use serde_json::{Value, json};

#[derive(Default)]
struct FakeExtender {
    bodies: Mutex<Vec<Value>>,
    /// Claims to touch (a premature PVC write) during the next filter call.
    touch_once: Mutex<Vec<(String, String)>>,
    client: Mutex<Option<Client>>,
}

/// Decisive-style filter: keep only the last node offered.
async fn filter(State(s): State<Arc<FakeExtender>>, Json(body): Json<Value>) -> Json<Value> {
    s.bodies.lock().unwrap().push(body.clone());
    let touch: Vec<_> = std::mem::take(&mut *s.touch_once.lock().unwrap());
    let client = s.client.lock().unwrap().clone();
    if let Some(client) = client {
        for (ns, name) in touch {
            let api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns);
            let patch = json!({"metadata": {"labels": {"touched": "yes"}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    }
    let names: Vec<String> = match body.get("NodeNames") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => body["Nodes"]["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["metadata"]["name"].as_str().map(String::from))
            .collect(),
    };
    let last: Vec<String> = names.last().cloned().into_iter().collect();
    if body["NodeNames"].is_null() {
        let items: Vec<Value> = body["Nodes"]["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["metadata"]["name"].as_str() == last.first().map(String::as_str))
            .cloned()
            .collect();
        return Json(
            json!({"Nodes": {"metadata": {}, "items": items}, "NodeNames": null, "FailedNodes": {}, "Error": ""}),
        );
    }
    Json(
        json!({"NodeNames": last, "Nodes": null, "FailedNodes": {}, "FailedAndUnresolvableNodes": {}, "Error": ""}),
    )
}

async fn start_extender(state: Arc<FakeExtender>) -> String {
    let app = Router::new()
        .route("/filter", post(filter))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn pinned_pv(claim: &PersistentVolumeClaim, node: &str) -> PersistentVolume {
    let uid = claim.metadata.uid.clone().unwrap();
    PersistentVolume {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(format!("pvc-{uid}")),
            annotations: Some(BTreeMap::from([(
                "pv.kubernetes.io/provisioned-by".into(),
                "lvm.lvmpin.io".into(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            capacity: Some(BTreeMap::from([("storage".into(), Quantity("1Gi".into()))])),
            persistent_volume_reclaim_policy: Some("Delete".into()),
            storage_class_name: Some("lvmpin".into()),
            claim_ref: Some(ObjectReference {
                kind: Some("PersistentVolumeClaim".into()),
                api_version: Some("v1".into()),
                namespace: claim.metadata.namespace.clone(),
                name: claim.metadata.name.clone(),
                uid: Some(uid),
                ..Default::default()
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: TOPOLOGY_KEY.into(),
                            operator: "In".into(),
                            values: Some(vec![node.into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// A provisioner: PV for every claim with selected-node; `refuse_once` claims
/// get their selected-node removed once instead (the reschedule signal).
async fn provisioner(client: Client, refuse_once: Arc<Mutex<Vec<String>>>) {
    let claims = Api::<PersistentVolumeClaim>::all(client.clone());
    let pvs = Api::<PersistentVolume>::all(client.clone());
    loop {
        if let Ok(list) = claims.list(&ListParams::default()).await {
            for c in list.items {
                let Some(node) = c
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ANN_SELECTED_NODE))
                    .cloned()
                else {
                    continue;
                };
                let name = c.metadata.name.clone().unwrap();
                let ns = c.metadata.namespace.clone().unwrap();
                let refuse = {
                    let mut r = refuse_once.lock().unwrap();
                    let pos = r.iter().position(|n| *n == name);
                    pos.map(|p| r.remove(p)).is_some()
                };
                if refuse {
                    let patch = json!({"metadata": {"annotations": {ANN_SELECTED_NODE: null}}});
                    Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .unwrap();
                    continue;
                }
                let has_volume = c
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_ref())
                    .is_some();
                if !has_volume && c.metadata.deletion_timestamp.is_none() {
                    let _ = pvs
                        .create(&PostParams::default(), &pinned_pv(&c, &node))
                        .await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Cluster {
    cp: ControlPlane,
    ext: Arc<FakeExtender>,
    refuse_once: Arc<Mutex<Vec<String>>>,
}

async fn cluster(node_cache_capable: bool, nodes: usize) -> Cluster {
    let ext = Arc::new(FakeExtender::default());
    let url = start_extender(ext.clone()).await;
    let cp = ControlPlane::start(ControlPlaneOptions {
        scheduler: Some(SchedulerConfig {
            extenders: vec![ExtenderConfig {
                prioritize_verb: None,
                bind_verb: None,
                node_cache_capable,
                ..ExtenderConfig::lvmpin(&url)
            }],
            bind_poll: Duration::from_millis(50),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            ..SchedulerConfig::default()
        }),
        ..ControlPlaneOptions::default()
    })
    .await
    .unwrap();
    let client = cp.client();
    *ext.client.lock().unwrap() = Some(client.clone());
    for i in 0..nodes {
        Api::<Node>::all(client.clone())
            .create(&PostParams::default(), &workload::node(&format!("n{i}")))
            .await
            .unwrap();
    }
    Api::<StorageClass>::all(client.clone())
        .create(
            &PostParams::default(),
            &workload::storage_class("lvmpin", "vg"),
        )
        .await
        .unwrap();
    let refuse_once = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(provisioner(client, refuse_once.clone()));
    Cluster {
        cp,
        ext,
        refuse_once,
    }
}

async fn create_set(client: &Client, name: &str, replicas: usize) -> workload::StatefulSetLike {
    let set = workload::StatefulSetLike {
        namespace: "default".into(),
        name: name.into(),
        replicas,
        class: "lvmpin".into(),
        templates: vec![("data".into(), "1Gi".into()), ("log".into(), "1Gi".into())],
    };
    let (claims, pods) = set.objects();
    for c in &claims {
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), c)
            .await
            .unwrap();
    }
    for p in &pods {
        Api::<Pod>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), p)
            .await
            .unwrap();
    }
    set
}

async fn wait_all_bound(client: &Client, n: usize) -> Vec<Pod> {
    let api = Api::<Pod>::namespaced(client.clone(), "default");
    wait::until(
        "pods bound",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let api = api.clone();
            async move {
                let l = api.list(&ListParams::default()).await.ok()?;
                let bound = l
                    .items
                    .iter()
                    .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
                    .count();
                (bound == n).then_some(l.items)
            }
        },
    )
    .await
    .unwrap()
}

async fn wait_claims_bound(client: &Client, n: usize) -> Vec<PersistentVolumeClaim> {
    let api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default");
    wait::until(
        "claims bound",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let api = api.clone();
            async move {
                let l = api.list(&ListParams::default()).await.ok()?;
                let bound = l
                    .items
                    .iter()
                    .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
                    .count();
                (bound == n).then_some(l.items)
            }
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_bind_to_the_node_their_claims_were_provisioned_on() {
    let c = cluster(true, 3).await;
    let client = c.cp.client();
    create_set(&client, "web", 3).await;
    let pods = wait_all_bound(&client, 3).await;
    let claims = wait_claims_bound(&client, 6).await;
    let pvs = Api::<PersistentVolume>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    for claim in &claims {
        let ann = claim.metadata.annotations.clone().unwrap_or_default();
        let node = &ann[ANN_SELECTED_NODE];
        assert_eq!(
            ann.get("pv.kubernetes.io/bind-completed")
                .map(String::as_str),
            Some("yes")
        );
        // The storage-provisioner annotation is written only on the PV
        // controller's provisioning path (pv_controller.go, syncUnboundClaim ->
        // provisionClaim). When the agent's pre-bound PV is already in the
        // controller's cache, findBestMatchForClaim binds it first and the claim
        // never gets the annotation, so only its value is checked.
        let provisioner = ann.get(ANN_STORAGE_PROVISIONER).map(String::as_str);
        assert!(
            provisioner.is_none_or(|p| p == "lvm.lvmpin.io"),
            "{provisioner:?}"
        );
        let status = claim.status.as_ref().unwrap();
        assert_eq!(status.capacity.as_ref().unwrap()["storage"].0, "1Gi");
        let pod_name = claim
            .metadata
            .name
            .as_ref()
            .unwrap()
            .split_once('-')
            .unwrap()
            .1;
        let pod = pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(pod_name))
            .unwrap();
        assert_eq!(pod.spec.as_ref().unwrap().node_name.as_ref(), Some(node));
        let pv_name = claim.spec.as_ref().unwrap().volume_name.clone().unwrap();
        let pv = pvs
            .iter()
            .find(|v| v.metadata.name.as_deref() == Some(pv_name.as_str()))
            .unwrap();
        assert_eq!(pv.status.as_ref().unwrap().phase.as_deref(), Some("Bound"));
    }
    // The fake extender keeps the last node it is offered, so each pod must be on
    // the last node of the last filter call made for it. (An early cycle may run
    // before every node reached the scheduler's cache: watches are not ordered.)
    let bodies = c.ext.bodies.lock().unwrap().clone();
    for p in &pods {
        let name = p.metadata.name.as_deref().unwrap();
        let last = bodies
            .iter()
            .rev()
            .find(|b| b["Pod"]["metadata"]["name"] == name)
            .and_then(|b| b["NodeNames"].as_array()?.last()?.as_str());
        assert_eq!(
            p.spec.as_ref().unwrap().node_name.as_deref(),
            last,
            "{name}"
        );
    }
    // The queue order of the set's pods is not fixed (as in kube-scheduler), and
    // an early cycle may predate a node's arrival in the cache: look at the last.
    let body = c.ext.bodies.lock().unwrap().last().cloned().unwrap();
    assert_eq!(body["Nodes"], Value::Null);
    assert!(body["NodeNames"].as_array().is_some_and(|n| !n.is_empty()));
    let pod = body["Pod"]["metadata"]["name"].as_str().unwrap_or_default();
    assert!(
        pod.starts_with("web-"),
        "filter body names the pod: {pod:?}"
    );
    let s = c.cp.stats.snapshot();
    // Only cycles that ran before the claims reached the cache may have failed.
    assert_eq!(
        (s.bound, s.retries - s.unschedulable, s.conflicts),
        (3, 0, 0),
        "{s:?}"
    );

    // Deleting a claim releases its PV.
    let claims_api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default");
    let gone = claims[0]
        .spec
        .as_ref()
        .unwrap()
        .volume_name
        .clone()
        .unwrap();
    claims_api
        .delete(
            claims[0].metadata.name.as_ref().unwrap(),
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    let pvs_api = Api::<PersistentVolume>::all(client.clone());
    wait::until(
        "PV released",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let api = pvs_api.clone();
            let gone = gone.clone();
            async move {
                let pv = api.get(&gone).await.ok()?;
                (pv.status?.phase.as_deref() == Some("Released")).then_some(())
            }
        },
    )
    .await
    .unwrap();
    c.cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_node_list_mode_sends_nodes() {
    let c = cluster(false, 2).await;
    let client = c.cp.client();
    create_set(&client, "db", 1).await;
    let pods = wait_all_bound(&client, 1).await;
    // Earlier cycles may have run before the node cache held both nodes (watches
    // of different types are not ordered); the cycle that placed the pod is the
    // last one, and the fake extender keeps the last Node object it was sent.
    let body = c.ext.bodies.lock().unwrap().last().cloned().unwrap();
    assert_eq!(body["NodeNames"], Value::Null);
    let items = body["Nodes"]["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!items.is_empty(), "full Node objects are sent: {body}");
    assert!(items.iter().all(|n| n["metadata"]["labels"].is_object()));
    let last = items.last().and_then(|n| n["metadata"]["name"].as_str());
    assert_eq!(pods[0].spec.as_ref().unwrap().node_name.as_deref(), last);
    c.cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn premature_claim_write_fails_prebind_and_the_pod_is_retried() {
    let c = cluster(true, 2).await;
    let client = c.cp.client();
    c.ext
        .touch_once
        .lock()
        .unwrap()
        .push(("default".into(), "data-app-0".into()));
    create_set(&client, "app", 1).await;
    wait_all_bound(&client, 1).await;
    let s = c.cp.stats.snapshot();
    assert_eq!(s.conflicts, 1, "{s:?}");
    // A cycle may also start before the claims reach the scheduler's cache
    // (unschedulable), as in kube-scheduler; the conflict is the one other retry.
    assert_eq!(s.retries - s.unschedulable, 1, "{s:?}");
    assert_eq!(s.bound, 1, "{s:?}");
    c.cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_selected_node_reschedules_the_pod() {
    let c = cluster(true, 2).await;
    let client = c.cp.client();
    c.refuse_once.lock().unwrap().push("data-r-0".into());
    create_set(&client, "r", 1).await;
    wait_all_bound(&client, 1).await;
    wait_claims_bound(&client, 2).await;
    let s = c.cp.stats.snapshot();
    assert_eq!(s.reschedules, 1, "{s:?}");
    assert_eq!(s.bound, 1, "{s:?}");
    c.cp.shutdown().await;
}
