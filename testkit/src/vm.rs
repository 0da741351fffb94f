//! Running a program in the project's QEMU guest (hack/vm/run.sh, see
//! hack/vm/README.md): building the cargo targets it needs and collecting
//! the console.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ sits in the workspace")
        .to_path_buf()
}

/// `CARGO_TARGET_DIR`, or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds one target (`kind` is `--bin` or `--example`) of `package` with
/// the cargo running the test, and returns the executable cargo reports.
pub fn cargo_executable(package: &str, kind: &str, name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "-p", package, kind, name])
        .arg("--message-format=json-render-diagnostics")
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "building {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"]["name"] == name)
        .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
        .next_back()
        .unwrap_or_else(|| panic!("cargo reported no executable for {name}"))
}

pub struct VmRun {
    /// The guest wrote status 0 and the script printed its PASS verdict.
    pub success: bool,
    pub console: String,
    pub stderr: String,
}

/// Boots the guest with `guest` as its program, each of `extras` beside it
/// in /usr/sbin, and `guest_args` after `--`; returns when it powers off.
pub fn run_vm(
    guest: &Path,
    extras: &[PathBuf],
    timeout_s: u32,
    disk_mib: u32,
    guest_args: &[&str],
) -> VmRun {
    VmOptions {
        timeout_s,
        disk_mib,
        hostfwd: None,
    }
    .spawn(guest, extras, guest_args)
    .wait()
}

pub struct VmOptions {
    pub timeout_s: u32,
    pub disk_mib: u32,
    /// `(host port, guest port)`: a user-mode network in which the guest
    /// reaches the host's loopback as 10.0.2.2, and the host reaches the
    /// guest port on `127.0.0.1:host port`.
    pub hostfwd: Option<(u16, u16)>,
}

/// A guest booting or running in the background.
pub struct VmProcess {
    child: Child,
    console: tempfile::NamedTempFile,
    stderr: tempfile::NamedTempFile,
}

impl VmOptions {
    pub fn spawn(&self, guest: &Path, extras: &[PathBuf], guest_args: &[&str]) -> VmProcess {
        let console = tempfile::NamedTempFile::new().expect("console file");
        let stderr = tempfile::NamedTempFile::new().expect("stderr file");
        let mut cmd = Command::new("bash");
        cmd.arg(workspace_root().join("hack/vm/run.sh"))
            .arg("--guest")
            .arg(guest);
        for x in extras {
            cmd.arg("--extra").arg(x);
        }
        if let Some((host, guest)) = self.hostfwd {
            cmd.args(["--hostfwd", &format!("{host}:{guest}")]);
        }
        let child = cmd
            .args(["--timeout", &self.timeout_s.to_string()])
            .args(["--disk-mib", &self.disk_mib.to_string(), "--"])
            .args(guest_args)
            .stdout(console.reopen().expect("console file"))
            .stderr(stderr.reopen().expect("stderr file"))
            .spawn()
            .expect("run hack/vm/run.sh");
        VmProcess {
            child,
            console,
            stderr,
        }
    }
}

impl VmProcess {
    /// What the guest has printed so far (run.sh prints the console when
    /// QEMU exits).
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.console.path()).unwrap_or_default()
    }

    /// Whether run.sh is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the guest to power off (or run.sh's timeout).
    pub fn wait(mut self) -> VmRun {
        let status = self.child.wait().expect("wait for hack/vm/run.sh");
        let console = self.console();
        VmRun {
            success: status.success() && console.contains("VM TEST: PASS"),
            console,
            stderr: std::fs::read_to_string(self.stderr.path()).unwrap_or_default(),
        }
    }
}

impl Drop for VmProcess {
    /// SIGTERM lets run.sh's trap kill QEMU and remove its scratch files.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = self.child.wait();
        }
    }
}
