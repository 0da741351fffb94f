//! Provisioning and deletion through the reconcilers against real lvm2 on a
//! loop device (metadata-only mode when the kernel has no device-mapper), with
//! the API mocked by tower-test.

mod support;

use std::sync::Arc;

use lvmpin_api::names::{DRIVER_NAME, PARAM_VOLUME_GROUP, PV_FINALIZER};
use lvmpin_lvm::{Lvm, LvmConfig};
use lvmpin_provisioner::lvm_backend::LvmBackend;
use lvmpin_provisioner::{lvm_node_writer, reconcile_claim, reconcile_pv};
use lvmpin_testkit::{ClaimBuilder, LoopVg, class, pv_from_json};
use serde_json::{Value, json};
use support::{Call, world};

fn backend() -> LvmBackend {
    LvmBackend::new(Lvm::new(LvmConfig::default()))
}

fn setup(vg: &LoopVg) -> support::World<LvmBackend> {
    let mut config = support::config(0);
    config.volume_groups = vec![vg.name.clone()];
    let mut w = world(backend(), config);
    w.add_class(class(
        "fast",
        DRIVER_NAME,
        &[(PARAM_VOLUME_GROUP, vg.name.as_str())],
    ));
    w
}

#[tokio::test]
async fn provision_then_delete_on_real_lvm() {
    let vg = LoopVg::new("prov", 128);
    let mut w = setup(&vg);
    // 5 MiB rounds up to two 4 MiB extents: the PV states the real size.
    let pvc = ClaimBuilder::new("ns", "data", "u1")
        .class("fast")
        .size("5Mi")
        .selected_node("n1")
        .build();
    let created: Arc<std::sync::Mutex<Option<Value>>> = Arc::default();
    let keep = created.clone();
    let handle = format!("{}/pvc-u1", vg.name);
    let calls = vec![
        Call::post("/api/v1/persistentvolumes")
            .check(move |b| {
                assert_eq!(b["spec"]["csi"]["volumeHandle"], handle.as_str());
                assert_eq!(b["spec"]["capacity"]["storage"], "8Mi");
                *keep.lock().unwrap() = Some(b.clone());
            })
            .respond(201, json!({"metadata": {"name": "pvc-u1"}})),
        Call::event("ns", "Normal", "ProvisioningSucceeded"),
    ];
    w.run(
        calls,
        reconcile_claim::reconcile(Arc::new(pvc), w.ctx.clone()),
    )
    .await
    .unwrap();
    assert_eq!(vg.lv_names(), vec!["pvc-u1"]);
    let tags = vg.lv_tags("pvc-u1");
    assert!(tags.contains("u1"), "owner tags missing: {tags}");

    // The claim is deleted: the PV controller marks the PV Released.
    let mut pv = created.lock().unwrap().clone().unwrap();
    pv["status"] = json!({"phase": "Released"});
    let mut w2 = setup(&vg);
    let lv_count = {
        let name = vg.name.clone();
        move || {
            lvmpin_testkit::loop_vg::lvm("lvs", &["--noheadings", "-o", "lv_name", &name])
                .trim()
                .len()
        }
    };
    let calls = vec![
        Call::delete("/api/v1/persistentvolumes/pvc-u1")
            .check(move |_| assert_eq!(lv_count(), 0, "LV must be removed before the PV"))
            .respond(200, pv.clone()),
        Call::patch("/api/v1/persistentvolumes/pvc-u1").body(json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": PV_FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"}
        ])),
    ];
    w2.run(
        calls,
        reconcile_pv::reconcile(Arc::new(pv_from_json(pv)), w2.ctx.clone()),
    )
    .await
    .unwrap();
    assert!(vg.lv_names().is_empty());
}

#[tokio::test]
async fn no_room_on_real_lvm_reschedules() {
    let vg = LoopVg::new("full", 64);
    let mut w = setup(&vg);
    let pvc = ClaimBuilder::new("ns", "big", "u2")
        .class("fast")
        .size("1Gi")
        .selected_node("n1")
        .build();
    let calls = vec![
        Call::event("ns", "Warning", "ProvisioningFailed"),
        Call::patch("/api/v1/namespaces/ns/persistentvolumeclaims/big").body(json!([
            {"op": "test", "path": "/metadata/annotations/volume.kubernetes.io~1selected-node", "value": "n1"},
            {"op": "remove", "path": "/metadata/annotations/volume.kubernetes.io~1selected-node"}
        ])),
    ];
    w.run(
        calls,
        reconcile_claim::reconcile(Arc::new(pvc), w.ctx.clone()),
    )
    .await
    .unwrap();
    assert!(vg.lv_names().is_empty());
}

#[tokio::test]
async fn capacity_report_from_real_lvm() {
    let vg = LoopVg::new("report", 64);
    let mut w = setup(&vg);
    let path = "/apis/lvmpin.io/v1alpha1/lvmnodes/n1/status";
    let name = vg.name.clone();
    let calls = vec![
        Call::patch(path)
            .check(move |b| {
                let g = &b["status"]["volumeGroups"][0];
                assert_eq!(g["name"], name.as_str());
                assert!(g["sizeBytes"].as_u64().unwrap() >= 56 << 20, "{g}");
                assert_eq!(g["freeBytes"], g["sizeBytes"]);
                assert_eq!(g["extentSizeBytes"], 4 << 20);
                assert_eq!(g["healthy"], true);
            })
            .respond(
                200,
                json!({"apiVersion": "lvmpin.io/v1alpha1", "kind": "LvmNode",
                             "metadata": {"name": "n1"}, "spec": {"nodeName": "n1"}}),
            ),
    ];
    let ctx = w.ctx.clone();
    w.run(
        calls,
        async move { lvm_node_writer::publish_status(&ctx).await },
    )
    .await
    .unwrap();
}
