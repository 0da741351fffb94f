//! Stage and publish latency of the CSI node service for ext4 and xfs,
//! measured inside the QEMU guest (software-emulated CPU: the figures are for
//! TCG, several times slower than hardware). Prints the guest's BENCH lines.
//!
//!   cargo bench -p lvmpin-provisioner --bench csi_vm
//!
//! Needs root, Go (for csi-sanity, which the guest carries but skips here)
//! and the packages of hack/vm/run.sh.

#[path = "../tests/support/vm.rs"]
mod vm;

fn main() {
    let rounds = std::env::var("LVMPIN_VM_BENCH_ROUNDS").unwrap_or_else(|_| "20".into());
    let run = vm::run(1500, &["--bench-rounds", &rounds, "--skip-sanity"]);
    if !run.success {
        eprintln!("{}\n{}", run.console, run.stderr);
        std::process::exit(1);
    }
    for line in run.console.lines().filter(|l| l.starts_with("BENCH ")) {
        println!("{line}");
    }
}
