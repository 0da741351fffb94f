//! Lease rounds against a mocked API server: plain create and replace only.

mod common;

use std::time::Duration;

use common::*;
use http::{Method, Request, Response};
use kube::api::Api;
use kube::client::Body;
use lvmpin_scheduler_extender::leader::{LeaseConfig, round};
use serde_json::{Value, json};
use tower_test::mock;

fn cfg() -> LeaseConfig {
    LeaseConfig {
        namespace: "kube-system".into(),
        name: "ext".into(),
        identity: "me".into(),
        lease_duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(4),
    }
}

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/ext";

fn lease(holder: &str, renew: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "ext", "namespace": "kube-system", "resourceVersion": "7"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renew, "leaseTransitions": 2}})
}

async fn run(calls: Vec<Call>) -> bool {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let verifier = tokio::spawn(verify(handle, calls));
    let api: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client, "kube-system");
    let won = round(&api, &cfg()).await.expect("round");
    verifier.await.expect("verifier");
    won
}

#[tokio::test]
async fn missing_lease_is_created() {
    let won = run(vec![
        Call { method: Method::GET, uri: LEASE, body: Expect::Empty, status: 404,
            reply: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}) },
        Call { method: Method::POST, uri: "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases?",
            body: Expect::Check(|b| {
                assert_eq!(b["metadata"]["name"], "ext");
                assert_eq!(b["spec"]["holderIdentity"], "me");
                assert_eq!(b["spec"]["leaseDurationSeconds"], 15);
                assert_eq!(b["spec"]["leaseTransitions"], 0);
                assert!(b["spec"]["renewTime"].is_string());
            }),
            status: 201, reply: lease("me", "2026-01-01T00:00:00.000000Z") },
    ]).await;
    assert!(won);
}

#[tokio::test]
async fn fresh_lease_of_another_replica_is_left_alone() {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let fresh = lease("them", &now);
    let won = run(vec![Call {
        method: Method::GET,
        uri: LEASE,
        body: Expect::Empty,
        status: 200,
        reply: fresh,
    }])
    .await;
    assert!(!won);
}

#[tokio::test]
async fn expired_lease_is_taken_over_with_its_resource_version_and_conflict_loses() {
    let won = run(vec![
        Call { method: Method::GET, uri: LEASE, body: Expect::Empty, status: 200, reply: lease("them", "2020-01-01T00:00:00.000000Z") },
        Call { method: Method::PUT, uri: "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/ext?",
            body: Expect::Check(|b| {
                assert_eq!(b["metadata"]["resourceVersion"], "7");
                assert_eq!(b["spec"]["holderIdentity"], "me");
                assert_eq!(b["spec"]["leaseTransitions"], 3);
            }),
            status: 409,
            reply: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"}) },
    ]).await;
    assert!(!won);
}
