//! `CreateLv` and `CreateSnapshotLv`: what a caller asks `Lvm::create_lv` and
//! `Lvm::create_snapshot` for. Plain data, shared by
//! the argument builder (`args`) and the command sequencer (`ops`).

use crate::tags::{Owner, SnapshotOwner};

/// A request for an LV owned by one claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateLv {
    pub vg: String,
    pub name: String,
    pub size_bytes: u64,
    /// Create a thin LV of this pool instead of a linear one.
    pub thin_pool: Option<String>,
    pub owner: Owner,
    /// Restore or clone: a thin LV of the same VG and pool whose data the new
    /// LV starts with (it is made a thin snapshot of it). Never wiped.
    pub source: Option<String>,
}

/// A thin snapshot of `source` owned by a VolumeSnapshotContent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateSnapshotLv {
    pub vg: String,
    pub name: String,
    pub source: String,
    pub owner: SnapshotOwner,
}
