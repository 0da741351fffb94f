//! Extender benchmark: prints latency percentiles, throughput and peak RSS.
//!
//! Runs the real router in-process (axum + JSON parsing + core) on one thread.
//! Run with `cargo bench -p lvmpin-scheduler-extender`; `-- zone` runs only
//! the zone-ratio comparison, `-- floor` only the comparison with the floor
//! (an extender that parses the request and passes every node).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt;
use lvmpin_scheduler_extender::context::{App, Readiness};
use lvmpin_scheduler_extender::engine::{Settings, State};
use lvmpin_scheduler_extender::facts::{NodeFacts, claim_facts};
use lvmpin_scheduler_extender::http::router;
use lvmpin_scheduler_extender::leader::Leadership;
use lvmpin_scheduler_extender::placement::Mode;
use lvmpin_scheduler_extender::testutil::{claim_named, class, lvm_node, stateful_set};
use lvmpin_scheduler_extender::wire::{ExtenderArgs, ExtenderFilterResult};
use serde_json::{Value, json};
use tower::ServiceExt;

const GI: u64 = 1 << 30;
const IN_FLIGHT: usize = 200;
/// Node counts the latency tables use.
const SIZES: [usize; 3] = [100, 1000, 5000];
const MODES: [Mode; 2] = [Mode::Decisive, Mode::Advisory];

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// `nodes` node states (one VG with 20 volumes, a zone) and `claims` PVCs, of
/// which the first IN_FLIGHT are unbound, the rest bound.
fn cluster(nodes: usize, claims: usize) -> State {
    let mut s = State::default();
    s.index.upsert_class(class("fast", Some("vg1")));
    for i in 0..nodes {
        let name = format!("node-{i:05}");
        let mut l = lvm_node(
            &name,
            "vg1",
            1000 * GI,
            (100 + (i as u64 % 700)) * GI,
            4 << 20,
        );
        if let Some(lvm) = l.lvm.as_mut() {
            lvm.vgs[0].volumes = (0..20)
                .map(|v| format!("pvc-{i:08}-{v:04}-0000-0000-000000000000"))
                .collect();
        }
        s.index.upsert_lvm(l);
        s.index.upsert_node(NodeFacts {
            name,
            zone: Some(format!("zone-{}", i % 3)),
            up: true,
            ..Default::default()
        });
    }
    for i in 0..claims {
        let mut b = claim_named(&format!("data-db-{i}"))
            .namespace(&format!("team-{}", i % 50))
            .size("10Gi");
        if i >= IN_FLIGHT {
            b = b.volume(&format!("pvc-{i:08}-aaaa-bbbb-cccc-000000000000"));
        }
        let mut pvc = b.build();
        pvc.metadata.uid = Some(format!("{i:08}-aaaa-bbbb-cccc-000000000000"));
        if let Some(c) = claim_facts(&pvc) {
            s.index.upsert_claim(c);
        }
    }
    s
}

fn pod_json(i: usize) -> Value {
    json!({
        "metadata": {"name": format!("db-{i}"), "namespace": format!("team-{}", i % 50), "uid": format!("pod-{i}"),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "sts", "controller": true}]},
        "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": format!("data-db-{i}")}}],
            "containers": [{"name": "db", "image": "mysql:8"}]},
        "status": {"phase": "Pending"}
    })
}

fn node_json(name: &str) -> Value {
    let images: Vec<Value> = (0..40)
        .map(|i| json!({"names": [format!("registry.example.com/team/image-{i}@sha256:{i:064x}")], "sizeBytes": 123_456_789 + i}))
        .collect();
    json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": "zone-0"}},
        "spec": {"podCIDR": "10.244.1.0/24"},
        "status": {"capacity": {"cpu": "8", "memory": "32Gi"}, "allocatable": {"cpu": "8", "memory": "31Gi"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
            "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "operatingSystem": "linux", "architecture": "amd64"},
            "images": images}
    })
}

#[derive(Clone, Copy)]
struct Stats {
    p50: Duration,
    p99: Duration,
    /// CPU time of this thread per request: what the request costs, without
    /// the waits a machine shared with other builds adds to wall-clock time.
    cpu_p50: Duration,
    cpu_p99: Duration,
    per_sec: f64,
}

fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Sends one request; returns its wall-clock and thread CPU time.
async fn once(app: &axum::Router, path: &str, body: &[u8]) -> (Duration, Duration) {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .expect("request");
    let t = Instant::now();
    let c = thread_cpu();
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let out = resp.into_body().collect().await.expect("body").to_bytes();
    let cpu = thread_cpu().saturating_sub(c);
    let wall = t.elapsed();
    assert!(
        status.is_success(),
        "{status}: {}",
        String::from_utf8_lossy(&out)
    );
    (wall, cpu)
}

/// Wall-clock and CPU samples of one series of requests.
#[derive(Default)]
struct Samples {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
}

impl Samples {
    fn push(&mut self, (wall, cpu): (Duration, Duration)) {
        self.wall.push(wall);
        self.cpu.push(cpu);
    }

    fn stats(mut self, total: Duration) -> Stats {
        self.wall.sort();
        self.cpu.sort();
        Stats {
            p50: pct(&self.wall, 50),
            p99: pct(&self.wall, 99),
            cpu_p50: pct(&self.cpu, 50),
            cpu_p99: pct(&self.cpu, 99),
            per_sec: self.wall.len() as f64 / total.as_secs_f64(),
        }
    }
}

async fn run(app: &axum::Router, path: &str, bodies: &[Vec<u8>], iterations: usize) -> Stats {
    let mut samples = Samples::default();
    let started = Instant::now();
    for i in 0..iterations {
        samples.push(once(app, path, &bodies[i % bodies.len()]).await);
    }
    samples.stats(started.elapsed())
}

fn print(label: &str, s: &Stats) {
    println!(
        "{label:<48} p50 {:>8.3} ms  p99 {:>8.3} ms  {:>7.0} req/s  (cpu p50 {:>7.3} ms, p99 {:>7.3} ms)",
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3,
        s.per_sec,
        s.cpu_p50.as_secs_f64() * 1e3,
        s.cpu_p99.as_secs_f64() * 1e3,
    );
}

fn app_for(state: State, mode: Mode) -> axum::Router {
    let settings = Settings {
        mode,
        ..Default::default()
    };
    let app = Arc::new(App::new(
        state,
        settings,
        Readiness::new(&[]),
        Arc::new(Leadership::single()),
        None,
    ));
    router(app, "", 256 << 20)
}

fn node_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node-{i:05}")).collect()
}

/// One filter request body per in-flight pod, naming `n` nodes.
fn filter_bodies(n: usize) -> Vec<Vec<u8>> {
    let names = node_names(n);
    (0..IN_FLIGHT)
        .map(|i| {
            serde_json::to_vec(&json!({"Pod": pod_json(i), "Nodes": null, "NodeNames": names}))
                .expect("json")
        })
        .collect()
}

/// The floor: an extender that parses `ExtenderArgs` with the same wire
/// types, decides nothing and passes every asked node. Bench-only, so it
/// never becomes a route of the real binary.
fn floor_router() -> axum::Router {
    async fn echo(body: Bytes) -> Response {
        let args = match ExtenderArgs::parse(&body) {
            Ok(a) => a,
            Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        };
        let asked = match args.asked_nodes() {
            Ok(a) => a,
            Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        };
        let answer = ExtenderFilterResult {
            nodes: None,
            node_names: asked.names.iter().map(|n| n.as_ref()).collect(),
            failed_nodes: BTreeMap::new(),
            failed_and_unresolvable_nodes: BTreeMap::new(),
            error: String::new(),
        };
        match serde_json::to_vec(&answer) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        }
    }
    axum::Router::new().route("/filter", post(echo))
}

/// The real filter against the floor at 100, 1,000 and 5,000 nodes with
/// node-name bodies (nodeCacheCapable). Requests alternate between the two,
/// so both see the same machine at the same moments.
async fn floor_cost(sizes: &[usize], modes: &[Mode]) {
    let floor = floor_router();
    for &n in sizes {
        let bodies = filter_bodies(n);
        let iterations = if n == 5000 { 2000 } else { 5000 };
        for &mode in modes {
            let app = app_for(cluster(n, 2000), mode);
            // warm up: every in-flight pod gets its reservation first
            run(&app, "/filter", &bodies, IN_FLIGHT).await;
            run(&floor, "/filter", &bodies, IN_FLIGHT).await;
            let (mut real, mut echo) = (Samples::default(), Samples::default());
            for i in 0..iterations {
                let body = &bodies[i % bodies.len()];
                real.push(once(&app, "/filter", body).await);
                echo.push(once(&floor, "/filter", body).await);
            }
            let busy = |s: &Samples| s.wall.iter().sum::<Duration>();
            let (rt, et) = (busy(&real), busy(&echo));
            let (real, echo) = (real.stats(rt), echo.stats(et));
            print(
                &format!("filter     {mode:?} nodeCacheCapable {n:>5} nodes"),
                &real,
            );
            print(
                &format!("floor      parse + echo names       {n:>5} nodes"),
                &echo,
            );
            let x = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
            println!(
                "filter/floor, {mode:?}, {n} nodes: p50 {:.2}x, p99 {:.2}x (cpu p50 {:.2}x, p99 {:.2}x; goal <= 1.2x at 5000)",
                x(real.p50, echo.p50),
                x(real.p99, echo.p99),
                x(real.cpu_p50, echo.cpu_p50),
                x(real.cpu_p99, echo.cpu_p99),
            );
        }
    }
}

/// Filter at 5,000 nodes for pods of a StatefulSet annotated 2:2:1 against
/// the same pods of the same StatefulSet without the annotation, alternated
/// in one run so both see the same machine. Every pod is a slot of a
/// 200-replica StatefulSet, so each request counts 199 other slots.
async fn zone_ratio_cost() {
    let n = 5000;
    let bodies = filter_bodies(n);
    let with_set = |annotations: &[(&str, &str)]| {
        let mut s = cluster(n, 2000);
        let mut sts = stateful_set("db", IN_FLIGHT as i32, annotations, &[]);
        sts.uid = "sts".into();
        s.index.upsert_sts(sts);
        s
    };
    let weights = [(
        lvmpin_api::names::ANN_ZONE_WEIGHTS,
        "zone-0=2,zone-1=2,zone-2=1",
    )];
    for mode in [Mode::Decisive, Mode::Advisory] {
        let plain = app_for(with_set(&[]), mode);
        let ratio = app_for(with_set(&weights), mode);
        run(&plain, "/filter", &bodies, IN_FLIGHT).await;
        run(&ratio, "/filter", &bodies, IN_FLIGHT).await;
        let (mut p, mut r) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            p.push(run(&plain, "/filter", &bodies, 400).await);
            r.push(run(&ratio, "/filter", &bodies, 400).await);
        }
        let best = |v: &[Stats]| v.iter().min_by_key(|s| s.cpu_p50).copied().expect("runs");
        let (p, r) = (best(&p), best(&r));
        print(
            &format!("filter     {mode:?} no zone ratio      {n:>5} nodes"),
            &p,
        );
        print(
            &format!("filter     {mode:?} zone ratio 2:2:1   {n:>5} nodes"),
            &r,
        );
        println!(
            "zone ratio cost, {mode:?}: {:.2}x cpu p50, {:.2}x wall p50 (goal <= 1.2x)",
            r.cpu_p50.as_secs_f64() / p.cpu_p50.as_secs_f64(),
            r.p50.as_secs_f64() / p.p50.as_secs_f64()
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if std::env::args().any(|a| a == "zone") {
        zone_ratio_cost().await;
        return;
    }
    if std::env::args().any(|a| a == "floor") {
        // `-- floor 5000 advisory` measures one size in one mode, e.g.
        // under a profiler.
        let args: Vec<String> = std::env::args().collect();
        let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
        let modes: Vec<Mode> = args.iter().filter_map(|a| a.parse().ok()).collect();
        floor_cost(
            if sizes.is_empty() { &SIZES } else { &sizes },
            if modes.is_empty() { &MODES } else { &modes },
        )
        .await;
        return;
    }
    // Memory first, so the peak is not the big request bodies below.
    let base = vm_hwm_kib();
    let state = cluster(5000, 50_000);
    let hwm = vm_hwm_kib();
    println!(
        "peak RSS with 5,000 node states + 50,000 PVCs cached: {:.1} MiB (process baseline {:.1} MiB, index {:.1} MiB)",
        hwm as f64 / 1024.0,
        base as f64 / 1024.0,
        (hwm - base) as f64 / 1024.0
    );
    drop(state);

    for n in SIZES {
        let bodies = filter_bodies(n);
        let iterations = if n == 5000 { 2000 } else { 5000 };
        for mode in [Mode::Decisive, Mode::Advisory] {
            let app = app_for(cluster(n, 2000), mode);
            // warm up: every in-flight pod gets its reservation first
            run(&app, "/filter", &bodies, IN_FLIGHT).await;
            let f = run(&app, "/filter", &bodies, iterations).await;
            print(
                &format!("filter     {mode:?} nodeCacheCapable {n:>5} nodes"),
                &f,
            );
            let p = run(&app, "/prioritize", &bodies, iterations).await;
            print(
                &format!("prioritize {mode:?} nodeCacheCapable {n:>5} nodes"),
                &p,
            );
        }
        // A pod without claims of ours: the pass-through path.
        let app = app_for(cluster(n, 0), Mode::Decisive);
        let plain = vec![serde_json::to_vec(&json!({"Pod": {"metadata": {"name": "web", "namespace": "a", "uid": "w"}, "spec": {"containers": []}}, "NodeNames": node_names(n)})).expect("json")];
        let s = run(&app, "/filter", &plain, iterations).await;
        print(
            &format!("filter     no-claims pod            {n:>5} nodes"),
            &s,
        );
    }

    let nodes: Vec<Value> = (0..5000)
        .map(|i| node_json(&format!("node-{i:05}")))
        .collect();
    let body = serde_json::to_vec(
        &json!({"Pod": pod_json(0), "Nodes": {"metadata": {}, "items": nodes}, "NodeNames": null}),
    )
    .expect("json");
    println!(
        "full-Node request body: {:.1} MiB",
        body.len() as f64 / (1 << 20) as f64
    );
    let app = app_for(cluster(5000, 2000), Mode::Decisive);
    let s = run(&app, "/filter", std::slice::from_ref(&body), 30).await;
    print("filter     Decisive full Node objects   5000 nodes", &s);
    let app = app_for(cluster(5000, 0), Mode::Decisive);
    let plain = serde_json::to_vec(&json!({"Pod": {"metadata": {"name": "web", "namespace": "a", "uid": "w"}, "spec": {}}, "Nodes": {"items": nodes}})).expect("json");
    let s = run(&app, "/filter", std::slice::from_ref(&plain), 30).await;
    print("filter     no-claims pod, full Nodes    5000 nodes", &s);

    floor_cost(&SIZES, &MODES).await;
    zone_ratio_cost().await;
}
