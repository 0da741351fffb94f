//! `VolumeBackend` on the real lvm2 layer. lvm2 commands block, so each call
//! runs on tokio's blocking pool.

use lvmpin_lvm as lvm;

use crate::backend::{
    CreateSnapshot, CreateVolume, Owner, Scan, SnapshotOwner, ThinPool, Volume, VolumeBackend,
    VolumeGroup,
};
use crate::error::{Error, Result};

#[derive(Clone)]
pub struct LvmBackend {
    lvm: lvm::Lvm,
}

impl LvmBackend {
    pub fn new(lvm: lvm::Lvm) -> Self {
        Self { lvm }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&lvm::Lvm) -> lvm::Result<T> + Send + 'static,
    ) -> Result<T> {
        let lvm = self.lvm.clone();
        tokio::task::spawn_blocking(move || f(&lvm))
            .await
            .map_err(|e| Error::Join(e.to_string()))?
            .map_err(Error::from)
    }
}

impl From<lvm::Error> for Error {
    fn from(e: lvm::Error) -> Self {
        match e {
            lvm::Error::InsufficientSpace {
                vg,
                requested,
                free,
            } => Error::InsufficientSpace {
                vg,
                requested,
                free,
                spare: 0,
            },
            lvm::Error::VgNotFound { vg } => Error::VgNotFound { vg },
            lvm::Error::LvNotFound { vg, lv } => Error::LvNotFound { vg, lv },
            lvm::Error::Unsupported { .. } => Error::Unsupported {
                message: e.to_string(),
            },
            lvm::Error::OwnedByAnother { ref vg, ref lv, .. } => Error::OwnedByAnother {
                vg: vg.clone(),
                lv: lv.clone(),
                message: e.to_string(),
            },
            lvm::Error::SnapshotOwnedByAnother { ref vg, ref lv, .. } => Error::OwnedByAnother {
                vg: vg.clone(),
                lv: lv.clone(),
                message: e.to_string(),
            },
            lvm::Error::InvalidSource(p) => Error::InvalidSource {
                vg: p.vg,
                lv: p.lv,
                reason: p.reason,
            },
            lvm::Error::InvalidName { .. } => Error::InvalidName(e.to_string()),
            lvm::Error::Timeout { .. } => Error::LvmTimeout(e.to_string()),
            lvm::Error::CommandFailed { .. } | lvm::Error::Parse { .. } | lvm::Error::Io { .. } => {
                Error::Lvm(e.to_string())
            }
        }
    }
}

fn owner_from(o: lvm::Owner) -> Owner {
    Owner {
        claim_uid: o.claim_uid,
        claim_namespace: o.claim_namespace,
        claim_name: o.claim_name,
        pv_name: o.pv_name,
    }
}

fn volume_from(lv: lvm::LogicalVolume) -> Volume {
    Volume {
        vg: lv.vg,
        name: lv.name,
        size_bytes: lv.size_bytes,
        pool: lv.pool,
        owner: lv.owner.map(owner_from),
        snapshot_owner: lv.snapshot_owner.map(|o| SnapshotOwner {
            content_uid: o.content_uid,
            content_name: o.content_name,
        }),
        origin: lv.origin,
        created_unix: lv.created_unix,
    }
}

fn scan_from(r: lvm::Report) -> Scan {
    Scan {
        volume_groups: r
            .volume_groups
            .into_iter()
            .map(|g| VolumeGroup {
                name: g.name,
                size_bytes: g.size_bytes,
                free_bytes: g.free_bytes,
                extent_size_bytes: g.extent_size_bytes,
                pv_count: g.pv_count,
                missing_pv_count: g.missing_pv_count,
                lv_count: g.lv_count,
            })
            .collect(),
        volumes: r.logical_volumes.into_iter().map(volume_from).collect(),
        thin_pools: r
            .thin_pools
            .into_iter()
            .map(|p| ThinPool {
                vg: p.vg,
                name: p.name,
                size_bytes: p.size_bytes,
                data_percent: p.data_percent,
                metadata_percent: p.metadata_percent,
            })
            .collect(),
    }
}

impl VolumeBackend for LvmBackend {
    async fn scan(&self) -> Result<Scan> {
        self.blocking(|l| l.report()).await.map(scan_from)
    }

    async fn create(&self, req: CreateVolume) -> Result<Volume> {
        let req = lvm::CreateLv {
            vg: req.vg,
            name: req.name,
            size_bytes: req.size_bytes,
            thin_pool: req.thin_pool,
            source: req.source,
            owner: lvm::Owner {
                claim_uid: req.owner.claim_uid,
                claim_namespace: req.owner.claim_namespace,
                claim_name: req.owner.claim_name,
                pv_name: req.owner.pv_name,
            },
        };
        self.blocking(move |l| l.create_lv(&req))
            .await
            .map(volume_from)
    }

    async fn remove(&self, vg: &str, lv: &str) -> Result<()> {
        let (vg, lv) = (vg.to_string(), lv.to_string());
        self.blocking(move |l| l.remove_lv(&vg, &lv)).await
    }

    async fn extend(&self, vg: &str, lv: &str, size_bytes: u64) -> Result<Volume> {
        let (vg, lv) = (vg.to_string(), lv.to_string());
        self.blocking(move |l| l.extend_lv(&vg, &lv, size_bytes))
            .await
            .map(volume_from)
    }

    async fn create_snapshot(&self, req: CreateSnapshot) -> Result<Volume> {
        let req = lvm::CreateSnapshotLv {
            vg: req.vg,
            name: req.name,
            source: req.source,
            owner: lvm_snapshot_owner(&req.owner),
        };
        self.blocking(move |l| l.create_snapshot(&req))
            .await
            .map(volume_from)
    }

    async fn remove_snapshot(&self, vg: &str, name: &str, owner: &SnapshotOwner) -> Result<()> {
        let (vg, name, owner) = (vg.to_string(), name.to_string(), lvm_snapshot_owner(owner));
        self.blocking(move |l| l.remove_snapshot(&vg, &name, &owner))
            .await
    }
}

fn lvm_snapshot_owner(o: &SnapshotOwner) -> lvm::SnapshotOwner {
    lvm::SnapshotOwner {
        content_uid: o.content_uid.clone(),
        content_name: o.content_name.clone(),
    }
}
