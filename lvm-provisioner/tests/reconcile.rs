//! Reconciler scenarios against a mocked API server asserting the exact calls.

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::runtime::controller::Action;
use lvmpin_api::names::{DRIVER_NAME, PARAM_VOLUME_GROUP, PV_FINALIZER};
use lvmpin_provisioner::backend::{Owner, SnapshotOwner, Volume};
use lvmpin_provisioner::error::Error;
use lvmpin_provisioner::fake_backend::FakeBackend;
use lvmpin_provisioner::{lvm_node_writer, reconcile_claim, reconcile_pv, startup};
use lvmpin_testkit::{ClaimBuilder, class, expected_pv, pv_from_json};
use serde_json::{Value, json};
use support::{Call, NOW, World, config, world};

const GI: u64 = 1 << 30;
const PVS: &str = "/api/v1/persistentvolumes";
const CLAIM: &str = "/api/v1/namespaces/ns/persistentvolumeclaims/data";
const JSON_PATCH: &str = "application/json-patch+json";
const MERGE_PATCH: &str = "application/merge-patch+json";

fn fast_class() -> k8s_openapi::api::storage::v1::StorageClass {
    let mut c = class("fast", DRIVER_NAME, &[(PARAM_VOLUME_GROUP, "vg0")]);
    c.allow_volume_expansion = Some(true);
    c
}

fn claim() -> ClaimBuilder {
    ClaimBuilder::new("ns", "data", "u1")
        .class("fast")
        .size("1Gi")
}

fn owner(uid: &str) -> Owner {
    Owner {
        claim_uid: uid.into(),
        claim_namespace: "ns".into(),
        claim_name: "data".into(),
        pv_name: format!("pvc-{uid}"),
    }
}

fn provisioning_world(backend: FakeBackend, spare: u64) -> World<FakeBackend> {
    let mut w = world(backend, config(spare));
    w.add_class(fast_class());
    w
}

#[tokio::test]
async fn provision_creates_the_lv_then_the_exact_pv() {
    let backend = FakeBackend::new().with_vg("vg0", 10 * GI);
    let mut w = provisioning_world(backend.clone(), 0);
    let pvc = Arc::new(claim().selected_node("n1").build());
    let calls = vec![
        Call::post(PVS)
            .body(expected_pv())
            .respond(201, expected_pv()),
        Call::event("ns", "Normal", "ProvisioningSucceeded"),
    ];
    let action = w
        .run(calls, reconcile_claim::reconcile(pvc, w.ctx.clone()))
        .await;
    assert_eq!(action.unwrap(), Action::await_change());
    assert_eq!(
        backend.calls(),
        vec!["scan", "create vg0/pvc-u1 1073741824"]
    );
    let lv = backend.snapshot().volume("vg0", "pvc-u1").cloned().unwrap();
    assert_eq!(lv.owner, Some(owner("u1")));
}

#[tokio::test]
async fn pv_conflict_is_accepted_when_it_is_ours() {
    let backend = FakeBackend::new().with_vg("vg0", 10 * GI);
    let mut w = provisioning_world(backend.clone(), 0);
    let pvc = Arc::new(claim().selected_node("n1").build());
    let calls = vec![
        Call::post(PVS).conflict(),
        // No success Event: the call that made the PV announced it.
        Call::get("/api/v1/persistentvolumes/pvc-u1").respond(200, expected_pv()),
    ];
    let action = w
        .run(calls, reconcile_claim::reconcile(pvc, w.ctx.clone()))
        .await;
    assert_eq!(action.unwrap(), Action::await_change());
}

/// A PV of our name that differs in claim, node or LV: the LV just made is an
/// orphan (Event on the LvmNode, gauge), the claim is told, nothing is removed.
async fn conflict_with(edit: impl Fn(&mut Value), why: &'static str) {
    let backend = FakeBackend::new().with_vg("vg0", 10 * GI);
    let mut w = provisioning_world(backend.clone(), 0);
    let pvc = Arc::new(claim().selected_node("n1").build());
    let mut foreign = expected_pv();
    edit(&mut foreign);
    let calls = vec![
        Call::post(PVS).conflict(),
        Call::get("/api/v1/persistentvolumes/pvc-u1").respond(200, foreign),
        Call::post("/apis/events.k8s.io/v1/namespaces/default/events")
            .check(move |b| {
                assert_eq!(b["reason"], "OrphanVolume");
                assert_eq!(b["regarding"]["kind"], "LvmNode");
                let note = b["note"].as_str().unwrap();
                assert!(note.contains("vg0/pvc-u1"), "{b}");
                assert!(note.contains(why), "{b}");
            })
            .respond(201, json!({})),
        Call::event("ns", "Warning", "ProvisioningFailed"),
    ];
    let result = w
        .run(calls, reconcile_claim::reconcile(pvc, w.ctx.clone()))
        .await;
    assert!(
        matches!(result, Err(Error::ForeignVolume { .. })),
        "{result:?}"
    );
    assert_eq!(w.ctx.metrics.orphan_volumes.get(), 1);
    assert!(backend.snapshot().volume("vg0", "pvc-u1").is_some());
}

#[tokio::test]
async fn pv_conflict_with_another_claims_pv_orphans_the_lv() {
    conflict_with(
        |pv| pv["spec"]["claimRef"]["uid"] = json!("someone-else"),
        "claimRef uid",
    )
    .await;
}

#[tokio::test]
async fn pv_conflict_with_a_pv_on_another_node_orphans_the_lv() {
    conflict_with(
        |pv| {
            pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
                ["values"] = json!(["n2"])
        },
        "pinned to node",
    )
    .await;
}

#[tokio::test]
async fn pv_conflict_with_a_pv_of_another_lv_orphans_the_lv() {
    conflict_with(
        |pv| pv["spec"]["csi"]["volumeHandle"] = json!("vg9/pvc-u1"),
        "volume handle",
    )
    .await;
}

/// A second reconcile of a claim whose first provisioning is in flight is
/// requeued without lvm or API calls, and a later one that finds the PV made
/// (409, ours) announces nothing: one LV create, one success Event.
#[tokio::test]
async fn a_claim_is_provisioned_and_announced_once() {
    let backend = FakeBackend::new().with_vg("vg0", 10 * GI);
    let mut w = provisioning_world(backend.clone(), 0);
    let mut handle = w.handle.take().unwrap();
    let pvc = Arc::new(claim().selected_node("n1").build());
    let first = tokio::spawn(reconcile_claim::reconcile(pvc.clone(), w.ctx.clone()));
    // The first call is now waiting for its PV create to be answered.
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("PV create did not arrive")
        .unwrap();
    assert_eq!((req.method().as_str(), req.uri().path()), ("POST", PVS));
    let second = tokio::time::timeout(
        Duration::from_secs(5),
        reconcile_claim::reconcile(pvc.clone(), w.ctx.clone()),
    )
    .await
    .expect("the second reconcile ran the provisioning again");
    assert_eq!(
        second.unwrap(),
        Action::requeue(lvmpin_provisioner::provision::IN_FLIGHT_WAIT)
    );
    send.send_response(
        http::Response::builder()
            .status(201)
            .body(kube::client::Body::from(
                serde_json::to_vec(&expected_pv()).unwrap(),
            ))
            .unwrap(),
    );
    let verifier = tokio::spawn(support::verify(
        handle,
        vec![
            Call::event("ns", "Normal", "ProvisioningSucceeded"),
            Call::post(PVS).conflict(),
            Call::get("/api/v1/persistentvolumes/pvc-u1").respond(200, expected_pv()),
        ],
    ));
    assert_eq!(first.await.unwrap().unwrap(), Action::await_change());
    // Again before the PV reaches the cache: no second Event (it would wait
    // for an answer that never comes).
    let third = tokio::time::timeout(
        Duration::from_secs(5),
        reconcile_claim::reconcile(pvc, w.ctx.clone()),
    )
    .await
    .expect("an unexpected API call (a second success Event?)");
    assert_eq!(third.unwrap(), Action::await_change());
    verifier.await.unwrap();
    let creates = backend
        .calls()
        .iter()
        .filter(|c| c.starts_with("create"))
        .count();
    assert_eq!(creates, 1, "{:?}", backend.calls());
}

/// A cached PV of the claim's name that is not ours for it: no LV is made
/// (it could only be an orphan); the claim is told.
#[tokio::test]
async fn a_cached_foreign_pv_of_the_same_name_creates_nothing() {
    let backend = FakeBackend::new().with_vg("vg0", 10 * GI);
    let mut w = provisioning_world(backend.clone(), 0);
    let mut foreign = expected_pv();
    foreign["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] =
        json!(["n2"]);
    w.add_pv(pv_from_json(foreign));
    let pvc = Arc::new(claim().selected_node("n1").build());
    let calls = vec![
        Call::event("ns", "Warning", "ProvisioningFailed")
            .check(|b| assert!(b["note"].as_str().unwrap().contains("node"), "{b}")),
    ];
    let result = w
        .run(calls, reconcile_claim::reconcile(pvc, w.ctx.clone()))
        .await;
    assert!(
        matches!(result, Err(Error::ForeignVolume { .. })),
        "{result:?}"
    );
    assert!(backend.calls().is_empty(), "{:?}", backend.calls());
}

fn reschedule_calls() -> Vec<Call> {
    vec![
        Call::event("ns", "Warning", "ProvisioningFailed"),
        Call::patch(CLAIM).content_type(JSON_PATCH).body(json!([
            {"op": "test", "path": "/metadata/annotations/volume.kubernetes.io~1selected-node", "value": "n1"},
            {"op": "remove", "path": "/metadata/annotations/volume.kubernetes.io~1selected-node"}
        ])),
    ]
}

#[tokio::test]
async fn no_room_reschedules_without_creating() {
    let backend = FakeBackend::new().with_vg("vg0", GI / 2);
    let mut w = provisioning_world(backend.clone(), 0);
    let pvc = Arc::new(claim().selected_node("n1").build());
    let action = w
        .run(
            reschedule_calls(),
            reconcile_claim::reconcile(pvc, w.ctx.clone()),
        )
        .await;
    assert_eq!(action.unwrap(), Action::await_change());
    assert_eq!(backend.calls(), vec!["scan"]);
}

/// A node without device-mapper and without --metadata-only-for-tests creates
/// nothing: the claim gets a Warning and is handed back to the scheduler.
#[tokio::test]
async fn a_node_without_device_mapper_provisions_nothing() {
    let backend = FakeBackend::new().with_vg("vg0", 10 * GI);
    let mut cfg = config(0);
    cfg.host_problem = lvmpin_provisioner::lvm_mode::lvm_mode(false, false).host_problem();
    let mut w = world(backend.clone(), cfg);
    w.add_class(fast_class());
    let pvc = Arc::new(claim().selected_node("n1").build());
    let mut calls = reschedule_calls();
    calls[0] = Call::event("ns", "Warning", "ProvisioningFailed").check(|b| {
        let note = b["note"].as_str().unwrap();
        assert!(note.contains("device-mapper"), "{b}");
    });
    let action = w
        .run(calls, reconcile_claim::reconcile(pvc, w.ctx.clone()))
        .await;
    assert_eq!(action.unwrap(), Action::await_change());
    assert!(backend.calls().is_empty(), "{:?}", backend.calls());
}

#[tokio::test]
async fn spare_bytes_are_kept_free() {
    // 2 GiB VG, 1 GiB claim, 1.5 GiB spare: it would fit, but not with the spare.
    let backend = FakeBackend::new().with_vg("vg0", 2 * GI);
    let mut w = provisioning_world(backend.clone(), GI + GI / 2);
    let pvc = Arc::new(claim().selected_node("n1").build());
    w.run(
        reschedule_calls(),
        reconcile_claim::reconcile(pvc, w.ctx.clone()),
    )
    .await
    .unwrap();
    assert_eq!(backend.calls(), vec!["scan"]);
}

#[tokio::test]
async fn missing_vg_reschedules() {
    let backend = FakeBackend::new().with_vg("other", 10 * GI);
    let mut w = provisioning_world(backend.clone(), 0);
    let pvc = Arc::new(claim().selected_node("n1").build());
    w.run(
        reschedule_calls(),
        reconcile_claim::reconcile(pvc, w.ctx.clone()),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn transient_lvm_failure_retries_without_any_api_write() {
    let backend = FakeBackend::new().with_vg("vg0", 10 * GI);
    backend.fail_next(Error::LvmTimeout("lvm report timed out".into()));
    let mut w = provisioning_world(backend.clone(), 0);
    let pvc = Arc::new(claim().selected_node("n1").build());
    let result = w
        .run(
            vec![],
            reconcile_claim::reconcile(pvc.clone(), w.ctx.clone()),
        )
        .await;
    let err = result.unwrap_err();
    assert_eq!(err.metric_label(), "lvm_timeout");
    // Backoff grows per object and error kind.
    let a1 = reconcile_claim::error_policy(pvc.clone(), &err, w.ctx.clone());
    let a2 = reconcile_claim::error_policy(pvc, &err, w.ctx.clone());
    assert_ne!(a1, a2);
}

#[tokio::test]
async fn unsupported_access_mode_is_refused_with_an_event_only() {
    let backend = FakeBackend::new().with_vg("vg0", 10 * GI);
    let mut w = provisioning_world(backend.clone(), 0);
    let pvc = Arc::new(
        claim()
            .selected_node("n1")
            .access_modes(&["ReadWriteMany"])
            .build(),
    );
    let calls = vec![
        Call::event("ns", "Warning", "UnsupportedAccessMode").check(|b| {
            assert!(b["note"].as_str().unwrap().contains("ReadWriteMany"), "{b}");
        }),
    ];
    w.run(calls, reconcile_claim::reconcile(pvc, w.ctx.clone()))
        .await
        .unwrap();
    assert!(backend.calls().is_empty());
}

#[tokio::test]
async fn claim_without_selected_node_is_never_touched() {
    let backend = FakeBackend::new().with_vg("vg0", 10 * GI);
    let mut w = provisioning_world(backend.clone(), 0);
    let pvc = Arc::new(claim().build());
    w.run(vec![], reconcile_claim::reconcile(pvc, w.ctx.clone()))
        .await
        .unwrap();
    assert!(backend.calls().is_empty());
}

fn released_pv(finalizers: &[&str], deleting: bool) -> Value {
    let mut v = expected_pv();
    v["metadata"]["finalizers"] = json!(finalizers);
    v["status"] = json!({"phase": "Released"});
    if deleting {
        v["metadata"]["deletionTimestamp"] = json!(NOW);
    }
    v
}

#[tokio::test]
async fn deletion_removes_the_lv_then_deletes_the_pv_then_drops_the_finalizer() {
    let backend = FakeBackend::new()
        .with_vg("vg0", 10 * GI)
        .with_volume(Volume {
            vg: "vg0".into(),
            name: "pvc-u1".into(),
            size_bytes: GI,
            pool: None,
            owner: Some(owner("u1")),
            ..Default::default()
        });
    let mut w = world(backend.clone(), config(0));
    let pv = Arc::new(pv_from_json(released_pv(
        &["kubernetes.io/pv-protection", PV_FINALIZER],
        false,
    )));
    let b = backend.clone();
    let calls = vec![
        Call::delete("/api/v1/persistentvolumes/pvc-u1")
            .check(move |_| {
                assert!(
                    b.snapshot().volume("vg0", "pvc-u1").is_none(),
                    "LV must be gone before the PV delete"
                );
            })
            .respond(
                200,
                released_pv(&["kubernetes.io/pv-protection", PV_FINALIZER], true),
            ),
        Call::patch("/api/v1/persistentvolumes/pvc-u1")
            .content_type(JSON_PATCH)
            .body(json!([
                {"op": "test", "path": "/metadata/finalizers/1", "value": PV_FINALIZER},
                {"op": "remove", "path": "/metadata/finalizers/1"}
            ])),
    ];
    w.run(calls, reconcile_pv::reconcile(pv, w.ctx.clone()))
        .await
        .unwrap();
    assert_eq!(backend.calls(), vec!["scan", "remove vg0/pvc-u1"]);
}

#[tokio::test]
async fn deletion_resumes_after_a_crash_between_delete_and_finalizer() {
    let backend = FakeBackend::new().with_vg("vg0", 10 * GI);
    let mut w = world(backend.clone(), config(0));
    let pv = Arc::new(pv_from_json(released_pv(&[PV_FINALIZER], true)));
    let calls = vec![
        Call::patch("/api/v1/persistentvolumes/pvc-u1")
            .content_type(JSON_PATCH)
            .body(json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": PV_FINALIZER},
                {"op": "remove", "path": "/metadata/finalizers/0"}
            ])),
    ];
    w.run(calls, reconcile_pv::reconcile(pv, w.ctx.clone()))
        .await
        .unwrap();
    assert_eq!(backend.calls(), vec!["scan"]);
}

#[tokio::test]
async fn deletion_refuses_an_lv_tagged_for_another_pv() {
    let backend = FakeBackend::new()
        .with_vg("vg0", 10 * GI)
        .with_volume(Volume {
            vg: "vg0".into(),
            name: "pvc-u1".into(),
            size_bytes: GI,
            pool: None,
            owner: Some(owner("other")),
            ..Default::default()
        });
    let mut w = world(backend.clone(), config(0));
    let pv = Arc::new(pv_from_json(released_pv(&[PV_FINALIZER], false)));
    let calls = vec![
        Call::post("/apis/events.k8s.io/v1/namespaces/default/events")
            .check(|b| assert_eq!(b["reason"], "VolumeDeleteFailed"))
            .respond(201, json!({})),
    ];
    let result = w
        .run(calls, reconcile_pv::reconcile(pv, w.ctx.clone()))
        .await;
    assert!(matches!(result, Err(Error::OwnedByAnother { .. })));
    assert!(backend.snapshot().volume("vg0", "pvc-u1").is_some());
}

/// A PV whose handle names a snapshot LV (tagged by a VolumeSnapshotContent,
/// not a claim) must not delete it: snapshots are removed only through
/// `remove_snapshot` with their own owner.
#[tokio::test]
async fn deletion_refuses_a_snapshot_lv() {
    let backend = FakeBackend::new()
        .with_vg("vg0", 10 * GI)
        .with_volume(Volume {
            vg: "vg0".into(),
            name: "pvc-u1".into(),
            size_bytes: GI,
            pool: Some("pool0".into()),
            snapshot_owner: Some(SnapshotOwner {
                content_uid: "c1".into(),
                content_name: "snapcontent-c1".into(),
            }),
            ..Default::default()
        });
    let mut w = world(backend.clone(), config(0));
    let pv = Arc::new(pv_from_json(released_pv(&[PV_FINALIZER], false)));
    let calls = vec![
        Call::post("/apis/events.k8s.io/v1/namespaces/default/events")
            .check(|b| assert_eq!(b["reason"], "VolumeDeleteFailed"))
            .respond(201, json!({})),
    ];
    let result = w
        .run(calls, reconcile_pv::reconcile(pv, w.ctx.clone()))
        .await;
    assert!(matches!(result, Err(Error::OwnedByAnother { .. })));
    assert!(backend.snapshot().volume("vg0", "pvc-u1").is_some());
    assert!(!backend.calls().iter().any(|c| c.starts_with("remove")));
}

#[tokio::test]
async fn retain_keeps_everything() {
    let backend = FakeBackend::new().with_vg("vg0", 10 * GI);
    let mut w = world(backend.clone(), config(0));
    let mut v = released_pv(&[], false);
    v["spec"]["persistentVolumeReclaimPolicy"] = json!("Retain");
    w.run(
        vec![],
        reconcile_pv::reconcile(Arc::new(pv_from_json(v)), w.ctx.clone()),
    )
    .await
    .unwrap();
    assert!(backend.calls().is_empty());
}

/// A Retain PV carrying our finalizer (made by an older agent) loses it, so
/// that `kubectl delete pv` can finish; the LV is never touched.
#[tokio::test]
async fn retain_drops_our_finalizer_and_keeps_the_lv() {
    let backend = FakeBackend::new().with_vg("vg0", 10 * GI);
    let mut w = world(backend.clone(), config(0));
    let mut v = released_pv(&["kubernetes.io/pv-protection", PV_FINALIZER], true);
    v["spec"]["persistentVolumeReclaimPolicy"] = json!("Retain");
    let calls = vec![
        Call::patch("/api/v1/persistentvolumes/pvc-u1")
            .content_type(JSON_PATCH)
            .body(json!([
                {"op": "test", "path": "/metadata/finalizers/1", "value": PV_FINALIZER},
                {"op": "remove", "path": "/metadata/finalizers/1"}
            ])),
    ];
    w.run(
        calls,
        reconcile_pv::reconcile(Arc::new(pv_from_json(v)), w.ctx.clone()),
    )
    .await
    .unwrap();
    assert!(backend.calls().is_empty());
}

fn bound_pv() -> Value {
    let mut v = expected_pv();
    v["status"] = json!({"phase": "Bound"});
    v
}

fn expansion_world(backend: FakeBackend) -> World<FakeBackend> {
    let mut w = world(backend, config(0));
    w.add_class(fast_class());
    w.add_pv(pv_from_json(bound_pv()));
    w
}

fn lv_u1() -> Volume {
    Volume {
        vg: "vg0".into(),
        name: "pvc-u1".into(),
        size_bytes: GI,
        pool: None,
        owner: Some(owner("u1")),
        ..Default::default()
    }
}

#[tokio::test]
async fn filesystem_expansion_follows_the_external_resizer() {
    let backend = FakeBackend::new()
        .with_vg("vg0", 10 * GI)
        .with_volume(lv_u1());
    let mut w = expansion_world(backend.clone());
    let pvc = claim()
        .size("2Gi")
        .bound("pvc-u1", "1Gi")
        .resource_version("5")
        .build();
    let mut after_start = serde_json::to_value(&pvc).unwrap();
    after_start["metadata"]["resourceVersion"] = json!("6");
    after_start["status"]["allocatedResources"] = json!({"storage": "2Gi"});
    let status_path = format!("{CLAIM}/status");
    let calls = vec![
        Call::event("ns", "Normal", "Resizing"),
        Call::patch(&status_path).content_type(MERGE_PATCH).body(json!({
            "metadata": {"resourceVersion": "5"},
            "status": {
                "conditions": [{"type": "Resizing", "status": "True", "lastTransitionTime": NOW}],
                "allocatedResources": {"storage": "2Gi"},
                "allocatedResourceStatuses": {"storage": "ControllerResizeInProgress"}
            }
        })).respond(200, after_start),
        Call::patch("/api/v1/persistentvolumes/pvc-u1").content_type(MERGE_PATCH)
            .body(json!({"spec": {"capacity": {"storage": "2Gi"}}}))
            .respond(200, bound_pv()),
        Call::patch(&status_path).content_type(MERGE_PATCH).body(json!({
            "metadata": {"resourceVersion": "6"},
            "status": {
                "conditions": [{"type": "FileSystemResizePending", "status": "True", "lastTransitionTime": NOW,
                                "message": "Waiting for user to (re-)start a pod to finish file system resize of volume on node."}],
                "allocatedResources": {"storage": "2Gi"},
                "allocatedResourceStatuses": {"storage": "NodeResizePending"}
            }
        })),
        Call::event("ns", "Normal", "FileSystemResizeRequired"),
    ];
    w.run(
        calls,
        reconcile_claim::reconcile(Arc::new(pvc), w.ctx.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        backend.calls(),
        vec!["scan", "extend vg0/pvc-u1 2147483648"]
    );
}

#[tokio::test]
async fn expansion_refuses_an_lv_tagged_for_another_claim() {
    let theirs = Volume {
        owner: Some(owner("someone-else")),
        ..lv_u1()
    };
    let backend = FakeBackend::new()
        .with_vg("vg0", 10 * GI)
        .with_volume(theirs);
    let mut w = expansion_world(backend.clone());
    let pvc = claim()
        .size("2Gi")
        .bound("pvc-u1", "1Gi")
        .resource_version("5")
        .build();
    let status_path = format!("{CLAIM}/status");
    let calls = vec![
        Call::event("ns", "Normal", "Resizing"),
        Call::patch(&status_path).respond(200, serde_json::to_value(&pvc).unwrap()),
        Call::event("ns", "Warning", "VolumeResizeFailed").check(|b| {
            let note = b["note"].as_str().unwrap();
            assert!(note.contains("refusing to extend"), "{b}");
        }),
    ];
    let result = w
        .run(
            calls,
            reconcile_claim::reconcile(Arc::new(pvc), w.ctx.clone()),
        )
        .await;
    assert!(
        matches!(result, Err(Error::OwnedByAnother { .. })),
        "{result:?}"
    );
    assert_eq!(backend.calls(), vec!["scan"]);
    assert_eq!(
        backend
            .snapshot()
            .volume("vg0", "pvc-u1")
            .unwrap()
            .size_bytes,
        GI
    );
}

#[tokio::test]
async fn block_expansion_finishes_without_the_node() {
    let backend = FakeBackend::new()
        .with_vg("vg0", 10 * GI)
        .with_volume(lv_u1());
    let mut w = expansion_world(backend.clone());
    let pvc = claim()
        .size("2Gi")
        .block()
        .bound("pvc-u1", "1Gi")
        .resource_version("5")
        .build();
    let mut after_start = serde_json::to_value(&pvc).unwrap();
    after_start["metadata"]["resourceVersion"] = json!("6");
    after_start["status"]["allocatedResources"] = json!({"storage": "2Gi"});
    let status_path = format!("{CLAIM}/status");
    let calls = vec![
        Call::event("ns", "Normal", "Resizing"),
        Call::patch(&status_path).respond(200, after_start),
        Call::patch("/api/v1/persistentvolumes/pvc-u1").respond(200, bound_pv()),
        Call::patch(&status_path).body(json!({
            "metadata": {"resourceVersion": "6"},
            "status": {
                "capacity": {"storage": "2Gi"},
                "conditions": [],
                "allocatedResources": {"storage": "2Gi"},
                "allocatedResourceStatuses": {"storage": null}
            }
        })),
        Call::patch(CLAIM).content_type(MERGE_PATCH).body(json!({
            "metadata": {"annotations": {"volume.kubernetes.io/node-expansion-not-required": "true"}}
        })),
        Call::event("ns", "Normal", "VolumeResizeSuccessful"),
    ];
    w.run(
        calls,
        reconcile_claim::reconcile(Arc::new(pvc), w.ctx.clone()),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn expansion_resumes_after_a_crash_without_marking_again() {
    let backend = FakeBackend::new()
        .with_vg("vg0", 10 * GI)
        .with_volume(lv_u1());
    let mut w = expansion_world(backend.clone());
    let pvc = claim()
        .size("2Gi")
        .bound("pvc-u1", "1Gi")
        .status(|s| {
            s.allocated_resources = Some(storage("2Gi"));
            s.allocated_resource_statuses = Some(
                [(
                    "storage".to_string(),
                    "ControllerResizeInProgress".to_string(),
                )]
                .into(),
            );
        })
        .build();
    let status_path = format!("{CLAIM}/status");
    let calls = vec![
        Call::patch("/api/v1/persistentvolumes/pvc-u1").respond(200, bound_pv()),
        Call::patch(&status_path).check(|b| {
            assert_eq!(
                b["status"]["allocatedResourceStatuses"]["storage"],
                "NodeResizePending"
            )
        }),
        Call::event("ns", "Normal", "FileSystemResizeRequired"),
    ];
    w.run(
        calls,
        reconcile_claim::reconcile(Arc::new(pvc), w.ctx.clone()),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn shrink_is_refused_with_an_event() {
    let backend = FakeBackend::new()
        .with_vg("vg0", 10 * GI)
        .with_volume(lv_u1());
    let mut w = expansion_world(backend.clone());
    let pvc = claim()
        .size("512Mi")
        .bound("pvc-u1", "1Gi")
        .status(|s| s.allocated_resources = Some(storage("1Gi")))
        .build();
    let calls = vec![
        Call::event("ns", "Warning", "VolumeResizeFailed")
            .check(|b| assert!(b["note"].as_str().unwrap().contains("cannot shrink"), "{b}")),
    ];
    w.run(
        calls,
        reconcile_claim::reconcile(Arc::new(pvc), w.ctx.clone()),
    )
    .await
    .unwrap();
    assert!(backend.calls().is_empty());
}

fn storage(q: &str) -> std::collections::BTreeMap<String, Quantity> {
    [("storage".to_string(), Quantity(q.into()))].into()
}

/// A capacity above the request (extent rounding, local-disk-size) is no
/// shrink: no Warning, no lvm call, on every reconcile.
#[tokio::test]
async fn capacity_above_the_request_is_not_a_shrink() {
    let backend = FakeBackend::new()
        .with_vg("vg0", 10 * GI)
        .with_volume(lv_u1());
    let mut w = expansion_world(backend.clone());
    let pvc = claim()
        .size("1000Mi")
        .local_disk_size("1000Mi")
        .bound("pvc-u1", "1Gi")
        .build();
    w.run(
        vec![],
        reconcile_claim::reconcile(Arc::new(pvc), w.ctx.clone()),
    )
    .await
    .unwrap();
    assert!(backend.calls().is_empty());
}

/// Kubernetes 1.30-1.31 (RecoverVolumeExpansionFailure off) drop
/// allocatedResources from the write; the agent sees that in the answer and
/// follows the legacy path: conditions only, and the next reconcile waits for
/// kubelet instead of starting over.
#[tokio::test]
async fn expansion_follows_the_legacy_path_when_the_server_drops_allocated_resources() {
    let backend = FakeBackend::new()
        .with_vg("vg0", 10 * GI)
        .with_volume(lv_u1());
    let mut w = expansion_world(backend.clone());
    let pvc = claim()
        .size("2Gi")
        .bound("pvc-u1", "1Gi")
        .resource_version("5")
        .build();
    // What a gate-off server returns: our condition, not our allocation.
    let mut after_start = serde_json::to_value(&pvc).unwrap();
    after_start["metadata"]["resourceVersion"] = json!("6");
    after_start["status"]["conditions"] =
        json!([{"type": "Resizing", "status": "True", "lastTransitionTime": NOW}]);
    let mut after_pending = after_start.clone();
    after_pending["metadata"]["resourceVersion"] = json!("7");
    after_pending["status"]["conditions"] = json!([{"type": "FileSystemResizePending",
        "status": "True", "lastTransitionTime": NOW, "message": "Waiting for user to (re-)start a pod to finish file system resize of volume on node."}]);
    let status_path = format!("{CLAIM}/status");
    let calls = vec![
        Call::event("ns", "Normal", "Resizing"),
        Call::patch(&status_path).respond(200, after_start),
        Call::patch("/api/v1/persistentvolumes/pvc-u1")
            .body(json!({"spec": {"capacity": {"storage": "2Gi"}}}))
            .respond(200, bound_pv()),
        Call::patch(&status_path).content_type(MERGE_PATCH).body(json!({
            "metadata": {"resourceVersion": "6"},
            "status": {
                "conditions": [{"type": "FileSystemResizePending", "status": "True", "lastTransitionTime": NOW,
                                "message": "Waiting for user to (re-)start a pod to finish file system resize of volume on node."}]
            }
        })).respond(200, after_pending.clone()),
        Call::event("ns", "Normal", "FileSystemResizeRequired"),
    ];
    let ctx = w.ctx.clone();
    w.run(calls, async move {
        reconcile_claim::reconcile(Arc::new(pvc), ctx.clone())
            .await
            .unwrap();
        // The claim as the server now has it: kubelet's turn, no new start.
        let now: k8s_openapi::api::core::v1::PersistentVolumeClaim =
            serde_json::from_value(after_pending).unwrap();
        reconcile_claim::reconcile(Arc::new(now), ctx)
            .await
            .unwrap();
    })
    .await;
    assert_eq!(
        backend.calls(),
        vec!["scan", "extend vg0/pvc-u1 2147483648"]
    );
}

fn lvm_node_obj() -> Value {
    json!({"apiVersion": "lvmpin.io/v1alpha1", "kind": "LvmNode", "metadata": {"name": "n1"}, "spec": {"nodeName": "n1"}})
}

#[tokio::test]
async fn lvm_node_is_created_owned_by_the_node_and_written_only_on_change() {
    let backend = FakeBackend::new().with_vg("vg0", 10 * GI);
    let mut w = world(backend.clone(), config(0));
    let lvmnode = "/apis/lvmpin.io/v1alpha1/lvmnodes/n1";
    let calls = vec![
        Call::get("/api/v1/nodes/n1")
            .respond(200, json!({"metadata": {"name": "n1", "uid": "node-uid"}})),
        Call::get(lvmnode).not_found(),
        Call::post("/apis/lvmpin.io/v1alpha1/lvmnodes")
            .body(json!({
                "apiVersion": "lvmpin.io/v1alpha1", "kind": "LvmNode",
                "metadata": {"name": "n1", "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "node-uid"}]},
                "spec": {"nodeName": "n1"}
            }))
            .respond(201, lvm_node_obj()),
        Call::patch(&format!("{lvmnode}/status"))
            .content_type(MERGE_PATCH)
            .check(|b| {
                let vg = &b["status"]["volumeGroups"][0];
                assert_eq!(vg["name"], "vg0");
                assert_eq!(vg["sizeBytes"], 10 * GI);
                assert_eq!(vg["healthy"], true);
                assert_eq!(b["status"]["lastScanTime"], NOW);
            })
            .respond(200, lvm_node_obj()),
        // The VG grew: written again.
        Call::patch(&format!("{lvmnode}/status"))
            .check(|b| {
                assert_eq!(b["status"]["volumeGroups"][0]["sizeBytes"], 11 * GI);
            })
            .respond(200, lvm_node_obj()),
    ];
    let ctx = w.ctx.clone();
    let b = backend.clone();
    w.run(calls, async move {
        assert!(lvm_node_writer::ensure_lvm_node(&ctx).await.unwrap());
        assert!(lvm_node_writer::publish_status(&ctx).await.unwrap());
        // Nothing changed: no write.
        assert!(!lvm_node_writer::publish_status(&ctx).await.unwrap());
        b.grow_vg("vg0", GI);
        assert!(lvm_node_writer::publish_status(&ctx).await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn startup_recreates_a_missing_pv_and_reports_orphans() {
    let orphan = Volume {
        vg: "vg0".into(),
        name: "pvc-gone".into(),
        size_bytes: GI,
        pool: None,
        owner: Some(owner("gone")),
        ..Default::default()
    };
    let backend = FakeBackend::new()
        .with_vg("vg0", 10 * GI)
        .with_volume(lv_u1())
        .with_volume(orphan);
    let mut w = world(backend.clone(), config(0));
    w.add_class(fast_class());
    w.add_claim(claim().selected_node("n1").build());
    let calls = vec![
        Call::post(PVS)
            .body(expected_pv())
            .respond(201, expected_pv()),
        Call::post("/apis/events.k8s.io/v1/namespaces/default/events")
            .check(|b| {
                assert_eq!(b["reason"], "OrphanVolume");
                assert_eq!(b["regarding"]["kind"], "LvmNode");
                assert!(b["note"].as_str().unwrap().contains("vg0/pvc-gone"), "{b}");
            })
            .respond(201, json!({})),
    ];
    let ctx = w.ctx.clone();
    let orphans = w
        .run(calls, async move { startup::recover(&ctx).await })
        .await
        .unwrap();
    assert_eq!(orphans, 1);
    assert_eq!(w.ctx.metrics.orphan_volumes.get(), 1);
    // Never deletes.
    assert_eq!(backend.calls(), vec!["scan"]);
}

#[tokio::test]
async fn cached_scan_spares_lvm_calls_and_is_refreshed_before_a_reschedule() {
    let backend = FakeBackend::new().with_vg("vg0", 2 * GI);
    let mut w = provisioning_world(backend.clone(), 0);
    let claims: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|u| {
            Arc::new(
                ClaimBuilder::new("ns", &format!("c-{u}"), u)
                    .class("fast")
                    .size("1Gi")
                    .selected_node("n1")
                    .build(),
            )
        })
        .collect();
    let mut calls = Vec::new();
    for u in ["a", "b", "c"] {
        calls.push(
            Call::post(PVS)
                .check(move |b| assert_eq!(b["metadata"]["name"], format!("pvc-{u}")))
                .respond(201, json!({"metadata": {"name": format!("pvc-{u}")}})),
        );
        calls.push(Call::event("ns", "Normal", "ProvisioningSucceeded"));
    }
    let ctx = w.ctx.clone();
    let b = backend.clone();
    w.run(calls, async move {
        reconcile_claim::reconcile(claims[0].clone(), ctx.clone())
            .await
            .unwrap();
        reconcile_claim::reconcile(claims[1].clone(), ctx.clone())
            .await
            .unwrap();
        // The VG is full in the cache; it grew on disk meanwhile.
        b.grow_vg("vg0", GI);
        reconcile_claim::reconcile(claims[2].clone(), ctx.clone())
            .await
            .unwrap();
    })
    .await;
    assert_eq!(
        backend.calls(),
        vec![
            "scan",
            "create vg0/pvc-a 1073741824",
            "create vg0/pvc-b 1073741824",
            "scan",
            "create vg0/pvc-c 1073741824"
        ]
    );
}

#[tokio::test]
async fn a_vg_this_agent_does_not_manage_is_missing_here() {
    let backend = FakeBackend::new()
        .with_vg("vg0", 10 * GI)
        .with_vg("system", 10 * GI);
    let mut w = world(backend.clone(), config(0));
    w.add_class(class("sys", DRIVER_NAME, &[(PARAM_VOLUME_GROUP, "system")]));
    let pvc = Arc::new(
        ClaimBuilder::new("ns", "data", "u1")
            .class("sys")
            .size("1Gi")
            .selected_node("n1")
            .build(),
    );
    w.run(
        reschedule_calls(),
        reconcile_claim::reconcile(pvc, w.ctx.clone()),
    )
    .await
    .unwrap();
    assert!(backend.calls().is_empty());
}

#[tokio::test]
async fn deletion_after_provisioning_uses_the_cached_scan() {
    let backend = FakeBackend::new().with_vg("vg0", 10 * GI);
    let mut w = provisioning_world(backend.clone(), 0);
    let pvc = Arc::new(claim().selected_node("n1").build());
    let pv = Arc::new(pv_from_json(released_pv(&[PV_FINALIZER], false)));
    let calls = vec![
        Call::post(PVS).respond(201, expected_pv()),
        Call::event("ns", "Normal", "ProvisioningSucceeded"),
        Call::delete("/api/v1/persistentvolumes/pvc-u1")
            .respond(200, released_pv(&[PV_FINALIZER], true)),
        Call::patch("/api/v1/persistentvolumes/pvc-u1").content_type(JSON_PATCH),
    ];
    let ctx = w.ctx.clone();
    w.run(calls, async move {
        reconcile_claim::reconcile(pvc, ctx.clone()).await.unwrap();
        reconcile_pv::reconcile(pv, ctx).await.unwrap();
    })
    .await;
    assert_eq!(
        backend.calls(),
        vec!["scan", "create vg0/pvc-u1 1073741824", "remove vg0/pvc-u1"]
    );
    assert_eq!(backend.snapshot().volume_groups[0].free_bytes, 10 * GI);
}

#[tokio::test]
async fn a_missing_thin_pool_reschedules() {
    let backend = FakeBackend::new().with_vg("vg0", 10 * GI);
    backend.fail_next_op(
        "create",
        Error::LvNotFound {
            vg: "vg0".into(),
            lv: "pool".into(),
        },
    );
    let mut w = world(backend.clone(), config(0));
    w.add_class(class(
        "fast",
        DRIVER_NAME,
        &[
            (PARAM_VOLUME_GROUP, "vg0"),
            (lvmpin_api::names::PARAM_THIN_POOL, "pool"),
        ],
    ));
    let pvc = Arc::new(claim().selected_node("n1").build());
    w.run(
        reschedule_calls(),
        reconcile_claim::reconcile(pvc, w.ctx.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        backend.calls(),
        vec!["scan", "create vg0/pvc-u1 1073741824"]
    );
}
