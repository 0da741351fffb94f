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
    /// For one mount(2) or umount2(2).
    pub syscall_timeout: Duration,
}

impl Default for SysMounter {
    fn default() -> Self {
        Self {
            probe_timeout: Duration::from_secs(30),
            format_timeout: Duration::from_secs(300),
            syscall_timeout: Duration::from_secs(60),
        }
    }
}

/// Runs a mount syscall with an upper bound. A syscall cannot be killed, so
/// one that hangs (a dead NFS server below a bind source, a wedged device)
/// is left on its own thread and the call fails with a timeout: the volume's
/// guard is released and kubelet's retry gets a clear error instead of a
/// call that never returns.
pub fn bounded_syscall<T: Send + 'static>(
    what: &'static str,
    target: &Path,
    timeout: Duration,
    call: impl FnOnce() -> nix::Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("mount-syscall".into())
        .spawn(move || {
            let _ = tx.send(call());
        })
        .map_err(|e| Error::io("start a thread for", target, e))?;
    match rx.recv_timeout(timeout) {
        Ok(result) => result.map_err(|e| Error::sys(what, target, e)),
        Err(_) => Err(Error::CommandTimeout {
            command: format!("{what} {}", target.display()),
            timeout,
        }),
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
        let (device, at) = (device.to_path_buf(), target.to_path_buf());
        let (flags, data) = (opts.flags, opts.data.clone());
        bounded_syscall("mount onto", target, self.syscall_timeout, move || {
            let data = (!data.is_empty()).then_some(data.as_str());
            nix::mount::mount(Some(&device), &at, Some(fs.as_str()), flags, data)
        })
    }

    fn bind(&self, source: &Path, target: &Path, read_only: bool) -> Result<()> {
        let (from, at) = (source.to_path_buf(), target.to_path_buf());
        bounded_syscall("bind-mount onto", target, self.syscall_timeout, move || {
            nix::mount::mount(
                Some(&from),
                &at,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        })?;
        if read_only {
            let at = target.to_path_buf();
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            let remounted = bounded_syscall(
                "remount read-only",
                target,
                self.syscall_timeout,
                move || nix::mount::mount(None::<&str>, &at, None::<&str>, flags, None::<&str>),
            );
            if let Err(e) = remounted {
                // Never leave a writable mount where a read-only one was asked for.
                let _ = self.unmount(target);
                return Err(e);
            }
        }
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<()> {
        let at = target.to_path_buf();
        bounded_syscall(
            "unmount",
            target,
            self.syscall_timeout,
            move || match nix::mount::umount2(&at, MntFlags::empty()) {
                Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
                other => other,
            },
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hung_syscall_times_out_and_a_quick_one_answers() {
        let started = std::time::Instant::now();
        let hung = bounded_syscall(
            "mount onto",
            Path::new("/t"),
            Duration::from_millis(50),
            || {
                std::thread::sleep(Duration::from_secs(5));
                Ok(())
            },
        );
        assert!(
            matches!(hung, Err(Error::CommandTimeout { .. })),
            "{hung:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        let quick = bounded_syscall("unmount", Path::new("/t"), Duration::from_secs(5), || Ok(7));
        assert_eq!(quick.unwrap(), 7);
        let failed = bounded_syscall("unmount", Path::new("/t"), Duration::from_secs(5), || {
            Err::<(), _>(nix::Error::EBUSY)
        });
        assert!(matches!(failed, Err(Error::Sys { .. })), "{failed:?}");
    }
}
