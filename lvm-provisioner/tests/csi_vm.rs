//! The CSI node service on a real kernel with device-mapper: boots a Debian
//! kernel under QEMU (hack/vm/run.sh, see hack/vm/README.md) and runs the `csi_vm_check`
//! example inside it, which drives `csi::serve` backed by real lvm2 over gRPC
//! (stage ext4/xfs, publish, I/O, stats, lvextend + NodeExpandVolume,
//! unpublish, unstage, restage without reformatting, block mode).
//!
//! This test never skips: missing QEMU, kernel package or tools fail it.
//! Runs as root; ~1 minute on 2 cores once target/vm-cache is warm.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate lives in the workspace")
        .to_path_buf()
}

/// Builds the in-guest program with the same cargo and returns its path.
fn build_guest() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "-p",
            "lvmpin-provisioner",
            "--example",
            "csi_vm_check",
            "--message-format=json-render-diagnostics",
        ])
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "building the guest program failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"]["name"] == "csi_vm_check")
        .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
        .next_back()
        .expect("cargo reported no executable for csi_vm_check")
}

#[test]
fn csi_node_service_on_a_real_kernel() {
    let guest = build_guest();
    let script = workspace_root().join("hack/vm/run.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--guest")
        .arg(&guest)
        .args(["--timeout", "300", "--", "--bench-rounds", "3"])
        .output()
        .expect("run hack/vm/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success() && stdout.contains("VM TEST: PASS"),
        "VM test failed (exit {:?}); see the console above",
        out.status.code()
    );
    for check in [
        "ext4: filesystem grew",
        "xfs: filesystem grew",
        "block: create LV",
    ] {
        assert!(stdout.contains(check), "guest never reached {check:?}");
    }
}
