//! The agent's snapshot protocol and restores against a mocked API server
//! asserting the exact calls (the csi-snapshotter sidecar's sequence; see
//! docs/protocols.md, "Snapshots").

mod support;

use std::sync::Arc;

use kube::runtime::controller::Action;
use lvmpin_api::names::{DRIVER_NAME, PARAM_THIN_POOL, PARAM_VOLUME_GROUP};
use lvmpin_api::snapshot::{
    ANN_BEING_CREATED, ANN_BEING_DELETED, CONTENT_FINALIZER, LABEL_MANAGED_BY,
    VolumeSnapshotContent,
};
use lvmpin_provisioner::backend::{Owner, SnapshotOwner, Volume};
use lvmpin_provisioner::fake_backend::FakeBackend;
use lvmpin_provisioner::{reconcile_claim, snapshot_contents};
use lvmpin_testkit::{ClaimBuilder, class};
use serde_json::{Value, json};
use support::{Call, config, world};

const GI: u64 = 1 << 30;
const CONTENT: &str = "/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents/snapcontent-1";
const MERGE_PATCH: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";

fn source_volume(pool: Option<&str>) -> Volume {
    Volume {
        vg: "vg0".into(),
        name: "pvc-src".into(),
        size_bytes: GI,
        pool: pool.map(Into::into),
        owner: Some(Owner {
            claim_uid: "src".into(),
            claim_namespace: "ns".into(),
            claim_name: "data".into(),
            pv_name: "pvc-src".into(),
        }),
        ..Default::default()
    }
}

fn backend(pool: Option<&str>) -> FakeBackend {
    FakeBackend::new()
        .with_vg("vg0", 10 * GI)
        .with_volume(source_volume(pool))
}

/// A content as the snapshot-controller makes it, with `extra` merged in.
fn content(extra: Value) -> VolumeSnapshotContent {
    let mut v = json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotContent",
        "metadata": {"name": "snapcontent-1", "uid": "cu1",
            "labels": {LABEL_MANAGED_BY: "n1"}, "finalizers": [CONTENT_FINALIZER]},
        "spec": {"driver": DRIVER_NAME, "deletionPolicy": "Delete",
            "source": {"volumeHandle": "vg0/pvc-src"},
            "volumeSnapshotClassName": "lvm",
            "volumeSnapshotRef": {"kind": "VolumeSnapshot", "namespace": "ns", "name": "snap", "uid": "su1"}}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn snapshot_owner() -> SnapshotOwner {
    SnapshotOwner {
        content_uid: "cu1".into(),
        content_name: "snapcontent-1".into(),
    }
}

#[tokio::test]
async fn a_new_content_gets_a_thin_snapshot_and_a_ready_status() {
    let backend = backend(Some("pool0"));
    let mut w = world(backend.clone(), config(0));
    let c = Arc::new(content(json!({})));
    let calls = vec![
        Call::patch(CONTENT)
            .content_type(MERGE_PATCH)
            .body(json!({"metadata": {"annotations": {ANN_BEING_CREATED: "yes"}}}))
            .respond(200, serde_json::to_value(&*c).unwrap()),
        Call::patch(&format!("{CONTENT}/status"))
            .content_type(MERGE_PATCH)
            .check(|b| {
                let s = &b["status"];
                assert_eq!(s["snapshotHandle"], "vg0/snap-cu1", "{b}");
                assert_eq!(s["readyToUse"], true, "{b}");
                assert_eq!(s["restoreSize"], GI, "{b}");
                assert!(
                    s["creationTime"].as_i64().unwrap() > 1_000_000_000_000_000_000,
                    "{b}"
                );
                assert_eq!(s["error"], Value::Null, "{b}");
            })
            .respond(200, serde_json::to_value(&*c).unwrap()),
        Call::patch(CONTENT)
            .content_type(MERGE_PATCH)
            .body(json!({"metadata": {"annotations": {ANN_BEING_CREATED: null}}}))
            .respond(200, serde_json::to_value(&*c).unwrap()),
    ];
    let action = w
        .run(calls, snapshot_contents::reconcile(c, w.ctx.clone()))
        .await;
    assert_eq!(action.unwrap(), Action::await_change());
    assert_eq!(
        backend.calls(),
        vec!["scan", "create_snapshot vg0/snap-cu1 from pvc-src"]
    );
    let snap = backend
        .snapshot()
        .volume("vg0", "snap-cu1")
        .cloned()
        .unwrap();
    assert_eq!(snap.snapshot_owner, Some(snapshot_owner()));
    assert_eq!(snap.owner, None);
}

#[tokio::test]
async fn a_linear_source_is_refused_on_the_status_and_both_objects() {
    let backend = backend(None);
    let mut w = world(backend.clone(), config(0));
    let c = Arc::new(content(json!({})));
    let body = serde_json::to_value(&*c).unwrap();
    // Nothing is in flight: no being-created annotation is set or cleared.
    let calls = vec![
        Call::patch(&format!("{CONTENT}/status"))
            .check(|b| {
                assert_eq!(b["status"]["readyToUse"], false, "{b}");
                let msg = b["status"]["error"]["message"].as_str().unwrap();
                assert!(msg.contains("vg0/pvc-src is a linear volume"), "{msg}");
            })
            .respond(200, body),
        // A cluster-scoped object's Events go to "default".
        Call::event("default", "Warning", "SnapshotCreationFailed"),
        Call::event("ns", "Warning", "SnapshotCreationFailed"),
    ];
    let action = w
        .run(calls, snapshot_contents::reconcile(c, w.ctx.clone()))
        .await;
    assert_eq!(action.unwrap(), Action::await_change());
    assert_eq!(backend.calls(), vec!["scan"]);
}

#[tokio::test]
async fn a_refused_content_is_left_alone_until_it_changes() {
    let backend = backend(None);
    let mut w = world(backend.clone(), config(0));
    let message = "Failed to create snapshot: source volume vg0/pvc-src is a linear volume; lvmpin takes snapshots of thin volumes only (StorageClass parameter lvmpin.io/thin-pool)";
    let c = Arc::new(content(json!({
        "status": {"readyToUse": false, "error": {"message": message, "time": "2026-01-01T00:00:00Z"}}
    })));
    // No API call at all: the same error is not written or told twice.
    let action = w
        .run(vec![], snapshot_contents::reconcile(c, w.ctx.clone()))
        .await;
    assert_eq!(action.unwrap(), Action::await_change());
    assert_eq!(backend.calls(), vec!["scan"]);
}

#[tokio::test]
async fn an_lv_of_the_snapshot_name_owned_by_another_content_is_refused() {
    let backend = backend(Some("pool0")).with_volume(Volume {
        name: "snap-cu1".into(),
        owner: None,
        snapshot_owner: Some(SnapshotOwner {
            content_uid: "other".into(),
            content_name: "snapcontent-other".into(),
        }),
        ..source_volume(Some("pool0"))
    });
    let mut w = world(backend.clone(), config(0));
    let c = Arc::new(content(json!({})));
    let body = serde_json::to_value(&*c).unwrap();
    let calls = vec![
        Call::patch(&format!("{CONTENT}/status"))
            .check(|b| {
                let msg = b["status"]["error"]["message"].as_str().unwrap();
                assert!(msg.contains("vg0/snap-cu1 exists"), "{msg}");
            })
            .respond(200, body),
        Call::event("default", "Warning", "SnapshotCreationFailed"),
        Call::event("ns", "Warning", "SnapshotCreationFailed"),
    ];
    w.run(calls, snapshot_contents::reconcile(c, w.ctx.clone()))
        .await
        .unwrap();
    assert_eq!(backend.calls(), vec!["scan"]);
    let kept = backend
        .snapshot()
        .volume("vg0", "snap-cu1")
        .cloned()
        .unwrap();
    assert_eq!(kept.snapshot_owner.unwrap().content_uid, "other");
}

#[tokio::test]
async fn a_deleted_snapshot_with_delete_policy_loses_its_lv_then_the_finalizer() {
    let backend = backend(Some("pool0"));
    let made = Volume {
        name: "snap-cu1".into(),
        owner: None,
        snapshot_owner: Some(snapshot_owner()),
        pool: Some("pool0".into()),
        ..source_volume(Some("pool0"))
    };
    let backend = backend.with_volume(made);
    let mut w = world(backend.clone(), config(0));
    let c = Arc::new(content(json!({
        "metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {ANN_BEING_DELETED: "yes"}},
        "status": {"snapshotHandle": "vg0/snap-cu1", "readyToUse": true}
    })));
    let body = serde_json::to_value(&*c).unwrap();
    let calls = vec![
        Call::patch(&format!("{CONTENT}/status"))
            .body(
                json!({"status": {"snapshotHandle": null, "readyToUse": null,
                "creationTime": null, "restoreSize": null}}),
            )
            .respond(200, body.clone()),
        Call::patch(CONTENT)
            .content_type(JSON_PATCH)
            .body(json!([
                {"op": "test", "path": "/metadata/finalizers", "value": [CONTENT_FINALIZER]},
                {"op": "replace", "path": "/metadata/finalizers", "value": []},
            ]))
            .respond(200, body),
    ];
    let action = w
        .run(calls, snapshot_contents::reconcile(c, w.ctx.clone()))
        .await;
    assert_eq!(action.unwrap(), Action::await_change());
    assert_eq!(backend.calls(), vec!["remove_snapshot vg0/snap-cu1"]);
    assert!(backend.snapshot().volume("vg0", "snap-cu1").is_none());
    assert!(backend.snapshot().volume("vg0", "pvc-src").is_some());
}

#[tokio::test]
async fn a_retained_snapshot_keeps_its_lv() {
    let backend = backend(Some("pool0"));
    let mut w = world(backend.clone(), config(0));
    let c = Arc::new(content(json!({
        "metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {ANN_BEING_DELETED: "yes"}},
        "spec": {"deletionPolicy": "Retain"},
        "status": {"snapshotHandle": "vg0/snap-cu1", "readyToUse": true}
    })));
    let body = serde_json::to_value(&*c).unwrap();
    let calls = vec![
        Call::patch(CONTENT)
            .content_type(JSON_PATCH)
            .respond(200, body),
    ];
    w.run(calls, snapshot_contents::reconcile(c, w.ctx.clone()))
        .await
        .unwrap();
    assert!(backend.calls().is_empty());
}

// ---------- pre-provisioned contents (spec.source.snapshotHandle) ----------

/// A pre-provisioned content as a person writes it: a snapshot handle, no
/// volume handle, bound to a VolumeSnapshot, with `extra` merged in.
fn pre_provisioned(handle: &str, extra: Value) -> VolumeSnapshotContent {
    let mut v = json!({
        "metadata": {"resourceVersion": "7"},
        "spec": {"source": {"volumeHandle": null, "snapshotHandle": handle},
            "volumeSnapshotClassName": null}
    });
    merge(&mut v, extra);
    content(v)
}

/// A snapshot LV lvmpin made for another content (kept with Retain).
fn retained_snapshot(backend: FakeBackend) -> FakeBackend {
    backend.with_volume(Volume {
        name: "snap-old".into(),
        owner: None,
        snapshot_owner: Some(SnapshotOwner {
            content_uid: "old".into(),
            content_name: "snapcontent-old".into(),
        }),
        created_unix: Some(1_764_518_400),
        ..source_volume(Some("pool0"))
    })
}

#[tokio::test]
async fn a_pre_provisioned_content_naming_our_snapshot_gets_a_ready_status() {
    let backend = retained_snapshot(backend(Some("pool0")));
    let mut w = world(backend.clone(), config(0));
    let c = Arc::new(pre_provisioned("vg0/snap-old", json!({})));
    // No being-created annotation: nothing is created.
    let calls = vec![
        Call::patch(&format!("{CONTENT}/status"))
            .content_type(MERGE_PATCH)
            .body(json!({"status": {
                "snapshotHandle": "vg0/snap-old",
                "readyToUse": true,
                "creationTime": 1_764_518_400_000_000_000_i64,
                "restoreSize": GI,
                "error": null,
            }}))
            .respond(200, serde_json::to_value(&*c).unwrap()),
    ];
    let action = w
        .run(calls, snapshot_contents::reconcile(c, w.ctx.clone()))
        .await;
    assert_eq!(action.unwrap(), Action::await_change());
    assert_eq!(backend.calls(), vec!["scan"]);
}

#[tokio::test]
async fn a_ready_pre_provisioned_content_is_not_checked_again() {
    let backend = retained_snapshot(backend(Some("pool0")));
    let mut w = world(backend.clone(), config(0));
    let c = Arc::new(pre_provisioned(
        "vg0/snap-old",
        json!({"status": {"snapshotHandle": "vg0/snap-old", "readyToUse": true}}),
    ));
    w.run(vec![], snapshot_contents::reconcile(c, w.ctx.clone()))
        .await
        .unwrap();
    assert!(backend.calls().is_empty());
}

/// Each handle that is not one of this node's lvmpin snapshots gets the
/// sidecar's error status and Warning Events, and nothing is made or removed.
#[tokio::test]
async fn a_pre_provisioned_content_naming_no_snapshot_of_ours_gets_an_error() {
    let cases = [
        (
            "vg0/snap-gone",
            "snapshot vg0/snap-gone does not exist on node n1",
            true,
        ),
        (
            "vg9/snap-old",
            "snapshot vg9/snap-old does not exist on node n1",
            true,
        ),
        (
            "vg0/pvc-src",
            "vg0/pvc-src is an lvmpin volume, not a snapshot; a pre-provisioned content must name a snapshot LV",
            true,
        ),
        (
            "vg0/foreign",
            "vg0/foreign has no lvmpin snapshot tags; lvmpin uses only snapshots it made",
            true,
        ),
        (
            "no-slash",
            "snapshot handle \"no-slash\" is not <volume group>/<logical volume>",
            false,
        ),
    ];
    for (handle, want, scans) in cases {
        let backend = retained_snapshot(backend(Some("pool0"))).with_volume(Volume {
            name: "foreign".into(),
            owner: None,
            ..source_volume(Some("pool0"))
        });
        let before = backend.snapshot();
        let mut w = world(backend.clone(), config(0));
        let c = Arc::new(pre_provisioned(handle, json!({})));
        let body = serde_json::to_value(&*c).unwrap();
        let note = format!("Failed to check and update snapshot content: {want}");
        let expected = note.clone();
        let calls = vec![
            Call::patch(&format!("{CONTENT}/status"))
                .content_type(MERGE_PATCH)
                .check(move |b| {
                    assert_eq!(b["status"]["readyToUse"], false, "{b}");
                    assert_eq!(b["status"]["error"]["message"], expected.as_str(), "{b}");
                    assert!(b["status"].get("snapshotHandle").is_none(), "{b}");
                })
                .respond(200, body),
            Call::event("default", "Warning", "SnapshotContentCheckandUpdateFailed"),
            Call::event("ns", "Warning", "SnapshotContentCheckandUpdateFailed"),
        ];
        let action = w
            .run(calls, snapshot_contents::reconcile(c, w.ctx.clone()))
            .await;
        assert_eq!(action.unwrap(), Action::await_change(), "{handle}");
        let want_calls: Vec<String> = if scans { vec!["scan".into()] } else { vec![] };
        assert_eq!(backend.calls(), want_calls, "{handle}");
        assert_eq!(backend.snapshot(), before, "{handle}: the backend changed");

        // The same error is not written or told twice.
        let mut w = world(backend.clone(), config(0));
        let c = Arc::new(pre_provisioned(
            handle,
            json!({"status": {"readyToUse": false,
                "error": {"message": note, "time": "2026-01-01T00:00:00Z"}}}),
        ));
        w.run(vec![], snapshot_contents::reconcile(c, w.ctx.clone()))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn an_unlabelled_pre_provisioned_content_is_claimed_by_the_node_holding_its_lv() {
    let backend = retained_snapshot(backend(Some("pool0")));
    let mut w = world(backend.clone(), config(0));
    let unlabelled = json!({"metadata": {"labels": null}});
    let c = Arc::new(pre_provisioned("vg0/snap-old", unlabelled.clone()));
    let calls = vec![
        Call::patch(CONTENT)
            .content_type(MERGE_PATCH)
            .body(json!({"metadata": {"resourceVersion": "7",
                "labels": {LABEL_MANAGED_BY: "n1"}}}))
            .respond(200, serde_json::to_value(&*c).unwrap()),
    ];
    let action = w
        .run(
            calls,
            snapshot_contents::reconcile_unclaimed(c, w.ctx.clone()),
        )
        .await;
    assert_eq!(action.unwrap(), Action::await_change());
    assert_eq!(backend.calls(), vec!["scan"]);

    // Not here, not a snapshot, or labelled already: no API call at all.
    for (handle, extra) in [
        ("vg0/snap-gone", unlabelled.clone()),
        ("vg0/pvc-src", unlabelled.clone()),
        (
            "vg0/snap-old",
            json!({"metadata": {"labels": {LABEL_MANAGED_BY: "n2"}}}),
        ),
        (
            "vg0/snap-old",
            json!({"metadata": {"labels": null}, "spec": {"driver": "other.io"}}),
        ),
    ] {
        let mut w = world(backend.clone(), config(0));
        let c = Arc::new(pre_provisioned(handle, extra));
        w.run(
            vec![],
            snapshot_contents::reconcile_unclaimed(c, w.ctx.clone()),
        )
        .await
        .unwrap();
    }
    assert!(backend.snapshot().volume("vg0", "snap-old").is_some());
}

#[tokio::test]
async fn deleting_a_pre_provisioned_content_keeps_an_lv_whose_tags_name_another() {
    let backend = retained_snapshot(backend(Some("pool0")));
    let mut w = world(backend.clone(), config(0));
    let c = Arc::new(pre_provisioned(
        "vg0/snap-old",
        json!({
            "metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z",
                "annotations": {ANN_BEING_DELETED: "yes"}},
            "status": {"snapshotHandle": "vg0/snap-old", "readyToUse": true}
        }),
    ));
    let body = serde_json::to_value(&*c).unwrap();
    let calls = vec![
        Call::event("default", "Warning", "SnapshotDeleteSkipped").check(|b| {
            let note = b["note"].as_str().unwrap();
            assert!(note.contains("vg0/snap-old is left in place"), "{note}");
        }),
        Call::patch(&format!("{CONTENT}/status"))
            .body(
                json!({"status": {"snapshotHandle": null, "readyToUse": null,
                "creationTime": null, "restoreSize": null}}),
            )
            .respond(200, body.clone()),
        Call::patch(CONTENT)
            .content_type(JSON_PATCH)
            .respond(200, body),
    ];
    let action = w
        .run(calls, snapshot_contents::reconcile(c, w.ctx.clone()))
        .await;
    assert_eq!(action.unwrap(), Action::await_change());
    assert_eq!(backend.calls(), vec!["remove_snapshot vg0/snap-old"]);
    assert!(backend.snapshot().volume("vg0", "snap-old").is_some());
}

fn thin_class() -> k8s_openapi::api::storage::v1::StorageClass {
    class(
        "thin",
        DRIVER_NAME,
        &[(PARAM_VOLUME_GROUP, "vg0"), (PARAM_THIN_POOL, "pool0")],
    )
}

fn restore_claim(size: &str) -> ClaimBuilder {
    ClaimBuilder::new("ns", "restored", "u2")
        .class("thin")
        .size(size)
        .selected_node("n1")
        .data_source_in("snapshot.storage.k8s.io", "VolumeSnapshot", "snap")
}

fn snapshot_calls() -> Vec<Call> {
    vec![
        Call::get("/apis/snapshot.storage.k8s.io/v1/namespaces/ns/volumesnapshots/snap").respond(
            200,
            json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                "metadata": {"name": "snap", "namespace": "ns"},
                "spec": {"source": {"persistentVolumeClaimName": "data"}},
                "status": {"boundVolumeSnapshotContentName": "snapcontent-1", "readyToUse": true}}),
        ),
        Call::get(CONTENT).respond(
            200,
            serde_json::to_value(content(json!({"status": {
                "snapshotHandle": "vg0/snap-cu1", "readyToUse": true, "restoreSize": GI}})))
            .unwrap(),
        ),
    ]
}

fn with_snapshot(backend: FakeBackend) -> FakeBackend {
    backend.with_volume(Volume {
        name: "snap-cu1".into(),
        owner: None,
        snapshot_owner: Some(snapshot_owner()),
        ..source_volume(Some("pool0"))
    })
}

#[tokio::test]
async fn a_restore_is_made_from_the_snapshot_lv_and_grown() {
    let backend = with_snapshot(backend(Some("pool0")));
    let mut w = world(backend.clone(), config(0));
    w.add_class(thin_class());
    let pvc = Arc::new(restore_claim("2Gi").build());
    let mut calls = snapshot_calls();
    calls.push(
        Call::post("/api/v1/persistentvolumes")
            .check(|b| assert_eq!(b["spec"]["csi"]["volumeHandle"], "vg0/pvc-u2", "{b}"))
            .respond(201, json!({})),
    );
    calls.push(Call::event("ns", "Normal", "ProvisioningSucceeded"));
    let action = w
        .run(calls, reconcile_claim::reconcile(pvc, w.ctx.clone()))
        .await;
    assert_eq!(action.unwrap(), Action::await_change());
    let made = backend.snapshot().volume("vg0", "pvc-u2").cloned().unwrap();
    assert_eq!(made.origin.as_deref(), Some("snap-cu1"));
    assert_eq!(made.size_bytes, 2 * GI);
    assert!(
        backend
            .calls()
            .contains(&format!("create vg0/pvc-u2 {} from snap-cu1", 2 * GI)),
        "{:?}",
        backend.calls()
    );
}

#[tokio::test]
async fn a_restore_smaller_than_its_snapshot_is_refused_with_an_event() {
    let backend = with_snapshot(backend(Some("pool0")));
    let mut w = world(backend.clone(), config(0));
    w.add_class(thin_class());
    let pvc = Arc::new(restore_claim("512Mi").build());
    let mut calls = snapshot_calls();
    calls.push(
        Call::event("ns", "Warning", "ProvisioningFailed").check(|b| {
            let note = b["note"].as_str().unwrap();
            assert!(
                note.contains("may not be smaller than its source"),
                "{note}"
            );
            assert!(note.contains("VolumeSnapshot ns/snap"), "{note}");
        }),
    );
    let out = w
        .run(calls, reconcile_claim::reconcile(pvc, w.ctx.clone()))
        .await;
    assert!(out.is_err());
    assert!(backend.snapshot().volume("vg0", "pvc-u2").is_none());
}

#[tokio::test]
async fn a_restore_whose_snapshot_is_on_another_node_is_refused() {
    // This node's VG holds neither the source nor the snapshot.
    let backend = FakeBackend::new().with_vg("vg0", 10 * GI);
    let mut w = world(backend.clone(), config(0));
    w.add_class(thin_class());
    let pvc = Arc::new(restore_claim("1Gi").build());
    let mut calls = snapshot_calls();
    calls.push(
        Call::event("ns", "Warning", "ProvisioningFailed").check(|b| {
            let note = b["note"].as_str().unwrap();
            assert!(note.contains("is not on node n1"), "{note}");
        }),
    );
    let out = w
        .run(calls, reconcile_claim::reconcile(pvc, w.ctx.clone()))
        .await;
    assert!(out.is_err());
    assert!(backend.snapshot().volumes.is_empty());
}
