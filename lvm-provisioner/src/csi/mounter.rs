//! The edge where the node service touches the kernel and filesystem tools:
//! mount table, mount(2)/umount2(2), blkid, mkfs, and online grow.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags};

use super::blkid::{self, FsType, Probe};
use super::command;
use super::error::{Error, Result};
use super::mountinfo::{self, MountInfo};
use super::options::MountOptions;

pub trait Mounter: Send + Sync {
    fn mounts(&self) -> Result<Vec<MountInfo>>;
    fn mount(&self, device: &Path, target: &Path, fs: FsType, opts: &MountOptions) -> Result<()>;
    /// Bind-mounts a directory or a device node; read-only needs a second remount.
    fn bind(&self, source: &Path, target: &Path, read_only: bool) -> Result<()>;
    /// Unmounts the topmost mount at `target`; not mounted is not an error.
    fn unmount(&self, target: &Path) -> Result<()>;
    fn probe(&self, device: &Path) -> Result<Probe>;
    fn format(&self, device: &Path, fs: FsType) -> Result<()>;
    /// Grows a mounted filesystem to fill its device.
    fn grow(&self, device: &Path, mount_point: &Path, fs: FsType) -> Result<()>;
}

/// The real thing: syscalls through nix and tools through argv with timeouts.
#[derive(Debug, Clone)]
pub struct SysMounter {
    /// For blkid and other quick probes.
    pub probe_timeout: Duration,
    /// For mkfs and grow, which scale with device size.
    pub format_timeout: Duration,
}

impl Default for SysMounter {
    fn default() -> Self {
        Self {
            probe_timeout: Duration::from_secs(30),
            format_timeout: Duration::from_secs(300),
        }
    }
}

fn os(p: &Path) -> OsString {
    p.as_os_str().to_owned()
}

impl Mounter for SysMounter {
    fn mounts(&self) -> Result<Vec<MountInfo>> {
        let path = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        mountinfo::parse(&text).map_err(|e| Error::Backend(e.to_string()))
    }

    fn mount(&self, device: &Path, target: &Path, fs: FsType, opts: &MountOptions) -> Result<()> {
        let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
        nix::mount::mount(Some(device), target, Some(fs.as_str()), opts.flags, data)
            .map_err(|e| Error::sys("mount onto", target, e))
    }

    fn bind(&self, source: &Path, target: &Path, read_only: bool) -> Result<()> {
        nix::mount::mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::sys("bind-mount onto", target, e))?;
        if read_only {
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            if let Err(e) =
                nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
            {
                // Never leave a writable mount where a read-only one was asked for.
                let _ = nix::mount::umount2(target, MntFlags::empty());
                return Err(Error::sys("remount read-only", target, e));
            }
        }
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<()> {
        match nix::mount::umount2(target, MntFlags::empty()) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
            Err(e) => Err(Error::sys("unmount", target, e)),
        }
    }

    fn probe(&self, device: &Path) -> Result<Probe> {
        let args = [
            OsString::from("-p"),
            "-o".into(),
            "export".into(),
            os(device),
        ];
        let out = command::run_unchecked("blkid", &args, self.probe_timeout)?;
        blkid::interpret(&device.to_string_lossy(), &out)
    }

    fn format(&self, device: &Path, fs: FsType) -> Result<()> {
        // No force flags: if a signature appeared since the probe, mkfs refuses.
        let (program, args) = match fs {
            FsType::Ext4 => ("mkfs.ext4", vec![OsString::from("-q"), os(device)]),
            FsType::Xfs => ("mkfs.xfs", vec![OsString::from("-q"), os(device)]),
        };
        command::run(program, &args, self.format_timeout).map(drop)
    }

    fn grow(&self, device: &Path, mount_point: &Path, fs: FsType) -> Result<()> {
        let (program, args) = match fs {
            FsType::Ext4 => ("resize2fs", vec![os(device)]),
            FsType::Xfs => ("xfs_growfs", vec![OsString::from("-d"), os(mount_point)]),
        };
        command::run(program, &args, self.format_timeout).map(drop)
    }
}

/// Unmounts until nothing is mounted at `path` (a path can carry stacked
/// mounts after a crash mid-operation). Not mounted at all is success.
pub fn unmount_all(mounter: &dyn Mounter, path: &Path) -> Result<()> {
    const MAX_LAYERS: usize = 8;
    for _ in 0..MAX_LAYERS {
        if mountinfo::mount_at(&mounter.mounts()?, path).is_none() {
            return Ok(());
        }
        mounter.unmount(path)?;
    }
    Err(Error::FailedPrecondition(format!(
        "{} is still mounted after {MAX_LAYERS} unmounts",
        path.display()
    )))
}
