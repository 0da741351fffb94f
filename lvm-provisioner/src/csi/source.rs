//! Where volumes come from. The node service only needs to find a volume,
//! make its device node appear, and know whether the backend works at all;
//! `lvmpin_lvm::Lvm` is the real implementation, tests use plain block devices.

use std::path::PathBuf;

use lvmpin_api::VolumeId;

use super::error::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub size_bytes: u64,
    /// The device node, when the volume is active.
    pub device: Option<PathBuf>,
}

pub trait VolumeSource: Send + Sync {
    /// Looks the volume up without changing anything.
    fn lookup(&self, id: &VolumeId) -> Result<Option<VolumeInfo>>;
    /// Makes the device node exist (activating the LV if needed) and returns it.
    fn activate(&self, id: &VolumeId) -> Result<PathBuf>;
    /// Where the volume's device node appears once active. Stats use it to
    /// recognise a mount of a volume whose LV has since disappeared.
    fn device_path(&self, id: &VolumeId) -> PathBuf;
    /// Ok when the backend can serve volumes (used by Identity.Probe).
    fn probe(&self) -> Result<()>;
}
