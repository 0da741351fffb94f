//! Thin pool accounting on a real kernel: boots the QEMU guest (hack/vm/run.sh,
//! see hack/vm/README.md) with the `thin_vm_check` example, which fills a
//! real thin pool through the agent's `LvmBackend` and guard while the
//! extender's own filter places the claims from the agent's own LvmNode
//! status (see the example's docs). Fails, never skips, when the VM cannot
//! run.

use lvmpin_testkit::vm::{cargo_executable, run_vm};

#[test]
fn thin_accounting_on_a_real_pool() {
    let guest = cargo_executable("lvmpin-provisioner", "--example", "thin_vm_check");
    // 144 MiB: the 128 MiB pool, its metadata and spare fill the VG.
    let run = run_vm(&guest, &[], 400, 144, &[]);
    let console = &run.console;
    for line in console
        .lines()
        .filter(|l| l.starts_with("thin-vm:") || l.contains("VM TEST"))
    {
        println!("{line}");
    }
    assert!(run.success, "VM run failed:\n{console}\n{}", run.stderr);
    for step in [
        "ratio 1.5: 6 claims of 32 MiB placed",
        "ratio 1.5: placement refused the next: thin pool thinvg/pool0",
        "ratio 1.5: the agent's guard refused it too",
        "ratio 3: placed in the same pool",
        "data limit: placement refused: thin pool thinvg/pool0: data use",
        "data limit: the agent's guard refused it too",
        "all checks passed",
    ] {
        assert!(console.contains(step), "the guest never reported {step:?}");
    }
}
