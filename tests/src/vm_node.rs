//! A cluster node in the QEMU guest (hack/vm/run.sh): a real kernel with
//! device-mapper, a VG with a thin pool, and the real `lvmpin-agent` in its
//! full mode against the host's control plane. The guest program is the
//! `csi_vm_check` example's `--serve` mode
//! (lvm-provisioner/examples/csi_vm_check/node_server.rs), which also plays
//! the node's kubelet and workload; this is the host's side of its
//! line-based JSON protocol.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::PostParams;
use lvmpin_api::LvmNode;
use lvmpin_api::names::PARAM_THIN_POOL;
use lvmpin_sim::testbed::install::{self, ClusterAccess};
use lvmpin_sim::testbed::{Backend, Testbed, TestbedOptions};
use lvmpin_sim::{wait, workload};
use lvmpin_testkit::vm::{VmOptions, VmProcess, VmRun, cargo_executable};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The node's name, as the guest's agent reports it.
pub const NODE: &str = "vm-node";
/// Its VG and thin pool (made by the guest).
pub const VG: &str = "vmvg";
pub const POOL: &str = "pool";
const GUEST_PORT: u16 = 7000;

/// kube-local with the upstream snapshot-controller and no host nodes, and
/// the guest as its one node: the Node object, a thin StorageClass `class`
/// on the guest's pool, and the guest's agent running on its own bound
/// token. Returns once the agent reports the pool and publishes capacity.
pub async fn start_cluster(class: &str, timeout: Duration) -> Result<(Testbed, VmNode)> {
    crate::require_root();
    let (tb, node) = tokio::join!(
        Testbed::start(TestbedOptions {
            backend: Backend::Kube,
            nodes: 0,
            snapshot_controller: Some(vec!["--enable-distributed-snapshotting".into()]),
            ..TestbedOptions::default()
        }),
        VmNode::boot(1800, timeout),
    );
    let (tb, mut node) = (tb?, node?);
    let client = tb.client();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &workload::node(NODE))
        .await?;
    let mut sc: StorageClass = workload::storage_class(class, VG);
    sc.parameters
        .get_or_insert_default()
        .insert(PARAM_THIN_POOL.into(), POOL.into());
    Api::<StorageClass>::all(client.clone())
        .create(&PostParams::default(), &sc)
        .await?;
    let access = ClusterAccess::from_kubeconfig(&tb.kubeconfig)?;
    let kubeconfig = install::agent_kubeconfig(&client, &access, tb.dir.path(), NODE).await?;
    let url = tb.control_plane.url();
    let api_port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in the API server URL {url}"))?;
    node.start_agent(&std::fs::read_to_string(&kubeconfig)?, api_port)
        .await?;
    let nodes = Api::<LvmNode>::all(client);
    wait::until(
        "the guest's LvmNode with its thin pool",
        timeout,
        Duration::from_millis(250),
        || {
            let nodes = nodes.clone();
            async move {
                let status = nodes.get(NODE).await.ok()?.status?;
                let vg = status.volume_group(VG)?;
                (vg.healthy && vg.thin_pools.iter().any(|p| p.name == POOL)).then_some(())
            }
        },
    )
    .await
    .map_err(|e| anyhow!("{}\nguest console:\n{}", tb.with_logs(e), node.console()))?;
    tb.wait_capacity_published(class, 1, timeout).await?;
    Ok((tb, node))
}

pub struct VmNode {
    vm: VmProcess,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl VmNode {
    /// Builds the guest program and the agent, boots the guest and waits
    /// (up to `boot_timeout`) until it answers.
    pub async fn boot(timeout_s: u32, boot_timeout: Duration) -> Result<Self> {
        let (guest, agent) = tokio::task::spawn_blocking(|| {
            (
                cargo_executable("lvmpin-provisioner", "--example", "csi_vm_check"),
                cargo_executable("lvmpin-provisioner", "--bin", "lvmpin-agent"),
            )
        })
        .await?;
        let host_port = lvmpin_sim::testbed::process::free_port()?;
        let mut vm = VmOptions {
            timeout_s,
            disk_mib: 2048,
            hostfwd: Some((host_port, GUEST_PORT)),
        }
        .spawn(&guest, &[agent], &["--serve", &GUEST_PORT.to_string()]);
        // QEMU accepts on the host port before the guest listens, and drops
        // those connections: a connection counts once it answers.
        let deadline = tokio::time::Instant::now() + boot_timeout;
        loop {
            if !vm.running() {
                bail!("the guest stopped while booting:\n{}", vm.console());
            }
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", host_port)).await {
                let (read, writer) = stream.into_split();
                let mut node = VmNode {
                    vm,
                    reader: BufReader::new(read),
                    writer,
                };
                match tokio::time::timeout(Duration::from_secs(60), node.call(json!({"op": "lvs"})))
                    .await
                {
                    Ok(Ok(_)) => return Ok(node),
                    _ => vm = node.vm,
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the guest never answered:\n{}", vm.console());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// One request; the guest's `error` reply becomes an `Err`.
    pub async fn call(&mut self, request: Value) -> Result<Value> {
        self.writer
            .write_all(format!("{request}\n").as_bytes())
            .await?;
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            bail!("the guest closed the connection on {request}");
        }
        let reply: Value =
            serde_json::from_str(&line).with_context(|| format!("guest reply {line:?}"))?;
        match (reply.get("ok"), reply.get("error")) {
            (Some(v), None) => Ok(v.clone()),
            (_, Some(e)) => bail!("guest: {request}: {}", e.as_str().unwrap_or_default()),
            _ => bail!("guest reply without ok or error: {line}"),
        }
    }

    pub async fn start_agent(&mut self, kubeconfig: &str, api_port: u16) -> Result<()> {
        self.call(json!({"op": "start_agent", "kubeconfig": kubeconfig, "api_port": api_port}))
            .await
            .map(drop)
    }

    /// Stage and publish, as kubelet does for a pod using the volume.
    pub async fn mount(
        &mut self,
        volume_id: &str,
        fs_type: &str,
        context: &BTreeMap<String, String>,
    ) -> Result<()> {
        self.call(
            json!({"op": "mount", "volume_id": volume_id, "fs_type": fs_type, "context": context}),
        )
        .await
        .map(drop)
    }

    pub async fn unmount(&mut self, volume_id: &str) -> Result<()> {
        self.call(json!({"op": "unmount", "volume_id": volume_id}))
            .await
            .map(drop)
    }

    /// Writes 1 MiB derived from `seed` durably; returns its sha256.
    pub async fn write(&mut self, volume_id: &str, name: &str, seed: u64) -> Result<String> {
        let v = self
            .call(json!({"op": "write", "volume_id": volume_id, "name": name, "seed": seed}))
            .await?;
        v.as_str().map(str::to_string).context("no checksum")
    }

    /// The sha256 of a file of the mounted volume; `None`: no such file.
    pub async fn read(&mut self, volume_id: &str, name: &str) -> Result<Option<String>> {
        let v = self
            .call(json!({"op": "read", "volume_id": volume_id, "name": name}))
            .await?;
        Ok(v.as_str().map(str::to_string))
    }

    /// The mounted filesystem's size in bytes.
    pub async fn fs_size(&mut self, volume_id: &str) -> Result<u64> {
        let v = self
            .call(json!({"op": "fs_size", "volume_id": volume_id}))
            .await?;
        v.as_u64().context("no size")
    }

    /// LV name → tags, as the guest's lvm2 reports them.
    pub async fn lvs(&mut self) -> Result<BTreeMap<String, Vec<String>>> {
        let v = self.call(json!({"op": "lvs"})).await?;
        Ok(serde_json::from_value(v)?)
    }

    /// Stops the agent (it must exit cleanly) and powers the guest off. A
    /// failed stop carries the guest's console, which says what went wrong.
    pub async fn stop(mut self) -> Result<VmRun> {
        let stopped = self.call(json!({"op": "stop"})).await;
        let vm = self.vm;
        let run = tokio::task::spawn_blocking(move || vm.wait()).await?;
        match stopped {
            Ok(_) => Ok(run),
            Err(e) => bail!("{e:#}\nguest console:\n{}\n{}", run.console, run.stderr),
        }
    }

    /// What the guest printed so far (all of it once it stopped).
    pub fn console(&self) -> String {
        self.vm.console()
    }
}
