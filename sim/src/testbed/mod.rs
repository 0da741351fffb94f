//! A whole cluster on one machine: a control plane (the simulator's, in
//! process, or the upstream one through `kube-local`), a loop-backed VG per
//! node, and the real extender and agent binaries as processes. The demo, the
//! bench and the end-to-end tests all stand on it.

pub mod install;
pub mod kube_local;
pub mod node_disk;
pub mod process;
pub mod snapshots;
mod statefulsets;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::storage::v1::{CSIStorageCapacity, StorageClass};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use lvmpin_api::LvmNode;

use crate::control_plane::{ControlPlane, ControlPlaneOptions};
use crate::error::{Error, Result};
use crate::scheduler::{ExtenderConfig, SchedulerConfig, StatsSnapshot};
use crate::wait;
use crate::workload;
use install::ClusterAccess;
use kube_local::KubeLocal;
pub use node_disk::NodeDisk;
pub use process::{Binaries, ManagedProcess};

static SEQ: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Decisive,
    Advisory,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Decisive => "decisive",
            Mode::Advisory => "advisory",
        }
    }
}

/// Which control plane a testbed runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The simulator's API server, PV controller and scheduler driver: fast,
    /// and needs no Go.
    Sim,
    /// Upstream kube-apiserver, kube-controller-manager and kube-scheduler
    /// (`hack/kube-local`), with the scheduler configuration from `manifests/`
    /// and the lvmpin processes on their own service-account tokens.
    Kube,
}

impl Backend {
    /// The setting that picks the backend.
    pub const ENV: &str = "LVMPIN_CONTROL_PLANE";

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "sim" => Ok(Backend::Sim),
            "kube" => Ok(Backend::Kube),
            other => Err(Error::ApiServer(format!(
                "control plane {other:?}: expected \"sim\" or \"kube\""
            ))),
        }
    }

    /// `LVMPIN_CONTROL_PLANE` when set, else `default`.
    pub fn from_env_or(default: Backend) -> Result<Self> {
        match std::env::var(Self::ENV) {
            Ok(v) if !v.is_empty() => Self::parse(&v),
            _ => Ok(default),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sim => "sim",
            Backend::Kube => "kube",
        }
    }
}

/// The running control plane of a testbed.
pub enum Cluster {
    Sim(ControlPlane),
    Kube(Box<KubeLocal>),
}

impl Cluster {
    pub fn client(&self) -> Client {
        match self {
            Cluster::Sim(c) => c.client(),
            Cluster::Kube(k) => k.client(),
        }
    }

    /// The API server's URL.
    pub fn url(&self) -> String {
        match self {
            Cluster::Sim(c) => c.url(),
            Cluster::Kube(k) => k.ready.apiserver.clone(),
        }
    }

    pub async fn shutdown(self) {
        match self {
            Cluster::Sim(c) => c.shutdown().await,
            Cluster::Kube(k) => k.shutdown().await,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TestbedOptions {
    pub backend: Backend,
    pub nodes: usize,
    pub vg_bytes: u64,
    pub mode: Mode,
    /// How the scheduler sends nodes to the extender.
    pub node_cache_capable: bool,
    pub scan_interval: String,
    pub extender_args: Vec<String>,
    pub agent_args: Vec<String>,
    pub controller_args: Vec<String>,
    /// Use release binaries (the demo) or debug ones (tests).
    pub release: bool,
    /// Scheduler settings; the extender entry is filled in by the testbed.
    pub scheduler: SchedulerConfig,
    /// False: the extender still runs, but the scheduler does not call it
    /// (a cluster whose scheduler is not configured for lvmpin).
    pub scheduler_uses_extender: bool,
    /// A file of `manifests/scheduler/` (without `.yaml`) instead of the one
    /// named after `mode` (or `no-extender`).
    pub scheduler_file: Option<String>,
    /// Run that file with every extender's `ignorable` set to this.
    pub extender_ignorable: Option<bool>,
    pub class: String,
    /// Label the nodes with this many zones (`zone-0`, `zone-1`, …), in
    /// contiguous runs of nodes; 0: no zone label.
    pub zones: usize,
    /// Log filter for the agents and the extender when `RUST_LOG` is unset.
    pub log_filter: String,
    /// The API server's address (port 0: any free port).
    pub listen: std::net::SocketAddr,
    /// Install the upstream snapshot CRDs and run the upstream
    /// snapshot-controller with these extra flags (kube backend only).
    pub snapshot_controller: Option<Vec<String>>,
}

impl Default for TestbedOptions {
    fn default() -> Self {
        Self {
            backend: Backend::Sim,
            nodes: 3,
            vg_bytes: 1 << 30,
            mode: Mode::Decisive,
            node_cache_capable: true,
            scan_interval: "1s".into(),
            extender_args: Vec::new(),
            agent_args: Vec::new(),
            controller_args: Vec::new(),
            release: !cfg!(debug_assertions),
            scheduler: SchedulerConfig {
                bind_poll: Duration::from_millis(200),
                ..SchedulerConfig::default()
            },
            scheduler_uses_extender: true,
            scheduler_file: None,
            extender_ignorable: None,
            class: "lvmpin".into(),
            zones: 0,
            log_filter: "info".into(),
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            snapshot_controller: None,
        }
    }
}

/// Field order is drop order: processes stop before the disks go away.
pub struct Testbed {
    pub agents: Vec<ManagedProcess>,
    pub extender: ManagedProcess,
    pub controller: ManagedProcess,
    pub snapshot_controller: Option<ManagedProcess>,
    pub control_plane: Cluster,
    pub disks: Vec<NodeDisk>,
    pub node_names: Vec<String>,
    pub vg: String,
    pub class: String,
    pub kubeconfig: PathBuf,
    pub extender_url: String,
    pub dir: Arc<tempfile::TempDir>,
}

/// A copy of the KubeSchedulerConfiguration at `from`, written to `to`, with
/// `extenders[*].ignorable` set.
fn with_ignorable(from: &Path, to: &Path, ignorable: bool) -> Result<()> {
    let text = std::fs::read_to_string(from).map_err(|e| Error::io(from, e))?;
    let bad = |reason: String| Error::SchedulerConfig {
        path: from.display().to_string(),
        reason,
    };
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let extenders = doc
        .get_mut("extenders")
        .and_then(|e| e.as_sequence_mut())
        .ok_or_else(|| bad("no extenders to change".into()))?;
    for e in extenders {
        if let Some(m) = e.as_mapping_mut() {
            m.insert("ignorable".into(), ignorable.into());
        }
    }
    let out = serde_yaml::to_string(&doc).map_err(|e| bad(e.to_string()))?;
    std::fs::write(to, out).map_err(|e| Error::io(to, e))
}

/// The zone of node `i` of `nodes` split over `zones` in contiguous runs.
pub fn zone_of(i: usize, nodes: usize, zones: usize) -> Option<String> {
    (zones > 0 && nodes > 0).then(|| format!("zone-{}", i * zones / nodes))
}

impl Testbed {
    pub async fn start(opts: TestbedOptions) -> Result<Self> {
        let release = opts.release;
        let bins = tokio::task::spawn_blocking(move || Binaries::locate_or_build(release))
            .await
            .map_err(|e| Error::ApiServer(format!("build task failed: {e}")))??;
        Self::start_with(opts, bins).await
    }

    pub async fn start_with(opts: TestbedOptions, bins: Binaries) -> Result<Self> {
        let id = format!(
            "{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let vg = format!("lvmpin-{id}");
        let dir = Arc::new(
            tempfile::Builder::new()
                .prefix(&format!("lvmpin-sim-{id}-"))
                .tempdir()
                .map_err(|e| Error::io(std::env::temp_dir(), e))?,
        );
        let port = process::free_port()?;
        let extender_url = format!("http://127.0.0.1:{port}");
        // Both backends run the KubeSchedulerConfiguration users deploy.
        let shipped = kube_local::scheduler_config(match &opts.scheduler_file {
            Some(f) => f,
            None if opts.scheduler_uses_extender => opts.mode.as_str(),
            None => "no-extender",
        });
        let config_path = match opts.extender_ignorable {
            None => shipped,
            Some(ignorable) => {
                let path = dir.path().join("scheduler-config.yaml");
                with_ignorable(&shipped, &path, ignorable)?;
                path
            }
        };
        let (control_plane, kubeconfig) = match opts.backend {
            Backend::Sim => {
                let yaml = std::fs::read_to_string(&config_path)
                    .map_err(|e| Error::io(&config_path, e))?;
                let mut scheduler = opts.scheduler.clone();
                scheduler.extenders = ExtenderConfig::from_scheduler_config(
                    &yaml,
                    &config_path.display().to_string(),
                )?
                .into_iter()
                .map(|e| ExtenderConfig {
                    url_prefix: extender_url.clone(),
                    node_cache_capable: opts.node_cache_capable,
                    ..e
                })
                .collect();
                let cp = ControlPlane::start(ControlPlaneOptions {
                    listen: opts.listen,
                    scheduler: Some(scheduler),
                    ..ControlPlaneOptions::default()
                })
                .await?;
                install::install_sim(&cp.client()).await?;
                let kubeconfig = dir.path().join("kubeconfig");
                cp.write_kubeconfig(&kubeconfig)?;
                (Cluster::Sim(cp), kubeconfig)
            }
            Backend::Kube => {
                let kl = KubeLocal::start(
                    dir.path(),
                    &config_path,
                    opts.scheduler_uses_extender
                        .then_some(extender_url.as_str()),
                    Duration::from_secs(180),
                )
                .await?;
                install::install_base(&kl.client()).await?;
                let kubeconfig = kl.ready.kubeconfig.clone();
                (Cluster::Kube(Box::new(kl)), kubeconfig)
            }
        };
        let client = control_plane.client();
        let snapshot_controller = match (&opts.snapshot_controller, opts.backend) {
            (None, _) => None,
            (Some(_), Backend::Sim) => {
                return Err(Error::ApiServer(
                    "the snapshot-controller runs only on the kube backend".into(),
                ));
            }
            (Some(args), Backend::Kube) => {
                snapshots::install_crds(&client).await?;
                Some(snapshots::start(
                    &kubeconfig,
                    dir.path().join("snapshot-controller.log"),
                    args,
                )?)
            }
        };

        let node_names: Vec<String> = (0..opts.nodes).map(|i| format!("node-{i}")).collect();
        let nodes_api = Api::<Node>::all(client.clone());
        for (i, n) in node_names.iter().enumerate() {
            let node = match zone_of(i, opts.nodes, opts.zones) {
                Some(zone) => workload::zoned_node(n, &zone),
                None => workload::node(n),
            };
            nodes_api.create(&PostParams::default(), &node).await?;
        }
        Api::<StorageClass>::all(client.clone())
            .create(
                &PostParams::default(),
                &workload::storage_class(&opts.class, &vg),
            )
            .await?;
        // On the real API server each process gets its own service account's
        // token; the simulator has no authorization, so all share one.
        let access = match opts.backend {
            Backend::Kube => Some(ClusterAccess::from_kubeconfig(&kubeconfig)?),
            Backend::Sim => None,
        };
        let sa_kubeconfig = async |sa: &str| match &access {
            Some(a) => install::service_account_kubeconfig(&client, a, dir.path(), sa).await,
            None => Ok(kubeconfig.clone()),
        };
        let extender_kubeconfig = sa_kubeconfig(install::EXTENDER_SA).await?;
        let controller_kubeconfig = sa_kubeconfig(install::CONTROLLER_SA).await?;

        let mut disks = Vec::new();
        for n in &node_names {
            let (guard, n2, v, size) = (dir.clone(), n.clone(), vg.clone(), opts.vg_bytes);
            // The directory travels with the disk: if this future is dropped
            // (Ctrl-C), the disk is cleaned up first, then the directory.
            let (disk, _dir) = tokio::task::spawn_blocking(move || {
                let disk = NodeDisk::create(guard.path(), &n2, &v, size);
                (disk, guard)
            })
            .await
            .map_err(|e| Error::ApiServer(format!("disk task failed: {e}")))?;
            disks.push(disk?);
        }

        let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| opts.log_filter.clone());
        let mut agents = Vec::new();
        for disk in &disks {
            let kc = match &access {
                Some(a) => install::agent_kubeconfig(&client, a, dir.path(), &disk.node).await?,
                None => kubeconfig.clone(),
            };
            let kc = kc.display().to_string();
            let kubelet_dir = dir.path().join(format!("kubelet-{}", disk.node));
            std::fs::create_dir_all(&kubelet_dir).map_err(|e| Error::io(&kubelet_dir, e))?;
            let mut args: Vec<String> = [
                "--node-name",
                &disk.node,
                "--volume-group",
                &vg,
                "--kubeconfig",
                &kc,
                "--scan-interval",
                &opts.scan_interval,
                "--csi-socket",
                &kubelet_dir.join("csi.sock").display().to_string(),
                "--kubelet-dir",
                &kubelet_dir.display().to_string(),
                "--metrics-listen",
                "127.0.0.1:0",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(["--namespace".to_string(), install::NAMESPACE.to_string()]);
            // Loop-backed VGs on machines that may lack device-mapper: the
            // agents must be allowed lvm2's metadata-only mode (a no-op where
            // device-mapper works).
            args.push("--metadata-only-for-tests".to_string());
            args.extend(opts.agent_args.iter().cloned());
            agents.push(ManagedProcess::spawn(
                &format!("agent-{}", disk.node),
                &bins.agent,
                args,
                vec![
                    ("LVM_SYSTEM_DIR".into(), disk.lvm_dir.display().to_string()),
                    ("LVM_SUPPRESS_FD_WARNINGS".into(), "1".into()),
                    ("RUST_LOG".into(), rust_log.clone()),
                ],
                dir.path().join(format!("agent-{}.log", disk.node)),
            )?);
        }
        let mut args: Vec<String> = [
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--kubeconfig",
            &extender_kubeconfig.display().to_string(),
            "--mode",
            opts.mode.as_str(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(opts.extender_args.iter().cloned());
        let extender = ManagedProcess::spawn(
            "extender",
            &bins.extender,
            args,
            vec![("RUST_LOG".into(), rust_log.clone())],
            dir.path().join("extender.log"),
        )?;
        let mut args: Vec<String> = vec![
            "--kubeconfig".into(),
            controller_kubeconfig.display().to_string(),
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(opts.controller_args.iter().cloned());
        let controller = ManagedProcess::spawn(
            "controller",
            &bins.controller,
            args,
            vec![("RUST_LOG".into(), rust_log)],
            dir.path().join("controller.log"),
        )?;
        let tb = Testbed {
            agents,
            extender,
            controller,
            snapshot_controller,
            control_plane,
            disks,
            node_names,
            vg,
            class: opts.class.clone(),
            kubeconfig,
            extender_url,
            dir,
        };
        tb.wait_ready(Duration::from_secs(90)).await?;
        Ok(tb)
    }

    pub fn client(&self) -> Client {
        self.control_plane.client()
    }

    pub fn backend(&self) -> Backend {
        match self.control_plane {
            Cluster::Sim(_) => Backend::Sim,
            Cluster::Kube(_) => Backend::Kube,
        }
    }

    /// The simulator's scheduler counters; `None` on the upstream scheduler,
    /// whose view is read from Events and `/metrics` instead.
    pub fn sim_stats(&self) -> Option<StatsSnapshot> {
        match &self.control_plane {
            Cluster::Sim(c) => Some(c.stats.snapshot()),
            Cluster::Kube(_) => None,
        }
    }

    /// kube-scheduler's `/metrics`; `None` on the simulator.
    pub async fn scheduler_metrics(&self) -> Result<Option<String>> {
        match &self.control_plane {
            Cluster::Sim(_) => Ok(None),
            Cluster::Kube(k) => k.scheduler_metrics().await.map(Some),
        }
    }

    /// How often an agent gave a claim back to the scheduler, counted from the
    /// agents' `ProvisioningFailed` Events (the same on both backends).
    pub async fn reschedules(&self) -> Result<u64> {
        let events = Api::<Event>::all(self.client())
            .list(&ListParams::default())
            .await?;
        Ok(events
            .items
            .iter()
            .filter(|e| {
                e.reason.as_deref() == Some("ProvisioningFailed")
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains("removing selected-node"))
            })
            .map(|e| {
                e.series
                    .as_ref()
                    .map_or(1, |s| u64::try_from(s.count).unwrap_or(1))
            })
            .sum())
    }

    /// The extender answers `/readyz` with 200, every agent has reported its
    /// VG and published a non-zero CSIStorageCapacity for the class (until
    /// then kube-scheduler finds no room for a claim on that node).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        self.wait_extender_ready(timeout).await?;
        let api = Api::<LvmNode>::all(self.client());
        let want = self.node_names.len();
        let vg = self.vg.clone();
        wait::until(
            "every agent to report its volume group",
            timeout,
            Duration::from_millis(200),
            || {
                let api = api.clone();
                let vg = vg.clone();
                async move {
                    let list = api.list(&ListParams::default()).await.ok()?;
                    let reporting = list
                        .items
                        .iter()
                        .filter(|n| {
                            n.status
                                .as_ref()
                                .and_then(|s| s.volume_group(&vg))
                                .is_some_and(|g| g.healthy && g.size_bytes > 0)
                        })
                        .count();
                    (reporting == want).then_some(())
                }
            },
        )
        .await
        .map_err(|e| self.with_logs(e))?;
        self.wait_capacity_published(&self.class, want, timeout)
            .await
    }

    /// Until `nodes` agents have published a non-zero CSIStorageCapacity for
    /// `class` (a class created later needs its own).
    pub async fn wait_capacity_published(
        &self,
        class: &str,
        nodes: usize,
        timeout: Duration,
    ) -> Result<()> {
        let capacities = Api::<CSIStorageCapacity>::namespaced(self.client(), install::NAMESPACE);
        wait::until(
            &format!("{nodes} agents to publish CSIStorageCapacity for {class}"),
            timeout,
            Duration::from_millis(200),
            || {
                let capacities = capacities.clone();
                async move {
                    let list = capacities.list(&ListParams::default()).await.ok()?;
                    let published = list
                        .items
                        .iter()
                        .filter(|c| c.storage_class_name == class)
                        .filter(|c| c.capacity.as_ref().is_some_and(|q| q.0 != "0"))
                        .count();
                    (published == nodes).then_some(())
                }
            },
        )
        .await
        .map_err(|e| self.with_logs(e))
    }

    pub async fn wait_extender_ready(&self, timeout: Duration) -> Result<()> {
        let http: HttpClient<_, Empty<Bytes>> =
            HttpClient::builder(TokioExecutor::new()).build_http();
        let url = format!("{}/readyz", self.extender_url);
        wait::until(
            "the extender's /readyz",
            timeout,
            Duration::from_millis(100),
            || {
                let http = http.clone();
                let url = url.clone();
                async move {
                    let uri: http::Uri = url.parse().ok()?;
                    let resp = http.get(uri).await.ok()?;
                    resp.status().is_success().then_some(())
                }
            },
        )
        .await
        .map_err(|e| self.with_logs(e))
    }

    /// The extender's `/metrics` text.
    pub async fn extender_metrics(&self) -> Result<String> {
        let http: HttpClient<_, Empty<Bytes>> =
            HttpClient::builder(TokioExecutor::new()).build_http();
        let url = format!("{}/metrics", self.extender_url);
        let uri: http::Uri = url
            .parse()
            .map_err(|e| Error::ApiServer(format!("{url}: {e}")))?;
        let resp = http
            .get(uri)
            .await
            .map_err(|e| Error::ApiServer(format!("{url}: {e}")))?;
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| Error::ApiServer(format!("{url}: {e}")))?;
        Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
    }

    /// Attach the tail of every process log to an error, for diagnosis.
    /// With `LVMPIN_SIM_KEEP_LOGS=<dir>` set, the process logs are also copied there.
    fn processes(&self) -> impl Iterator<Item = &ManagedProcess> {
        self.agents
            .iter()
            .chain([&self.extender, &self.controller])
            .chain(self.snapshot_controller.as_ref())
    }

    pub fn with_logs(&self, e: Error) -> Error {
        let mut text = format!("{e}");
        if let Some(keep) = std::env::var_os("LVMPIN_SIM_KEEP_LOGS") {
            let dest = PathBuf::from(keep).join(self.dir.path().file_name().unwrap_or_default());
            if std::fs::create_dir_all(&dest).is_ok() {
                for p in self.processes() {
                    if let Some(name) = p.log.file_name() {
                        let _ = std::fs::copy(&p.log, dest.join(name));
                    }
                }
                text.push_str(&format!("\nlogs copied to {}", dest.display()));
            }
        }
        for p in self.processes() {
            text.push_str(&format!(
                "\n--- {} ({}) warnings ---\n{}\n--- last lines ---\n{}",
                p.name,
                p.log.display(),
                p.log_warnings(10),
                p.log_tail(8)
            ));
        }
        Error::ApiServer(text)
    }

    /// Wait until every named pod has a node; returns pod → node.
    pub async fn wait_bound(
        &self,
        namespace: &str,
        pods: &[String],
        timeout: Duration,
    ) -> Result<BTreeMap<String, String>> {
        let api = Api::<Pod>::namespaced(self.client(), namespace);
        let want: Vec<String> = pods.to_vec();
        let result = wait::until(
            &format!("{} pods to be bound", want.len()),
            timeout,
            Duration::from_millis(250),
            || {
                let api = api.clone();
                let want = want.clone();
                async move {
                    let list = api.list(&ListParams::default()).await.ok()?;
                    let placed: BTreeMap<String, String> = list
                        .items
                        .iter()
                        .filter_map(|p| {
                            let name = p.metadata.name.clone()?;
                            let node = p.spec.as_ref()?.node_name.clone()?;
                            want.contains(&name).then_some((name, node))
                        })
                        .collect();
                    (placed.len() == want.len()).then_some(placed)
                }
            },
        )
        .await;
        result.map_err(|e| self.with_logs(e))
    }

    /// LVs per node as LVM sees them.
    pub fn lvs(&self) -> Result<BTreeMap<String, Vec<(String, u64)>>> {
        self.disks
            .iter()
            .map(|d| Ok((d.node.clone(), d.lvs()?)))
            .collect()
    }

    pub fn disk(&self, node: &str) -> Option<&NodeDisk> {
        self.disks.iter().find(|d| d.node == node)
    }

    /// Grow a node's VG by a new loop device.
    pub fn vgextend(&mut self, node: &str, bytes: u64) -> Result<()> {
        let dir = self.dir.path().to_path_buf();
        let disk = self
            .disks
            .iter_mut()
            .find(|d| d.node == node)
            .ok_or_else(|| Error::InvalidName(node.to_string()))?;
        disk.extend(&dir, bytes)
    }

    /// Stop processes, then the control plane; disks are removed on drop.
    pub async fn shutdown(mut self) {
        for a in &mut self.agents {
            a.stop(Duration::from_secs(5)).await;
        }
        self.extender.stop(Duration::from_secs(5)).await;
        self.controller.stop(Duration::from_secs(5)).await;
        if let Some(s) = &mut self.snapshot_controller {
            s.stop(Duration::from_secs(5)).await;
        }
        let Testbed {
            control_plane,
            disks,
            ..
        } = self;
        control_plane.shutdown().await;
        drop(disks);
    }
}
