//! Thin snapshots, restores and clones on a real kernel: boots the QEMU guest
//! (hack/vm/run.sh, see hack/vm/README.md) with the real `lvmpin-agent`
//! (`--csi-only`) and runs only the snapshot checks of the `csi_vm_check`
//! example: the agent library's `LvmBackend` makes snapshots, restores and
//! clones, and their data is compared by checksum through the agent's
//! NodeStage/NodePublish mounts. The `csi_vm` test leaves these out.
//!
//! This test never skips: missing QEMU, kernel package or tools fail it.

mod support;

#[test]
fn snapshots_restores_and_clones_on_a_real_kernel() {
    let run = support::vm::run(900, &["--only-snapshots"]);
    for line in run
        .console
        .lines()
        .filter(|l| l.starts_with("GUEST:") || l.starts_with("BENCH") || l.contains("VM TEST"))
    {
        println!("{line}");
    }
    assert!(
        run.success,
        "VM test failed:\n{}\n{}",
        run.console, run.stderr
    );
    for check in support::vm::SNAPSHOT_CHECKS {
        assert!(run.console.contains(check), "guest never reached {check:?}");
    }
}
