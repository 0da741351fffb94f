//! NodePublishVolume / NodeUnpublishVolume: bind the staged filesystem (or
//! the device node itself, for block volumes) into the pod's target path.

use std::io::ErrorKind;
use std::path::Path;

use tracing::info;

use super::device;
use super::error::{Error, Result};
use super::mounter::{Mounter, unmount_all};
use super::mountinfo::{DevNum, MountInfo, mount_at, mounts_of};
use super::request::{Access, Publish, Unmount};
use super::source::VolumeSource;
use super::volume_id;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishPlan {
    AlreadyPublished,
    Bind,
}

/// Filesystem volumes: the staging mount must be there, and the target must
/// be either ours with the same read-only setting or not mounted at all.
pub fn plan_mount(mounts: &[MountInfo], req: &Publish, dev: DevNum) -> Result<PublishPlan> {
    match mount_at(mounts, &req.staging) {
        Some(m) if m.dev == dev => {}
        _ => {
            return Err(Error::FailedPrecondition(format!(
                "volume {} is not staged at {}",
                req.volume_id,
                req.staging.display()
            )));
        }
    }
    if let Some(m) = mount_at(mounts, &req.target) {
        return existing_target(m.dev == dev, m.read_only(), req);
    }
    if req.single_writer {
        let staging = super::paths::normalize(&req.staging);
        if let Some(other) = mounts_of(mounts, dev).find(|m| m.mount_point != staging) {
            return Err(Error::FailedPrecondition(format!(
                "volume {} is single-writer and already published at {}",
                req.volume_id,
                other.mount_point.display()
            )));
        }
    }
    Ok(PublishPlan::Bind)
}

/// Block volumes: the target is a bind of the device node, recognised by the
/// device number it resolves to.
pub fn plan_block(
    target_mount: Option<&MountInfo>,
    target_dev: Option<DevNum>,
    dev: DevNum,
    req: &Publish,
) -> Result<PublishPlan> {
    match target_mount {
        Some(m) => existing_target(target_dev == Some(dev), m.read_only(), req),
        None => Ok(PublishPlan::Bind),
    }
}

fn existing_target(ours: bool, read_only: bool, req: &Publish) -> Result<PublishPlan> {
    if !ours {
        return Err(Error::Incompatible(format!(
            "{} already has something else mounted",
            req.target.display()
        )));
    }
    if read_only != req.read_only {
        return Err(Error::Incompatible(format!(
            "volume {} is already published at {} {}",
            req.volume_id,
            req.target.display(),
            if read_only { "read-only" } else { "read-write" }
        )));
    }
    Ok(PublishPlan::AlreadyPublished)
}

pub fn publish(source: &dyn VolumeSource, mounter: &dyn Mounter, req: &Publish) -> Result<()> {
    let id = volume_id::parse(&req.volume_id)?;
    let Some(info) = source.lookup(&id)? else {
        return Err(Error::VolumeNotFound(req.volume_id.clone()));
    };
    let device = match (&req.access, info.device) {
        (Access::Mount { .. }, Some(d)) => d,
        (Access::Mount { .. }, None) => {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is not active; stage it first"
            )));
        }
        (Access::Block, _) => source.activate(&id)?,
    };
    let dev = device::block_dev_num(&device)?
        .ok_or_else(|| Error::Backend(format!("{} is not a block device", device.display())))?;
    let mounts = mounter.mounts()?;
    match req.access {
        Access::Mount { .. } => {
            if plan_mount(&mounts, req, dev)? == PublishPlan::AlreadyPublished {
                return Ok(());
            }
            std::fs::create_dir_all(&req.target)
                .map_err(|e| Error::io("create target directory", &req.target, e))?;
            mounter.bind(&req.staging, &req.target, req.read_only)?;
        }
        Access::Block => {
            let target_dev = device::block_dev_num(&req.target)?;
            let plan = plan_block(mount_at(&mounts, &req.target), target_dev, dev, req)?;
            if plan == PublishPlan::AlreadyPublished {
                return Ok(());
            }
            create_file(&req.target)?;
            mounter.bind(&device, &req.target, req.read_only)?;
        }
    }
    info!(volume = %id, target = %req.target.display(), read_only = req.read_only, "published");
    Ok(())
}

/// A bind mount of a device node needs a plain file to land on.
fn create_file(target: &Path) -> Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io("create target directory", parent, e))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(target)
        .map(drop)
        .map_err(|e| Error::io("create block target", target, e))
}

/// Unmounts and removes the target; a target that is already gone is success.
/// Removal is never recursive: a non-empty directory is an error, not data loss.
pub fn unpublish(mounter: &dyn Mounter, req: &Unmount) -> Result<()> {
    unmount_all(mounter, &req.path)?;
    let meta = match std::fs::symlink_metadata(&req.path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("inspect target", &req.path, e)),
    };
    let removed = if meta.is_dir() {
        std::fs::remove_dir(&req.path)
    } else {
        std::fs::remove_file(&req.path)
    };
    match removed {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove target", &req.path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csi::blkid::FsType;
    use crate::csi::mountinfo::parse;
    use crate::csi::options;

    const DEV: DevNum = DevNum {
        major: 253,
        minor: 3,
    };

    fn req(read_only: bool, single_writer: bool) -> Publish {
        Publish {
            volume_id: "vg/lv".into(),
            staging: "/st".into(),
            target: "/t".into(),
            access: Access::Mount {
                fs: Some(FsType::Ext4),
                options: options::parse(&[], false).unwrap(),
            },
            read_only,
            single_writer,
        }
    }

    #[test]
    fn mount_cases() {
        let staged = "1 0 253:3 / /st rw - ext4 /dev/x rw\n";
        type Case = (String, bool, bool, Result<PublishPlan, &'static str>);
        let cases: Vec<Case> = vec![
            (String::new(), false, false, Err("not staged")),
            (
                "1 0 7:1 / /st rw - ext4 /dev/loop1 rw\n".into(),
                false,
                false,
                Err("not staged"),
            ),
            (staged.into(), false, false, Ok(PublishPlan::Bind)),
            (
                format!("{staged}2 1 253:3 / /t rw - ext4 /dev/x rw\n"),
                false,
                false,
                Ok(PublishPlan::AlreadyPublished),
            ),
            (
                format!("{staged}2 1 253:3 / /t rw - ext4 /dev/x rw\n"),
                true,
                false,
                Err("read-write"),
            ),
            (
                format!("{staged}2 1 253:3 / /t ro - ext4 /dev/x rw\n"),
                true,
                false,
                Ok(PublishPlan::AlreadyPublished),
            ),
            (
                format!("{staged}2 1 7:9 / /t rw - ext4 /dev/y rw\n"),
                false,
                false,
                Err("something else"),
            ),
            (
                format!("{staged}2 1 253:3 / /other rw - ext4 /dev/x rw\n"),
                false,
                true,
                Err("single-writer"),
            ),
            (
                format!("{staged}2 1 253:3 / /other rw - ext4 /dev/x rw\n"),
                false,
                false,
                Ok(PublishPlan::Bind),
            ),
        ];
        for (i, (text, ro, sw, want)) in cases.into_iter().enumerate() {
            let mounts = parse(&text).unwrap();
            match (plan_mount(&mounts, &req(ro, sw), DEV), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "case {i}"),
                (Err(Error::Incompatible(m) | Error::FailedPrecondition(m)), Err(w)) => {
                    assert!(m.contains(w), "case {i}: {m}")
                }
                (got, w) => panic!("case {i}: got {got:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn block_cases() {
        let m = parse("1 0 0:5 /dm-3 /t rw - devtmpfs udev rw\n").unwrap();
        let r = req(false, false);
        assert_eq!(plan_block(None, None, DEV, &r).unwrap(), PublishPlan::Bind);
        assert_eq!(
            plan_block(m.first(), Some(DEV), DEV, &r).unwrap(),
            PublishPlan::AlreadyPublished
        );
        let other = DevNum { major: 7, minor: 1 };
        assert!(matches!(
            plan_block(m.first(), Some(other), DEV, &r),
            Err(Error::Incompatible(_))
        ));
        assert!(matches!(
            plan_block(m.first(), Some(DEV), DEV, &req(true, false)),
            Err(Error::Incompatible(_))
        ));
    }
}
