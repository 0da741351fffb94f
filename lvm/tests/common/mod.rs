//! The lvm layer's view of the shared loop-device VG (lvmpin-testkit): an
//! `Lvm` for it, with the real lvm2 binary or a stand-in script.
#![allow(dead_code)]

use std::path::Path;

use lvmpin_lvm::{Lvm, LvmConfig};
pub use lvmpin_testkit::LoopVg as TestVg;
#[allow(unused_imports)]
pub use lvmpin_testkit::loop_vg::{lvm as lvm_cmd, metadata_only_here};

pub trait VgLvm {
    fn lvm(&self) -> Lvm;
    fn lvm_with_binary(&self, binary: &Path) -> Lvm;
}

impl VgLvm for TestVg {
    fn lvm(&self) -> Lvm {
        Lvm::new(LvmConfig::default())
    }

    fn lvm_with_binary(&self, binary: &Path) -> Lvm {
        Lvm::new(LvmConfig {
            binary: binary.to_path_buf(),
            ..LvmConfig::default()
        })
    }
}

/// A VG of `mib` MiB for the lvm layer's tests.
pub fn test_vg(mib: u64) -> TestVg {
    TestVg::new("lvm-test", mib)
}
