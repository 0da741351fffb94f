//! NodeExpandVolume: grow the filesystem online to fill its (already
//! extended) LV.

use tracing::info;

use super::blkid::FsType;
use super::device;
use super::error::{Error, Result};
use super::mounter::Mounter;
use super::mountinfo::{mount_at, mounts_of};
use super::request::Expand;
use super::source::VolumeSource;
use super::volume_id;

/// Returns the volume's capacity in bytes after growing.
pub fn expand(source: &dyn VolumeSource, mounter: &dyn Mounter, req: &Expand) -> Result<u64> {
    let id = volume_id::parse(&req.volume_id)?;
    let Some(info) = source.lookup(&id)? else {
        return Err(Error::VolumeNotFound(req.volume_id.clone()));
    };
    // The agent extends the LV; until it has, the filesystem cannot reach the size.
    if req.required_bytes > info.size_bytes {
        return Err(Error::OutOfRange(format!(
            "volume {id} is {} bytes, less than the required {}; the LV has not been extended yet",
            info.size_bytes, req.required_bytes
        )));
    }
    if req.limit_bytes > 0 && info.size_bytes > req.limit_bytes {
        return Err(Error::OutOfRange(format!(
            "volume {id} is {} bytes, above the limit {}",
            info.size_bytes, req.limit_bytes
        )));
    }
    let Some(device) = info.device else {
        return Err(Error::FailedPrecondition(format!(
            "volume {id} is not active, so it is not in use on this node"
        )));
    };
    let dev = device::block_dev_num(&device)?
        .ok_or_else(|| Error::Backend(format!("{} is not a block device", device.display())))?;
    if req.block == Some(true) || device::block_dev_num(&req.path)? == Some(dev) {
        // A raw device has nothing to grow: it already is the LV.
        return Ok(info.size_bytes);
    }
    let mounts = mounter.mounts()?;
    let at = match mount_at(&mounts, &req.path) {
        Some(m) if m.dev == dev => m,
        _ => {
            return Err(Error::NotAtPath {
                volume: req.volume_id.clone(),
                path: req.path.clone(),
            });
        }
    };
    let fs = FsType::parse(&at.fs_type).ok_or_else(|| {
        Error::FailedPrecondition(format!("cannot grow a {} filesystem", at.fs_type))
    })?;
    // xfs_growfs needs a writable mount point; the publish bind may be read-only.
    let mount_point = mounts_of(&mounts, dev)
        .find(|m| !m.read_only() && m.root == "/")
        .map_or(at.mount_point.clone(), |m| m.mount_point.clone());
    mounter.grow(&device, &mount_point, fs)?;
    info!(volume = %id, %fs, size_bytes = info.size_bytes, "filesystem grown");
    Ok(info.size_bytes)
}
