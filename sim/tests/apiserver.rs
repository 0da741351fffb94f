//! The in-memory API server's semantics, checked over real HTTP on loopback
//! with raw requests (for exact codes and bodies) and with kube-rs (for what
//! the binaries rely on: typed APIs, watcher + reflector, discovery).

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use lvmpin_sim::apiserver::{self, ApiServerOptions, RunningApiServer};
use serde_json::{Value, json};
use tokio::time::{Instant, timeout};

struct Sim {
    server: RunningApiServer,
    client: kube::Client,
}

async fn sim_with_history(history: usize) -> Sim {
    let server = apiserver::start(ApiServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        watch_history: history,
    })
    .await
    .unwrap();
    let client = server.client().await.unwrap();
    Sim { server, client }
}

async fn sim() -> Sim {
    sim_with_history(10_000).await
}

impl Sim {
    async fn raw(&self, method: &str, path: &str, ct: &str, body: Vec<u8>) -> (u16, Value) {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", ct)
            .body(kube::client::Body::from(body))
            .unwrap();
        let resp = self.client.send(req).await.unwrap();
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect_bytes().await.unwrap();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        (code, v)
    }

    async fn req(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        self.raw(method, path, "application/json", body).await
    }

    async fn patch(&self, path: &str, ct: &str, body: Value) -> (u16, Value) {
        self.raw("PATCH", path, ct, serde_json::to_vec(&body).unwrap())
            .await
    }

    /// Opens a watch and returns a reader of its events.
    async fn watch(&self, path: &str) -> WatchReader {
        self.watch_accepting(path, "application/json").await
    }

    async fn watch_accepting(&self, path: &str, accept: &str) -> WatchReader {
        let req = http::Request::builder()
            .method("GET")
            .uri(path)
            .header("accept", accept)
            .body(kube::client::Body::empty())
            .unwrap();
        let resp = self.client.send(req).await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "watch {path}");
        WatchReader {
            body: resp.into_body(),
            buf: Vec::new(),
        }
    }
}

struct WatchReader {
    body: kube::client::Body,
    buf: Vec<u8>,
}

impl WatchReader {
    /// The next event, or None when the stream ends; fails the test after 5 s.
    async fn next(&mut self) -> Option<(String, Value)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let v: Value = serde_json::from_slice(&line).unwrap();
                return Some((v["type"].as_str().unwrap().to_string(), v["object"].clone()));
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .expect("no watch event within 5 s");
            match frame {
                None => return None,
                Some(f) => {
                    if let Ok(data) = f.unwrap().into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The next event that is not a bookmark.
    async fn next_change(&mut self) -> (String, Value) {
        loop {
            let (t, o) = self.next().await.expect("watch ended");
            if t != "BOOKMARK" {
                return (t, o);
            }
        }
    }
}

fn rv(o: &Value) -> u64 {
    o["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn create_conflicts_and_generate_name() {
    let s = sim().await;
    let (code, created) = s.req("POST", PODS, Some(pod("p1"))).await;
    assert_eq!(code, 201);
    assert_eq!(created["metadata"]["namespace"], "default");
    assert!(!created["metadata"]["uid"].as_str().unwrap().is_empty());
    assert!(created["metadata"]["creationTimestamp"].is_string());
    assert_eq!(created["status"]["phase"], "Pending");
    let (code, st) = s.req("POST", PODS, Some(pod("p1"))).await;
    assert_eq!(code, 409);
    assert_eq!(st["kind"], "Status");
    assert_eq!(st["reason"], "AlreadyExists");
    assert_eq!(st["details"]["name"], "p1");

    let (code, g) = s
        .req(
            "POST",
            PODS,
            Some(json!({"metadata": {"generateName": "web-"}, "spec": {}})),
        )
        .await;
    assert_eq!(code, 201);
    let name = g["metadata"]["name"].as_str().unwrap();
    assert!(
        name.starts_with("web-") && name.len() == "web-".len() + 5,
        "{name}"
    );

    let (code, st) = s.req("POST", PODS, Some(json!({"metadata": {}}))).await;
    assert_eq!((code, st["reason"].as_str()), (422, Some("Invalid")));
    let (code, get) = s.req("GET", &format!("{PODS}/p1"), None).await;
    assert_eq!(code, 200);
    assert_eq!(get["metadata"]["uid"], created["metadata"]["uid"]);
    let (code, st) = s.req("GET", &format!("{PODS}/nope"), None).await;
    assert_eq!((code, st["reason"].as_str()), (404, Some("NotFound")));
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let s = sim().await;
    let (code, st) = s
        .raw("POST", PODS, "application/json", b"{not json".to_vec())
        .await;
    assert_eq!(code, 400);
    assert!(
        st["message"].as_str().unwrap().contains("not valid JSON"),
        "{st}"
    );
    let (code, _) = s
        .req(
            "POST",
            PODS,
            Some(json!({"kind": "Node", "metadata": {"name": "x"}})),
        )
        .await;
    assert_eq!(code, 400);
    let (code, _) = s
        .req(
            "POST",
            PODS,
            Some(json!({"metadata": {"name": "Not_Valid"}})),
        )
        .await;
    assert_eq!(code, 422);
    let (code, _) = s
        .req("GET", &format!("{PODS}?labelSelector=a%20in%20b"), None)
        .await;
    assert_eq!(code, 400);
    let (code, _) = s
        .req("GET", &format!("{PODS}?watch=1&resourceVersion=abc"), None)
        .await;
    assert_eq!(code, 400);
    let yaml = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: from-yaml\nspec: {}\n".to_vec();
    let (code, y) = s.raw("POST", PODS, "application/yaml", yaml).await;
    assert_eq!(
        (code, y["metadata"]["name"].as_str()),
        (201, Some("from-yaml"))
    );
    let (code, _) = s
        .raw("POST", PODS, "application/vnd.kubernetes.protobuf", vec![0])
        .await;
    assert_eq!(code, 415);
    let (code, _) = s.req("GET", "/apis/nope.io/v1/things", None).await;
    assert_eq!(code, 404);
    let (code, _) = s.req("GET", "/openapi/v2", None).await;
    assert_eq!(code, 404);
    s.req("POST", PODS, Some(pod("p"))).await;
    let (code, st) = s
        .raw(
            "PUT",
            &format!("{PODS}/p"),
            "application/json",
            b"[]".to_vec(),
        )
        .await;
    assert_eq!(code, 400, "{st}");
    let (code, _) = s.req("PUT", &format!("{PODS}/p"), Some(pod("other"))).await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn update_conflicts_on_stale_resource_version() {
    let s = sim().await;
    let (_, p) = s.req("POST", PODS, Some(pod("p"))).await;
    let mut a = p.clone();
    a["metadata"]["labels"] = json!({"v": "a"});
    let (code, a2) = s.req("PUT", &format!("{PODS}/p"), Some(a)).await;
    assert_eq!(code, 200);
    assert!(rv(&a2) > rv(&p));
    let mut b = p.clone();
    b["metadata"]["labels"] = json!({"v": "b"});
    let (code, st) = s.req("PUT", &format!("{PODS}/p"), Some(b.clone())).await;
    assert_eq!((code, st["reason"].as_str()), (409, Some("Conflict")));
    // Without a resourceVersion the update is unconditional.
    b["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let (code, b2) = s.req("PUT", &format!("{PODS}/p"), Some(b)).await;
    assert_eq!(code, 200);
    assert_eq!(b2["metadata"]["labels"]["v"], "b");
    let (code, _) = s
        .req("PUT", &format!("{PODS}/ghost"), Some(pod("ghost")))
        .await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn merge_and_json_patches() {
    let s = sim().await;
    let (_, p) = s.req("POST", PODS, Some(pod("p"))).await;
    let path = format!("{PODS}/p");
    let merge = "application/merge-patch+json";
    let (code, m) = s
        .patch(
            &path,
            merge,
            json!({"metadata": {"annotations": {"lvm.lvmpin.io/x": "1"}}}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(m["metadata"]["annotations"]["lvm.lvmpin.io/x"], "1");
    // A resourceVersion in a merge patch is a precondition.
    let stale = json!({"metadata": {"resourceVersion": p["metadata"]["resourceVersion"], "labels": {"a": "b"}}});
    let (code, st) = s.patch(&path, merge, stale).await;
    assert_eq!((code, st["reason"].as_str()), (409, Some("Conflict")));
    let fresh = json!({"metadata": {"resourceVersion": m["metadata"]["resourceVersion"], "labels": {"a": "b"}}});
    assert_eq!(s.patch(&path, merge, fresh).await.0, 200);

    let jp = "application/json-patch+json";
    let ok = json!([
        {"op": "test", "path": "/metadata/annotations/lvm.lvmpin.io~1x", "value": "1"},
        {"op": "replace", "path": "/metadata/annotations/lvm.lvmpin.io~1x", "value": "2"}
    ]);
    let (code, j) = s.patch(&path, jp, ok).await;
    assert_eq!(code, 200);
    assert_eq!(j["metadata"]["annotations"]["lvm.lvmpin.io/x"], "2");
    let failing = json!([{"op": "test", "path": "/metadata/annotations/lvm.lvmpin.io~1x", "value": "1"},
        {"op": "remove", "path": "/metadata/labels"}]);
    let (code, st) = s.patch(&path, jp, failing).await;
    assert_eq!((code, st["reason"].as_str()), (422, Some("Invalid")));
    let (_, now) = s.req("GET", &path, None).await;
    assert_eq!(
        now["metadata"]["labels"]["a"], "b",
        "a failed patch changes nothing"
    );

    for ct in [
        "application/apply-patch+yaml",
        "application/strategic-merge-patch+json",
    ] {
        let (code, st) = s.patch(&path, ct, json!({})).await;
        assert_eq!(code, 415, "{ct}");
        assert!(st["message"].as_str().unwrap().contains("not supported"));
    }
    let (code, _) = s.patch(&format!("{PODS}/ghost"), merge, json!({})).await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn status_subresource_is_isolated() {
    let s = sim().await;
    let path = "/api/v1/namespaces/default/persistentvolumeclaims";
    let claim = json!({"metadata": {"name": "c"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound"}});
    let (code, c) = s.req("POST", path, Some(claim)).await;
    assert_eq!(code, 201);
    assert_eq!(
        c["status"]["phase"], "Pending",
        "status is not taken from create"
    );
    let merge = "application/merge-patch+json";
    let (_, m) = s
        .patch(
            &format!("{path}/c"),
            merge,
            json!({"spec": {"volumeName": "pv1"}, "status": {"phase": "Bound"}}),
        )
        .await;
    assert_eq!(m["spec"]["volumeName"], "pv1");
    assert_eq!(
        m["status"]["phase"], "Pending",
        "main resource ignores status"
    );
    let (code, st) = s
        .patch(
            &format!("{path}/c/status"),
            merge,
            json!({"spec": {"volumeName": "other"}, "status": {"phase": "Bound"}}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(st["status"]["phase"], "Bound");
    assert_eq!(st["spec"]["volumeName"], "pv1", "status ignores spec");
    let mut put = st.clone();
    put["status"]["phase"] = json!("Lost");
    put["metadata"]["labels"] = json!({"x": "y"});
    let (code, p) = s.req("PUT", &format!("{path}/c/status"), Some(put)).await;
    assert_eq!(code, 200);
    assert_eq!(p["status"]["phase"], "Lost");
    assert!(p["metadata"].get("labels").is_none());
    let (code, g) = s.req("GET", &format!("{path}/c/status"), None).await;
    assert_eq!((code, g["status"]["phase"].as_str()), (200, Some("Lost")));
    // Types without a status subresource do not serve one.
    let (code, _) = s
        .req(
            "GET",
            "/apis/storage.k8s.io/v1/storageclasses/x/status",
            None,
        )
        .await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn finalizers_defer_removal() {
    let s = sim().await;
    let path = "/api/v1/persistentvolumes";
    let pv = json!({"metadata": {"name": "pv1", "finalizers": ["lvm.lvmpin.io/lv"]}, "spec": {"capacity": {"storage": "1Gi"}}});
    let (_, created) = s.req("POST", path, Some(pv)).await;
    assert_eq!(created["status"]["phase"], "Available");
    let mut w = s
        .watch(&format!("{path}?watch=1&resourceVersion={}", rv(&created)))
        .await;
    let (code, d) = s.req("DELETE", &format!("{path}/pv1"), None).await;
    assert_eq!(code, 200);
    assert!(d["metadata"]["deletionTimestamp"].is_string());
    let (code, still) = s.req("GET", &format!("{path}/pv1"), None).await;
    assert_eq!(code, 200);
    assert!(still["metadata"]["deletionTimestamp"].is_string());
    // No new finalizers on an object being deleted.
    let add = json!({"metadata": {"finalizers": ["lvm.lvmpin.io/lv", "other"]}});
    assert_eq!(
        s.patch(&format!("{path}/pv1"), "application/merge-patch+json", add)
            .await
            .0,
        422
    );
    let clear = json!([{"op": "remove", "path": "/metadata/finalizers/0"}]);
    let (code, _) = s
        .patch(&format!("{path}/pv1"), "application/json-patch+json", clear)
        .await;
    assert_eq!(code, 200);
    assert_eq!(s.req("GET", &format!("{path}/pv1"), None).await.0, 404);
    let (t, o) = w.next_change().await;
    assert_eq!(
        (t.as_str(), o["metadata"]["deletionTimestamp"].is_string()),
        ("MODIFIED", true)
    );
    let (t, _) = w.next_change().await;
    assert_eq!(t, "DELETED");
}

#[tokio::test]
async fn owner_deletion_collects_dependents() {
    let s = sim().await;
    let (_, owner) = s.req("POST", PODS, Some(pod("owner"))).await;
    let uid = owner["metadata"]["uid"].clone();
    let oref = json!([{"apiVersion": "v1", "kind": "Pod", "name": "owner", "uid": uid}]);
    let claims = "/api/v1/namespaces/default/persistentvolumeclaims";
    for n in ["c1", "c2"] {
        let c = json!({"metadata": {"name": n, "ownerReferences": oref}, "spec": {}});
        assert_eq!(s.req("POST", claims, Some(c)).await.0, 201);
    }
    assert_eq!(
        s.req(
            "POST",
            claims,
            Some(json!({"metadata": {"name": "free"}, "spec": {}}))
        )
        .await
        .0,
        201
    );
    let (code, _) = s
        .req(
            "DELETE",
            &format!("{PODS}/owner"),
            Some(json!({"propagationPolicy": "Background"})),
        )
        .await;
    assert_eq!(code, 200);
    let (_, list) = s.req("GET", claims, None).await;
    let names: Vec<_> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("free")]);
}

#[tokio::test]
async fn label_and_field_selectors() {
    let s = sim().await;
    for (name, app, node) in [
        ("a", "db", "n1"),
        ("b", "web", "n1"),
        ("c", "web", ""),
        ("d", "cache", "n2"),
    ] {
        let mut p = pod(name);
        p["metadata"]["labels"] = json!({"app": app});
        if !node.is_empty() {
            p["spec"]["nodeName"] = json!(node);
        }
        s.req("POST", PODS, Some(p)).await;
    }
    let other = "/api/v1/namespaces/other/pods";
    s.req("POST", other, Some(pod("z"))).await;
    let names = |v: Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let q = |sel: &str| format!("{PODS}?{sel}");
    let cases = [
        ("labelSelector=app%3Dweb", vec!["b", "c"]),
        ("labelSelector=app%20in%20(db%2Ccache)", vec!["a", "d"]),
        ("labelSelector=app%20notin%20(web),app", vec!["a", "d"]),
        ("labelSelector=app!%3Dweb", vec!["a", "d"]),
        ("labelSelector=!app", vec![]),
        ("fieldSelector=spec.nodeName%3Dn1", vec!["a", "b"]),
        ("fieldSelector=spec.nodeName%3D", vec!["c"]),
        (
            "fieldSelector=spec.nodeName!%3D,metadata.name!%3Da",
            vec!["b", "d"],
        ),
        (
            "fieldSelector=metadata.name%3D%3Dd&labelSelector=app%3Dcache",
            vec!["d"],
        ),
        (
            "fieldSelector=metadata.namespace%3Ddefault,status.phase%3DPending",
            vec!["a", "b", "c", "d"],
        ),
    ];
    for (sel, want) in cases {
        let (code, list) = s.req("GET", &q(sel), None).await;
        assert_eq!(code, 200, "{sel}");
        assert_eq!(names(list), want, "{sel}");
    }
    let (_, all) = s.req("GET", "/api/v1/pods", None).await;
    assert_eq!(all["kind"], "PodList");
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    assert_eq!(all["items"][0]["kind"], "Pod");
    assert_eq!(all["items"][0]["apiVersion"], "v1");
    assert!(all["metadata"]["resourceVersion"].is_string());
}

#[tokio::test]
async fn watch_from_a_version_sees_changes_in_order() {
    let s = sim().await;
    let (_, before) = s.req("POST", PODS, Some(pod("early"))).await;
    let (_, list) = s.req("GET", PODS, None).await;
    let list_rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut w = s
        .watch(&format!("{PODS}?watch=true&resourceVersion={list_rv}"))
        .await;
    let mut sel = s
        .watch(&format!(
            "{PODS}?watch=1&resourceVersion={list_rv}&labelSelector=tier%3Dfront"
        ))
        .await;
    s.req("POST", PODS, Some(pod("p"))).await;
    s.req(
        "POST",
        "/api/v1/namespaces/default/persistentvolumeclaims",
        Some(json!({"metadata": {"name": "c"}})),
    )
    .await;
    let merge = "application/merge-patch+json";
    s.patch(
        &format!("{PODS}/p"),
        merge,
        json!({"metadata": {"labels": {"tier": "front"}}}),
    )
    .await;
    s.patch(
        &format!("{PODS}/p"),
        merge,
        json!({"metadata": {"labels": {"tier": "back"}}}),
    )
    .await;
    s.req("DELETE", &format!("{PODS}/p"), None).await;
    let mut seen = Vec::new();
    let mut last = rv(&before);
    for _ in 0..4 {
        let (t, o) = w.next_change().await;
        assert!(rv(&o) > last, "versions increase");
        last = rv(&o);
        seen.push(format!("{t} {}", o["metadata"]["name"].as_str().unwrap()));
    }
    assert_eq!(seen, ["ADDED p", "MODIFIED p", "MODIFIED p", "DELETED p"]);
    // Through the selector, the pod appears when it starts matching and goes when it stops.
    let (t, _) = sel.next_change().await;
    assert_eq!(t, "ADDED");
    let (t, o) = sel.next_change().await;
    assert_eq!(
        (t.as_str(), o["metadata"]["labels"]["tier"].as_str()),
        ("DELETED", Some("back"))
    );

    // Without a resourceVersion the watch starts with the current state.
    let mut fresh = s.watch(&format!("{PODS}?watch=1")).await;
    let (t, o) = fresh.next_change().await;
    assert_eq!(
        (t.as_str(), o["metadata"]["name"].as_str()),
        ("ADDED", Some("early"))
    );
}

#[tokio::test]
async fn bookmarks_and_timeout() {
    let s = sim().await;
    let (_, p) = s.req("POST", PODS, Some(pod("p"))).await;
    let mut w = s
        .watch(&format!(
            "{PODS}?watch=1&allowWatchBookmarks=true&timeoutSeconds=3&resourceVersion={}",
            rv(&p)
        ))
        .await;
    let (t, o) = w.next().await.expect("a bookmark before the timeout");
    assert_eq!(t, "BOOKMARK");
    assert_eq!(o["kind"], "Pod");
    assert!(rv(&o) >= rv(&p));
    let started = Instant::now();
    while w.next().await.is_some() {}
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stream ends at timeoutSeconds"
    );

    // sendInitialEvents ends the initial state with a marked bookmark.
    let mut w = s
        .watch(&format!("{PODS}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan"))
        .await;
    assert_eq!(w.next().await.unwrap().0, "ADDED");
    let (t, o) = w.next().await.unwrap();
    assert_eq!(t, "BOOKMARK");
    assert_eq!(
        o["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[tokio::test]
async fn expired_versions_get_410() {
    let s = sim_with_history(5).await;
    let (_, first) = s.req("POST", PODS, Some(pod("p0"))).await;
    for i in 1..10 {
        s.req("POST", PODS, Some(pod(&format!("p{i}")))).await;
    }
    let mut w = s
        .watch(&format!("{PODS}?watch=1&resourceVersion={}", rv(&first)))
        .await;
    let (t, o) = w.next().await.unwrap();
    assert_eq!(t, "ERROR");
    assert_eq!(
        (o["code"].as_i64(), o["reason"].as_str()),
        (Some(410), Some("Expired"))
    );
    assert!(w.next().await.is_none(), "the stream ends after the error");
}

#[tokio::test]
async fn pod_binding() {
    let s = sim().await;
    s.req("POST", PODS, Some(pod("p"))).await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
    let (code, st) = s
        .req("POST", &format!("{PODS}/p/binding"), Some(binding.clone()))
        .await;
    assert_eq!((code, st["status"].as_str()), (201, Some("Success")));
    let (_, p) = s.req("GET", &format!("{PODS}/p"), None).await;
    assert_eq!(p["spec"]["nodeName"], "n1");
    assert!(
        p["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "PodScheduled")
    );
    let (code, st) = s
        .req("POST", &format!("{PODS}/p/binding"), Some(binding))
        .await;
    assert_eq!((code, st["reason"].as_str()), (409, Some("Conflict")));
    let nobody = json!({"metadata": {"name": "q"}, "target": {"name": "n1"}});
    assert_eq!(
        s.req("POST", &format!("{PODS}/q/binding"), Some(nobody))
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn custom_resources_are_served_after_their_crd() {
    let s = sim().await;
    // LvmNode is there from the start.
    let nodes: Api<lvmpin_api::LvmNode> = Api::all(s.client.clone());
    let ln = lvmpin_api::LvmNode::new(
        "n1",
        lvmpin_api::LvmNodeSpec {
            node_name: "n1".into(),
        },
    );
    let created = nodes.create(&PostParams::default(), &ln).await.unwrap();
    assert!(created.status.is_none());
    let st = json!({"status": {"volumeGroups": [], "conditions": []}});
    let patched = nodes
        .patch_status("n1", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap();
    assert!(patched.status.is_some());

    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.io"},
        "spec": {"group": "example.io", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}}}]}});
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let (code, c) = s.req("POST", crds, Some(crd.clone())).await;
    assert_eq!(code, 201);
    assert!(
        c["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Established")
    );
    let widgets = "/apis/example.io/v1/namespaces/ns1/widgets";
    let (code, w) = s
        .req(
            "POST",
            widgets,
            Some(json!({"metadata": {"name": "w"}, "spec": {"a": 1}, "status": {"s": 1}})),
        )
        .await;
    assert_eq!(code, 201);
    assert!(w.get("status").is_none());
    let (code, _) = s
        .patch(
            &format!("{widgets}/w/status"),
            "application/merge-patch+json",
            json!({"status": {"s": 2}}),
        )
        .await;
    assert_eq!(code, 200);
    let (_, rl) = s.req("GET", "/apis/example.io/v1", None).await;
    assert!(
        rl["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "widgets/status")
    );
    assert_eq!(s.req("POST", crds, Some(crd)).await.0, 409);
    // Deleting the CRD stops serving it.
    assert_eq!(
        s.req("DELETE", &format!("{crds}/widgets.example.io"), None)
            .await
            .0,
        200
    );
    assert_eq!(s.req("GET", widgets, None).await.0, 404);
    let bad = json!({"metadata": {"name": "wrong.example.io"}, "spec": {"group": "example.io", "scope": "Cluster",
        "names": {"plural": "gadgets", "kind": "Gadget"}, "versions": [{"name": "v1", "served": true, "storage": true}]}});
    assert_eq!(s.req("POST", crds, Some(bad)).await.0, 422);
}

#[tokio::test]
async fn kube_discovery_and_typed_apis_work() {
    let s = sim().await;
    let discovery = kube::discovery::Discovery::new(s.client.clone())
        .run()
        .await
        .unwrap();
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_string()).collect();
    for g in [
        "",
        "storage.k8s.io",
        "coordination.k8s.io",
        "lvmpin.io",
        "events.k8s.io",
    ] {
        assert!(groups.iter().any(|x| x == g), "group {g:?} in {groups:?}");
    }
    let (ar, caps) = discovery
        .resolve_gvk(&kube::api::GroupVersionKind::gvk(
            "lvmpin.io",
            "v1alpha1",
            "LvmNode",
        ))
        .unwrap();
    assert_eq!(ar.plural, "lvmnodes");
    assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
    let info = s.client.apiserver_version().await.unwrap();
    assert_eq!(info.major, "1");

    let nodes: Api<Node> = Api::all(s.client.clone());
    let n: Node = serde_json::from_value(
        json!({"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "a"}},
        "status": {"capacity": {"cpu": "4"}}}),
    )
    .unwrap();
    nodes.create(&PostParams::default(), &n).await.unwrap();
    let got = nodes.get("n1").await.unwrap();
    assert_eq!(
        got.status.unwrap().capacity.unwrap()["cpu"].0,
        "4",
        "nodes keep their status on create"
    );
    let err = nodes.create(&PostParams::default(), &n).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err}"
    );
    let listed = nodes
        .list(&ListParams::default().labels("topology.kubernetes.io/zone=a"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn watcher_and_reflector_sync_and_follow() {
    let s = sim().await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(s.client.clone(), "default");
    let mk = |n: &str| -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": n}, "spec": {}})).unwrap()
    };
    pvcs.create(&PostParams::default(), &mk("before"))
        .await
        .unwrap();
    let (reader, writer) = reflector::store();
    let stream =
        reflector(writer, watcher(pvcs.clone(), watcher::Config::default())).applied_objects();
    let task = tokio::spawn(async move {
        let _ = stream.try_for_each(|_| async { Ok(()) }).await;
    });
    timeout(Duration::from_secs(5), reader.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reader.state().len(), 1);
    pvcs.create(&PostParams::default(), &mk("after"))
        .await
        .unwrap();
    pvcs.delete("before", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let names: Vec<String> = reader
            .state()
            .iter()
            .map(|o| o.metadata.name.clone().unwrap_or_default())
            .collect();
        if names == ["after"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reflector did not follow: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
}

#[tokio::test]
async fn watcher_relists_after_expiry() {
    let s = sim_with_history(3).await;
    for i in 0..20 {
        s.req("POST", PODS, Some(pod(&format!("p{i:02}")))).await;
    }
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    let (reader, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(pods.clone(), watcher::Config::default().disable_bookmarks()),
    );
    let task = tokio::spawn(async move {
        stream.for_each(|_| async {}).await;
    });
    timeout(Duration::from_secs(5), reader.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reader.state().len(), 20);
    // One request deletes all 20 at once, so the history (3 events per type)
    // cannot hold the 17 oldest deletions by the time the watch reads them:
    // it gets 410, and only a re-list can empty the reflector.
    let (code, _) = s.req("DELETE", PODS, None).await;
    assert_eq!(code, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reader.state().is_empty() {
        assert!(
            Instant::now() < deadline,
            "watcher kept {} pods",
            reader.state().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A burst on another type does not expire the pod watch.
    for i in 0..10 {
        let cm = json!({"metadata": {"name": format!("cm{i}")}});
        s.req("POST", "/api/v1/namespaces/default/configmaps", Some(cm))
            .await;
    }
    s.req("POST", PODS, Some(pod("late"))).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while reader
        .get(&reflector::ObjectRef::new("late").within("default"))
        .is_none()
    {
        assert!(Instant::now() < deadline, "watcher never saw the pod");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
}

#[tokio::test]
async fn kubeconfig_reaches_the_server() {
    let s = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    s.server.write_kubeconfig(&path).unwrap();
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client);
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn events_recorder_creates_then_patches() {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let s = sim().await;
    let (_, p) = s.req("POST", PODS, Some(pod("p"))).await;
    let pod: Pod = serde_json::from_value(p).unwrap();
    let reference = kube::Resource::object_ref(&pod, &());
    let recorder = Recorder::new(s.client.clone(), Reporter::from("lvmpin-test"));
    let ev = Event {
        type_: EventType::Warning,
        reason: "InvalidSize".into(),
        note: Some("bad size".into()),
        action: "Provision".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let (_, list) = s
        .req(
            "GET",
            "/apis/events.k8s.io/v1/namespaces/default/events",
            None,
        )
        .await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["series"]["count"], 2);
    assert_eq!(items[0]["regarding"]["name"], "p");
    // The same event through core/v1, as `kubectl get events` reads it.
    let (_, core) = s
        .req(
            "GET",
            "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dp",
            None,
        )
        .await;
    let items = core["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0]["reason"].as_str(), items[0]["message"].as_str()),
        (Some("InvalidSize"), Some("bad size"))
    );
    assert_eq!(items[0]["involvedObject"]["kind"], "Pod");
    let (_, sel) = s
        .req(
            "GET",
            "/apis/events.k8s.io/v1/events?fieldSelector=regarding.name%3Dp",
            None,
        )
        .await;
    assert_eq!(sel["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn lists_page_with_limit_and_continue() {
    let s = sim().await;
    for i in 0..7 {
        s.req("POST", PODS, Some(pod(&format!("p{i}")))).await;
    }
    let (_, first) = s.req("GET", &format!("{PODS}?limit=3"), None).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    assert_eq!(first["metadata"]["remainingItemCount"], 4);
    let list_rv = first["metadata"]["resourceVersion"].clone();
    s.req("POST", PODS, Some(pod("p9"))).await;
    let mut names: Vec<String> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().into())
        .collect();
    let mut cont = first["metadata"]["continue"].as_str().unwrap().to_string();
    loop {
        let (code, page) = s
            .req("GET", &format!("{PODS}?limit=3&continue={cont}"), None)
            .await;
        assert_eq!(code, 200);
        assert_eq!(
            page["metadata"]["resourceVersion"], list_rv,
            "pages report the first page's version"
        );
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        match page["metadata"]["continue"].as_str() {
            Some(c) => cont = c.to_string(),
            None => break,
        }
    }
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p9"]);
    assert_eq!(s.req("GET", &format!("{PODS}?limit=x"), None).await.0, 400);
    assert_eq!(
        s.req("GET", &format!("{PODS}?continue=garbage"), None)
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_objects() {
    let s = sim().await;
    let ns = json!({"metadata": {"name": "team"}});
    assert_eq!(s.req("POST", "/api/v1/namespaces", Some(ns)).await.0, 201);
    s.req("POST", "/api/v1/namespaces/team/pods", Some(pod("a")))
        .await;
    s.req("POST", PODS, Some(pod("b"))).await;
    assert_eq!(
        s.req("DELETE", "/api/v1/namespaces/team", None).await.0,
        200
    );
    assert_eq!(
        s.req("GET", "/api/v1/namespaces/team/pods/a", None).await.0,
        404
    );
    assert_eq!(s.req("GET", &format!("{PODS}/b"), None).await.0, 200);
}

#[tokio::test]
async fn shutdown_ends_open_watches() {
    let s = sim().await;
    let mut w = s.watch(&format!("{PODS}?watch=1")).await;
    let Sim { server, client: _c } = s;
    timeout(Duration::from_secs(5), server.shutdown())
        .await
        .unwrap();
    assert!(w.next().await.is_none());
}

/// kubectl as an operator would use it against the simulator. `.ci/run`
/// refuses to start without kubectl, so a missing one is a failure, not a skip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_create_delete() {
    let version = std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .unwrap_or_else(|e| {
            panic!("kubectl not found on PATH ({e}): this test needs it; .ci/run checks for it")
        });
    assert!(
        version.status.success(),
        "kubectl version --client failed: {}",
        String::from_utf8_lossy(&version.stderr)
    );
    let s = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    s.server.write_kubeconfig(&kubeconfig).unwrap();
    let manifest = dir.path().join("sc.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: lvmpin\nprovisioner: lvm.lvmpin.io\nvolumeBindingMode: WaitForFirstConsumer\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  containers: [{name: c, image: busybox}]\n",
    )
    .unwrap();
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", dir.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let m = manifest.to_str().unwrap();
    let claim = json!({"metadata": {"name": "data"}, "spec": {"storageClassName": "lvmpin"}});
    s.req(
        "POST",
        "/api/v1/namespaces/default/persistentvolumeclaims",
        Some(claim),
    )
    .await;
    let ln = json!({"apiVersion": "lvmpin.io/v1alpha1", "kind": "LvmNode",
        "metadata": {"name": "node-a"}, "spec": {"nodeName": "node-a"}});
    let (code, _) = s
        .req("POST", "/apis/lvmpin.io/v1alpha1/lvmnodes", Some(ln))
        .await;
    assert_eq!(code, 201);
    // (arguments, succeeds, expected in the output)
    let cases = [
        ("create --validate=false -f MANIFEST", true, "created"),
        ("get pods", true, "web"),
        ("get pods -o wide", true, "NODE"),
        (
            "get sc lvmpin -o jsonpath={.provisioner}",
            true,
            "lvm.lvmpin.io",
        ),
        ("get pods -l app=web -o name", true, "pod/web"),
        ("get pvc", true, "Pending"),
        ("get pvc -A", true, "STORAGECLASS"),
        ("get lvmnodes", true, "HEALTHY"),
        ("get lvmn node-a", true, "node-a"),
        ("get pv", true, "No resources found"),
        ("get pods -w --request-timeout=1s", true, "web"),
        (
            "create --validate=false -f MANIFEST",
            false,
            "AlreadyExists",
        ),
        ("delete -f MANIFEST", true, "deleted"),
        ("get pod web", false, "NotFound"),
        // apply creates what is missing; changing existing built-ins needs
        // strategic merge patch, which is refused with 415.
        ("apply -f MANIFEST", true, "created"),
        ("apply -f MANIFEST", true, "unchanged"),
        // The server declares field validation, so kubectl's default validation works.
        ("delete -f MANIFEST", true, "deleted"),
        ("create -f MANIFEST", true, "created"),
    ];
    for (args, ok, want) in cases {
        let args: Vec<String> = args
            .split(' ')
            .map(|a| {
                if a == "MANIFEST" {
                    m.to_string()
                } else {
                    a.to_string()
                }
            })
            .collect();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        // kubectl blocks; keep the runtime's other worker serving the requests.
        let (success, text) = tokio::task::block_in_place(|| kubectl(&refs));
        assert_eq!(success, ok, "kubectl {args:?}: {text}");
        assert!(
            text.contains(want),
            "kubectl {args:?}: expected {want:?} in {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_with_one_version_have_one_winner() {
    let s = sim().await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(s.client.clone(), "default");
    let c: PersistentVolumeClaim =
        serde_json::from_value(json!({"metadata": {"name": "c"}, "spec": {}})).unwrap();
    let read = claims.create(&PostParams::default(), &c).await.unwrap();
    let rv = read.metadata.resource_version.clone().unwrap();
    let attempts = (0..20).map(|i| {
        let claims = claims.clone();
        let rv = rv.clone();
        async move {
            let patch = json!({"metadata": {"resourceVersion": rv,
                "annotations": {"volume.kubernetes.io/selected-node": format!("node-{i}")}}});
            claims
                .patch("c", &PatchParams::default(), &Patch::Merge(&patch))
                .await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(kube::Error::Api(s)) if s.code == 409))
        .count();
    assert_eq!((won, conflicts), (1, 19));
}

/// `kubectl get` asks for server-side Tables, also on watches (`-w`).
#[tokio::test]
async fn tables_for_kubectl() {
    let s = sim().await;
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let claims = "/api/v1/namespaces/default/persistentvolumeclaims";
    let (_, c) = s
        .req(
            "POST",
            claims,
            Some(json!({"metadata": {"name": "c"}, "spec": {"storageClassName": "lvmpin"}})),
        )
        .await;
    let mut w = s
        .watch_accepting(
            &format!("{claims}?watch=1&resourceVersion={}", rv(&c)),
            accept,
        )
        .await;
    let merge = "application/merge-patch+json";
    s.patch(
        &format!("{claims}/c/status"),
        merge,
        json!({"status": {"phase": "Bound"}}),
    )
    .await;
    let (t, table) = w.next_change().await;
    assert_eq!(
        (t.as_str(), table["kind"].as_str()),
        ("MODIFIED", Some("Table"))
    );
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(&cols[..3], ["Name", "Status", "Volume"]);
    assert_eq!(table["rows"][0]["cells"][1], "Bound");
    assert_eq!(table["rows"][0]["object"]["metadata"]["name"], "c");
}

/// Malformed requests of every kind get a 4xx Status and the server keeps serving.
#[tokio::test]
async fn garbage_never_breaks_the_server() {
    let s = sim().await;
    s.req("POST", PODS, Some(pod("p"))).await;
    let bodies: [&[u8]; 8] = [
        b"",
        b"{",
        b"null",
        b"[]",
        b"\"x\"",
        b"{\"metadata\": 5}",
        b"{\"metadata\": {\"name\": 7}}",
        b"[{\"op\": \"move\", \"from\": \"/nope\", \"path\": \"/x\"}]",
    ];
    let paths = [
        PODS.to_string(),
        format!("{PODS}/p"),
        format!("{PODS}/p/status"),
        format!("{PODS}/p/binding"),
        "/api/v1/nodes/%ZZ".to_string(),
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions".to_string(),
        format!("{PODS}?labelSelector=%28%28&fieldSelector=a"),
    ];
    let types = [
        "application/json",
        "application/merge-patch+json",
        "application/json-patch+json",
    ];
    for path in &paths {
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            for body in bodies {
                for ct in types {
                    let (code, st) = s.raw(method, path, ct, body.to_vec()).await;
                    let ok = (200..300).contains(&code) || (400..500).contains(&code);
                    assert!(ok, "{method} {path} {ct} {body:?}: {code} {st}");
                    if code >= 400 {
                        assert_eq!(st["kind"], "Status", "{method} {path}: {st}");
                    }
                }
            }
        }
    }
    assert_eq!(s.req("GET", "/api/v1/pods", None).await.0, 200);
}

#[tokio::test]
async fn metrics_count_requests_and_watches() {
    let s = sim().await;
    s.req("POST", PODS, Some(pod("p"))).await;
    s.req("POST", PODS, Some(pod("p"))).await;
    let _w = s.watch(&format!("{PODS}?watch=1")).await;
    let (code, text) = s.req("GET", "/metrics", None).await;
    assert_eq!(code, 200);
    let text = text.as_str().unwrap().to_string();
    for want in [
        r#"lvmpin_sim_apiserver_requests_total{verb="create",resource="pods",code="201"} 1"#,
        r#"lvmpin_sim_apiserver_requests_total{verb="create",resource="pods",code="409"} 1"#,
        "lvmpin_sim_apiserver_watches 1",
        "# HELP lvmpin_sim_apiserver_request_duration_seconds",
    ] {
        assert!(text.contains(want), "{want} in\n{text}");
    }
}

#[tokio::test]
async fn binding_a_pod_with_a_malformed_spec_does_not_panic() {
    let s = sim().await;
    let (code, _) = s
        .req(
            "POST",
            PODS,
            Some(json!({"metadata": {"name": "odd"}, "spec": 5})),
        )
        .await;
    assert_eq!(code, 201);
    let b = json!({"metadata": {"name": "odd"}, "target": {"name": "n1"}});
    let (code, _) = s.req("POST", &format!("{PODS}/odd/binding"), Some(b)).await;
    assert_eq!(code, 201);
    let (_, p) = s.req("GET", &format!("{PODS}/odd"), None).await;
    assert_eq!(p["spec"]["nodeName"], "n1");
}

#[tokio::test]
async fn metadata_only_clients_get_partial_objects() {
    let s = sim().await;
    s.req("POST", PODS, Some(pod("p"))).await;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    let meta = pods.get_metadata("p").await.unwrap();
    assert_eq!(
        meta.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    let list = pods.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let (code, raw) = {
        let req = http::Request::builder()
            .uri(PODS)
            .header(
                "accept",
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
            )
            .body(kube::client::Body::empty())
            .unwrap();
        let resp = s.client.send(req).await.unwrap();
        let code = resp.status().as_u16();
        let b = resp.into_body().collect_bytes().await.unwrap();
        (code, serde_json::from_slice::<Value>(&b).unwrap())
    };
    assert_eq!(code, 200);
    assert_eq!(raw["kind"], "PartialObjectMetadataList");
    assert!(raw["items"][0].get("spec").is_none());
    let (reader, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(
            Api::<kube::core::PartialObjectMeta<Pod>>::namespaced(s.client.clone(), "default"),
            watcher::Config::default(),
        ),
    );
    let task = tokio::spawn(async move { stream.for_each(|_| async {}).await });
    timeout(Duration::from_secs(5), reader.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    s.req("POST", PODS, Some(pod("q"))).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while reader.state().len() < 2 {
        assert!(Instant::now() < deadline, "metadata watcher did not follow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
}

#[tokio::test]
async fn streaming_list_watcher_syncs() {
    let s = sim().await;
    s.req("POST", PODS, Some(pod("a"))).await;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    let (reader, writer) = reflector::store();
    let cfg = watcher::Config::default().streaming_lists();
    let stream = reflector(writer, watcher(pods, cfg));
    let task = tokio::spawn(async move { stream.for_each(|_| async {}).await });
    timeout(Duration::from_secs(5), reader.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reader.state().len(), 1);
    s.req("DELETE", &format!("{PODS}/a"), None).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !reader.state().is_empty() {
        assert!(Instant::now() < deadline, "deletion not seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
}
