//! What the extender adds to upstream kube-scheduler's own work, at cluster
//! scale: kube-local (real kube-apiserver, kube-scheduler with the decisive
//! configuration users deploy, kube-controller-manager's PV controller) and
//! the real extender, with `nodes` Nodes whose LvmNode reports have room.
//!
//! One run, bursts of `pods` pods: first pods without claims, then the same
//! pods each with one lvmpin claim, and then again with the CSIDriver's
//! `storageCapacity` turned off, which leaves VolumeBinding's check of
//! CSIStorageCapacity objects out of kube-scheduler's filter (what the
//! extender costs is then apart from what that check costs; see
//! [`CapacityCheck`]). Per burst it reads kube-scheduler's
//! histograms (pkg/scheduler/metrics: `scheduling_algorithm_duration_seconds`,
//! filter and score with extender calls; `scheduling_attempt_duration_seconds`,
//! the whole attempt) and the extender's own filter time, and counts pods/s.
//!
//! No agents run: 1,000 loop-backed VGs do not fit one machine. Each node
//! gets the LvmNode report and CSIStorageCapacity an agent would publish
//! (kube-scheduler's VolumeBinding reads the latter, since our CSIDriver has
//! `storageCapacity: true`). A stand-in
//! makes the PV for each claim once kube-scheduler's PreBind has written
//! `selected-node`, as the agent would, so the PV controller binds it and
//! PreBind returns. What it costs shows in the claim burst's pods/s, not in
//! the scheduler's algorithm time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::{CSIDriver, CSIStorageCapacity, StorageClass};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use lvmpin_api::names::{ANN_SELECTED_NODE, DRIVER_NAME, TOPOLOGY_KEY};
use lvmpin_api::{LvmNode, LvmNodeSpec, LvmNodeStatus, VolumeGroupStatus};
use serde::Serialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::testbed::install;
use crate::testbed::kube_local::{self, KubeLocal};
use crate::testbed::process::{self, Binaries, ManagedProcess};
use crate::wait;
use crate::workload;

const VG: &str = "lvmpin";
const CLASS: &str = "lvmpin";
const NS: &str = "default";
const GI: u64 = 1 << 30;
const CREATE_CONCURRENCY: usize = 32;

#[derive(Debug, Clone)]
pub struct OverheadOptions {
    pub nodes: usize,
    pub pods: usize,
    pub timeout: Duration,
    pub capacity_check: CapacityCheck,
    /// Run kube-scheduler with `decisive-managed.yaml`, which sends the
    /// extender only pods requesting `lvmpin.io/local-storage`, and add a
    /// claim burst whose pods do not request it: the same claims judged by
    /// kube-scheduler alone, the baseline of what the extender adds.
    pub managed: bool,
    /// Rounds the claim bursts are made in, alternating their kinds.
    pub chunks: usize,
}

/// The extended resource of `decisive-managed.yaml`'s `managedResources`
/// (added by manifests/managed-resource's admission policy in a cluster).
const MANAGED_RESOURCE: &str = "lvmpin.io/local-storage";
const ALGORITHM: &str = "scheduler_scheduling_algorithm_duration_seconds";
const ATTEMPT: &str = "scheduler_scheduling_attempt_duration_seconds";
/// The framework's own time per extension point in a cycle
/// (k8s.io/kubernetes `pkg/scheduler/schedule_one.go`,
/// `findNodesThatPassFilters`, and `framework/runtime/framework.go`). The
/// algorithm's time less these is the extender call and the glue around it.
const EXTENSION_POINT: &str = "scheduler_framework_extension_point_duration_seconds_sum";
const ALGORITHM_POINTS: [&str; 4] = ["PreFilter", "Filter", "PreScore", "Score"];

/// Seconds spent in the algorithm's plugin extension points, all cycles.
fn plugin_seconds(metrics: &str) -> f64 {
    ALGORITHM_POINTS
        .iter()
        .filter_map(|p| {
            crate::bench::sample_sum(
                metrics,
                EXTENSION_POINT,
                &format!("extension_point=\"{p}\""),
            )
        })
        .sum()
}

/// What the pods of a burst carry.
#[derive(Debug, Clone, Copy)]
struct Kind {
    claims: bool,
    /// Requests the managed resource (matters only with `managed`).
    extender_resource: bool,
}

impl Kind {
    fn label(self, storage_capacity: bool) -> String {
        let mut l = String::from(if self.claims { "claims" } else { "plain" });
        if self.claims && !self.extender_resource {
            l.push_str("-noext");
        }
        if !storage_capacity {
            l.push_str("-nocap");
        }
        l
    }

    fn extender_called(self, managed: bool) -> bool {
        !managed || self.extender_resource
    }
}

/// What manifests/managed-resource's policy adds to a pod with a claim.
fn request_managed_resource(pod: &mut Pod) {
    let one = || {
        BTreeMap::from([(
            MANAGED_RESOURCE.to_string(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
        )])
    };
    if let Some(c) = pod.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        let r = c.resources.get_or_insert_default();
        r.requests.get_or_insert_default().extend(one());
        r.limits.get_or_insert_default().extend(one());
    }
}

/// Which claim bursts run. With the CSIDriver's `storageCapacity: true`
/// kube-scheduler's VolumeBinding checks each node against the
/// CSIStorageCapacity objects (k8s.io/kubernetes
/// `pkg/scheduler/framework/plugins/volumebinding/binder.go`,
/// `hasEnoughCapacity`); with `false` it skips that check and the extender
/// alone judges capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CapacityCheck {
    /// Only the claim burst with `storageCapacity: true` (as installed).
    On,
    /// Only the claim burst with `storageCapacity: false`.
    Off,
    /// Both claim bursts, `true` first.
    Both,
}

/// One burst, from kube-scheduler's and the extender's own metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Burst {
    pub label: String,
    /// The CSIDriver's `storageCapacity` during the burst.
    pub storage_capacity: bool,
    /// Whether kube-scheduler sent these pods to the extender.
    pub extender_called: bool,
    pub pods: usize,
    pub seconds: f64,
    pub pods_per_second: f64,
    pub attempts: f64,
    /// `scheduling_algorithm_duration_seconds`: mean, and p50 interpolated
    /// within its exponential buckets (1 ms × 2ⁿ; coarse).
    pub algorithm_mean_ms: f64,
    pub algorithm_p50_ms: f64,
    pub attempt_mean_ms: f64,
    pub attempt_p50_ms: f64,
    /// PreFilter, Filter, PreScore and Score plugins per algorithm run,
    /// and the algorithm's mean less them: the extender call as
    /// kube-scheduler sees it, plus the glue around it.
    pub plugins_mean_ms: f64,
    pub rest_mean_ms: f64,
    /// The extender's filter handler, mean per request.
    pub extender_filter_mean_ms: f64,
    /// CPU seconds spent in the burst by kube-local (all upstream
    /// components) and by the extender.
    pub cpu_kube_local_s: f64,
    pub cpu_extender_s: f64,
    /// This burst's algorithm mean and p50 over the claim-less burst's.
    pub algorithm_mean_ratio: f64,
    pub algorithm_p50_ratio: f64,
    /// With `managed`, for the burst the extender judged: its algorithm p50
    /// over that of the same claims judged without the extender.
    pub extender_p50_ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverheadResult {
    pub nodes: usize,
    pub bursts: Vec<Burst>,
    pub extender_rss_kib: u64,
}

fn lvm_node(name: &str) -> LvmNode {
    let mut n = LvmNode::new(
        name,
        LvmNodeSpec {
            node_name: name.to_string(),
        },
    );
    n.status = Some(LvmNodeStatus {
        volume_groups: vec![VolumeGroupStatus {
            name: VG.into(),
            size_bytes: 1000 * GI,
            free_bytes: 1000 * GI,
            extent_size_bytes: 4 << 20,
            healthy: true,
            ..Default::default()
        }],
        last_scan_time: Some(chrono::Utc::now().to_rfc3339()),
        ..Default::default()
    });
    n
}

/// What an agent on `node` publishes for the class (see
/// lvm-provisioner/src/storage_capacity.rs).
fn storage_capacity(node: &str) -> Result<CSIStorageCapacity> {
    serde_json::from_value(json!({
        "metadata": {"name": format!("lvmpin-{node}"), "namespace": install::NAMESPACE},
        "storageClassName": CLASS,
        "nodeTopology": {"matchLabels": {TOPOLOGY_KEY: node}},
        "capacity": format!("{}", 1000 * GI),
        "maximumVolumeSize": format!("{}", 1000 * GI),
    }))
    .map_err(|e| Error::ApiServer(format!("building CSIStorageCapacity for {node}: {e}")))
}

/// The PV an agent on `node` would make for `pvc` (see
/// lvm-provisioner/src/pv_body.rs).
fn volume_for(pvc: &PersistentVolumeClaim, node: &str) -> Result<PersistentVolume> {
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    let name = format!("pvc-{uid}");
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": CLASS,
            "claimRef": {"namespace": NS, "name": pvc.metadata.name, "uid": uid},
            "csi": {"driver": DRIVER_NAME, "volumeHandle": format!("{VG}/{name}")},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": TOPOLOGY_KEY, "operator": "In", "values": [node]}]}]}}
        }
    }))
    .map_err(|e| Error::ApiServer(format!("building PV {name}: {e}")))
}

/// Makes the PV of every claim kube-scheduler has picked a node for.
async fn stand_in_provisioner(client: Client) {
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS);
    let pvs = Api::<PersistentVolume>::all(client);
    let stream = watcher::watcher(claims, watcher::Config::default());
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        let Ok(watcher::Event::Apply(pvc) | watcher::Event::InitApply(pvc)) = event else {
            continue;
        };
        let node = pvc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANN_SELECTED_NODE));
        let unbound = pvc.spec.as_ref().is_none_or(|s| s.volume_name.is_none());
        if let (Some(node), true) = (node, unbound)
            && let Ok(pv) = volume_for(&pvc, node)
        {
            // AlreadyExists on a repeated event is fine.
            let _ = pvs.create(&PostParams::default(), &pv).await;
        }
    }
}

/// Cumulative bucket counts of histogram `name` over all its label sets.
fn buckets(text: &str, name: &str) -> BTreeMap<u64, f64> {
    let prefix = format!("{name}_bucket{{");
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        // The `le` label itself, not the tail of another label's name
        // (kube-scheduler's `profile="…"`).
        let Some(le) = [",le=\"", "{le=\""]
            .iter()
            .find_map(|k| line.split_once(k))
            .and_then(|(_, r)| r.split('"').next())
        else {
            continue;
        };
        let Some(count) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        // Keyed by the bound's bits so +Inf sorts last and equal bounds merge.
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        *out.entry(bound.to_bits()).or_insert(0.0) += count;
    }
    out
}

/// The observations of one histogram between two scrapes, summed over its
/// label sets; deltas of several scrapes add up.
#[derive(Debug, Clone, Default)]
struct Delta {
    /// Cumulative counts by bucket bound (as bits, so +Inf sorts last).
    buckets: BTreeMap<u64, f64>,
    sum: f64,
    count: f64,
}

impl Delta {
    fn between(before: &str, after: &str, name: &str) -> Self {
        let (b0, b1) = (buckets(before, name), buckets(after, name));
        let sc = |t: &str| crate::bench::histogram_sum_count(t, name).unwrap_or((0.0, 0.0));
        let ((s0, c0), (s1, c1)) = (sc(before), sc(after));
        Delta {
            buckets: b1
                .iter()
                .map(|(k, c)| (*k, c - b0.get(k).copied().unwrap_or(0.0)))
                .collect(),
            sum: s1 - s0,
            count: c1 - c0,
        }
    }

    fn add(&mut self, other: &Delta) {
        for (k, c) in &other.buckets {
            *self.buckets.entry(*k).or_insert(0.0) += c;
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    fn mean(&self) -> f64 {
        self.sum / self.count.max(1.0)
    }

    /// The `q` quantile, interpolated linearly within the bucket it falls
    /// in, as Prometheus' histogram_quantile does.
    fn quantile(&self, q: f64) -> f64 {
        let total = self.buckets.values().last().copied().unwrap_or(0.0);
        if total <= 0.0 {
            return 0.0;
        }
        let rank = q * total;
        let mut prev = (0.0, 0.0);
        for (&bits, &count) in &self.buckets {
            let bound = f64::from_bits(bits);
            if count >= rank && count > 0.0 {
                if bound.is_infinite() {
                    return prev.0;
                }
                let within = (rank - prev.1) / (count - prev.1).max(f64::MIN_POSITIVE);
                return prev.0 + (bound - prev.0) * within;
            }
            prev = (bound, count);
        }
        prev.0
    }
}

async fn http_text(http: &HttpClient<HttpConnector, Empty<Bytes>>, url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let resp = http.get(uri).await.ok()?;
    let body = resp.into_body().collect().await.ok()?;
    Some(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

struct Scrape {
    scheduler: String,
    extender: String,
    cpu_kube_local_us: u64,
    cpu_extender_us: u64,
}

struct Bench {
    client: Client,
    kube_local: KubeLocal,
    extender: ManagedProcess,
    extender_url: String,
    http: HttpClient<HttpConnector, Empty<Bytes>>,
    storage_capacity: bool,
    managed: bool,
}

impl Bench {
    async fn scrape(&self) -> Result<Scrape> {
        let extender = http_text(&self.http, &format!("{}/metrics", self.extender_url))
            .await
            .ok_or_else(|| Error::ApiServer("the extender's /metrics did not answer".into()))?;
        Ok(Scrape {
            scheduler: self.kube_local.scheduler_metrics().await?,
            extender,
            cpu_kube_local_us: self.kube_local.pid().and_then(process::cpu_us).unwrap_or(0),
            cpu_extender_us: self.extender.pid().and_then(process::cpu_us).unwrap_or(0),
        })
    }

    /// Creates `pods` pods of `kind` (`label-<from>`…) at once and waits
    /// until every one has a node.
    async fn chunk(
        &self,
        kind: Kind,
        label: &str,
        from: usize,
        pods: usize,
        timeout: Duration,
    ) -> Result<()> {
        let claims_api = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), NS);
        let pods_api = Api::<Pod>::namespaced(self.client.clone(), NS);
        let names: Vec<String> = (from..from + pods)
            .map(|i| format!("{label}-{i}"))
            .collect();
        if kind.claims {
            futures::stream::iter(names.iter().map(|n| {
                let pvc = workload::claim(NS, &format!("data-{n}"), CLASS, "1Gi");
                let api = claims_api.clone();
                async move { api.create(&PostParams::default(), &pvc).await.map(drop) }
            }))
            .buffer_unordered(CREATE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        }
        futures::stream::iter(names.iter().map(|n| {
            let volumes = if kind.claims {
                vec![format!("data-{n}")]
            } else {
                vec![]
            };
            let mut pod = workload::pod(NS, n, &volumes);
            if kind.extender_resource {
                request_managed_resource(&mut pod);
            }
            let api = pods_api.clone();
            async move { api.create(&PostParams::default(), &pod).await.map(drop) }
        }))
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
        let names: std::collections::BTreeSet<String> = names.into_iter().collect();
        wait::until(
            &format!("{pods} {label} pods to have a node"),
            timeout,
            Duration::from_millis(100),
            || {
                let api = pods_api.clone();
                let names = &names;
                async move {
                    let list = api.list(&ListParams::default()).await.ok()?;
                    let placed = list
                        .items
                        .iter()
                        .filter(|p| p.metadata.name.as_ref().is_some_and(|n| names.contains(n)))
                        .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
                        .count();
                    (placed == pods).then_some(())
                }
            },
        )
        .await?;
        Ok(())
    }

    /// `pods` pods of each of `kinds`, made in `chunks` rounds that
    /// alternate the kinds (and their order), so that the kinds meet the
    /// same cluster: pods and PVs accumulate as the bursts go on.
    async fn bursts(
        &self,
        kinds: &[Kind],
        pods: usize,
        chunks: usize,
        timeout: Duration,
    ) -> Result<Vec<Burst>> {
        #[derive(Default)]
        struct Acc {
            seconds: f64,
            algorithm: Delta,
            attempt: Delta,
            plugin_seconds: f64,
            ext_sum: f64,
            ext_count: f64,
            cpu_kube_local_us: u64,
            cpu_extender_us: u64,
        }
        let chunks = chunks.clamp(1, pods.max(1));
        let mut acc: Vec<Acc> = kinds.iter().map(|_| Acc::default()).collect();
        let labels: Vec<String> = kinds
            .iter()
            .map(|k| k.label(self.storage_capacity))
            .collect();
        for c in 0..chunks {
            let (from, to) = (pods * c / chunks, pods * (c + 1) / chunks);
            let order: Vec<usize> = if c % 2 == 0 {
                (0..kinds.len()).collect()
            } else {
                (0..kinds.len()).rev().collect()
            };
            for i in order {
                let before = self.scrape().await?;
                let start = Instant::now();
                self.chunk(kinds[i], &labels[i], from, to - from, timeout)
                    .await?;
                let seconds = start.elapsed().as_secs_f64();
                let after = self.scrape().await?;
                let a = &mut acc[i];
                a.seconds += seconds;
                let (sb, sa) = (&before.scheduler, &after.scheduler);
                a.algorithm.add(&Delta::between(sb, sa, ALGORITHM));
                a.attempt.add(&Delta::between(sb, sa, ATTEMPT));
                a.plugin_seconds += plugin_seconds(sa) - plugin_seconds(sb);
                let ext = |t: &str| {
                    let name = "lvmpin_extender_request_duration_seconds";
                    let s = crate::bench::sample_sum(t, &format!("{name}_sum"), "verb=\"filter\"");
                    let c =
                        crate::bench::sample_sum(t, &format!("{name}_count"), "verb=\"filter\"");
                    (s.unwrap_or(0.0), c.unwrap_or(0.0))
                };
                let ((s0, c0), (s1, c1)) = (ext(&before.extender), ext(&after.extender));
                a.ext_sum += s1 - s0;
                a.ext_count += c1 - c0;
                a.cpu_kube_local_us += after
                    .cpu_kube_local_us
                    .saturating_sub(before.cpu_kube_local_us);
                a.cpu_extender_us += after.cpu_extender_us.saturating_sub(before.cpu_extender_us);
            }
        }
        Ok(kinds
            .iter()
            .zip(labels)
            .zip(acc)
            .map(|((kind, label), a)| Burst {
                label,
                storage_capacity: self.storage_capacity,
                extender_called: kind.extender_called(self.managed),
                pods,
                seconds: a.seconds,
                pods_per_second: pods as f64 / a.seconds.max(1e-9),
                attempts: a.attempt.count,
                algorithm_mean_ms: a.algorithm.mean() * 1e3,
                algorithm_p50_ms: a.algorithm.quantile(0.5) * 1e3,
                attempt_mean_ms: a.attempt.mean() * 1e3,
                attempt_p50_ms: a.attempt.quantile(0.5) * 1e3,
                plugins_mean_ms: a.plugin_seconds / a.algorithm.count.max(1.0) * 1e3,
                rest_mean_ms: (a.algorithm.sum - a.plugin_seconds) / a.algorithm.count.max(1.0)
                    * 1e3,
                extender_filter_mean_ms: a.ext_sum / a.ext_count.max(1.0) * 1e3,
                cpu_kube_local_s: a.cpu_kube_local_us as f64 / 1e6,
                cpu_extender_s: a.cpu_extender_us as f64 / 1e6,
                ..Burst::default()
            })
            .collect())
    }

    /// Sets the CSIDriver's `storageCapacity` (a mutable field).
    async fn set_storage_capacity(&mut self, on: bool) -> Result<()> {
        let patch = json!({"spec": {"storageCapacity": on}});
        Api::<CSIDriver>::all(self.client.clone())
            .patch(DRIVER_NAME, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.storage_capacity = on;
        Ok(())
    }
}

async fn setup(opts: &OverheadOptions, bins: &Binaries, dir: &std::path::Path) -> Result<Bench> {
    let port = process::free_port()?;
    let extender_url = format!("http://127.0.0.1:{port}");
    let kube_local = KubeLocal::start(
        dir,
        &kube_local::scheduler_config(if opts.managed {
            "decisive-managed"
        } else {
            "decisive"
        }),
        Some(&extender_url),
        Duration::from_secs(180),
    )
    .await?;
    let client = kube_local.client();
    install::install_base(&client).await?;
    Api::<StorageClass>::all(client.clone())
        .create(&PostParams::default(), &workload::storage_class(CLASS, VG))
        .await?;
    let names: Vec<String> = (0..opts.nodes).map(|i| format!("node-{i:04}")).collect();
    let nodes = Api::<Node>::all(client.clone());
    let lvm_nodes = Api::<LvmNode>::all(client.clone());
    let capacities = Api::<CSIStorageCapacity>::namespaced(client.clone(), install::NAMESPACE);
    futures::stream::iter(names.iter().map(|n| {
        let (nodes, lvm_nodes, capacities) = (nodes.clone(), lvm_nodes.clone(), capacities.clone());
        async move {
            capacities
                .create(&PostParams::default(), &storage_capacity(n)?)
                .await?;
            nodes
                .create(&PostParams::default(), &workload::node(n))
                .await?;
            let report = lvm_node(n);
            lvm_nodes.create(&PostParams::default(), &report).await?;
            // Status is a subresource on the real API server.
            let status = json!({"status": report.status});
            lvm_nodes
                .patch_status(n, &PatchParams::default(), &Patch::Merge(&status))
                .await?;
            Ok::<(), Error>(())
        }
    }))
    .buffer_unordered(CREATE_CONCURRENCY)
    .try_collect::<Vec<()>>()
    .await?;
    let extender = ManagedProcess::spawn(
        "extender",
        &bins.extender,
        vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--kubeconfig".into(),
            kube_local.ready.kubeconfig.display().to_string(),
            // No agent rewrites the synthetic reports; a burst may outlast
            // the default 5 minutes of silence after which nodes take no
            // new claims.
            "--agent-silence=24h".into(),
        ],
        vec![("RUST_LOG".into(), "warn".into())],
        dir.join("extender.log"),
    )?;
    let http: HttpClient<_, Empty<Bytes>> = HttpClient::builder(TokioExecutor::new()).build_http();
    let ready = format!("{extender_url}/readyz");
    wait::until(
        "the extender's /readyz",
        Duration::from_secs(120),
        Duration::from_millis(100),
        || {
            let http = http.clone();
            let ready = ready.clone();
            async move {
                let uri: http::Uri = ready.parse().ok()?;
                let resp = http.get(uri).await.ok()?;
                resp.status().is_success().then_some(())
            }
        },
    )
    .await?;
    Ok(Bench {
        client,
        kube_local,
        extender,
        extender_url,
        http,
        // As manifests/base/csidriver.yaml installs it.
        storage_capacity: true,
        managed: opts.managed,
    })
}

pub async fn run(opts: &OverheadOptions, bins: &Binaries) -> Result<OverheadResult> {
    let dir = tempfile::Builder::new()
        .prefix("lvmpin-sched-overhead-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let mut bench = setup(opts, bins, dir.path()).await?;
    let provisioner = tokio::spawn(stand_in_provisioner(bench.client.clone()));
    let result = async {
        let plain_kind = Kind {
            claims: false,
            extender_resource: false,
        };
        let plain = bench
            .bursts(&[plain_kind], opts.pods, 1, opts.timeout)
            .await?
            .remove(0);
        let mut bursts = vec![plain.clone()];
        let mut claim_kinds = vec![];
        if opts.managed {
            claim_kinds.push(Kind {
                claims: true,
                extender_resource: false,
            });
        }
        claim_kinds.push(Kind {
            claims: true,
            extender_resource: true,
        });
        let caps = match opts.capacity_check {
            CapacityCheck::On => &[true][..],
            CapacityCheck::Off => &[false][..],
            CapacityCheck::Both => &[true, false][..],
        };
        for &cap in caps {
            bench.set_storage_capacity(cap).await?;
            let mut b = bench
                .bursts(&claim_kinds, opts.pods, opts.chunks, opts.timeout)
                .await?;
            if let [without, with] = &mut b[..] {
                with.extender_p50_ratio = Some(if without.algorithm_p50_ms > 0.0 {
                    with.algorithm_p50_ms / without.algorithm_p50_ms
                } else {
                    0.0
                });
            }
            bursts.extend(b);
        }
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        for b in &mut bursts {
            b.algorithm_mean_ratio = ratio(b.algorithm_mean_ms, plain.algorithm_mean_ms);
            b.algorithm_p50_ratio = ratio(b.algorithm_p50_ms, plain.algorithm_p50_ms);
        }
        Ok(OverheadResult {
            nodes: opts.nodes,
            extender_rss_kib: bench.extender.peak_rss_kib().unwrap_or(0),
            bursts,
        })
    }
    .await;
    provisioner.abort();
    bench.extender.stop(Duration::from_secs(5)).await;
    bench.kube_local.shutdown().await;
    result
}

impl std::fmt::Display for OverheadResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "kube-scheduler with the extender, {} nodes (kube-local):",
            self.nodes
        )?;
        writeln!(
            f,
            "{:<19} {:>6} {:>4} {:>5} {:>8} {:>9} {:>10} {:>9} {:>10} {:>9} {:>9} {:>9} {:>11} {:>9} {:>9} {:>11} {:>9}",
            "burst",
            "sc-cap",
            "ext",
            "pods",
            "pods/s",
            "attempts",
            "alg mean",
            "alg p50",
            "att mean",
            "att p50",
            "plugins",
            "rest",
            "ext filter",
            "cpu k8s",
            "cpu ext",
            "alg p50 ×",
            "ext adds"
        )?;
        for b in &self.bursts {
            writeln!(
                f,
                "{:<19} {:>6} {:>4} {:>5} {:>8.1} {:>9.0} {:>8.2}ms {:>7.2}ms {:>8.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>9.2}ms {:>8.1}s {:>8.1}s {:>10.2}x {:>9}",
                b.label,
                b.storage_capacity,
                if b.extender_called { "yes" } else { "no" },
                b.pods,
                b.pods_per_second,
                b.attempts,
                b.algorithm_mean_ms,
                b.algorithm_p50_ms,
                b.attempt_mean_ms,
                b.attempt_p50_ms,
                b.plugins_mean_ms,
                b.rest_mean_ms,
                b.extender_filter_mean_ms,
                b.cpu_kube_local_s,
                b.cpu_extender_s,
                b.algorithm_p50_ratio,
                b.extender_p50_ratio
                    .map(|r| format!("{:+.1}%", (r - 1.0) * 100.0))
                    .unwrap_or_default()
            )?;
        }
        write!(
            f,
            "sc-cap: the CSIDriver's storageCapacity; ext: pods sent to the extender; alg p50 ×: over the claim-less burst;\nplugins: PreFilter, Filter, PreScore and Score per algorithm run; rest: the algorithm's mean less them\n(the extender call as kube-scheduler sees it); ext adds: algorithm p50 over that of the same claims without the extender; extender peak RSS {} MiB",
            self.extender_rss_kib / 1024
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "h_bucket{profile=\"x\",le=\"0.001\"} 1\nh_bucket{profile=\"x\",le=\"0.002\"} 1\n\
        h_bucket{profile=\"x\",le=\"0.004\"} 1\nh_bucket{profile=\"x\",le=\"+Inf\"} 1\n";

    #[test]
    fn quantiles_interpolate_within_the_bucket_of_new_observations() {
        // Since BEFORE: 2 observations ≤ 1 ms, 2 in (1, 2] ms, 4 in (2, 4] ms
        // over two label sets.
        let after = "h_bucket{profile=\"x\",le=\"0.001\"} 2\nh_bucket{profile=\"x\",le=\"0.002\"} 3\n\
            h_bucket{profile=\"x\",le=\"0.004\"} 5\nh_bucket{profile=\"x\",le=\"+Inf\"} 5\n\
            h_bucket{profile=\"y\",le=\"0.001\"} 1\nh_bucket{profile=\"y\",le=\"0.002\"} 2\n\
            h_bucket{profile=\"y\",le=\"0.004\"} 4\nh_bucket{profile=\"y\",le=\"+Inf\"} 4\n";
        let cases = [(0.25, 0.001), (0.5, 0.002), (0.75, 0.003), (1.0, 0.004)];
        for (q, want) in cases {
            let got = Delta::between(BEFORE, after, "h").quantile(q);
            assert!((got - want).abs() < 1e-9, "q={q}: {got} != {want}");
        }
    }

    #[test]
    fn quantile_of_nothing_new_is_zero_and_inf_bucket_gives_its_floor() {
        assert_eq!(Delta::between(BEFORE, BEFORE, "h").quantile(0.5), 0.0);
        let after = "h_bucket{profile=\"x\",le=\"0.001\"} 1\nh_bucket{profile=\"x\",le=\"0.002\"} 1\n\
            h_bucket{profile=\"x\",le=\"0.004\"} 1\nh_bucket{profile=\"x\",le=\"+Inf\"} 3\n";
        assert_eq!(Delta::between(BEFORE, after, "h").quantile(0.5), 0.004);
    }

    #[test]
    fn deltas_of_several_rounds_add_up() {
        // Round one: 2 observations ≤ 1 ms; round two: 2 in (2, 4] ms.
        let mid = "h_bucket{le=\"0.001\"} 3\nh_bucket{le=\"0.002\"} 3\n\
            h_bucket{le=\"0.004\"} 3\nh_bucket{le=\"+Inf\"} 3\nh_sum 0.002\nh_count 3\n";
        let end = "h_bucket{le=\"0.001\"} 3\nh_bucket{le=\"0.002\"} 3\n\
            h_bucket{le=\"0.004\"} 5\nh_bucket{le=\"+Inf\"} 5\nh_sum 0.008\nh_count 5\n";
        let start = BEFORE.to_string() + "h_sum 0.0005\nh_count 1\n";
        let mut d = Delta::between(&start, mid, "h");
        d.add(&Delta::between(mid, end, "h"));
        assert_eq!(d.count, 4.0);
        assert!((d.mean() - 0.001875).abs() < 1e-12, "{}", d.mean());
        for (q, want) in [(0.5, 0.001), (0.75, 0.003), (1.0, 0.004)] {
            let got = d.quantile(q);
            assert!((got - want).abs() < 1e-9, "q={q}: {got} != {want}");
        }
    }

    #[test]
    fn plugin_time_counts_the_algorithm_points_and_nothing_else() {
        let m = "# HELP x\n\
            scheduler_framework_extension_point_duration_seconds_sum{extension_point=\"Filter\",profile=\"p\",status=\"Success\"} 1.5\n\
            scheduler_framework_extension_point_duration_seconds_sum{extension_point=\"Filter\",profile=\"p\",status=\"Unschedulable\"} 0.5\n\
            scheduler_framework_extension_point_duration_seconds_sum{extension_point=\"PreFilter\",profile=\"p\",status=\"Success\"} 0.25\n\
            scheduler_framework_extension_point_duration_seconds_sum{extension_point=\"PostFilter\",profile=\"p\",status=\"Success\"} 100\n\
            scheduler_framework_extension_point_duration_seconds_sum{extension_point=\"Score\",profile=\"p\",status=\"Success\"} 0.125\n\
            scheduler_framework_extension_point_duration_seconds_sum{extension_point=\"PreBind\",profile=\"p\",status=\"Success\"} 100\n\
            scheduler_framework_extension_point_duration_seconds_count{extension_point=\"Filter\",profile=\"p\",status=\"Success\"} 7\n";
        assert_eq!(plugin_seconds(m), 2.375);
        assert_eq!(plugin_seconds(""), 0.0);
    }

    #[test]
    fn burst_labels_name_what_differs() {
        let k = |claims, extender_resource| Kind {
            claims,
            extender_resource,
        };
        let cases = [
            (k(false, false), true, "plain"),
            (k(true, true), true, "claims"),
            (k(true, false), true, "claims-noext"),
            (k(true, false), false, "claims-noext-nocap"),
            (k(true, true), false, "claims-nocap"),
        ];
        for (kind, cap, want) in cases {
            assert_eq!(kind.label(cap), want);
        }
        assert!(k(true, false).extender_called(false));
        assert!(!k(true, false).extender_called(true));
    }
}
