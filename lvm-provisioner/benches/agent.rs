//! Agent benchmarks (prints numbers; no assertions on time).
//!
//! 1. Overhead from a claim event to the PV create request reaching the API,
//!    with an in-memory volume backend so lvcreate's own time is excluded.
//! 2. Wall time of a burst of 100 claims on one node with real lvm2
//!    (metadata-only mode when the kernel has no device-mapper), reconciled
//!    concurrently as the controller does.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use kube::runtime::reflector;
use kube::runtime::watcher;
use lvmpin_api::names::{DRIVER_NAME, PARAM_VOLUME_GROUP};
use lvmpin_provisioner::backend::VolumeBackend;
use lvmpin_provisioner::context::{AgentConfig, Caches, Context};
use lvmpin_provisioner::fake_backend::FakeBackend;
use lvmpin_provisioner::lvm_backend::LvmBackend;
use lvmpin_provisioner::metrics::Metrics;
use lvmpin_provisioner::reconcile_claim;
use lvmpin_testkit::{ClaimBuilder, LoopVg, class};
use tower_test::mock::Handle;

type PvSeen = Arc<Mutex<Vec<Instant>>>;

/// Answers every request at once, echoing the body (a create returns the
/// object), and notes when each PV create arrived.
fn responder(mut handle: Handle<Request<Body>, Response<Body>>, seen: PvSeen) {
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let is_pv =
                req.method() == Method::POST && req.uri().path() == "/api/v1/persistentvolumes";
            if is_pv {
                seen.lock().unwrap().push(Instant::now());
            }
            let body = req.into_body().collect_bytes().await.unwrap_or_default();
            let resp = Response::builder()
                .status(201)
                .body(Body::from(body.to_vec()))
                .unwrap();
            send.send_response(resp);
        }
    });
}

fn context<B: VolumeBackend>(backend: B, vg: &str, seen: PvSeen) -> Arc<Context<B>> {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    responder(handle, seen);
    let (classes, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Apply(class(
        "fast",
        DRIVER_NAME,
        &[(PARAM_VOLUME_GROUP, vg)],
    )));
    let (volumes, _w1) = reflector::store();
    let (claims, _w2) = reflector::store();
    Arc::new(Context::new(
        Client::new(svc, "default"),
        backend,
        AgentConfig {
            node_name: "n1".into(),
            volume_groups: vec![vg.to_string()],
            spare_bytes: 0,
            scan_interval: Duration::from_secs(10),
            report_heartbeat: Duration::from_secs(60),
            namespace: None,
            host_problem: None,
        },
        Caches {
            classes,
            volumes,
            claims,
        },
        Arc::new(Metrics::default()),
        lvmpin_provisioner::context::system_clock(),
    ))
}

fn claim(i: usize, size: &str) -> Arc<k8s_openapi::api::core::v1::PersistentVolumeClaim> {
    Arc::new(
        ClaimBuilder::new("bench", &format!("c{i}"), &format!("uid-{i}"))
            .class("fast")
            .size(size)
            .selected_node("n1")
            .build(),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn overhead(n: usize) {
    let seen: PvSeen = Arc::default();
    let backend = FakeBackend::new().with_vg("vg0", 1 << 50);
    let ctx = context(backend, "vg0", seen.clone());
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        reconcile_claim::reconcile(claim(i, "1Gi"), ctx.clone())
            .await
            .expect("reconcile");
        let at = seen.lock().unwrap()[i];
        samples.push(at - start);
    }
    samples.sort();
    println!(
        "agent overhead, claim event -> PV create request (fake LVM, n={n}): p50 {:?}  p99 {:?}  max {:?}",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples[n - 1]
    );
}

async fn burst(n: usize) {
    let vg = LoopVg::new("bench", 2048);
    let seen: PvSeen = Arc::default();
    let backend = LvmBackend::new(lvmpin_lvm::Lvm::new(lvmpin_lvm::LvmConfig::default()));
    let ctx = context(backend, &vg.name, seen.clone());
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(reconcile_claim::reconcile(claim(i, "8Mi"), ctx.clone())))
        .collect();
    for t in tasks {
        t.await.expect("join").expect("reconcile");
    }
    let wall = start.elapsed();
    let mut done: Vec<Duration> = seen.lock().unwrap().iter().map(|t| *t - start).collect();
    done.sort();
    assert_eq!(vg.lv_names().len(), n, "every claim has its LV");
    println!(
        "burst of {n} claims on one node, real lvm2: wall {:?} ({:.1} claims/s); PV created p50 at {:?}, last at {:?}",
        wall,
        n as f64 / wall.as_secs_f64(),
        percentile(&done, 0.5),
        done[n - 1]
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        overhead(2000).await;
        burst(100).await;
    });
}
