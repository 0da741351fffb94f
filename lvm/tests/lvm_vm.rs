//! The LVM layer with real device-mapper: boots the project's QEMU guest
//! (hack/vm/run.sh, see hack/vm/README.md) and runs the `lvm_vm_check` example inside it on a
//! virtio disk (active LVs, wiped signatures, thin volumes with real data%,
//! removal of active LVs). Fails, never skips, when the VM cannot run.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("lvm/ sits in the workspace")
        .to_path_buf()
}

/// Builds the guest program with the cargo running this test and finds it in
/// cargo's JSON messages.
fn guest_program() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args(["build", "-p", "lvmpin-lvm", "--example", "lvm_vm_check"])
        .arg("--message-format=json-render-diagnostics")
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build --example lvm_vm_check failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["target"]["name"] == "lvm_vm_check")
        .filter_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .next_back()
        .expect("cargo names the lvm_vm_check executable")
}

#[test]
fn lvm_layer_on_a_real_kernel() {
    let guest = guest_program();
    let out = Command::new("bash")
        .arg(workspace().join("hack/vm/run.sh"))
        .arg("--guest")
        .arg(&guest)
        .args(["--timeout", "300", "--disk-mib", "512"])
        .output()
        .expect("hack/vm/run.sh runs");
    let console = String::from_utf8_lossy(&out.stdout);
    // Only our lines and the verdict; the kernel log is noise here.
    for line in console
        .lines()
        .filter(|l| l.starts_with("lvm-vm:") || l.contains("VM TEST"))
    {
        println!("{line}");
    }
    assert!(
        out.status.success() && console.contains("VM TEST: PASS"),
        "VM run failed (exit {:?}):\n{console}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "linear LV active at /dev/vmvg/pvc-a",
        "idempotent create and owner conflict ok",
        "no old signature on a new LV",
        "thin LV in pool0",
        "thin LV extended and removed",
        "all checks passed",
    ] {
        assert!(console.contains(step), "the guest never reported {step:?}");
    }
}
