//! The agent binary as a child process, and what the guest checks of it
//! from outside: its sockets, its readiness, kubelet registration.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lvmpin_csi_proto::pluginregistration as reg;
use lvmpin_provisioner::csi::client::connect_unix;

use crate::{VG, step};

pub const KUBELET_DIR: &str = "/var/lib/kubelet";
pub const CSI_SOCKET: &str = "/var/lib/kubelet/plugins/lvm.lvmpin.io/csi.sock";
pub const NODE: &str = "vm-node";
const HTTP: &str = "127.0.0.1:9808";

pub struct Agent {
    child: Child,
    pub csi_socket: PathBuf,
    pub reg_socket: PathBuf,
}

async fn wait_for(path: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        if Instant::now() > deadline {
            bail!("{} never appeared", path.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

impl Agent {
    /// `--csi-only`, or `--kubeconfig` and more: `mode_args`.
    pub async fn start(binary: &Path, mode_args: &[&str]) -> Result<Self> {
        step(&format!(
            "start lvmpin-agent {} (production socket layout)",
            mode_args.first().copied().unwrap_or_default()
        ));
        let child = Command::new(binary)
            .args(mode_args)
            .args(["--node-name", NODE, "--volume-group", VG])
            .args(["--csi-socket", CSI_SOCKET, "--kubelet-dir", KUBELET_DIR])
            .args(["--metrics-listen", HTTP, "--lvm-timeout", "120s"])
            .env("RUST_LOG", "warn,lvmpin_provisioner=info")
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let agent = Agent {
            child,
            csi_socket: PathBuf::from(CSI_SOCKET),
            reg_socket: PathBuf::from(KUBELET_DIR).join("plugins_registry/lvm.lvmpin.io-reg.sock"),
        };
        wait_for(&agent.csi_socket).await?;
        wait_for(&agent.reg_socket).await?;
        Ok(agent)
    }

    /// SIGTERM, then the agent must exit cleanly and remove both sockets.
    pub async fn stop(mut self) -> Result<()> {
        step("stop the agent: clean exit, sockets removed");
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let status = self.child.wait()?;
        ensure!(status.success(), "agent exited with {status}");
        ensure!(
            !self.csi_socket.exists() && !self.reg_socket.exists(),
            "sockets left behind"
        );
        Ok(())
    }

    /// The agent must still be running (no panic, no exit).
    pub fn alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the agent exited: {status}");
        }
        Ok(())
    }
}

/// Status code of `GET <path>` on the agent's HTTP endpoint.
pub fn http_status(path: &str) -> Result<u16> {
    let mut s = TcpStream::connect(HTTP).context("connect to the agent's HTTP endpoint")?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    let code = reply
        .split_whitespace()
        .nth(1)
        .context("empty HTTP reply")?;
    Ok(code.parse()?)
}

/// What kubelet's plugin watcher does: GetInfo over the registration
/// socket, then NotifyRegistrationStatus; a refusal makes the agent unready
/// until a later success.
pub async fn registration(agent: &Agent) -> Result<()> {
    step("registration: GetInfo, then a failed and a successful NotifyRegistrationStatus");
    let mut r =
        reg::registration_client::RegistrationClient::new(connect_unix(&agent.reg_socket).await?);
    let info = r.get_info(reg::InfoRequest {}).await?.into_inner();
    ensure!(
        info.r#type == "CSIPlugin" && info.name == "lvm.lvmpin.io",
        "{info:?}"
    );
    ensure!(info.endpoint == CSI_SOCKET, "{info:?}");
    ensure!(!info.supported_versions.is_empty(), "{info:?}");
    ensure!(http_status("/readyz")? == 200, "ready before any verdict");
    r.notify_registration_status(reg::RegistrationStatus {
        plugin_registered: false,
        error: "kubelet could not register the plugin (test)".into(),
    })
    .await?;
    ensure!(
        http_status("/readyz")? == 503,
        "still ready after kubelet refused the registration"
    );
    r.notify_registration_status(reg::RegistrationStatus {
        plugin_registered: true,
        error: String::new(),
    })
    .await?;
    ensure!(
        http_status("/readyz")? == 200,
        "not ready after kubelet registered the plugin"
    );
    ensure!(http_status("/healthz")? == 200, "healthz");
    step("registration: readiness follows kubelet's verdict");
    Ok(())
}
