//! `lvmpin-sim bench agent-scale`: one real agent's memory and the bytes it
//! reads from the API server, first in an empty cluster, then while many
//! claims and PVs of other nodes are created, then restarted against them
//! (its initial list). The agent runs on a loop-backed VG against the
//! simulator's API server, through a proxy that counts the bytes the server
//! sends it. See docs/operations.md, "Agent memory at scale".

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::PostParams;
use kube::{Api, Client};
use lvmpin_api::names::{
    ANN_PROVISIONED_BY, ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER, DRIVER_NAME, LABEL_NODE,
    PV_FINALIZER, TOPOLOGY_KEY,
};
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::control_plane::{ControlPlane, ControlPlaneOptions};
use crate::error::{Error, Result};
use crate::informer::AbortOnDrop;
use crate::testbed::process::{ManagedProcess, free_port, peak_rss_kib, rss_kib};
use crate::testbed::{NodeDisk, install};
use crate::workload;

/// The agent's node; the objects created belong to `OTHER_NODES` others.
pub const NODE: &str = "node-0";
const OTHER_NODES: usize = 100;
const NAMESPACE: &str = "agent-scale";
const CLASS: &str = "lvmpin";
/// Settled: fewer bytes than this read in the quiet window.
const QUIET_BYTES: u64 = 16 * 1024;
/// Objects created at once.
const IN_FLIGHT: usize = 32;

#[derive(Debug, Clone)]
pub struct AgentScaleOptions {
    pub claims: usize,
    pub volumes: usize,
    /// The agent binary to measure (e.g. one built from another commit).
    pub agent: PathBuf,
    /// Create the PVs without the `lvmpin.io/node` label, as agents before
    /// it made them (the first restart after an upgrade).
    pub unlabelled: bool,
    /// The agent is settled when it has read nothing for this long.
    pub quiet: Duration,
    pub timeout: Duration,
}

/// One phase of the run, as the agent saw it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Phase {
    /// VmRSS at the end of the phase.
    pub rss_kib: u64,
    /// VmHWM at the end of the phase: the peak of this agent process so far.
    pub peak_rss_kib: u64,
    /// Bytes the API server sent the agent during the phase.
    pub bytes_received: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentScaleResult {
    pub agent: String,
    pub claims: usize,
    pub volumes: usize,
    pub unlabelled_volumes: bool,
    /// Started in an empty cluster, until ready and settled.
    pub empty: Phase,
    /// The same process while the claims and PVs were created, until settled.
    pub creating: Phase,
    /// A new process started against them, until ready and settled.
    pub restart: Phase,
    /// One list of every claim, whole, and as metadata only.
    pub claim_list_bytes: usize,
    pub claim_list_metadata_bytes: usize,
    /// One list of every PV, and of this node's PVs by the node label.
    pub volume_list_bytes: usize,
    pub volume_list_own_bytes: usize,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {:.1} MiB, peak (VmHWM) {:.1} MiB, received {:.2} MiB in {:.1} s",
            mib(self.rss_kib),
            mib(self.peak_rss_kib),
            self.bytes_received as f64 / (1024.0 * 1024.0),
            self.seconds
        )
    }
}

impl std::fmt::Display for AgentScaleResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kib = |b: usize| b as f64 / 1024.0;
        writeln!(f, "agent {}", self.agent)?;
        writeln!(f, "  empty cluster:         {}", self.empty)?;
        writeln!(
            f,
            "  creating {} claims, {} PVs{} (none on {NODE}): {}",
            self.claims,
            self.volumes,
            if self.unlabelled_volumes {
                " without the node label"
            } else {
                ""
            },
            self.creating
        )?;
        writeln!(f, "  restarted against them: {}", self.restart)?;
        writeln!(
            f,
            "  peak after restart / empty cluster: {:.2}",
            self.restart.peak_rss_kib as f64 / self.empty.peak_rss_kib.max(1) as f64
        )?;
        write!(
            f,
            "  one list of all claims: {:.0} KiB whole, {:.0} KiB metadata only; of all PVs: {:.0} KiB, of {NODE}'s PVs by label: {:.0} KiB",
            kib(self.claim_list_bytes),
            kib(self.claim_list_metadata_bytes),
            kib(self.volume_list_bytes),
            kib(self.volume_list_own_bytes)
        )
    }
}

/// A TCP proxy to the API server that counts the bytes the server sends.
struct CountingProxy {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
    _task: AbortOnDrop,
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counter: Option<Arc<AtomicU64>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        if let Some(c) = &counter {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
    let _ = to.shutdown().await;
}

impl CountingProxy {
    async fn start(upstream: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io("127.0.0.1:0", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("127.0.0.1:0", e))?;
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, None), pump(sr, cw, Some(counter)));
                });
            }
        });
        Ok(Self {
            addr,
            received,
            _task: AbortOnDrop(task),
        })
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

fn other_node(i: usize) -> String {
    format!("other-{}", i % OTHER_NODES)
}

fn claim(i: usize) -> Result<PersistentVolumeClaim> {
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("data-{i}"),
            "namespace": NAMESPACE,
            "labels": {"app": "agent-scale"},
            "annotations": {
                ANN_SELECTED_NODE: other_node(i),
                ANN_STORAGE_PROVISIONER: DRIVER_NAME,
            },
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": CLASS,
            "volumeName": format!("pvc-scale-{i}"),
        },
    }))
    .map_err(|e| Error::ApiServer(format!("claim body: {e}")))
}

/// A PV as an agent of another node makes it (`pv_body::build` in
/// lvm-provisioner), bound to claim `i`.
fn volume(i: usize, labelled: bool) -> Result<PersistentVolume> {
    let node = other_node(i);
    let mut v = json!({
        "metadata": {
            "name": format!("pvc-scale-{i}"),
            "annotations": {ANN_PROVISIONED_BY: DRIVER_NAME},
            "finalizers": [PV_FINALIZER],
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "1Gi"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "namespace": NAMESPACE, "name": format!("data-{i}")},
            "csi": {"driver": DRIVER_NAME, "volumeHandle": format!("vg0/pvc-scale-{i}"),
                    "fsType": "ext4", "volumeAttributes": {"vg": "vg0", "lv": format!("pvc-scale-{i}")}},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": TOPOLOGY_KEY, "operator": "In", "values": [node]}]}]}},
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": CLASS,
        },
    });
    if labelled {
        v["metadata"]["labels"] = json!({LABEL_NODE: node});
    }
    serde_json::from_value(v).map_err(|e| Error::ApiServer(format!("PV body: {e}")))
}

/// Size in bytes of one GET of `path` with `accept`.
async fn list_bytes(client: &Client, path: &str, accept: &str) -> Result<usize> {
    let req = http::Request::get(path)
        .header(http::header::ACCEPT, accept)
        .body(Vec::new())
        .map_err(|e| Error::ApiServer(format!("request {path}: {e}")))?;
    Ok(client.request_text(req).await?.len())
}

struct Run {
    cp: ControlPlane,
    proxy: CountingProxy,
    agent: ManagedProcess,
    readyz: String,
    // Dropped after the agent (field order): its VG outlives it.
    _disk: NodeDisk,
    _dir: tempfile::TempDir,
}

impl Run {
    fn pid(&self) -> Result<u32> {
        self.agent
            .pid()
            .ok_or_else(|| Error::ApiServer("the agent is not running".into()))
    }

    /// Until `/readyz` answers 200 (caches synced, startup recovery done).
    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let url = self.readyz.clone();
        let ready = crate::wait::until(
            "the agent's /readyz",
            timeout,
            Duration::from_millis(100),
            || {
                let url = url.clone();
                async move { http_ok(&url).await.then_some(()) }
            },
        )
        .await;
        if let Err(e) = ready {
            return Err(Error::ApiServer(format!(
                "{e}; agent log:\n{}",
                self.agent.log_tail(30)
            )));
        }
        Ok(())
    }

    /// Until the agent has read less than `QUIET_BYTES` in `quiet`: the
    /// simulator sends a watch bookmark every second on each open watch
    /// (`apiserver/watch.rs`), so a settled agent never reads nothing.
    async fn wait_quiet(&self, quiet: Duration, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut from = (self.proxy.received(), Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.proxy.received();
            if now - from.0 >= QUIET_BYTES {
                from = (now, Instant::now());
            } else if from.1.elapsed() >= quiet {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::ApiServer(format!(
                    "the agent still reads after {timeout:?} ({now} bytes so far); agent log:\n{}",
                    self.agent.log_tail(30)
                )));
            }
        }
    }

    fn phase(&self, started: Instant, bytes_before: u64) -> Result<Phase> {
        let pid = self.pid()?;
        Ok(Phase {
            rss_kib: rss_kib(pid).unwrap_or(0),
            peak_rss_kib: peak_rss_kib(pid).unwrap_or(0),
            bytes_received: self.proxy.received() - bytes_before,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

async fn http_ok(url: &str) -> bool {
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client as HttpClient;
    use hyper_util::rt::TokioExecutor;
    let client = HttpClient::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    client
        .get(uri)
        .await
        .is_ok_and(|r| r.status() == http::StatusCode::OK)
}

async fn start(opts: &AgentScaleOptions) -> Result<Run> {
    let dir = tempfile::Builder::new()
        .prefix("lvmpin-agent-scale-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    // History for the watch cache: the agent's watch must resume after the
    // burst of writes without a 410.
    let history = 4 * (opts.claims + opts.volumes) + 10_000;
    let cp = ControlPlane::start(ControlPlaneOptions {
        scheduler: None,
        watch_history: history,
        ..ControlPlaneOptions::default()
    })
    .await?;
    let client = cp.client();
    install::install_sim(&client).await?;
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &workload::node(NODE))
        .await?;
    let vg = format!("lvmpin-scale-{}", std::process::id());
    Api::<StorageClass>::all(client.clone())
        .create(&PostParams::default(), &workload::storage_class(CLASS, &vg))
        .await?;
    let disk = {
        let (path, vg) = (dir.path().to_path_buf(), vg.clone());
        tokio::task::spawn_blocking(move || NodeDisk::create(&path, NODE, &vg, 64 << 20))
            .await
            .map_err(|e| Error::ApiServer(format!("disk task failed: {e}")))??
    };
    let upstream: SocketAddr = cp
        .url()
        .trim_start_matches("http://")
        .parse()
        .map_err(|e| Error::ApiServer(format!("API server URL {}: {e}", cp.url())))?;
    let proxy = CountingProxy::start(upstream).await?;
    let kubeconfig = dir.path().join("agent.kubeconfig");
    std::fs::write(
        &kubeconfig,
        crate::apiserver::kubeconfig::render(&format!("http://{}", proxy.addr)),
    )
    .map_err(|e| Error::io(&kubeconfig, e))?;
    let kubelet_dir = dir.path().join("kubelet");
    std::fs::create_dir_all(&kubelet_dir).map_err(|e| Error::io(&kubelet_dir, e))?;
    let metrics = format!("127.0.0.1:{}", free_port()?);
    let args: Vec<String> = [
        "--node-name",
        NODE,
        "--volume-group",
        &vg,
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        // Nothing periodic while measuring: what the agent reads is the watches.
        "--scan-interval",
        "1h",
        "--report-heartbeat",
        "1h",
        "--csi-socket",
        &kubelet_dir.join("csi.sock").display().to_string(),
        "--kubelet-dir",
        &kubelet_dir.display().to_string(),
        "--metrics-listen",
        &metrics,
        "--namespace",
        install::NAMESPACE,
        "--metadata-only-for-tests",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let agent = ManagedProcess::spawn(
        "agent",
        &opts.agent,
        args,
        vec![
            ("LVM_SYSTEM_DIR".into(), disk.lvm_dir.display().to_string()),
            ("LVM_SUPPRESS_FD_WARNINGS".into(), "1".into()),
            (
                "RUST_LOG".into(),
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            ),
        ],
        dir.path().join("agent.log"),
    )?;
    Ok(Run {
        cp,
        proxy,
        agent,
        readyz: format!("http://{metrics}/readyz"),
        _disk: disk,
        _dir: dir,
    })
}

async fn create_objects(client: &Client, opts: &AgentScaleOptions) -> Result<()> {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))
                .map_err(|e| Error::ApiServer(format!("namespace body: {e}")))?,
        )
        .await?;
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NAMESPACE);
    let volumes = Api::<PersistentVolume>::all(client.clone());
    let labelled = !opts.unlabelled;
    let pp = PostParams::default();
    // Claim and PV in turn, as they appear in a cluster.
    futures::stream::iter(0..opts.claims.max(opts.volumes))
        .map(|i| {
            let (claims, volumes, pp) = (claims.clone(), volumes.clone(), pp.clone());
            async move {
                if i < opts.claims {
                    claims.create(&pp, &claim(i)?).await?;
                }
                if i < opts.volumes {
                    volumes.create(&pp, &volume(i, labelled)?).await?;
                }
                Ok::<(), Error>(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<()>()
        .await
}

/// The whole run; the cluster and the agent are gone when it returns.
pub async fn run(opts: &AgentScaleOptions) -> Result<AgentScaleResult> {
    let mut run = start(opts).await?;
    let result = measure(&mut run, opts).await;
    run.agent.stop(Duration::from_secs(5)).await;
    let Run { cp, .. } = run;
    cp.shutdown().await;
    result
}

async fn measure(run: &mut Run, opts: &AgentScaleOptions) -> Result<AgentScaleResult> {
    let client = run.cp.client();
    let t = Instant::now();
    run.wait_ready(opts.timeout).await?;
    run.wait_quiet(opts.quiet, opts.timeout).await?;
    let empty = run.phase(t, 0)?;

    let (t, before) = (Instant::now(), run.proxy.received());
    create_objects(&client, opts).await?;
    run.wait_quiet(opts.quiet, opts.timeout).await?;
    let creating = run.phase(t, before)?;

    run.agent.stop(Duration::from_secs(10)).await;
    let (t, before) = (Instant::now(), run.proxy.received());
    run.agent.start()?;
    run.wait_ready(opts.timeout).await?;
    run.wait_quiet(opts.quiet, opts.timeout).await?;
    let restart = run.phase(t, before)?;

    const JSON: &str = "application/json";
    const META: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    let own = format!(
        "/api/v1/persistentvolumes?labelSelector={}%3D{NODE}",
        LABEL_NODE.replace('/', "%2F")
    );
    Ok(AgentScaleResult {
        agent: opts.agent.display().to_string(),
        claims: opts.claims,
        volumes: opts.volumes,
        unlabelled_volumes: opts.unlabelled,
        empty,
        creating,
        restart,
        claim_list_bytes: list_bytes(&client, "/api/v1/persistentvolumeclaims", JSON).await?,
        claim_list_metadata_bytes: list_bytes(&client, "/api/v1/persistentvolumeclaims", META)
            .await?,
        volume_list_bytes: list_bytes(&client, "/api/v1/persistentvolumes", JSON).await?,
        volume_list_own_bytes: list_bytes(&client, &own, JSON).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_valid_and_on_other_nodes() {
        let pv = volume(7, true).unwrap();
        assert_eq!(
            pv.metadata
                .labels
                .unwrap()
                .get(LABEL_NODE)
                .map(String::as_str),
            Some("other-7")
        );
        assert!(volume(7, false).unwrap().metadata.labels.is_none());
        let c = claim(107).unwrap();
        assert_eq!(
            c.metadata
                .annotations
                .unwrap()
                .get(ANN_SELECTED_NODE)
                .map(String::as_str),
            Some("other-7")
        );
        assert_eq!(
            c.spec.unwrap().volume_name.as_deref(),
            Some("pvc-scale-107")
        );
    }
}
