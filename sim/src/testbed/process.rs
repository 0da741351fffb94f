//! The real lvmpin binaries as child processes: where to find them, building
//! them when missing, and stopping them (also on drop).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::error::{Error, Result};

pub const EXTENDER_BIN: &str = "lvmpin-scheduler-extender";
pub const AGENT_BIN: &str = "lvmpin-agent";
pub const CONTROLLER_BIN: &str = "lvmpin-controller";

/// The workspace this crate was built from.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `CARGO_TARGET_DIR` or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

#[derive(Debug, Clone)]
pub struct Binaries {
    pub extender: PathBuf,
    pub agent: PathBuf,
    pub controller: PathBuf,
}

impl Binaries {
    /// Find the binaries for `release` or debug, building them with cargo
    /// when any is missing. (Not when merely stale: a nested cargo run with
    /// another feature set would rebuild shared dependencies for everyone.)
    pub fn locate_or_build(release: bool) -> Result<Self> {
        let dir = target_dir().join(if release { "release" } else { "debug" });
        let bins = Binaries {
            extender: dir.join(EXTENDER_BIN),
            agent: dir.join(AGENT_BIN),
            controller: dir.join(CONTROLLER_BIN),
        };
        let all = [&bins.extender, &bins.agent, &bins.controller];
        if !all.iter().all(|p| p.is_file()) {
            cargo_build(release)?;
        }
        for p in all {
            if !p.is_file() {
                return Err(Error::BinaryMissing(p.display().to_string()));
            }
        }
        Ok(bins)
    }
}

/// A cargo command in this workspace.
pub fn cargo_command() -> std::process::Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    // Variables cargo sets for a test or `cargo run` process describe that
    // package, not this build; keep them out of the nested build.
    for (k, _) in std::env::vars_os() {
        if let Some(k) = k.to_str()
            && k.starts_with("CARGO_")
            && !matches!(k, "CARGO_HOME" | "CARGO_TARGET_DIR")
        {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(workspace_root());
    cmd
}

fn cargo_build(release: bool) -> Result<()> {
    let mut cmd = cargo_command();
    cmd.args([
        "build",
        "-p",
        "lvmpin-scheduler-extender",
        "-p",
        "lvmpin-provisioner",
        "-p",
        "lvmpin-cluster-controller",
        "--bins",
    ]);
    if release {
        cmd.arg("--release");
    }
    let shown = format!("{cmd:?}");
    let status = cmd.status().map_err(|e| Error::Command {
        command: shown.clone(),
        reason: e.to_string(),
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: shown,
            reason: status.to_string(),
        })
    }
}

/// A child process with its output in a log file; killed when dropped.
#[derive(Debug)]
pub struct ManagedProcess {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    pub log: PathBuf,
    child: Option<Child>,
}

impl ManagedProcess {
    pub fn spawn(
        name: &str,
        program: &Path,
        args: Vec<String>,
        envs: Vec<(String, String)>,
        log: PathBuf,
    ) -> Result<Self> {
        let mut p = ManagedProcess {
            name: name.to_string(),
            program: program.to_path_buf(),
            args,
            envs,
            log,
            child: None,
        };
        p.start()?;
        Ok(p)
    }

    /// Start (again) with the same arguments; output is appended to the log.
    pub fn start(&mut self) -> Result<()> {
        let open = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .map_err(|e| Error::io(&self.log, e))
        };
        let (out, err) = (open()?, open()?);
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Command {
                command: format!("{} {}", self.program.display(), self.args.join(" ")),
                reason: e.to_string(),
            })?;
        self.child = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// SIGKILL, as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// SIGTERM, then SIGKILL if still running after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if let Some(pid) = c.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(grace, c.wait()).await.is_err() {
            let _ = c.kill().await;
        }
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Peak resident set size (VmHWM) in KiB, from /proc.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        peak_rss_kib(self.pid()?)
    }

    /// Up to `lines` warning and error lines of the log, for failure messages.
    pub fn log_warnings(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .filter(|l| {
                !l.contains("METADATA-ONLY") && !l.contains("device-mapper is not available")
            })
            .collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The last `lines` lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// VmHWM of a process in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM")
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// A free loopback port for a process started later, chosen below the
/// kernel's ephemeral range (`net.ipv4.ip_local_port_range`).
///
/// The port is released before the process binds it. A port from the
/// ephemeral range would be handed straight back by the kernel to the next
/// `bind(…:0)` or outgoing connection, such as an agent's metrics endpoint
/// started in between, which then answers in place of the process meant to
/// listen there. Below that range only another caller of this function can
/// take it, and the start is picked at random to make that unlikely.
pub fn free_port() -> Result<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    let span = u64::from(high - low);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(std::process::id()) << 32)
        ^ u64::from(PORT_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let start = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) % span;
    for i in 0..span.min(512) {
        let port = low + ((start + i * 7919) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::io(
        format!("127.0.0.1:{low}-{high}"),
        std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "no free port below the ephemeral range",
        ),
    ))
}

static PORT_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// User plus system CPU time of process `pid`, in microseconds
/// (`/proc/<pid>/stat` fields 14 and 15, in clock ticks).
pub fn cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields count from after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    Some(ticks * 1_000_000 / u64::try_from(hz).ok()?.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_below_the_ephemeral_range_and_bindable() {
        let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
            .unwrap_or(32768);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let port = free_port().unwrap();
            assert!((10_000..low.max(10_001)).contains(&port), "{port}");
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
            seen.insert(port);
        }
        // Successive calls do not walk the same few ports.
        assert!(seen.len() > 10, "{seen:?}");
    }
}
