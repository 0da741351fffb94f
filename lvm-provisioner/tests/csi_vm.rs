//! The CSI driver on a real kernel with device-mapper: boots a Debian kernel
//! under QEMU (hack/vm/run.sh, see hack/vm/README.md) with the real
//! `lvmpin-agent` binary (`--csi-only`, production socket layout, a VG on a
//! virtio disk) and drives it from the `csi_vm_check` example over gRPC:
//! Controller create/expand/delete, stage and publish for ext4, xfs and
//! block, online grow, restage without reformatting, blank new volumes,
//! kubelet registration, hostile input, and upstream csi-sanity for ext4, xfs
//! and block. The guest's snapshot checks run in their own boot
//! (tests/snapshot_vm.rs), so the two tests can run side by side.
//!
//! This test never skips: missing QEMU, kernel package, Go or tools fail it.
//! Runs as root; several minutes on 2 cores (software emulation).

mod support;

#[test]
fn csi_driver_on_a_real_kernel() {
    let run = support::vm::run(1500, &["--bench-rounds", "3", "--skip-snapshots"]);
    println!("{}", run.console);
    eprintln!("{}", run.stderr);
    assert!(run.success, "VM test failed; see the console above");
    for check in [
        "ext4: filesystem grew",
        "xfs: filesystem grew",
        "block: stage and publish",
        "wipe: a new volume on old extents is blank",
        "registration: readiness follows kubelet's verdict",
        "hostile: refused",
        "csi-sanity ext4: passed",
        "csi-sanity xfs: passed",
        "csi-sanity block: passed",
    ] {
        assert!(run.console.contains(check), "guest never reached {check:?}");
    }
}
