//! The watch shell against a small fake API server over a real socket: the
//! initial lists fill the index and mark readiness, watch events update it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use lvmpin_scheduler_extender::context::{App, Readiness};
use lvmpin_scheduler_extender::engine::Settings;
use lvmpin_scheduler_extender::facts::ClaimKey;
use lvmpin_scheduler_extender::leader::Leadership;
use lvmpin_scheduler_extender::reservations::Hold;
use lvmpin_scheduler_extender::runtime::Watches;
use lvmpin_scheduler_extender::watch;
use serde_json::{Value, json};

struct Fake {
    lists: HashMap<&'static str, Vec<Value>>,
    watches: HashMap<&'static str, Vec<Value>>,
}

async fn handle(fake: Arc<Fake>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let watching = req.uri().query().unwrap_or_default().contains("watch=true");
    if watching {
        let events: Vec<Result<Bytes, Infallible>> = fake
            .watches
            .get(path.as_str())
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|e| Ok(Bytes::from(format!("{e}\n"))))
            .collect();
        // Then stay open, as a real watch does until its timeout.
        let stream = futures::stream::iter(events).chain(futures::stream::pending());
        return Response::new(Body::from_stream(stream));
    }
    let items = fake.lists.get(path.as_str()).cloned().unwrap_or_default();
    let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "10"}, "items": items});
    Response::new(Body::from(list.to_string()))
}

fn pvc(name: &str, rv: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "resourceVersion": rv},
        "spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}})
}

fn pod(name: &str, rv: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "resourceVersion": rv},
        "spec": {"containers": [], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "b"}}]}})
}

#[tokio::test]
async fn lists_then_watch_events_drive_the_index_and_readiness() {
    let fake = Arc::new(Fake {
        lists: HashMap::from([
            ("/api/v1/persistentvolumeclaims", vec![pvc("a", "5")]),
            ("/api/v1/pods", vec![pod("p1", "6")]),
            (
                "/apis/storage.k8s.io/v1/storageclasses",
                vec![
                    json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": "fast", "resourceVersion": "3"}, "provisioner": "lvm.lvmpin.io",
                "parameters": {"lvmpin.io/volume-group": "vg1"}}),
                ],
            ),
            (
                "/apis/apps/v1/statefulsets",
                vec![json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "mq", "namespace": "ns", "uid": "uid-mq", "resourceVersion": "4",
                    "annotations": {"lvmpin.io/zone-weights": "z1=2,z2=1"}},
                "spec": {"replicas": 3, "serviceName": "mq", "selector": {"matchLabels": {"app": "mq"}},
                    "template": {"metadata": {"labels": {"app": "mq"}}, "spec": {"containers": []}}}})],
            ),
            (
                "/api/v1/nodes",
                vec![json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "n1", "resourceVersion": "2", "labels": {"topology.kubernetes.io/zone": "z1"}}})],
            ),
        ]),
        watches: HashMap::from([
            (
                "/api/v1/persistentvolumeclaims",
                vec![
                    json!({"type": "ADDED", "object": pvc("b", "11")}),
                    json!({"type": "DELETED", "object": pvc("a", "12")}),
                ],
            ),
            (
                "/api/v1/pods",
                vec![json!({"type": "DELETED", "object": pod("p1", "13")})],
            ),
            (
                "/apis/lvmpin.io/v1alpha1/lvmnodes",
                vec![json!({"type": "ADDED", "object": {
                "apiVersion": "lvmpin.io/v1alpha1", "kind": "LvmNode",
                "metadata": {"name": "n1", "resourceVersion": "14"}, "spec": {"nodeName": "n1"},
                "status": {"volumeGroups": [{"name": "vg1", "sizeBytes": 100, "freeBytes": 50, "extentSizeBytes": 4,
                    "lvCount": 0, "volumes": [], "thinPools": [], "healthy": true}]}}})],
            ),
        ]),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let f = fake.clone();
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(move |req: Request| handle(f.clone(), req));
        let _ = axum::serve(listener, app).await;
    });
    let config = kube::Config::new(format!("http://{addr}").parse().expect("url"));
    let client = kube::Client::try_from(config).expect("client");

    let app = Arc::new(App::new(
        Default::default(),
        Settings::default(),
        Readiness::new(&watch::KINDS),
        Arc::new(Leadership::single()),
        None,
    ));
    // A hold of pod p1, which the watch will report deleted.
    app.lock().reservations.record(Hold {
        pod_uid: "uid-p1".into(),
        owner: None,
        node: "n1".into(),
        claims: vec![ClaimKey::new("ns", "b")],
        expires: Instant::now() + Duration::from_secs(300),
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    let watches = Watches {
        client,
        handle: tokio::runtime::Handle::current(),
    };
    let tasks = watch::spawn_all(&watches, app.clone(), &shutdown);

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let done = {
            let s = app.lock();
            app.readiness.pending().is_empty()
                && s.index.claims.contains_key(&ClaimKey::new("ns", "b"))
                && !s.index.claims.contains_key(&ClaimKey::new("ns", "a"))
                && s.index
                    .nodes
                    .get("n1")
                    .is_some_and(|n| n.lvm.is_some() && n.zone.as_deref() == Some("z1"))
                && s.reservations.is_empty()
                && s.index.pods.is_empty()
                && s.index.classes.contains_key("fast")
                && s.index
                    .stateful_sets
                    .get("uid-mq")
                    .is_some_and(|m| m.replicas == 3 && matches!(m.ratio, Some(Ok(_))))
        };
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "index never caught up; pending {:?}, state {:?}",
            app.readiness.pending(),
            app.lock()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every watch stops on the token, even with its stream still open.
    shutdown.cancel();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .expect("watch task stops on shutdown")
            .expect("watch task did not panic");
    }
}
