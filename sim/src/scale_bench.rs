//! The extender at cluster scale: the simulator's API server holds `nodes`
//! Nodes with their LvmNode reports and `claims` lvmpin claims (all but
//! `IN_FLIGHT` bound to PVs spread over the nodes, the rest used by pending
//! pods); the real extender binary
//! starts against it. Measured: seconds from its start to `/readyz`, its RSS
//! (steady and peak), filter latency over HTTP with node-name bodies naming
//! every node, and the longest filter while every watch relists after the
//! API server expired them (410 Gone, as after an etcd compaction).

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use lvmpin_api::names::{ANN_SELECTED_NODE, DRIVER_NAME, TOPOLOGY_KEY, volume_name_for_claim};
use lvmpin_api::{LvmNode, LvmNodeSpec, LvmNodeStatus, VolumeGroupStatus};
use serde::Serialize;
use serde_json::json;

use crate::control_plane::{ControlPlane, ControlPlaneOptions};
use crate::error::{Error, Result};
use crate::testbed::process::{self, Binaries, ManagedProcess};
use crate::testbed::{install, zone_of};
use crate::wait;
use crate::workload;

const VG: &str = "lvmpin";
const CLASS: &str = "lvmpin";
const GI: u64 = 1 << 30;
/// Unbound claims the filter requests place, as pods in flight would.
const IN_FLIGHT: usize = 200;
/// Concurrent object creations while loading the API server.
const LOAD_CONCURRENCY: usize = 64;
/// The longest a relist may take before the run fails.
const RELIST_LIMIT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct ScaleOptions {
    /// (nodes, claims) per run.
    pub sizes: Vec<(usize, usize)>,
    /// Filter requests measured per size.
    pub requests: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScaleResult {
    pub nodes: usize,
    pub claims: usize,
    /// Time to create every object in the API server.
    pub load_seconds: f64,
    /// Extender start to `/readyz` 200.
    pub ready_seconds: f64,
    pub rss_steady_kib: u64,
    pub rss_peak_kib: u64,
    pub filter_p50_us: u128,
    pub filter_p99_us: u128,
    pub filter_max_us: u128,
    /// The extender's own mean time per filter (its request histogram), so
    /// what the handler costs can be told from what the transport adds.
    pub filter_server_mean_us: Option<f64>,
    /// The extender's CPU time (user + system) per filter: on a busy
    /// machine the wall-clock numbers include waiting for a core.
    pub filter_cpu_us: Option<f64>,
    /// From the expiry until the extender's claim cache was refilled (its
    /// log says so).
    pub relist_seconds: f64,
    /// Longest filter answered meanwhile, and how many there were.
    pub relist_max_filter_us: u128,
    pub relist_filters: usize,
}

impl std::fmt::Display for ScaleResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>6} nodes {:>7} claims: loaded in {:.1} s; extender ready in {:.2} s, RSS {} MiB (peak {} MiB); filter p50 {:.2} ms p99 {:.2} ms max {:.2} ms (in the handler: mean {:.2} ms; CPU {:.2} ms per filter); full relist {:.2} s: {} filters, slowest {:.2} ms",
            self.nodes,
            self.claims,
            self.load_seconds,
            self.ready_seconds,
            self.rss_steady_kib / 1024,
            self.rss_peak_kib / 1024,
            self.filter_p50_us as f64 / 1e3,
            self.filter_p99_us as f64 / 1e3,
            self.filter_max_us as f64 / 1e3,
            self.filter_server_mean_us.unwrap_or(f64::NAN) / 1e3,
            self.filter_cpu_us.unwrap_or(f64::NAN) / 1e3,
            self.relist_seconds,
            self.relist_filters,
            self.relist_max_filter_us as f64 / 1e3,
        )
    }
}

fn node_name(i: usize) -> String {
    format!("node-{i:05}")
}

/// Node `i`'s report: the LVs of the bound claims on it (every `nodes`-th
/// from `i`), named after the UIDs the API server gave those claims.
fn lvm_node(i: usize, nodes: usize, uids: &[String]) -> LvmNode {
    let name = node_name(i);
    let volumes: Vec<String> = uids
        .iter()
        .skip(i)
        .step_by(nodes.max(1))
        .map(|uid| volume_name_for_claim(uid))
        .collect();
    let mut n = LvmNode::new(
        &name,
        LvmNodeSpec {
            node_name: name.clone(),
        },
    );
    n.status = Some(LvmNodeStatus {
        volume_groups: vec![VolumeGroupStatus {
            name: VG.into(),
            size_bytes: 1000 * GI,
            free_bytes: (100 + (i as u64 % 700)) * GI,
            extent_size_bytes: 4 << 20,
            lv_count: volumes.len() as u32,
            volumes,
            healthy: true,
            ..Default::default()
        }],
        last_scan_time: Some(chrono::Utc::now().to_rfc3339()),
        ..Default::default()
    });
    n
}

fn claim_name(c: usize) -> String {
    format!("data-{c}")
}

/// The PV lvmpin's agent would have made for claim `c` (API server UID
/// `uid`) on `node`.
fn volume(c: usize, uid: &str, node: &str) -> Result<PersistentVolume> {
    let name = volume_name_for_claim(uid);
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": CLASS,
            "claimRef": {"namespace": "default", "name": claim_name(c), "uid": uid},
            "csi": {"driver": DRIVER_NAME, "volumeHandle": format!("{VG}/{name}")},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": TOPOLOGY_KEY, "operator": "In", "values": [node]}]}]}}
        }
    }))
    .map_err(|e| Error::ApiServer(format!("building PV {name}: {e}")))
}

/// Creates every object; returns them as the API server stored them.
async fn create_all<K, I>(api: &Api<K>, objects: I) -> Result<Vec<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + Serialize + std::fmt::Debug,
    I: IntoIterator<Item = K>,
{
    let created = futures::stream::iter(objects)
        .map(|o| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &o).await }
        })
        .buffer_unordered(LOAD_CONCURRENCY)
        .try_collect::<Vec<K>>()
        .await?;
    Ok(created)
}

/// Fills the API server in the order a real cluster gets there: claims
/// (with the node kube-scheduler selected), then the agents' reports listing
/// the LVs named after the claims' UIDs, the PVs, and the claims' binding.
/// The UIDs are the API server's own (it ignores any given on create), so
/// the reports match the claims as an agent's would.
async fn load(client: &Client, nodes: usize, claims: usize) -> Result<()> {
    Api::<StorageClass>::all(client.clone())
        .create(&PostParams::default(), &workload::storage_class(CLASS, VG))
        .await?;
    let node_objs = (0..nodes).map(|i| {
        let zone = zone_of(i, nodes, 3).unwrap_or_default();
        workload::zoned_node(&node_name(i), &zone)
    });
    create_all(&Api::<Node>::all(client.clone()), node_objs).await?;
    let bound = claims.saturating_sub(IN_FLIGHT);
    let pvc_api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default");
    let pvcs = (0..claims).map(|c| {
        let mut pvc = workload::claim("default", &claim_name(c), CLASS, "10Gi");
        if c < bound {
            // As kube-scheduler's PreBind left it.
            pvc.metadata.annotations =
                Some([(ANN_SELECTED_NODE.to_string(), node_name(c % nodes.max(1)))].into());
        }
        pvc
    });
    let mut uid_of: std::collections::HashMap<String, String> = create_all(&pvc_api, pvcs)
        .await?
        .into_iter()
        .filter_map(|p| Some((p.metadata.name?, p.metadata.uid?)))
        .collect();
    let uids = (0..bound)
        .map(|c| {
            uid_of
                .remove(&claim_name(c))
                .ok_or_else(|| Error::ApiServer(format!("claim {} has no UID", claim_name(c))))
        })
        .collect::<Result<Vec<String>>>()?;
    let lvm_api = Api::<LvmNode>::all(client.clone());
    create_all(&lvm_api, (0..nodes).map(|i| lvm_node(i, nodes, &uids))).await?;
    // Status is not taken on create; the agent writes it.
    futures::stream::iter(0..nodes)
        .map(|i| {
            let api = lvm_api.clone();
            let status = json!({ "status": lvm_node(i, nodes, &uids).status });
            async move {
                api.patch_status(
                    &node_name(i),
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                )
                .await
                .map(|_| ())
            }
        })
        .buffer_unordered(LOAD_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    let pvs = uids
        .iter()
        .enumerate()
        .map(|(c, uid)| volume(c, uid, &node_name(c % nodes.max(1))))
        .collect::<Result<Vec<_>>>()?;
    create_all(&Api::<PersistentVolume>::all(client.clone()), pvs).await?;
    // The PV controller binds them.
    futures::stream::iter(uids.iter().enumerate())
        .map(|(c, uid)| {
            let api = pvc_api.clone();
            let bind = json!({ "spec": { "volumeName": volume_name_for_claim(uid) } });
            async move {
                api.patch(
                    &claim_name(c),
                    &PatchParams::default(),
                    &Patch::Merge(&bind),
                )
                .await
                .map(|_| ())
            }
        })
        .buffer_unordered(LOAD_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    // The pods in flight exist, as they do for kube-scheduler: a filter
    // for a pod the extender has never seen holds its reservation until
    // the TTL.
    let pods = (bound..claims).map(|c| pending_pod(c - bound, c));
    create_all(&Api::<Pod>::namespaced(client.clone(), "default"), pods).await?;
    Ok(())
}

fn pending_pod(i: usize, claim: usize) -> Pod {
    workload::pod("default", &format!("db-{i}"), &[claim_name(claim)])
}

/// A filter body for one of the pods in flight (as the API server holds
/// them), naming every node.
fn filter_body(request: usize, nodes: usize, pods: &[Pod]) -> Vec<u8> {
    let names: Vec<String> = (0..nodes).map(node_name).collect();
    let body = json!({ "Pod": pods.get(request % pods.len().max(1)), "NodeNames": names });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Sends the filters from a runtime of its own, as kube-scheduler is a
/// process of its own: on the bench's runtime, which also serves the
/// simulated API server, a filter's time included waiting behind the list
/// pages encoded for the extender's relist.
struct Filter {
    runtime: Option<tokio::runtime::Runtime>,
    http: HttpClient<HttpConnector, Full<Bytes>>,
    url: String,
}

impl Drop for Filter {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which async code must not.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Filter {
    fn new(url: String) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("filter-client")
            .enable_all()
            .build()
            .map_err(|e| Error::ApiServer(format!("starting the filter client: {e}")))?;
        Ok(Filter {
            runtime: Some(runtime),
            http: http_client(),
            url,
        })
    }

    /// One filter round trip, in microseconds; errors if the extender
    /// answers anything but 200 with an empty `Error`.
    async fn call(&self, body: Vec<u8>) -> Result<u128> {
        let Some(runtime) = &self.runtime else {
            return Err(Error::ApiServer("the filter client has stopped".into()));
        };
        let (http, url) = (self.http.clone(), self.url.clone());
        runtime
            .spawn(async move { filter_round_trip(&http, &url, body).await })
            .await
            .map_err(|e| Error::ApiServer(format!("filter client task: {e}")))?
    }
}

/// Go's net/http (kube-scheduler's client) sets TCP_NODELAY; without it a
/// body written apart from its headers waits for a delayed ACK.
fn http_client() -> HttpClient<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    HttpClient::builder(TokioExecutor::new()).build(connector)
}

async fn filter_round_trip(
    http: &HttpClient<HttpConnector, Full<Bytes>>,
    url: &str,
    body: Vec<u8>,
) -> Result<u128> {
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Error::ApiServer(format!("building a filter request: {e}")))?;
    let start = Instant::now();
    let resp = http
        .request(req)
        .await
        .map_err(|e| Error::ApiServer(format!("filter request: {e}")))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| Error::ApiServer(format!("filter answer: {e}")))?
        .to_bytes();
    let took = start.elapsed().as_micros();
    let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let error = answer.get("Error").and_then(|e| e.as_str()).unwrap_or("");
    if !status.is_success() || !error.is_empty() {
        return Err(Error::ApiServer(format!(
            "filter answered {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        )));
    }
    Ok(took)
}

async fn server_filter_mean_us(
    http: &HttpClient<HttpConnector, Full<Bytes>>,
    base: &str,
) -> Option<f64> {
    let req = http::Request::get(format!("{base}/metrics"))
        .body(Full::new(Bytes::new()))
        .ok()?;
    let body = http
        .request(req)
        .await
        .ok()?
        .into_body()
        .collect()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
    let name = "lvmpin_extender_request_duration_seconds";
    let sum = crate::bench::sample_sum(&text, &format!("{name}_sum"), "verb=\"filter\"")?;
    let count = crate::bench::sample_sum(&text, &format!("{name}_count"), "verb=\"filter\"")?;
    Some(sum / count.max(1.0) * 1e6)
}

/// How often the extender's log says its claim cache finished a list.
fn claim_syncs(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("watch cache synced") && l.contains("PersistentVolumeClaim"))
        .count()
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn wait_ready(http: &HttpClient<HttpConnector, Full<Bytes>>, base: &str) -> Result<()> {
    wait::until(
        "the extender's /readyz",
        Duration::from_secs(600),
        Duration::from_millis(10),
        || async {
            let req = http::Request::get(format!("{base}/readyz"))
                .body(Full::new(Bytes::new()))
                .ok()?;
            let resp = http.request(req).await.ok()?;
            resp.status().is_success().then_some(())
        },
    )
    .await
}

pub async fn run_one(
    nodes: usize,
    claims: usize,
    requests: usize,
    bins: &Binaries,
    dir: &Path,
) -> Result<ScaleResult> {
    let cp = ControlPlane::start(ControlPlaneOptions {
        scheduler: None,
        pv_controller: false,
        ..ControlPlaneOptions::default()
    })
    .await?;
    let client = cp.client();
    install::install_sim(&client).await?;
    let loading = Instant::now();
    load(&client, nodes, claims).await?;
    let load_seconds = loading.elapsed().as_secs_f64();
    let pods = Api::<Pod>::namespaced(client.clone(), "default")
        .list(&Default::default())
        .await?
        .items;
    let kubeconfig = dir.join(format!("kubeconfig-{nodes}"));
    cp.write_kubeconfig(&kubeconfig)?;
    let port = process::free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.join(format!("extender-{nodes}.log"));
    let started = Instant::now();
    let mut extender = ManagedProcess::spawn(
        "extender",
        &bins.extender,
        vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
        ],
        // Info from the watches: their "watch cache synced" lines mark the
        // end of a relist.
        vec![(
            "RUST_LOG".into(),
            "warn,lvmpin_scheduler_extender::watch=info".into(),
        )],
        log.clone(),
    )?;
    let http = http_client();
    let measured = async {
        wait_ready(&http, &base).await?;
        let ready_seconds = started.elapsed().as_secs_f64();
        let filter = Filter::new(format!("{base}/filter"))?;
        let bodies: Vec<Vec<u8>> = (0..requests)
            .map(|r| filter_body(r, nodes, &pods))
            .collect();
        // One warm-up round: connection set-up and first-touch allocations.
        filter.call(filter_body(requests, nodes, &pods)).await?;
        let pid = extender.pid().unwrap_or(0);
        let cpu_before = process::cpu_us(pid);
        let mut lat = Vec::with_capacity(requests);
        for b in bodies {
            lat.push(filter.call(b).await?);
        }
        let cpu_per_filter_us = match (cpu_before, process::cpu_us(pid)) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / requests.max(1) as f64),
            _ => None,
        };
        lat.sort_unstable();
        let server_mean_us = server_filter_mean_us(&http, &base).await;
        let rss_steady_kib = process::rss_kib(pid).unwrap_or(0);
        // Every watch ends with 410; the extender lists everything again
        // while filters keep arriving.
        // Filters go on until the claim cache has been refilled.
        let body = filter_body(requests + 1, nodes, &pods);
        let synced_before = claim_syncs(&log);
        cp.expire_watches();
        let expired = Instant::now();
        let mut relist = Vec::new();
        while claim_syncs(&log) <= synced_before {
            if expired.elapsed() > RELIST_LIMIT {
                return Err(Error::Timeout {
                    what: "the extender to relist its claims".into(),
                    after: RELIST_LIMIT,
                });
            }
            relist.push(filter.call(body.clone()).await?);
        }
        let relist_seconds = expired.elapsed().as_secs_f64();
        Ok::<_, Error>(ScaleResult {
            nodes,
            claims,
            load_seconds,
            ready_seconds,
            rss_steady_kib,
            rss_peak_kib: extender.peak_rss_kib().unwrap_or(0),
            filter_p50_us: percentile(&lat, 0.50),
            filter_p99_us: percentile(&lat, 0.99),
            filter_max_us: lat.last().copied().unwrap_or(0),
            filter_server_mean_us: server_mean_us,
            filter_cpu_us: cpu_per_filter_us,
            relist_seconds,
            relist_max_filter_us: relist.iter().copied().max().unwrap_or(0),
            relist_filters: relist.len(),
        })
    }
    .await;
    let result = measured
        .map_err(|e| Error::ApiServer(format!("{e}; extender log:\n{}", extender.log_tail(20))));
    extender.stop(Duration::from_secs(5)).await;
    cp.shutdown().await;
    result
}

pub async fn run(opts: &ScaleOptions, bins: &Binaries) -> Result<Vec<ScaleResult>> {
    let dir = tempfile::Builder::new()
        .prefix("lvmpin-scale-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let mut out = Vec::new();
    for &(nodes, claims) in &opts.sizes {
        let r = run_one(nodes, claims, opts.requests, bins, dir.path()).await?;
        println!("{r}");
        out.push(r);
    }
    Ok(out)
}
