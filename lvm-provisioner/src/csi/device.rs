//! Facts about device nodes and mounted filesystems read straight from the
//! kernel (stat, statvfs, seek): no commands involved.

use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::error::{Error, Result};
use super::mountinfo::DevNum;

/// The device number a block-device node (or a bind mount of one) refers to;
/// `None` when the path is missing or not a block device.
pub fn block_dev_num(path: &Path) -> Result<Option<DevNum>> {
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_block_device() => Ok(Some(DevNum {
            major: nix::sys::stat::major(m.rdev()),
            minor: nix::sys::stat::minor(m.rdev()),
        })),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("stat", path, e)),
    }
}

/// Size of a block device in bytes (seeking to its end needs no ioctl).
pub fn block_size_bytes(path: &Path) -> Result<u64> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    f.seek(SeekFrom::End(0))
        .map_err(|e| Error::io("measure", path, e))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub bytes_total: u64,
    pub bytes_available: u64,
    pub bytes_used: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
    pub inodes_used: u64,
}

/// Capacity as an unprivileged writer sees it: `available` excludes the root
/// reserve, `used` is everything not free.
pub fn usage(path: &Path) -> Result<Usage> {
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| Error::sys("statvfs", path, e))?;
    let frag = s.fragment_size() as u64;
    let blocks = s.blocks() as u64;
    let free = s.blocks_free() as u64;
    Ok(Usage {
        bytes_total: blocks * frag,
        bytes_available: s.blocks_available() as u64 * frag,
        bytes_used: blocks.saturating_sub(free) * frag,
        inodes_total: s.files() as u64,
        inodes_free: s.files_free() as u64,
        inodes_used: (s.files() as u64).saturating_sub(s.files_free() as u64),
    })
}
