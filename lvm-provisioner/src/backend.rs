//! The agent's view of the volume manager: plain data plus a small trait, so
//! that planning and reconcile logic run against a fake in tests and the real
//! lvm2 layer (`lvm_backend.rs`) in production.

use std::future::Future;

use crate::error::{Error, Result};

/// Who a logical volume belongs to; stored as LV tags so that ownership
/// survives agent restarts and lost API objects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Owner {
    pub claim_uid: String,
    pub claim_namespace: String,
    pub claim_name: String,
    pub pv_name: String,
}

/// Which VolumeSnapshotContent a snapshot LV belongs to; stored as LV tags
/// with keys distinct from a claim's, so a snapshot never reads as a claim's
/// volume (and never as an orphan of one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotOwner {
    pub content_uid: String,
    pub content_name: String,
}

/// The LV name lvmpin gives the snapshot of a VolumeSnapshotContent. lvm
/// reserves names starting with "snapshot", hence "snap-".
pub fn snapshot_lv_name(content_uid: &str) -> String {
    format!("snap-{content_uid}")
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct VolumeGroup {
    pub name: String,
    pub size_bytes: u64,
    pub free_bytes: u64,
    pub extent_size_bytes: u64,
    pub pv_count: u32,
    pub missing_pv_count: u32,
    pub lv_count: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Volume {
    pub vg: String,
    pub name: String,
    pub size_bytes: u64,
    pub pool: Option<String>,
    /// The claim the LV belongs to; never set on a snapshot.
    pub owner: Option<Owner>,
    /// The VolumeSnapshotContent the LV belongs to, for snapshot LVs.
    pub snapshot_owner: Option<SnapshotOwner>,
    /// The LV this one was snapshotted from, while that LV exists (lvm forgets
    /// the origin once it is removed; the snapshot itself stays).
    pub origin: Option<String>,
    /// When lvm created the LV (seconds since the epoch), if lvm says.
    pub created_unix: Option<i64>,
}

impl Volume {
    /// A snapshot LV of a VolumeSnapshotContent: not a claim's volume.
    pub fn is_snapshot(&self) -> bool {
        self.snapshot_owner.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ThinPool {
    pub vg: String,
    pub name: String,
    pub size_bytes: u64,
    pub data_percent: f64,
    pub metadata_percent: f64,
}

/// One scan of the node's volume manager.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scan {
    pub volume_groups: Vec<VolumeGroup>,
    pub volumes: Vec<Volume>,
    pub thin_pools: Vec<ThinPool>,
}

impl Scan {
    pub fn volume_group(&self, name: &str) -> Option<&VolumeGroup> {
        self.volume_groups.iter().find(|vg| vg.name == name)
    }

    pub fn volume(&self, vg: &str, name: &str) -> Option<&Volume> {
        self.volumes.iter().find(|v| v.vg == vg && v.name == name)
    }

    /// The snapshot LVs of lvmpin (tagged with a VolumeSnapshotContent).
    pub fn snapshots(&self) -> impl Iterator<Item = &Volume> {
        self.volumes.iter().filter(|v| v.is_snapshot())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateVolume {
    pub vg: String,
    pub name: String,
    pub size_bytes: u64,
    pub thin_pool: Option<String>,
    pub owner: Owner,
    /// Restore or clone: a thin LV (volume or snapshot) of the same VG whose
    /// data the new LV starts from. The new LV is a thin snapshot of it,
    /// owned by `owner` like any claim volume, active, and grown to
    /// `size_bytes` when that is larger. `thin_pool` must be the source's
    /// pool and `size_bytes` at least the source's size. Its data is kept:
    /// no signature wipe.
    pub source: Option<String>,
}

/// A snapshot of the thin LV `source` for a VolumeSnapshotContent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSnapshot {
    pub vg: String,
    pub name: String,
    pub source: String,
    pub owner: SnapshotOwner,
}

/// A snapshot's source must be a thin volume: lvm's old-style snapshots of
/// linear LVs are copy-on-write areas that fill up and break, not volumes.
pub fn check_snapshot_source(source: &Volume) -> Result<()> {
    if source.pool.is_none() {
        return Err(Error::InvalidSource {
            vg: source.vg.clone(),
            lv: source.name.clone(),
            reason: "it is not a thin volume; snapshots are for thin volumes only".into(),
        });
    }
    Ok(())
}

/// The rules for a restore or clone from `source`: a thin LV of the requested
/// pool, no larger than the requested size (an LV never shrinks).
pub fn check_clone_source(source: &Volume, thin_pool: Option<&str>, size_bytes: u64) -> Result<()> {
    check_snapshot_source(source)?;
    let invalid = |reason: String| Error::InvalidSource {
        vg: source.vg.clone(),
        lv: source.name.clone(),
        reason,
    };
    if source.pool.as_deref() != thin_pool {
        return Err(invalid(format!(
            "it is in thin pool {}, the new volume asks for {}",
            source.pool.as_deref().unwrap_or("(none)"),
            thin_pool.map_or("no thin pool".to_string(), |p| format!("thin pool {p}")),
        )));
    }
    if size_bytes < source.size_bytes {
        return Err(invalid(format!(
            "it holds {} bytes, more than the {size_bytes} bytes requested",
            source.size_bytes
        )));
    }
    Ok(())
}

/// Volume operations. Every method is idempotent: create returns the existing
/// volume of the same owner, remove of a missing volume succeeds, extend to a
/// size the volume already has is a no-op.
///
/// Snapshots are for thin volumes only. `create_snapshot` returns an existing
/// LV of that name if its tags name the same snapshot owner, fails with
/// `OwnedByAnother` for any other LV of that name, and with `InvalidSource`
/// when the source is not a thin volume. `remove_snapshot` succeeds for a
/// missing LV and refuses (`OwnedByAnother`) an LV whose tags do not prove it
/// is this owner's snapshot. Removing a volume leaves its snapshots intact.
pub trait VolumeBackend: Send + Sync + 'static {
    fn scan(&self) -> impl Future<Output = Result<Scan>> + Send;
    fn create(&self, req: CreateVolume) -> impl Future<Output = Result<Volume>> + Send;
    fn remove(&self, vg: &str, lv: &str) -> impl Future<Output = Result<()>> + Send;
    fn extend(
        &self,
        vg: &str,
        lv: &str,
        size_bytes: u64,
    ) -> impl Future<Output = Result<Volume>> + Send;
    fn create_snapshot(&self, req: CreateSnapshot) -> impl Future<Output = Result<Volume>> + Send;
    fn remove_snapshot(
        &self,
        vg: &str,
        name: &str,
        owner: &SnapshotOwner,
    ) -> impl Future<Output = Result<()>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: u64 = 1 << 30;

    fn volume(pool: Option<&str>, size_bytes: u64) -> Volume {
        Volume {
            vg: "vg0".into(),
            name: "src".into(),
            size_bytes,
            pool: pool.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn source_rules() {
        // (source pool, source size, requested pool, requested size, error contains)
        type Case<'a> = (Option<&'a str>, u64, Option<&'a str>, u64, Option<&'a str>);
        let cases: [Case; 7] = [
            (Some("p"), GI, Some("p"), GI, None),
            (Some("p"), GI, Some("p"), 2 * GI, None),
            (
                Some("p"),
                GI,
                Some("p"),
                GI - 1,
                Some("1073741824 bytes, more than the 1073741823"),
            ),
            (
                Some("p"),
                GI,
                Some("q"),
                GI,
                Some("thin pool p, the new volume asks for thin pool q"),
            ),
            (Some("p"), GI, None, GI, Some("asks for no thin pool")),
            (None, GI, None, GI, Some("not a thin volume")),
            (None, GI, Some("p"), GI, Some("not a thin volume")),
        ];
        for (src_pool, src_size, pool, size, want) in cases {
            let got = check_clone_source(&volume(src_pool, src_size), pool, size);
            match (want, got) {
                (None, Ok(())) => {}
                (Some(want), Err(e @ Error::InvalidSource { .. })) => {
                    let msg = e.to_string();
                    assert!(msg.contains(want), "{msg}");
                    assert!(msg.contains("vg0/src"), "{msg}");
                }
                (want, got) => {
                    panic!("{src_pool:?} {src_size} {pool:?} {size}: want {want:?}, got {got:?}")
                }
            }
        }
        assert!(check_snapshot_source(&volume(Some("p"), GI)).is_ok());
        assert!(check_snapshot_source(&volume(None, GI)).is_err());
    }

    #[test]
    fn snapshot_names_are_valid_lv_names() {
        let name = snapshot_lv_name("6f1c0b8e-2f3a-4c55-9a43-1d2e3f405060");
        assert_eq!(name, "snap-6f1c0b8e-2f3a-4c55-9a43-1d2e3f405060");
        assert!(lvmpin_lvm::validate_lv_name(&name).is_ok());
    }
}
