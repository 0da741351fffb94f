//! The agent's view of the volume manager: plain data plus a small trait, so
//! that planning and reconcile logic run against a fake in tests and the real
//! lvm2 layer (`lvm_backend.rs`) in production.

use std::future::Future;

use crate::error::Result;

/// Who a logical volume belongs to; stored as LV tags so that ownership
/// survives agent restarts and lost API objects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Owner {
    pub claim_uid: String,
    pub claim_namespace: String,
    pub claim_name: String,
    pub pv_name: String,
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
    pub owner: Option<Owner>,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateVolume {
    pub vg: String,
    pub name: String,
    pub size_bytes: u64,
    pub thin_pool: Option<String>,
    pub owner: Owner,
}

/// Volume operations. Every method is idempotent: create returns the existing
/// volume of the same owner, remove of a missing volume succeeds, extend to a
/// size the volume already has is a no-op.
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
}
