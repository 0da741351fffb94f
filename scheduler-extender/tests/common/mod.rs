//! Shared helpers: a real server on 127.0.0.1, a plain HTTP/1.1 client, and
//! request bodies shaped like kube-scheduler's.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use lvmpin_scheduler_extender::bind::Binder;
use lvmpin_scheduler_extender::context::{App, Readiness};
use lvmpin_scheduler_extender::engine::{Settings, State};
use lvmpin_scheduler_extender::http::router;
use lvmpin_scheduler_extender::leader::Leadership;
use lvmpin_scheduler_extender::testutil::{IntoFacts as _, claim_named, class, lvm_node};
use serde_json::{Value, json};

pub const GI: u64 = 1 << 30;

pub fn app(state: State, settings: Settings, binder: Option<Binder>) -> Arc<App> {
    Arc::new(App::new(
        state,
        settings,
        Readiness::new(&[]),
        Arc::new(Leadership::single()),
        binder,
    ))
}

pub async fn serve(app: Arc<App>, prefix: &str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let routes = router(app, prefix, 64 << 20);
    tokio::spawn(async move {
        let _ = axum::serve(listener, routes).await;
    });
    addr
}

pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Bytes) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "extender")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let resp = sender.send_request(req).await.expect("send");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body)
}

pub async fn post(addr: SocketAddr, path: &str, body: &Value) -> (StatusCode, Value) {
    let (status, bytes) =
        request(addr, "POST", path, serde_json::to_vec(body).expect("json")).await;
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "non-JSON answer ({status}): {e}: {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, v)
}

/// A pod as kube-scheduler sends it: full object, camelCase inside.
pub fn pod_json(name: &str, uid: &str, claims: &[&str]) -> Value {
    let volumes: Vec<Value> = claims
        .iter()
        .map(|c| json!({"name": format!("vol-{c}"), "persistentVolumeClaim": {"claimName": c}}))
        .chain(std::iter::once(json!({"name": "kube-api-access-x7k2p", "projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}], "defaultMode": 420}})))
        .collect();
    json!({
        "metadata": {
            "name": name, "generateName": "db-", "namespace": "ns", "uid": uid,
            "resourceVersion": "12345", "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": "db", "apps.kubernetes.io/pod-index": "0"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "sts-uid", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]
        },
        "spec": {
            "volumes": volumes,
            "containers": [{"name": "db", "image": "mysql:8", "resources": {"requests": {"cpu": "100m"}},
                "volumeMounts": claims.iter().map(|c| json!({"name": format!("vol-{c}"), "mountPath": format!("/data/{c}")})).collect::<Vec<_>>(),
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "securityContext": {}, "schedulerName": "default-scheduler",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "priority": 0, "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority",
            "someFutureField": {"x": 1}
        },
        "status": {"phase": "Pending", "qosClass": "Burstable",
            "conditions": [{"type": "PodScheduled", "status": "False", "lastProbeTime": null, "lastTransitionTime": "2026-01-01T00:00:01Z", "reason": "Unschedulable"}]}
    })
}

/// A Node object of roughly `pad` bytes, like a real one with a long image list.
pub fn node_json(name: &str, zone: &str, pad: usize) -> Value {
    let mut images = Vec::new();
    let mut size = 0;
    let mut i = 0;
    while size < pad {
        let n = format!("registry.example.com/team/image-{i}@sha256:{:064x}", i);
        size += n.len() + 60;
        images.push(json!({"names": [n], "sizeBytes": 123_456_789 + i}));
        i += 1;
    }
    json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "99",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone, "kubernetes.io/os": "linux"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"], "providerID": format!("kind://docker/{name}")},
        "status": {
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": "8", "memory": "31Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
            "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6.1.0", "osImage": "Debian", "containerRuntimeVersion": "containerd://1.7", "kubeletVersion": "v1.33.0", "kubeProxyVersion": "v1.33.0", "operatingSystem": "linux", "architecture": "amd64"},
            "images": images
        }
    })
}

/// Nodes n0..n{count} with one VG `vg1` of 100Gi, `free_gi` free each;
/// class `fast` on `vg1`; claims `c0..c{claims}` of `claim` size, unbound.
pub fn cluster(count: usize, free_gi: u64, claims: usize, claim: &str) -> State {
    let mut s = State::default();
    s.index.upsert_class(class("fast", Some("vg1")));
    for i in 0..count {
        s.index.upsert_lvm(lvm_node(
            &format!("n{i}"),
            "vg1",
            100 * GI,
            free_gi * GI,
            4 << 20,
        ));
    }
    for i in 0..claims {
        s.index
            .upsert_claim(claim_named(&format!("c{i}")).size(claim).facts());
    }
    s
}

pub type Handle =
    tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>;

pub enum Expect {
    Exact(Value),
    Check(fn(&Value)),
    Empty,
}

/// One expected API call: method, path with query, body; answered with `reply`.
pub struct Call {
    pub method: http::Method,
    pub uri: &'static str,
    pub body: Expect,
    pub status: u16,
    pub reply: Value,
}

/// Answers the expected calls in order; fails on a missing, different or extra call.
pub async fn verify(mut handle: Handle, calls: Vec<Call>) {
    use std::time::Duration;
    for call in calls {
        let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("expected {} {} but no call came", call.method, call.uri))
            .expect("service dropped");
        assert_eq!(req.method(), call.method);
        assert_eq!(req.uri().to_string(), call.uri);
        if call.method == http::Method::PATCH {
            assert_eq!(
                req.headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok()),
                Some("application/merge-patch+json")
            );
        }
        let body = req.into_body().collect_bytes().await.expect("body");
        match call.body {
            Expect::Empty => assert!(body.is_empty(), "{} {} has a body", call.method, call.uri),
            Expect::Exact(want) => {
                let got: Value = serde_json::from_slice(&body).expect("JSON request body");
                assert_eq!(got, want, "{} {}", call.method, call.uri);
            }
            Expect::Check(f) => f(&serde_json::from_slice(&body).expect("JSON request body")),
        }
        send.send_response(
            http::Response::builder()
                .status(call.status)
                .body(kube::client::Body::from(
                    serde_json::to_vec(&call.reply).expect("json"),
                ))
                .expect("response"),
        );
    }
    if let Ok(Some((req, _))) =
        tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await
    {
        panic!("unexpected extra call {} {}", req.method(), req.uri());
    }
}
