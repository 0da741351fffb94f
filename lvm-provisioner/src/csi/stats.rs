//! NodeGetVolumeStats: usage of a published or staged volume, and whether its
//! LV still exists underneath.

use std::path::Path;

use lvmpin_api::VolumeId;

use super::device::{self, Usage};
use super::error::{Error, Result};
use super::mounter::Mounter;
use super::mountinfo::{MountInfo, mount_at};
use super::request::Stats;
use super::source::VolumeSource;
use super::volume_id;

/// Whether a mount came from this volume's device node: by the path we mount
/// it with (`/dev/<vg>/<lv>`) or the device-mapper alias lvm also creates
/// (`/dev/mapper/<vg>-<lv>`, dashes doubled). Used only once the LV is gone
/// and its device number can no longer be looked up.
pub fn mounted_from(m: &MountInfo, id: &VolumeId, expected: &Path) -> bool {
    let mapper = format!(
        "/dev/mapper/{}-{}",
        id.vg.replace('-', "--"),
        id.lv.replace('-', "--")
    );
    Path::new(&m.source) == expected || m.source == mapper
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Measured {
    Filesystem(Usage),
    /// Raw block volumes report only their size.
    Block {
        size_bytes: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeStats {
    pub measured: Measured,
    /// `Some(reason)` when the volume is in trouble (VOLUME_CONDITION).
    pub abnormal: Option<String>,
}

pub fn stats(source: &dyn VolumeSource, mounter: &dyn Mounter, req: &Stats) -> Result<VolumeStats> {
    let id = volume_id::parse(&req.volume_id)?;
    let info = source.lookup(&id)?;
    let mounts = mounter.mounts()?;
    let at = mount_at(&mounts, &req.path);
    let not_here = || Error::NotAtPath {
        volume: req.volume_id.clone(),
        path: req.path.clone(),
    };
    let Some(info) = info else {
        // Something is still mounted where the volume was: report what is
        // there, flagged, so the pod's owner sees the LV vanished.
        let expected = source.device_path(&id);
        return match at {
            Some(m) if mounted_from(m, &id, &expected) => Ok(VolumeStats {
                measured: Measured::Filesystem(device::usage(&req.path)?),
                abnormal: Some(format!("logical volume {id} no longer exists")),
            }),
            _ => Err(Error::VolumeNotFound(req.volume_id.clone())),
        };
    };
    let dev = match &info.device {
        Some(d) => device::block_dev_num(d)?,
        None => None,
    };
    let (Some(dev), Some(at)) = (dev, at) else {
        return Err(not_here());
    };
    if device::block_dev_num(&req.path)? == Some(dev) {
        return Ok(VolumeStats {
            measured: Measured::Block {
                size_bytes: info.size_bytes,
            },
            abnormal: None,
        });
    }
    if at.dev != dev {
        return Err(not_here());
    }
    Ok(VolumeStats {
        measured: Measured::Filesystem(device::usage(&req.path)?),
        abnormal: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csi::mountinfo::parse;

    #[test]
    fn recognises_the_volume_by_mount_source() {
        let id = VolumeId::new("vg-a", "pvc-1");
        let expected = Path::new("/dev/vg-a/pvc-1");
        let cases = [
            ("/dev/vg-a/pvc-1", true),
            ("/dev/mapper/vg--a-pvc--1", true),
            ("/dev/mapper/vg-a-pvc-1", false),
            ("/dev/root", false),
            ("tmpfs", false),
        ];
        for (source, want) in cases {
            let m = parse(&format!("1 0 253:1 / /p rw - ext4 {source} rw\n")).unwrap();
            assert_eq!(mounted_from(&m[0], &id, expected), want, "{source}");
        }
    }
}
