//! Running a program in the project's QEMU guest (hack/vm/run.sh, see
//! hack/vm/README.md): building the cargo targets it needs and collecting
//! the console.

use std::path::{Path, PathBuf};
use std::process::Command;

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
/// in /usr/sbin, and `guest_args` after `--`.
pub fn run_vm(
    guest: &Path,
    extras: &[PathBuf],
    timeout_s: u32,
    disk_mib: u32,
    guest_args: &[&str],
) -> VmRun {
    let mut cmd = Command::new("bash");
    cmd.arg(workspace_root().join("hack/vm/run.sh"))
        .arg("--guest")
        .arg(guest);
    for x in extras {
        cmd.arg("--extra").arg(x);
    }
    let out = cmd
        .args(["--timeout", &timeout_s.to_string()])
        .args(["--disk-mib", &disk_mib.to_string(), "--"])
        .args(guest_args)
        .output()
        .expect("run hack/vm/run.sh");
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    VmRun {
        success: out.status.success() && console.contains("VM TEST: PASS"),
        console,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
