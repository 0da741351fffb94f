//! Stage and publish latency of the CSI node service for ext4 and xfs,
//! measured inside the QEMU guest (software-emulated CPU: the figures are for
//! TCG, several times slower than hardware). Prints the guest's BENCH lines.
//!
//!   cargo bench -p lvmpin-provisioner --bench csi_vm
//!
//! Needs root and the packages of hack/vm/run.sh.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let rounds = std::env::var("LVMPIN_VM_BENCH_ROUNDS").unwrap_or_else(|_| "20".into());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "-p",
            "lvmpin-provisioner",
            "--example",
            "csi_vm_check",
            "--message-format=json-render-diagnostics",
        ])
        .output()
        .expect("cargo build");
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let guest: PathBuf = String::from_utf8_lossy(&build.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"]["name"] == "csi_vm_check")
        .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
        .next_back()
        .expect("csi_vm_check executable");
    let out = Command::new("bash")
        .arg(root.join("hack/vm/run.sh"))
        .arg("--guest")
        .arg(&guest)
        .args(["--timeout", "600", "--", "--bench-rounds", &rounds])
        .output()
        .expect("hack/vm/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        std::process::exit(1);
    }
    for line in stdout.lines().filter(|l| l.starts_with("BENCH ")) {
        println!("{line}");
    }
}
