//! Checks the arguments of each Node call and turns them into plain structs.
//! Pure, and run before any lookup, so a call with a missing field is
//! InvalidArgument even for a volume that does not exist (csi-sanity checks this).
//! Every path is normalised and confined to kubelet's directory (`paths`).

use std::path::PathBuf;

use lvmpin_csi_proto::csi::v1 as csi;
use lvmpin_csi_proto::csi::v1::volume_capability::AccessType;
use lvmpin_csi_proto::csi::v1::volume_capability::access_mode::Mode;

use super::blkid::FsType;
use super::bounded::bounded;
use super::error::{Error, Result};
use super::options::{self, MountOptions};
use super::paths::MountRoot;

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

pub(super) fn required<'a>(value: &'a str, field: &str) -> Result<&'a str> {
    if value.is_empty() {
        Err(Error::InvalidArgument(format!("{field} is required")))
    } else {
        Ok(value)
    }
}

/// What a node-local volume can be: used from one node at a time. The multi
/// node modes "exceed the capabilities" of the volume, FAILED_PRECONDITION for
/// stage and publish (CSI spec, NodeStageVolume and NodePublishVolume errors).
pub fn check_mode(mode: Mode) -> Result<()> {
    match mode {
        Mode::SingleNodeWriter
        | Mode::SingleNodeReaderOnly
        | Mode::SingleNodeSingleWriter
        | Mode::SingleNodeMultiWriter => Ok(()),
        Mode::MultiNodeReaderOnly | Mode::MultiNodeSingleWriter | Mode::MultiNodeMultiWriter => {
            Err(Error::FailedPrecondition(format!(
                "access mode {} is not supported: a local LVM volume is reachable from one node only",
                mode.as_str_name()
            )))
        }
        Mode::Unknown => Err(Error::InvalidArgument(
            "volume_capability needs an access_mode".into(),
        )),
    }
}

pub fn mode(cap: &csi::VolumeCapability) -> Mode {
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
                Some(fs_type(&m.fs_type)?)
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
    check_mode(mode)?;
    Ok((access, mode))
}

/// A filesystem the node service can create and mount.
pub fn fs_type(name: &str) -> Result<FsType> {
    FsType::parse(name).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "fs_type {:?} is not supported (use ext4 or xfs)",
            bounded(name)
        ))
    })
}

/// The filesystem recorded by CreateVolume in the volume context, used when
/// the capability names none.
pub const CONTEXT_FS_TYPE: &str = "lvmpin.io/fs-type";

/// A capability without a filesystem takes the one CreateVolume chose.
fn with_context_fs(
    mut access: Access,
    context: &std::collections::HashMap<String, String>,
) -> Result<Access> {
    if let Access::Mount { fs: fs @ None, .. } = &mut access
        && let Some(name) = context.get(CONTEXT_FS_TYPE).filter(|n| !n.is_empty())
    {
        *fs = Some(fs_type(name)?);
    }
    Ok(access)
}

pub fn stage(r: &csi::NodeStageVolumeRequest, root: &MountRoot) -> Result<Stage> {
    let volume_id = required(&r.volume_id, "volume_id")?.to_string();
    let staging = root.confine(&r.staging_target_path, "staging_target_path")?;
    let (access, _) = access(r.volume_capability.as_ref(), false)?;
    let access = with_context_fs(access, &r.volume_context)?;
    Ok(Stage {
        volume_id,
        staging,
        access,
    })
}

pub fn unstage(r: &csi::NodeUnstageVolumeRequest, root: &MountRoot) -> Result<Unmount> {
    Ok(Unmount {
        volume_id: required(&r.volume_id, "volume_id")?.to_string(),
        path: root.confine(&r.staging_target_path, "staging_target_path")?,
    })
}

pub fn publish(r: &csi::NodePublishVolumeRequest, root: &MountRoot) -> Result<Publish> {
    let volume_id = required(&r.volume_id, "volume_id")?.to_string();
    let target = root.confine(&r.target_path, "target_path")?;
    let (access, mode) = access(r.volume_capability.as_ref(), r.readonly)?;
    let access = with_context_fs(access, &r.volume_context)?;
    // We advertise STAGE_UNSTAGE_VOLUME, so the spec makes this a precondition.
    if r.staging_target_path.is_empty() {
        return Err(Error::FailedPrecondition(
            "staging_target_path is required: this plugin stages volumes".into(),
        ));
    }
    let staging = root.confine(&r.staging_target_path, "staging_target_path")?;
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

pub fn unpublish(r: &csi::NodeUnpublishVolumeRequest, root: &MountRoot) -> Result<Unmount> {
    Ok(Unmount {
        volume_id: required(&r.volume_id, "volume_id")?.to_string(),
        path: root.confine(&r.target_path, "target_path")?,
    })
}

/// A path where a call expects an existing mount: outside kubelet's
/// directory none of ours can be, so the volume is "not found at that path"
/// (what csi-sanity expects of "some/path"), not an invalid argument.
fn mounted_path(root: &MountRoot, volume_id: &str, value: &str, field: &str) -> Result<PathBuf> {
    required(value, field)?;
    root.confine(value, field).map_err(|_| Error::NotAtPath {
        volume: volume_id.to_string(),
        path: PathBuf::from(value),
    })
}

pub fn stats(r: &csi::NodeGetVolumeStatsRequest, root: &MountRoot) -> Result<Stats> {
    let volume_id = required(&r.volume_id, "volume_id")?.to_string();
    let path = mounted_path(root, &volume_id, &r.volume_path, "volume_path")?;
    Ok(Stats { volume_id, path })
}

pub fn expand(r: &csi::NodeExpandVolumeRequest, root: &MountRoot) -> Result<Expand> {
    let volume_id = required(&r.volume_id, "volume_id")?.to_string();
    let path = mounted_path(root, &volume_id, &r.volume_path, "volume_path")?;
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

    fn root() -> MountRoot {
        MountRoot::new(std::path::Path::new("/var/lib/kubelet")).unwrap()
    }
    fn stage(r: &csi::NodeStageVolumeRequest) -> Result<Stage> {
        super::stage(r, &root())
    }
    fn unstage(r: &csi::NodeUnstageVolumeRequest) -> Result<Unmount> {
        super::unstage(r, &root())
    }
    fn publish(r: &csi::NodePublishVolumeRequest) -> Result<Publish> {
        super::publish(r, &root())
    }
    fn unpublish(r: &csi::NodeUnpublishVolumeRequest) -> Result<Unmount> {
        super::unpublish(r, &root())
    }
    fn stats(r: &csi::NodeGetVolumeStatsRequest) -> Result<Stats> {
        super::stats(r, &root())
    }
    fn expand(r: &csi::NodeExpandVolumeRequest) -> Result<Expand> {
        super::expand(r, &root())
    }
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
            staging_target_path: "/var/lib/kubelet/st".into(),
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
            staging_target_path: "/var/lib/kubelet/st".into(),
            volume_capability: mount_cap("", &[], Mode::SingleNodeReaderOnly),
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
    fn multi_node_modes_exceed_a_local_volume() {
        for mode in [
            Mode::MultiNodeReaderOnly,
            Mode::MultiNodeSingleWriter,
            Mode::MultiNodeMultiWriter,
        ] {
            let r = csi::NodeStageVolumeRequest {
                volume_id: "vg/lv".into(),
                staging_target_path: "/var/lib/kubelet/st".into(),
                volume_capability: mount_cap("ext4", &[], mode),
                ..Default::default()
            };
            assert!(
                matches!(stage(&r), Err(Error::FailedPrecondition(m)) if m.contains(mode.as_str_name())),
                "{mode:?}"
            );
            let p = csi::NodePublishVolumeRequest {
                volume_id: "vg/lv".into(),
                staging_target_path: "/var/lib/kubelet/st".into(),
                target_path: "/var/lib/kubelet/t".into(),
                volume_capability: mount_cap("ext4", &[], mode),
                ..Default::default()
            };
            assert!(
                matches!(publish(&p), Err(Error::FailedPrecondition(_))),
                "{mode:?}"
            );
        }
        let unknown = csi::NodeStageVolumeRequest {
            volume_id: "vg/lv".into(),
            staging_target_path: "/var/lib/kubelet/st".into(),
            volume_capability: mount_cap("ext4", &[], Mode::Unknown),
            ..Default::default()
        };
        invalid(stage(&unknown), "access_mode");
    }

    #[test]
    fn paths_are_normalised_and_confined() {
        let escaping = csi::NodeStageVolumeRequest {
            volume_id: "vg/lv".into(),
            staging_target_path: "/var/lib/kubelet/plugins/../../../../tmp/st".into(),
            volume_capability: mount_cap("ext4", &[], Mode::SingleNodeWriter),
            ..Default::default()
        };
        invalid(stage(&escaping), "outside the kubelet directory");
        let winding = csi::NodeStageVolumeRequest {
            staging_target_path: "/var/lib/kubelet/plugins/a/../b/./globalmount".into(),
            ..escaping
        };
        let staged = stage(&winding).unwrap().staging;
        let unstaged = unstage(&csi::NodeUnstageVolumeRequest {
            volume_id: "vg/lv".into(),
            staging_target_path: "/var/lib/kubelet/plugins/b/globalmount/".into(),
        })
        .unwrap()
        .path;
        assert_eq!(staged, unstaged);
        invalid(
            unpublish(&csi::NodeUnpublishVolumeRequest {
                volume_id: "vg/lv".into(),
                target_path: "/etc".into(),
            }),
            "target_path",
        );
    }

    #[test]
    fn create_time_filesystem_fills_an_empty_fs_type() {
        let r = csi::NodeStageVolumeRequest {
            volume_id: "vg/lv".into(),
            staging_target_path: "/var/lib/kubelet/st".into(),
            volume_capability: mount_cap("", &[], Mode::SingleNodeWriter),
            volume_context: [(CONTEXT_FS_TYPE.to_string(), "xfs".to_string())].into(),
            ..Default::default()
        };
        assert!(matches!(
            stage(&r).unwrap().access,
            Access::Mount {
                fs: Some(FsType::Xfs),
                ..
            }
        ));
        let named = csi::NodeStageVolumeRequest {
            volume_capability: mount_cap("ext4", &[], Mode::SingleNodeWriter),
            ..r
        };
        assert!(matches!(
            stage(&named).unwrap().access,
            Access::Mount {
                fs: Some(FsType::Ext4),
                ..
            }
        ));
    }

    #[test]
    fn publish_arguments() {
        let ok = csi::NodePublishVolumeRequest {
            volume_id: "vg/lv".into(),
            staging_target_path: "/var/lib/kubelet/st".into(),
            target_path: "/var/lib/kubelet/t".into(),
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
                staging_target_path: "/var/lib/kubelet/s".into(),
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
                target_path: "/var/lib/kubelet/t".into(),
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
                volume_path: "/var/lib/kubelet/p".into(),
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
        // A path outside kubelet's directory holds none of our mounts: NotFound.
        for path in ["some/path", "/etc", "/var/lib/kubelet/../../etc"] {
            assert!(matches!(
                stats(&csi::NodeGetVolumeStatsRequest {
                    volume_id: "a/b".into(),
                    volume_path: path.into(),
                    ..Default::default()
                }),
                Err(Error::NotAtPath { .. })
            ));
            assert!(matches!(
                expand(&csi::NodeExpandVolumeRequest {
                    volume_id: "a/b".into(),
                    volume_path: path.into(),
                    ..Default::default()
                }),
                Err(Error::NotAtPath { .. })
            ));
        }
        invalid(
            expand(&csi::NodeExpandVolumeRequest {
                volume_path: "/var/lib/kubelet/p".into(),
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
            volume_path: "/var/lib/kubelet/p".into(),
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
