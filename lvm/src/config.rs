//! How to run lvm2 on this node.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether the kernel's device-mapper is usable. Without it lvm can still edit
/// metadata (create, extend, remove linear LVs, tags, reports) but cannot
/// activate anything, so thin volumes and the CSI node service cannot work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceMapper {
    /// Open `/dev/mapper/control` once, when `Lvm::new` runs.
    #[default]
    Detect,
    Present,
    Absent,
}

pub const DEVICE_MAPPER_CONTROL: &str = "/dev/mapper/control";

/// True when the kernel's device-mapper answers. The node existing is not enough:
/// libdevmapper creates `/dev/mapper/control` itself whenever an lvm command runs
/// without `--driverloaded n`, and opening it then fails with ENODEV.
pub fn device_mapper_available() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(Path::new(DEVICE_MAPPER_CONTROL))
        .is_ok()
}

impl DeviceMapper {
    pub(crate) fn is_present(self) -> bool {
        match self {
            DeviceMapper::Detect => device_mapper_available(),
            DeviceMapper::Present => true,
            DeviceMapper::Absent => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LvmConfig {
    /// The `lvm` multi-call binary; subcommands are its first argument.
    pub binary: PathBuf,
    /// Upper bound for any single lvm command.
    pub timeout: Duration,
    pub device_mapper: DeviceMapper,
}

impl Default for LvmConfig {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("lvm"),
            timeout: Duration::from_secs(60),
            device_mapper: DeviceMapper::Detect,
        }
    }
}
