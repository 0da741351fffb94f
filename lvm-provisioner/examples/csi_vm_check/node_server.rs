//! The guest as one node of a cluster whose control plane runs on the host
//! (`tests/tests/snapshots_vm.rs` in the e2e crate). The real agent runs here
//! in its full mode against the host's API server, on a real kernel with a
//! thin pool; this program plays the node's kubelet (stage, publish, the
//! plugin-watcher handshake) and its workload (files written and checksummed
//! in the mounted volumes), at the host test's request.
//!
//! The host reaches us through QEMU's user-mode network (`run.sh --hostfwd`):
//! one TCP connection carrying one JSON request per line, one JSON reply per
//! line. We reach the API server through a relay on the guest's
//! `127.0.0.1:<its port>`, so the agent's kubeconfig names the address the
//! API server's certificate was issued for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use lvmpin_csi_proto::csi::v1 as pb;
use lvmpin_csi_proto::pluginregistration as reg;
use lvmpin_provisioner::csi::client::connect_unix;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::agent::Agent;
use crate::kubelet::{Kubelet, mount_cap};
use crate::snapshots::{checksum, payload, staging, target, write_durably};
use crate::{VG, sh, step};

/// The thin pool the host's StorageClass names.
pub const POOL: &str = "pool";
/// The host's loopback as QEMU's user-mode network shows it to the guest.
const HOST: &str = "10.0.2.2";
/// Longest request line accepted (a kubeconfig with a token is a few KiB).
const MAX_LINE: usize = 64 << 10;

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    /// Start the agent with this kubeconfig; `api_port` is the API server's
    /// port on the host's loopback.
    StartAgent { kubeconfig: String, api_port: u16 },
    /// NodeStage + NodePublish, as kubelet does for a pod's volume.
    Mount {
        volume_id: String,
        fs_type: String,
        #[serde(default)]
        context: BTreeMap<String, String>,
    },
    /// Writes 1 MiB (seeded) to `name` and returns its sha256.
    Write {
        volume_id: String,
        name: String,
        seed: u64,
    },
    /// The sha256 of `name`, or null when there is no such file.
    Read { volume_id: String, name: String },
    /// Filesystem size in bytes (NodeGetVolumeStats).
    FsSize { volume_id: String },
    /// NodeUnpublish + NodeUnstage.
    Unmount { volume_id: String },
    /// LV names of the VG with their tags.
    Lvs,
    /// Stop the agent (clean exit, sockets removed) and power off.
    Stop,
}

struct Node {
    agent_binary: PathBuf,
    agent: Option<Agent>,
    kubelet: Option<Kubelet>,
    /// volume id → the fs type it was mounted with.
    mounted: BTreeMap<String, String>,
}

fn lv_of(volume_id: &str) -> Result<&str> {
    match volume_id.split_once('/') {
        Some((vg, lv)) if vg == VG && !lv.is_empty() && !lv.contains('/') => Ok(lv),
        _ => bail!("volume id {volume_id:?} is not {VG}/<lv>"),
    }
}

/// Relays `127.0.0.1:port` in the guest to the host's API server.
async fn relay_api_server(port: u16) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("listen on 127.0.0.1:{port} for the API server relay"))?;
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect((HOST, port)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Ok(())
}

impl Node {
    fn kubelet(&mut self) -> Result<&mut Kubelet> {
        self.kubelet.as_mut().context("the agent is not started")
    }

    fn mount_dir(&self, volume_id: &str) -> Result<PathBuf> {
        let lv = lv_of(volume_id)?;
        if !self.mounted.contains_key(volume_id) {
            bail!("{volume_id} is not mounted");
        }
        Ok(target(lv))
    }

    async fn start_agent(&mut self, kubeconfig: &str, api_port: u16) -> Result<Value> {
        if self.agent.is_some() {
            bail!("the agent is already running");
        }
        relay_api_server(api_port).await?;
        let path = Path::new("/etc/lvmpin/kubeconfig");
        std::fs::create_dir_all("/etc/lvmpin")?;
        std::fs::write(path, kubeconfig)?;
        let agent = Agent::start(
            &self.agent_binary,
            &[
                "--kubeconfig",
                "/etc/lvmpin/kubeconfig",
                "--namespace",
                "lvmpin-system",
                "--scan-interval",
                "1s",
            ],
        )
        .await?;
        // kubelet's plugin watcher: GetInfo, then the verdict.
        let mut r = reg::registration_client::RegistrationClient::new(
            connect_unix(&agent.reg_socket).await?,
        );
        r.get_info(reg::InfoRequest {}).await?;
        r.notify_registration_status(reg::RegistrationStatus {
            plugin_registered: true,
            error: String::new(),
        })
        .await?;
        self.kubelet = Some(Kubelet::connect(&agent).await?);
        self.agent = Some(agent);
        Ok(json!("started"))
    }

    async fn handle(&mut self, req: Request) -> Result<Value> {
        match req {
            Request::StartAgent {
                kubeconfig,
                api_port,
            } => self.start_agent(&kubeconfig, api_port).await,
            Request::Mount {
                volume_id,
                fs_type,
                context,
            } => {
                let lv = lv_of(&volume_id)?.to_string();
                let (s, t) = (staging(&lv), target(&lv));
                std::fs::create_dir_all(&s)?;
                let k = self.kubelet()?;
                k.node
                    .node_stage_volume(pb::NodeStageVolumeRequest {
                        volume_id: volume_id.clone(),
                        staging_target_path: s.display().to_string(),
                        volume_capability: mount_cap(&fs_type),
                        volume_context: context.clone().into_iter().collect(),
                        ..Default::default()
                    })
                    .await
                    .with_context(|| format!("NodeStageVolume {volume_id}"))?;
                k.node
                    .node_publish_volume(pb::NodePublishVolumeRequest {
                        volume_id: volume_id.clone(),
                        staging_target_path: s.display().to_string(),
                        target_path: t.display().to_string(),
                        volume_capability: mount_cap(&fs_type),
                        volume_context: context.into_iter().collect(),
                        ..Default::default()
                    })
                    .await
                    .with_context(|| format!("NodePublishVolume {volume_id}"))?;
                self.mounted.insert(volume_id, fs_type);
                Ok(json!(t.display().to_string()))
            }
            Request::Write {
                volume_id,
                name,
                seed,
            } => {
                let dir = self.mount_dir(&volume_id)?;
                write_durably(&dir, &name, &payload(seed))?;
                Ok(json!(checksum(&dir, &name)?))
            }
            Request::Read { volume_id, name } => {
                let dir = self.mount_dir(&volume_id)?;
                Ok(json!(checksum(&dir, &name)?))
            }
            Request::FsSize { volume_id } => {
                let dir = self.mount_dir(&volume_id)?;
                let stats = self.kubelet()?.stats(&volume_id, &dir).await?;
                let bytes = stats
                    .usage
                    .iter()
                    .find(|u| u.unit == pb::volume_usage::Unit::Bytes as i32)
                    .map(|u| u.total)
                    .context("no byte usage in NodeGetVolumeStats")?;
                Ok(json!(bytes))
            }
            Request::Unmount { volume_id } => {
                let lv = lv_of(&volume_id)?.to_string();
                self.mounted
                    .remove(&volume_id)
                    .with_context(|| format!("{volume_id} is not mounted"))?;
                let k = self.kubelet()?;
                k.unpublish(&volume_id, &target(&lv)).await?;
                k.unstage(&volume_id, &staging(&lv)).await?;
                Ok(json!("unmounted"))
            }
            Request::Lvs => {
                let out = sh(
                    "lvm",
                    &[
                        "lvs",
                        "--noheadings",
                        "--separator",
                        "|",
                        "-o",
                        "lv_name,lv_tags",
                        VG,
                    ],
                )?;
                let lvs: BTreeMap<String, Vec<String>> = out
                    .lines()
                    .filter_map(|l| l.trim().split_once('|'))
                    .map(|(name, tags)| {
                        let tags = tags
                            .split(',')
                            .filter(|t| !t.is_empty())
                            .map(str::to_string);
                        (name.to_string(), tags.collect())
                    })
                    .collect();
                Ok(json!(lvs))
            }
            Request::Stop => bail!("stop is handled by serve"),
        }
    }
}

/// Makes the thin pool, then serves the host's requests until `stop`.
pub async fn serve(agent_binary: &Path, port: u16) -> Result<()> {
    step(&format!("thin pool {VG}/{POOL}"));
    sh(
        "lvm",
        &[
            "lvcreate",
            "--type",
            "thin-pool",
            "-L",
            "1024m",
            "-n",
            POOL,
            VG,
        ],
    )?;
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    step(&format!("serving the host on port {port}"));
    let mut node = Node {
        agent_binary: agent_binary.to_path_buf(),
        agent: None,
        kubelet: None,
        mounted: BTreeMap::new(),
    };
    // One host connection at a time; a dropped connection (the host
    // retrying while the guest boots) does not end the guest, `stop` does.
    loop {
        let (stream, _) = listener.accept().await?;
        if serve_connection(&mut node, stream).await? {
            return Ok(());
        }
    }
}

/// Serves one connection; true once `stop` was served. Errors of the
/// connection itself end only the connection.
async fn serve_connection(node: &mut Node, stream: TcpStream) -> Result<bool> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE as u64)
            .read_line(&mut line)
            .await
        {
            Ok(0) | Err(_) => return Ok(false),
            Ok(_) if !line.ends_with('\n') => {
                let _ = write
                    .write_all(b"{\"error\":\"request line too long\"}\n")
                    .await;
                return Ok(false);
            }
            Ok(_) => {}
        }
        let req: Result<Request> = serde_json::from_str(&line).context("bad request");
        if matches!(req, Ok(Request::Stop)) {
            let stopped = match node.agent.take() {
                Some(agent) => {
                    node.kubelet = None;
                    agent.stop().await
                }
                None => Ok(()),
            };
            // The host hears why before the guest fails and powers off.
            let reply = match &stopped {
                Ok(()) => json!({ "ok": "stopped" }),
                Err(e) => json!({ "error": format!("{e:#}") }),
            };
            let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
            stopped?;
            return Ok(true);
        }
        let reply = match req {
            Ok(req) => match node.handle(req).await {
                Ok(v) => json!({ "ok": v }),
                Err(e) => json!({ "error": format!("{e:#}") }),
            },
            Err(e) => json!({ "error": format!("{e:#}") }),
        };
        if let Some(agent) = node.agent.as_mut() {
            agent.alive()?;
        }
        if write
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .is_err()
        {
            return Ok(false);
        }
    }
}
