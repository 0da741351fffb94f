//! Boots the QEMU guest of hack/vm/run.sh with the `csi_vm_check` driver, the
//! real `lvmpin-agent` binary and upstream csi-sanity (built by
//! hack/csi-sanity/build.sh), and returns the console. Shared by the VM test
//! and the VM bench.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate lives in the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds one cargo target with the same cargo and returns its executable.
fn build(kind: &str, name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "-p", "lvmpin-provisioner", kind, name])
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

/// Builds csi-sanity (a few seconds once Go's cache is warm).
fn csi_sanity() -> PathBuf {
    let out = Command::new("bash")
        .arg(workspace_root().join("hack/csi-sanity/build.sh"))
        .output()
        .expect("run hack/csi-sanity/build.sh");
    assert!(
        out.status.success(),
        "building csi-sanity failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target_dir().join("csi-sanity/csi-sanity")
}

pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the guest with `guest_args` after `--`.
pub fn run(timeout_s: u32, guest_args: &[&str]) -> Run {
    let guest = build("--example", "csi_vm_check");
    let agent = build("--bin", "lvmpin-agent");
    let sanity = csi_sanity();
    let out = Command::new("bash")
        .arg(workspace_root().join("hack/vm/run.sh"))
        .arg("--guest")
        .arg(&guest)
        .arg("--extra")
        .arg(&agent)
        .arg("--extra")
        .arg(&sanity)
        .args([
            "--timeout",
            &timeout_s.to_string(),
            "--disk-mib",
            "6144",
            "--",
        ])
        .args(guest_args)
        .output()
        .expect("run hack/vm/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Run {
        success: out.status.success() && stdout.contains("VM TEST: PASS"),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
