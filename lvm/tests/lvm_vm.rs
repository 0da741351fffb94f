//! The LVM layer with real device-mapper: boots the project's QEMU guest
//! (hack/vm/run.sh, see hack/vm/README.md) and runs the `lvm_vm_check` example inside it on a
//! virtio disk (active LVs, wiped signatures, thin volumes with real data%,
//! removal of active LVs, thin snapshots with restore and clone). Fails,
//! never skips, when the VM cannot run.

use lvmpin_testkit::vm::{cargo_executable, run_vm};

#[test]
fn lvm_layer_on_a_real_kernel() {
    let guest = cargo_executable("lvmpin-lvm", "--example", "lvm_vm_check");
    let run = run_vm(&guest, &[], 300, 512, &[]);
    let console = &run.console;
    // Only our lines and the verdict; the kernel log is noise here.
    for line in console
        .lines()
        .filter(|l| l.starts_with("lvm-vm:") || l.contains("VM TEST"))
    {
        println!("{line}");
    }
    assert!(run.success, "VM run failed:\n{console}\n{}", run.stderr);
    for step in [
        "linear LV active at /dev/vmvg/pvc-a",
        "idempotent create and owner conflict ok",
        "no old signature on a new LV",
        "thin LV in pool0",
        "thin LV extended and removed",
        "snapshot inactive with activation skip",
        "idempotent snapshot and owner conflict ok",
        "restore of snap-s1 holds the snapshot's data, grown to 128 MiB",
        "clone is independent of its source",
        "smaller restore refused",
        "snapshot of a linear LV refused",
        "snapshot survives its origin; restore from it still holds its data",
        "snapshot removal needs its owner; restores outlive it",
        "all checks passed",
    ] {
        assert!(console.contains(step), "the guest never reported {step:?}");
    }
}
