//! NodeStageVolume / NodeUnstageVolume: activate, format only if blank, mount
//! at the staging path, and grow an existing filesystem to fill its device.

use std::path::Path;

use tracing::{debug, info};

use super::blkid::{FsType, Probe};
use super::device;
use super::error::{Error, Result};
use super::mounter::{Mounter, unmount_all};
use super::mountinfo::{DevNum, MountInfo, mount_at, mounts_of};
use super::options;
use super::request::{Access, Stage, Unmount};
use super::source::{VolumeInfo, VolumeSource};
use super::volume_id;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StagePlan {
    AlreadyStaged,
    Mount,
}

/// Decides from the mount table alone whether staging is done, needed, or
/// conflicts with what is mounted.
pub fn plan(
    mounts: &[MountInfo],
    staging: &Path,
    dev: DevNum,
    fs: Option<FsType>,
    read_only: bool,
) -> Result<StagePlan> {
    let wanted = fs.map_or("any filesystem", FsType::as_str);
    let differs = |mounted: &str| fs.is_some_and(|f| f.as_str() != mounted);
    if let Some(m) = mount_at(mounts, staging) {
        if m.dev != dev {
            return Err(Error::Incompatible(format!(
                "{} already has another filesystem ({} from {}) mounted",
                staging.display(),
                m.fs_type,
                m.source
            )));
        }
        if differs(&m.fs_type) || m.read_only() != read_only {
            return Err(Error::Incompatible(format!(
                "{} is already staged as {} {} but {} {} was asked for",
                staging.display(),
                m.fs_type,
                if m.read_only() { "ro" } else { "rw" },
                wanted,
                if read_only { "ro" } else { "rw" },
            )));
        }
        return Ok(StagePlan::AlreadyStaged);
    }
    for m in mounts_of(mounts, dev) {
        if differs(&m.fs_type) {
            return Err(Error::Incompatible(format!(
                "device is already mounted at {} as {}, not {wanted}",
                m.mount_point.display(),
                m.fs_type
            )));
        }
        // A second read-only mount cannot promise read-only while a writer exists.
        if read_only && !m.read_only() {
            return Err(Error::Incompatible(format!(
                "device is already mounted read-write at {}",
                m.mount_point.display()
            )));
        }
    }
    Ok(StagePlan::Mount)
}

/// Whether NodeStage grows the filesystem to its device after mounting.
///
/// A restore or clone larger than its source is an LV larger than the
/// filesystem it holds, and kubelet calls NodeExpandVolume only after a
/// claim's resize, never for a restore, so stage is the one place it can
/// happen. TopoLVM grows on every publish (topolvm/topolvm
/// `internal/driver/node.go`, `nodePublishFilesystemVolume`, with
/// k8s.io/mount-utils `resizefs_linux.go` `ResizeFs.NeedResize`/`Resize`).
/// NeedResize answers yes for any ext4 or xfs on a writable device and lets
/// resize2fs and xfs_growfs decide, which do nothing to a filesystem that
/// already fills its device; lvmpin does the same through the grow
/// NodeExpandVolume uses (`Mounter::grow`). A filesystem just made by mkfs
/// fills its device, and a read-only stage must not write.
///
/// The grow runs after the mount, online, for ext4 too: resize2fs on an
/// unmounted ext4 that has been mounted since its last check insists on
/// `e2fsck -f` first, a full read of the filesystem on every stage, while
/// the online grow needs only the mount (and CAP_SYS_RESOURCE, which the
/// privileged agent has).
pub fn grows_on_stage(formatted_now: bool, read_only: bool) -> bool {
    !formatted_now && !read_only
}

pub fn stage(source: &dyn VolumeSource, mounter: &dyn Mounter, req: &Stage) -> Result<()> {
    let id = volume_id::parse(&req.volume_id)?;
    let device = match source.lookup(&id)? {
        None => return Err(Error::VolumeNotFound(req.volume_id.clone())),
        Some(VolumeInfo {
            device: Some(d), ..
        }) => d,
        Some(_) => source.activate(&id)?,
    };
    let (fs, options) = match &req.access {
        // Raw block volumes are bound straight from the device node at publish.
        Access::Block => return Ok(()),
        Access::Mount { fs, options } => (*fs, options),
    };
    let dev = device::block_dev_num(&device)?
        .ok_or_else(|| Error::Backend(format!("{} is not a block device", device.display())))?;
    let mounts = mounter.mounts()?;
    if plan(&mounts, &req.staging, dev, fs, options.read_only())? == StagePlan::AlreadyStaged {
        // A grow that failed after an earlier mount is retried by kubelet's
        // next NodeStage, which lands here.
        let staged = mount_at(&mounts, &req.staging).and_then(|m| FsType::parse(&m.fs_type));
        if let Some(found) = staged
            && grows_on_stage(false, options.read_only())
        {
            grow(mounter, &device, req, found)?;
        }
        return Ok(());
    }
    std::fs::create_dir_all(&req.staging)
        .map_err(|e| Error::io("create staging directory", &req.staging, e))?;
    let (fs, formatted_now) = match mounter.probe(&device)? {
        Probe::Blank if options.read_only() => {
            return Err(Error::FailedPrecondition(format!(
                "{} is blank and cannot be formatted for a read-only stage",
                device.display()
            )));
        }
        Probe::Blank => {
            let fs = fs.unwrap_or(FsType::Ext4);
            info!(volume = %id, device = %device.display(), %fs, "device is blank: formatting");
            mounter.format(&device, fs)?;
            (fs, true)
        }
        Probe::Filesystem(t) => match (fs, FsType::parse(&t)) {
            (Some(want), Some(found)) if want == found => (found, false),
            (None, Some(found)) => (found, false),
            (Some(want), _) => {
                return Err(Error::FailedPrecondition(format!(
                    "{} already holds a {t} filesystem but {want} was asked for; it will not be reformatted",
                    device.display()
                )));
            }
            (None, None) => {
                return Err(Error::FailedPrecondition(format!(
                    "{} holds a {t} filesystem, which this driver does not mount",
                    device.display()
                )));
            }
        },
        Probe::Other(t) => {
            return Err(Error::FailedPrecondition(format!(
                "{} holds {t}; refusing to format or mount it",
                device.display()
            )));
        }
    };
    let options = options::for_filesystem(options, fs);
    mounter.mount(&device, &req.staging, fs, &options)?;
    if grows_on_stage(formatted_now, options.read_only()) {
        grow(mounter, &device, req, fs)?;
    }
    info!(volume = %id, staging = %req.staging.display(), "staged");
    Ok(())
}

/// Grows the filesystem mounted (read-write) at the staging path online; a
/// failure fails the stage, so kubelet retries it rather than start a pod on
/// a filesystem smaller than its claim.
fn grow(mounter: &dyn Mounter, device: &Path, req: &Stage, fs: FsType) -> Result<()> {
    mounter.grow(device, &req.staging, fs)?;
    debug!(volume = %req.volume_id, %fs, "filesystem fills its device");
    Ok(())
}

/// Unmounts the staging path; an absent or unmounted path is success.
pub fn unstage(mounter: &dyn Mounter, req: &Unmount) -> Result<()> {
    unmount_all(mounter, &req.path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csi::mountinfo::parse;

    const DEV: DevNum = DevNum {
        major: 253,
        minor: 3,
    };

    fn table(text: &str) -> Vec<MountInfo> {
        parse(text).unwrap()
    }

    #[test]
    fn grows_only_an_existing_writable_filesystem() {
        let cases = [
            ((false, false), true),
            ((true, false), false),
            ((false, true), false),
            ((true, true), false),
        ];
        for ((formatted_now, read_only), want) in cases {
            assert_eq!(
                grows_on_stage(formatted_now, read_only),
                want,
                "formatted now {formatted_now}, read-only {read_only}"
            );
        }
    }

    #[test]
    fn cases() {
        let st = Path::new("/st");
        let empty = table("");
        let staged = table("1 0 253:3 / /st rw - ext4 /dev/x rw\n");
        let staged_ro = table("1 0 253:3 / /st ro - ext4 /dev/x rw\n");
        let other = table("1 0 7:1 / /st rw - ext4 /dev/loop1 rw\n");
        let elsewhere = table("1 0 253:3 / /old rw - ext4 /dev/x rw\n");
        let elsewhere_xfs = table("1 0 253:3 / /old rw - xfs /dev/x rw\n");
        type Case<'a> = (
            &'a [MountInfo],
            Option<FsType>,
            bool,
            Result<StagePlan, &'static str>,
        );
        let cases: Vec<Case> = vec![
            (&empty, Some(FsType::Ext4), false, Ok(StagePlan::Mount)),
            (
                &staged,
                Some(FsType::Ext4),
                false,
                Ok(StagePlan::AlreadyStaged),
            ),
            (&staged, Some(FsType::Xfs), false, Err("already staged")),
            (&staged, Some(FsType::Ext4), true, Err("already staged")),
            (
                &staged_ro,
                Some(FsType::Ext4),
                true,
                Ok(StagePlan::AlreadyStaged),
            ),
            (&other, Some(FsType::Ext4), false, Err("another filesystem")),
            (&elsewhere, Some(FsType::Ext4), false, Ok(StagePlan::Mount)),
            (&elsewhere, Some(FsType::Ext4), true, Err("read-write")),
            (&elsewhere_xfs, Some(FsType::Ext4), false, Err("as xfs")),
            // No filesystem named: whatever ext4/xfs is there is fine.
            (&staged, None, false, Ok(StagePlan::AlreadyStaged)),
            (&elsewhere_xfs, None, false, Ok(StagePlan::Mount)),
            (&staged, None, true, Err("any filesystem ro")),
        ];
        for (i, (mounts, fs, ro, want)) in cases.into_iter().enumerate() {
            match (plan(mounts, st, DEV, fs, ro), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "case {i}"),
                (Err(Error::Incompatible(m)), Err(w)) => assert!(m.contains(w), "case {i}: {m}"),
                (got, w) => panic!("case {i}: got {got:?}, want {w:?}"),
            }
        }
    }
}
