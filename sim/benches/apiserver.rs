//! Benchmark of the in-memory API server over real HTTP with kube-rs clients:
//! create throughput and latency while loading the e2e scale (100 nodes,
//! 1,000 pods, 2,000 claims), list latency, patch throughput, and how fast a
//! change fans out to 20 concurrent watches. Prints numbers; asserts nothing
//! about time.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use lvmpin_sim::apiserver::{self, ApiServerOptions};
use serde_json::json;

const CONCURRENCY: usize = 16;
const WATCHERS: usize = 20;
const IDLE_WATCHES: usize = 400;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn report(what: &str, mut lat: Vec<Duration>, total: Duration) {
    lat.sort();
    println!(
        "{what:<28} n={:<5} throughput={:>8.0}/s p50={:>7.2}ms p99={:>7.2}ms",
        lat.len(),
        lat.len() as f64 / total.as_secs_f64(),
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
    );
}

/// Runs `n` requests made by `make(i)` with bounded concurrency; returns latencies and wall time.
async fn timed<F, Fut>(n: usize, make: F) -> anyhow::Result<(Vec<Duration>, Duration)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let start = Instant::now();
    let lat: Vec<Duration> = stream::iter(0..n)
        .map(|i| {
            let fut = make(i);
            async move {
                let t = Instant::now();
                fut.await?;
                Ok::<_, anyhow::Error>(t.elapsed())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok((lat, start.elapsed()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = apiserver::start(ApiServerOptions {
        listen: "127.0.0.1:0".parse()?,
        watch_history: 100_000,
    })
    .await?;
    let client = server.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    let (lat, total) = timed(100, |i| {
        let nodes = nodes.clone();
        let pp = pp.clone();
        async move {
            let n: Node =
                serde_json::from_value(json!({"metadata": {"name": format!("node-{i:03}")}}))?;
            nodes.create(&pp, &n).await?;
            Ok(())
        }
    })
    .await?;
    report("create node", lat, total);

    let (lat, total) = timed(2000, |i| {
        let pvcs = pvcs.clone();
        let pp = pp.clone();
        async move {
            let c: PersistentVolumeClaim = serde_json::from_value(json!({
                "metadata": {"name": format!("data-{i:04}"), "labels": {"app": "bench"}},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "lvmpin",
                    "resources": {"requests": {"storage": "1Gi"}}}}))?;
            pvcs.create(&pp, &c).await?;
            Ok(())
        }
    })
    .await?;
    report("create claim", lat, total);

    let (lat, total) = timed(1000, |i| {
        let pods = pods.clone();
        let pp = pp.clone();
        async move {
            let p: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("web-{i:04}"), "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}],
                    "volumes": [{"name": "a", "persistentVolumeClaim": {"claimName": format!("data-{:04}", 2 * i)}},
                                {"name": "b", "persistentVolumeClaim": {"claimName": format!("data-{:04}", 2 * i + 1)}}]}}))?;
            pods.create(&pp, &p).await?;
            Ok(())
        }
    })
    .await?;
    report("create pod", lat, total);

    let (lat, total) = timed(20, |_| {
        let pvcs = pvcs.clone();
        async move {
            let l = pvcs.list(&ListParams::default()).await?;
            anyhow::ensure!(l.items.len() == 2000, "listed {} claims", l.items.len());
            Ok(())
        }
    })
    .await?;
    report("list 2000 claims", lat, total);

    let (lat, total) = timed(50, |_| {
        let pods = pods.clone();
        async move {
            let l = pods
                .list(&ListParams::default().fields("spec.nodeName="))
                .await?;
            anyhow::ensure!(l.items.len() == 1000, "listed {} pods", l.items.len());
            Ok(())
        }
    })
    .await?;
    report("list unscheduled pods", lat, total);

    // Fan-out: WATCHERS watches on pods from the current version, then 1,000 patches.
    let rv = pods
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    const PATCHES: usize = 1000;
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let stream = pods
            .watch(&WatchParams::default().timeout(290), &rv)
            .await?
            .boxed();
        watchers.push(tokio::spawn(async move {
            let mut stream = stream;
            let mut seen = 0usize;
            while let Some(ev) = stream.try_next().await? {
                if let WatchEvent::Modified(_) = ev {
                    seen += 1;
                    if seen == PATCHES {
                        return Ok::<Instant, anyhow::Error>(Instant::now());
                    }
                }
            }
            anyhow::bail!("watch ended after {seen} events")
        }));
    }
    let start = Instant::now();
    let (lat, total) = timed(PATCHES, |i| {
        let pods = pods.clone();
        async move {
            let patch = json!({"metadata": {"annotations": {"bench": i.to_string()}}});
            pods.patch(
                &format!("web-{i:04}"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    report("merge patch pod", lat, total);
    let mut last = start;
    for w in watchers {
        last = last.max(w.await??);
    }
    let fanout = last.duration_since(start);
    println!(
        "watch fan-out              {WATCHERS} watches x {PATCHES} events: all delivered {:.0}ms after the first patch ({:.0} events/s delivered)",
        fanout.as_secs_f64() * 1e3,
        (WATCHERS * PATCHES) as f64 / fanout.as_secs_f64()
    );

    // Many idle watches (100 agents with a few watches each) on other types
    // must not slow writes down.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "default");
    let mut idle = Vec::new();
    for _ in 0..IDLE_WATCHES {
        idle.push(
            leases
                .watch(&WatchParams::default().timeout(290), "0")
                .await?
                .boxed(),
        );
    }
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "default");
    let (lat, total) = timed(2000, |i| {
        let cms = cms.clone();
        let pp = pp.clone();
        async move {
            let c: k8s_openapi::api::core::v1::ConfigMap =
                serde_json::from_value(json!({"metadata": {"name": format!("cm-{i:04}")}}))?;
            cms.create(&pp, &c).await?;
            Ok(())
        }
    })
    .await?;
    report(
        &format!("create w/ {IDLE_WATCHES} idle watches"),
        lat,
        total,
    );
    drop(idle);
    server.shutdown().await;
    Ok(())
}
