//! Checks the arguments of each Node call and turns them into plain structs.
//! Pure, and run before any lookup, so a call with a missing field is
//! InvalidArgument even for a volume that does not exist (csi-sanity checks this).

use std::path::{Path, PathBuf};

use lvmpin_csi_proto::csi::v1 as csi;
use lvmpin_csi_proto::csi::v1::volume_capability::AccessType;
use lvmpin_csi_proto::csi::v1::volume_capability::access_mode::Mode;

use super::blkid::FsType;
use super::error::{Error, Result};
use super::options::{self, MountOptions};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Block,
    /// `fs: None` when the caller named no filesystem: a blank device gets
    /// ext4, an existing ext4 or xfs filesystem is mounted as it is.
    Mount {
        fs: Option<FsType>,
        options: MountOptions,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub volume_id: String,
    pub staging: PathBuf,
    pub access: Access,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub volume_id: String,
    pub staging: PathBuf,
    pub target: PathBuf,
    pub access: Access,
    pub read_only: bool,
    /// SINGLE_NODE_SINGLE_WRITER: at most one target at a time.
    pub single_writer: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmount {
    pub volume_id: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub volume_id: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expand {
    pub volume_id: String,
    pub path: PathBuf,
    pub required_bytes: u64,
    pub limit_bytes: u64,
    /// `Some(true)` when the caller says the volume is a raw block device.
    pub block: Option<bool>,
}

fn required<'a>(value: &'a str, field: &str) -> Result<&'a str> {
    if value.is_empty() {
        Err(Error::InvalidArgument(format!("{field} is required")))
    } else {
        Ok(value)
    }
}

/// Paths we create mounts on must be absolute: a relative one would land
/// wherever the agent happens to run.
fn absolute(value: &str, field: &str) -> Result<PathBuf> {
    let p = Path::new(required(value, field)?);
    if !p.is_absolute() || value.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "{field} {value:?} must be an absolute path"
        )));
    }
    Ok(p.to_path_buf())
}

fn mode(cap: &csi::VolumeCapability) -> Mode {
    cap.access_mode
        .as_ref()
        .and_then(|m| Mode::try_from(m.mode).ok())
        .unwrap_or(Mode::Unknown)
}

fn access(cap: Option<&csi::VolumeCapability>, read_only: bool) -> Result<(Access, Mode)> {
    let cap = cap.ok_or_else(|| Error::InvalidArgument("volume_capability is required".into()))?;
    let mode = mode(cap);
    let read_only =
        read_only || matches!(mode, Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly);
    let access = match &cap.access_type {
        Some(AccessType::Block(_)) => Access::Block,
        Some(AccessType::Mount(m)) => {
            let fs = if m.fs_type.is_empty() {
                None
            } else {
                Some(FsType::parse(&m.fs_type).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "fs_type {:?} is not supported (use ext4 or xfs)",
                        m.fs_type
                    ))
                })?)
            };
            Access::Mount {
                fs,
                options: options::parse(&m.mount_flags, read_only)?,
            }
        }
        None => {
            return Err(Error::InvalidArgument(
                "volume_capability needs an access type (block or mount)".into(),
            ));
        }
    };
    Ok((access, mode))
}

pub fn stage(r: &csi::NodeStageVolumeRequest) -> Result<Stage> {
    let volume_id = required(&r.volume_id, "volume_id")?.to_string();
    let staging = absolute(&r.staging_target_path, "staging_target_path")?;
    let (access, _) = access(r.volume_capability.as_ref(), false)?;
    Ok(Stage {
        volume_id,
        staging,
        access,
    })
}

pub fn unstage(r: &csi::NodeUnstageVolumeRequest) -> Result<Unmount> {
    Ok(Unmount {
        volume_id: required(&r.volume_id, "volume_id")?.to_string(),
        path: PathBuf::from(required(&r.staging_target_path, "staging_target_path")?),
    })
}

pub fn publish(r: &csi::NodePublishVolumeRequest) -> Result<Publish> {
    let volume_id = required(&r.volume_id, "volume_id")?.to_string();
    let target = absolute(&r.target_path, "target_path")?;
    let (access, mode) = access(r.volume_capability.as_ref(), r.readonly)?;
    // We advertise STAGE_UNSTAGE_VOLUME, so the spec makes this a precondition.
    if r.staging_target_path.is_empty() {
        return Err(Error::FailedPrecondition(
            "staging_target_path is required: this plugin stages volumes".into(),
        ));
    }
    let staging = absolute(&r.staging_target_path, "staging_target_path")?;
    let read_only =
        r.readonly || matches!(mode, Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly);
    Ok(Publish {
        volume_id,
        staging,
        target,
        access,
        read_only,
        single_writer: mode == Mode::SingleNodeSingleWriter,
    })
}

pub fn unpublish(r: &csi::NodeUnpublishVolumeRequest) -> Result<Unmount> {
    Ok(Unmount {
        volume_id: required(&r.volume_id, "volume_id")?.to_string(),
        path: PathBuf::from(required(&r.target_path, "target_path")?),
    })
}

pub fn stats(r: &csi::NodeGetVolumeStatsRequest) -> Result<Stats> {
    Ok(Stats {
        volume_id: required(&r.volume_id, "volume_id")?.to_string(),
        path: PathBuf::from(required(&r.volume_path, "volume_path")?),
    })
}

pub fn expand(r: &csi::NodeExpandVolumeRequest) -> Result<Expand> {
    let volume_id = required(&r.volume_id, "volume_id")?.to_string();
    let path = PathBuf::from(required(&r.volume_path, "volume_path")?);
    let (required_bytes, limit_bytes) = match &r.capacity_range {
        Some(c) if c.required_bytes < 0 || c.limit_bytes < 0 => {
            return Err(Error::InvalidArgument(
                "capacity_range must not be negative".into(),
            ));
        }
        Some(c) if c.limit_bytes > 0 && c.required_bytes > c.limit_bytes => {
            return Err(Error::InvalidArgument(format!(
                "capacity_range required_bytes {} exceeds limit_bytes {}",
                c.required_bytes, c.limit_bytes
            )));
        }
        Some(c) => (c.required_bytes as u64, c.limit_bytes as u64),
        None => (0, 0),
    };
    let block = r
        .volume_capability
        .as_ref()
        .and_then(|c| c.access_type.as_ref())
        .map(|t| matches!(t, AccessType::Block(_)));
    Ok(Expand {
        volume_id,
        path,
        required_bytes,
        limit_bytes,
        block,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use csi::volume_capability::{AccessMode, BlockVolume, MountVolume};

    fn mount_cap(fs: &str, flags: &[&str], mode: Mode) -> Option<csi::VolumeCapability> {
        Some(csi::VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume {
                fs_type: fs.into(),
                mount_flags: flags.iter().map(|s| s.to_string()).collect(),
                volume_mount_group: String::new(),
            })),
            access_mode: Some(AccessMode { mode: mode as i32 }),
        })
    }

    fn block_cap() -> Option<csi::VolumeCapability> {
        Some(csi::VolumeCapability {
            access_type: Some(AccessType::Block(BlockVolume {})),
            access_mode: Some(AccessMode {
                mode: Mode::SingleNodeWriter as i32,
            }),
        })
    }

    fn invalid(r: Result<impl std::fmt::Debug>, field: &str) {
        match r {
            Err(Error::InvalidArgument(m)) => assert!(m.contains(field), "{m} lacks {field}"),
            other => panic!("want InvalidArgument about {field}, got {other:?}"),
        }
    }

    #[test]
    fn stage_arguments() {
        let ok = csi::NodeStageVolumeRequest {
            volume_id: "vg/lv".into(),
            staging_target_path: "/st".into(),
            volume_capability: mount_cap("xfs", &["noatime"], Mode::SingleNodeWriter),
            ..Default::default()
        };
        let s = stage(&ok).unwrap();
        assert!(matches!(
            s.access,
            Access::Mount {
                fs: Some(FsType::Xfs),
                ..
            }
        ));

        let cases: Vec<(csi::NodeStageVolumeRequest, &str)> = vec![
            (
                csi::NodeStageVolumeRequest {
                    volume_id: "".into(),
                    ..ok.clone()
                },
                "volume_id",
            ),
            (
                csi::NodeStageVolumeRequest {
                    staging_target_path: "".into(),
                    ..ok.clone()
                },
                "staging_target_path",
            ),
            (
                csi::NodeStageVolumeRequest {
                    staging_target_path: "rel/x".into(),
                    ..ok.clone()
                },
                "staging_target_path",
            ),
            (
                csi::NodeStageVolumeRequest {
                    volume_capability: None,
                    ..ok.clone()
                },
                "volume_capability",
            ),
            (
                csi::NodeStageVolumeRequest {
                    volume_capability: Some(csi::VolumeCapability::default()),
                    ..ok.clone()
                },
                "access type",
            ),
            (
                csi::NodeStageVolumeRequest {
                    volume_capability: mount_cap("btrfs", &[], Mode::SingleNodeWriter),
                    ..ok.clone()
                },
                "fs_type",
            ),
        ];
        for (r, field) in cases {
            invalid(stage(&r), field);
        }
    }

    #[test]
    fn default_fs_and_reader_modes() {
        let r = csi::NodeStageVolumeRequest {
            volume_id: "vg/lv".into(),
            staging_target_path: "/st".into(),
            volume_capability: mount_cap("", &[], Mode::MultiNodeReaderOnly),
            ..Default::default()
        };
        match stage(&r).unwrap().access {
            Access::Mount { fs, options } => {
                assert_eq!(fs, None);
                assert!(options.read_only());
            }
            Access::Block => panic!("mount expected"),
        }
    }

    #[test]
    fn publish_arguments() {
        let ok = csi::NodePublishVolumeRequest {
            volume_id: "vg/lv".into(),
            staging_target_path: "/st".into(),
            target_path: "/t".into(),
            volume_capability: block_cap(),
            readonly: true,
            ..Default::default()
        };
        let p = publish(&ok).unwrap();
        assert!(p.read_only && p.access == Access::Block && !p.single_writer);
        invalid(
            publish(&csi::NodePublishVolumeRequest {
                volume_id: "".into(),
                ..ok.clone()
            }),
            "volume_id",
        );
        invalid(
            publish(&csi::NodePublishVolumeRequest {
                target_path: "".into(),
                ..ok.clone()
            }),
            "target_path",
        );
        invalid(
            publish(&csi::NodePublishVolumeRequest {
                volume_capability: None,
                ..ok.clone()
            }),
            "volume_capability",
        );
        assert!(matches!(
            publish(&csi::NodePublishVolumeRequest {
                staging_target_path: "".into(),
                ..ok.clone()
            }),
            Err(Error::FailedPrecondition(_))
        ));
        let sw = csi::NodePublishVolumeRequest {
            volume_capability: mount_cap("ext4", &[], Mode::SingleNodeSingleWriter),
            ..ok
        };
        assert!(publish(&sw).unwrap().single_writer);
    }

    #[test]
    fn other_arguments() {
        invalid(
            unstage(&csi::NodeUnstageVolumeRequest {
                volume_id: "".into(),
                staging_target_path: "/s".into(),
            }),
            "volume_id",
        );
        invalid(
            unstage(&csi::NodeUnstageVolumeRequest {
                volume_id: "a/b".into(),
                staging_target_path: "".into(),
            }),
            "staging_target_path",
        );
        invalid(
            unpublish(&csi::NodeUnpublishVolumeRequest {
                volume_id: "".into(),
                target_path: "/t".into(),
            }),
            "volume_id",
        );
        invalid(
            unpublish(&csi::NodeUnpublishVolumeRequest {
                volume_id: "a/b".into(),
                target_path: "".into(),
            }),
            "target_path",
        );
        invalid(
            stats(&csi::NodeGetVolumeStatsRequest {
                volume_id: "".into(),
                volume_path: "/p".into(),
                ..Default::default()
            }),
            "volume_id",
        );
        invalid(
            stats(&csi::NodeGetVolumeStatsRequest {
                volume_id: "a/b".into(),
                ..Default::default()
            }),
            "volume_path",
        );
        // Relative paths are not rejected here: they simply match no mount (NotFound).
        assert!(
            stats(&csi::NodeGetVolumeStatsRequest {
                volume_id: "a/b".into(),
                volume_path: "some/path".into(),
                ..Default::default()
            })
            .is_ok()
        );
        invalid(
            expand(&csi::NodeExpandVolumeRequest {
                volume_path: "/p".into(),
                ..Default::default()
            }),
            "volume_id",
        );
        invalid(
            expand(&csi::NodeExpandVolumeRequest {
                volume_id: "a/b".into(),
                ..Default::default()
            }),
            "volume_path",
        );
        let neg = csi::NodeExpandVolumeRequest {
            volume_id: "a/b".into(),
            volume_path: "/p".into(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: 10,
                limit_bytes: 5,
            }),
            ..Default::default()
        };
        invalid(expand(&neg), "capacity_range");
        let ok = csi::NodeExpandVolumeRequest {
            capacity_range: Some(csi::CapacityRange {
                required_bytes: 10,
                limit_bytes: 0,
            }),
            volume_capability: block_cap(),
            ..neg
        };
        let e = expand(&ok).unwrap();
        assert_eq!((e.required_bytes, e.block), (10, Some(true)));
    }
}
