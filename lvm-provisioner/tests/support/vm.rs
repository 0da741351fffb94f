//! Boots the QEMU guest with the `csi_vm_check` driver, the real
//! `lvmpin-agent` binary and upstream csi-sanity (built by
//! hack/csi-sanity/build.sh). Shared by the VM test and the VM bench.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use lvmpin_testkit::vm::{VmRun, cargo_executable, run_vm, target_dir, workspace_root};

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

/// Runs the guest with `guest_args` after `--`.
pub fn run(timeout_s: u32, guest_args: &[&str]) -> VmRun {
    let guest = cargo_executable("lvmpin-provisioner", "--example", "csi_vm_check");
    let agent = cargo_executable("lvmpin-provisioner", "--bin", "lvmpin-agent");
    run_vm(&guest, &[agent, csi_sanity()], timeout_s, 6144, guest_args)
}

/// What the guest prints once each snapshot check has passed.
pub const SNAPSHOT_CHECKS: [&str; 8] = [
    "snapshot: idempotent, owned, not a claim volume",
    "snapshot: restore holds exactly a.bin (sha256 matches) and not b.bin",
    "snapshot: clone is independent of its source",
    "snapshot: larger restore is a 256 MiB LV; NodeStage grew its filesystem",
    "snapshot: xfs restore and clone mounted beside their source; sha256 match",
    "snapshot: refused a snapshot of a linear volume",
    "snapshot: survives its origin's deletion; restore from it holds exactly a.bin",
    "snapshot: removal refused for the wrong owner; restores outlive the snapshot",
];
