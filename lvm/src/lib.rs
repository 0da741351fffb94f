//! lvm2 layer of lvmpin: one report command per scan, idempotent create / remove /
//! extend of LVs owned by claims (ownership lives in LV tags), per-VG locking,
//! and timeouts that kill the whole lvm process group.
//!
//! The API is synchronous (lvm2 is a blocking command); async callers wrap calls
//! in `tokio::task::spawn_blocking`.
#![forbid(unsafe_code)]

mod args;
mod command;
mod config;
mod error;
mod failure;
mod idempotency;
mod lock;
mod names;
mod ops;
mod report;
mod request;
mod snapshot;
mod tags;
mod wipe;

pub use command::{Output, run_program};
pub use config::{DEVICE_MAPPER_CONTROL, DeviceMapper, LvmConfig, device_mapper_available};
pub use error::{Error, Result, SourceProblem};
pub use names::{validate_lv_name, validate_vg_name};
pub use ops::Lvm;
pub use report::{
    LV_COLUMNS, LogicalVolume, Report, ThinPool, VG_COLUMNS, VolumeGroup, device_path, parse_lvs,
    parse_report,
};
pub use request::{CreateLv, CreateSnapshotLv};
pub use tags::{
    Owner, SnapshotOwner, TAG_PREFIX, owner_from_tags, owner_tags, snapshot_owner_from_tags,
    snapshot_owner_tags,
};
