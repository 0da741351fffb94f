//! The bind verb against a mocked API server: exact calls, in order.

mod common;

use common::*;
use http::{Method, Request, Response};
use hyper::StatusCode;
use kube::client::Body;
use lvmpin_scheduler_extender::bind::Binder;
use lvmpin_scheduler_extender::engine::{Settings, State};
use lvmpin_scheduler_extender::facts::PodFacts;
use lvmpin_scheduler_extender::testutil::{IntoFacts as _, claim_named, class};
use serde_json::{Value, json};
use tower_test::mock;

fn state() -> State {
    let mut s = State::default();
    s.index.upsert_class(class("fast", Some("vg1")));
    s.index.upsert_claim(claim_named("a").size("1Gi").facts());
    s.index
        .upsert_claim(claim_named("b").size("1Gi").selected_node("n1").facts());
    s.index
        .upsert_claim(claim_named("c").size("1Gi").no_class().facts());
    s.index.upsert_pod(PodFacts {
        uid: "p-uid".into(),
        namespace: "ns".into(),
        name: "db-0".into(),
        node: None,
        owner: None,
        ordinal: None,
        claims: vec!["a".into(), "b".into(), "c".into()],
    });
    s
}

fn bind_args(node: &str) -> Value {
    json!({"PodName": "db-0", "PodNamespace": "ns", "PodUID": "p-uid", "Node": node})
}

fn binding(node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "db-0", "namespace": "ns", "uid": "p-uid"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}
    })
}

fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}

#[tokio::test]
async fn bind_annotates_only_missing_claims_then_creates_the_binding() {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let addr = serve(
        app(state(), Settings::default(), Some(Binder { client })),
        "",
    )
    .await;
    let verifier = tokio::spawn(verify(
        handle,
        vec![
            Call {
                method: Method::PATCH,
                uri: "/api/v1/namespaces/ns/persistentvolumeclaims/a?",
                body: Expect::Exact(
                    json!({"metadata": {"annotations": {"volume.kubernetes.io/selected-node": "n1"}}}),
                ),
                status: 200,
                reply: serde_json::to_value(
                    claim_named("a").size("1Gi").selected_node("n1").build(),
                )
                .expect("pvc"),
            },
            Call {
                method: Method::POST,
                uri: "/api/v1/namespaces/ns/pods/db-0/binding?",
                body: Expect::Exact(binding("n1")),
                status: 201,
                reply: success(),
            },
        ],
    ));
    let (status, v) = post(addr, "/bind", &bind_args("n1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v, json!({"Error": ""}));
    verifier.await.expect("verifier");
}

#[tokio::test]
async fn bind_failures_are_reported_in_error_with_200() {
    // The binding is refused (pod already bound): the Error names the call.
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let mut st = state();
    st.index
        .upsert_claim(claim_named("a").size("1Gi").selected_node("n2").facts());
    st.index
        .upsert_claim(claim_named("b").size("1Gi").selected_node("n2").facts());
    let addr = serve(app(st, Settings::default(), Some(Binder { client })), "").await;
    let verifier = tokio::spawn(verify(
        handle,
        vec![Call {
            method: Method::POST,
            uri: "/api/v1/namespaces/ns/pods/db-0/binding?",
            body: Expect::Exact(binding("n2")),
            status: 409,
            reply: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "pod db-0 is already assigned to node \"n3\"", "reason": "Conflict", "code": 409}),
        }],
    ));
    let (status, v) = post(addr, "/bind", &bind_args("n2")).await;
    assert_eq!(status, StatusCode::OK);
    let err = v["Error"].as_str().unwrap_or_default();
    assert!(
        err.contains("bind pod ns/db-0 to node n2") && err.contains("already assigned"),
        "{err}"
    );
    verifier.await.expect("verifier");
}

#[tokio::test]
async fn bind_refuses_a_claim_that_names_another_node_without_any_write() {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let addr = serve(
        app(state(), Settings::default(), Some(Binder { client })),
        "",
    )
    .await;
    let verifier = tokio::spawn(verify(handle, vec![]));
    let (status, v) = post(addr, "/bind", &bind_args("n7")).await;
    assert_eq!(status, StatusCode::OK);
    let err = v["Error"].as_str().unwrap_or_default();
    assert!(
        err.contains("claim ns/b has volume.kubernetes.io/selected-node=n1"),
        "{err}"
    );
    verifier.await.expect("verifier");
}
