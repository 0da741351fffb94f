//! `Lvm`: the imperative shell that turns requests into lvm2 commands and their
//! results into typed values. Decisions live in `args`, `idempotency`, `failure`
//! and `report`; this file only sequences commands.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::args::{self, SnapshotUse};
use crate::command::{Output, Runner};
use crate::config::{DEVICE_MAPPER_CONTROL, LvmConfig};
use crate::error::{Error, Result};
use crate::failure::{Failure, classify};
use crate::idempotency::{adopt_existing, size_argument};
use crate::lock::{VgLocks, hold};
use crate::names::{validate_lv_name, validate_vg_name};
use crate::report::{LogicalVolume, Report, device_path, parse_lvs, parse_report};
use crate::request::{CreateLv, CreateSnapshotLv};
use crate::snapshot::{adopt_snapshot, check_clone_source, check_snapshot_source, stray_tags};
use crate::tags::{SnapshotOwner, owner_tags, snapshot_owner_tags};
use crate::wipe::wipe_ends;

#[derive(Clone, Debug)]
pub struct Lvm {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    runner: Runner,
    metadata_only: bool,
    locks: VgLocks,
}

/// The metadata-only warning is for operators; once per process is enough.
static WARNED_METADATA_ONLY: AtomicBool = AtomicBool::new(false);

impl Lvm {
    pub fn new(cfg: LvmConfig) -> Lvm {
        let metadata_only = !cfg.device_mapper.is_present();
        if metadata_only && !WARNED_METADATA_ONLY.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                control = DEVICE_MAPPER_CONTROL,
                "DEVICE-MAPPER IS NOT AVAILABLE: lvm runs in METADATA-ONLY mode \
                 (--driverloaded n). LVs are recorded on disk but never activated; \
                 thin volumes, formatting and mounting will fail. Not for production."
            );
        }
        Lvm {
            inner: Arc::new(Inner {
                runner: Runner {
                    binary: cfg.binary,
                    timeout: cfg.timeout,
                },
                metadata_only,
                locks: VgLocks::default(),
            }),
        }
    }

    pub fn metadata_only(&self) -> bool {
        self.inner.metadata_only
    }

    /// Every VG, LV and thin pool, from exactly one `lvm fullreport`.
    pub fn report(&self) -> Result<Report> {
        let out = self.run(args::fullreport(self.metadata_only()))?;
        if !out.success() {
            return Err(out.into_failure());
        }
        parse_report(&out.stdout)
    }

    /// One LV, or `None` if the VG has no LV of that name.
    pub fn find_lv(&self, vg: &str, lv: &str) -> Result<Option<LogicalVolume>> {
        validate_vg_name(vg)?;
        validate_lv_name(lv)?;
        let out = self.run(args::find_lv(self.metadata_only(), vg, lv))?;
        if !out.success() {
            return Err(self.failure(out, vg, lv, 0));
        }
        Ok(parse_lvs(&out.stdout)?
            .into_iter()
            .find(|l| l.vg == vg && l.name == lv))
    }

    /// Creates the LV with its owner tags in the same lvcreate, so an LV never
    /// exists without its owner. Returns the existing LV if the same owner already
    /// has it (a retry, or a restart after a crash). With a `source`, the LV is a
    /// restore or clone of it (see `create_from`); without, it is blank.
    pub fn create_lv(&self, req: &CreateLv) -> Result<LogicalVolume> {
        validate_vg_name(&req.vg)?;
        validate_lv_name(&req.name)?;
        if let Some(source) = &req.source {
            return self.create_from(req, source);
        }
        if let Some(pool) = &req.thin_pool {
            validate_lv_name(pool)?;
            if self.metadata_only() {
                return Err(Error::Unsupported {
                    operation: format!(
                        "creating thin volume {}/{} in pool {pool}",
                        req.vg, req.name
                    ),
                    reason: "device-mapper is not available (metadata-only mode)".into(),
                });
            }
        }
        let size = self.size_arg(req.size_bytes)?;
        let vg_lock = self.inner.locks.for_vg(&req.vg);
        let _held = hold(&vg_lock);

        if let Some(existing) = self.find_lv(&req.vg, &req.name)? {
            tracing::info!(vg = %req.vg, lv = %req.name, "logical volume already exists; checking its owner");
            return adopt_existing(existing, &req.owner);
        }
        let out = self.run(args::lvcreate(self.metadata_only(), req, &size))?;
        if !out.success() {
            if classify(&out.stderr) == Failure::AlreadyExists {
                // Someone outside this process won the race; it is ours only if
                // it carries our owner.
                if let Some(existing) = self.find_lv(&req.vg, &req.name)? {
                    return adopt_existing(existing, &req.owner);
                }
            }
            let missing = req.thin_pool.as_deref().unwrap_or(&req.name);
            return Err(self.failure(out, &req.vg, missing, req.size_bytes));
        }
        let created = self
            .find_lv(&req.vg, &req.name)?
            .ok_or_else(|| Error::LvNotFound {
                vg: req.vg.clone(),
                lv: req.name.clone(),
            })?;
        // Thin LVs read zeros until written; inactive ones (metadata-only
        // mode) have no device to write to.
        if req.thin_pool.is_none()
            && created.active
            && let Err(e) = wipe_ends(&created.path(), created.size_bytes)
        {
            // Never hand out an unwiped volume: a retry would adopt it as is.
            // It was made a moment ago and holds nothing of its own.
            let _ = self.run(args::lvremove(self.metadata_only(), &req.vg, &req.name));
            return Err(e);
        }
        tracing::info!(
            vg = %req.vg, lv = %req.name, size_bytes = created.size_bytes,
            thin_pool = ?req.thin_pool, claim_uid = %req.owner.claim_uid,
            "created logical volume"
        );
        Ok(created)
    }

    /// A restore or clone: a thin snapshot of `source` owned by the claim,
    /// active, and grown to the requested size. Its data is the source's, so
    /// it is never wiped. Each step is idempotent; a retry after a crash
    /// adopts the LV by its owner tags and finishes the steps left.
    fn create_from(&self, req: &CreateLv, source: &str) -> Result<LogicalVolume> {
        validate_lv_name(source)?;
        self.refuse_thin_without_device_mapper(&req.vg, &req.name)?;
        let size = self.size_arg(req.size_bytes)?;
        let vg_lock = self.inner.locks.for_vg(&req.vg);
        let _held = hold(&vg_lock);
        let wanted = owner_tags(&req.owner);

        let created = match self.find_lv(&req.vg, &req.name)? {
            Some(existing) => {
                tracing::info!(vg = %req.vg, lv = %req.name, "restored logical volume already exists; checking its owner");
                adopt_existing(existing, &req.owner)?
            }
            None => {
                let src = self
                    .find_lv(&req.vg, source)?
                    .ok_or_else(|| Error::LvNotFound {
                        vg: req.vg.clone(),
                        lv: source.to_string(),
                    })?;
                check_clone_source(&src, req.thin_pool.as_deref(), req.size_bytes)?;
                let out = self.run(args::lvcreate_snapshot(
                    self.metadata_only(),
                    &req.vg,
                    &req.name,
                    source,
                    &wanted,
                    SnapshotUse::Volume,
                ))?;
                if !out.success() {
                    if classify(&out.stderr) == Failure::AlreadyExists
                        && let Some(existing) = self.find_lv(&req.vg, &req.name)?
                    {
                        adopt_existing(existing, &req.owner)?;
                    } else {
                        return Err(self.failure(out, &req.vg, source, 0));
                    }
                }
                self.find_lv(&req.vg, &req.name)?
                    .ok_or_else(|| Error::LvNotFound {
                        vg: req.vg.clone(),
                        lv: req.name.clone(),
                    })?
            }
        };
        // lvm may copy the source's tags to a snapshot; a claim's volume
        // carries its own owner and nothing else of ours.
        self.drop_stray_tags(&req.vg, &req.name, &created.tags, &wanted)?;
        if !created.active {
            let out = self.run(args::activate(self.metadata_only(), &req.vg, &req.name))?;
            if !out.success() {
                return Err(self.failure(out, &req.vg, &req.name, 0));
            }
        }
        let result = self.extend_locked(&req.vg, &req.name, req.size_bytes, &size)?;
        if !result.active {
            return Err(Error::Unsupported {
                operation: format!("activating restored volume {}/{}", req.vg, req.name),
                reason: "lvm reports it inactive after lvchange --activate y".into(),
            });
        }
        tracing::info!(
            vg = %req.vg, lv = %req.name, %source, size_bytes = result.size_bytes,
            claim_uid = %req.owner.claim_uid,
            "created logical volume from a source"
        );
        Ok(result)
    }

    /// A thin snapshot of `req.source` tagged with its VolumeSnapshotContent,
    /// inactive (lvm's activation-skip flag). Returns the existing LV if it
    /// is already that content's snapshot; any other LV of the name is
    /// refused.
    pub fn create_snapshot(&self, req: &CreateSnapshotLv) -> Result<LogicalVolume> {
        validate_vg_name(&req.vg)?;
        validate_lv_name(&req.name)?;
        validate_lv_name(&req.source)?;
        self.refuse_thin_without_device_mapper(&req.vg, &req.name)?;
        let vg_lock = self.inner.locks.for_vg(&req.vg);
        let _held = hold(&vg_lock);
        if let Some(existing) = self.find_lv(&req.vg, &req.name)? {
            return adopt_snapshot(existing, &req.owner);
        }
        let src = self
            .find_lv(&req.vg, &req.source)?
            .ok_or_else(|| Error::LvNotFound {
                vg: req.vg.clone(),
                lv: req.source.clone(),
            })?;
        check_snapshot_source(&src)?;
        let out = self.run(args::lvcreate_snapshot(
            self.metadata_only(),
            &req.vg,
            &req.name,
            &req.source,
            &snapshot_owner_tags(&req.owner),
            SnapshotUse::Snapshot,
        ))?;
        if !out.success() {
            if classify(&out.stderr) == Failure::AlreadyExists
                && let Some(existing) = self.find_lv(&req.vg, &req.name)?
            {
                return adopt_snapshot(existing, &req.owner);
            }
            return Err(self.failure(out, &req.vg, &req.source, 0));
        }
        let created = self
            .find_lv(&req.vg, &req.name)?
            .ok_or_else(|| Error::LvNotFound {
                vg: req.vg.clone(),
                lv: req.name.clone(),
            })?;
        // A snapshot that took over its origin's claim tags would read as
        // nobody's; it must read as the content's.
        let wanted = snapshot_owner_tags(&req.owner);
        let created = if !self.drop_stray_tags(&req.vg, &req.name, &created.tags, &wanted)? {
            created
        } else {
            self.find_lv(&req.vg, &req.name)?
                .ok_or_else(|| Error::LvNotFound {
                    vg: req.vg.clone(),
                    lv: req.name.clone(),
                })?
        };
        tracing::info!(
            vg = %req.vg, lv = %req.name, source = %req.source,
            content_uid = %req.owner.content_uid, "created snapshot"
        );
        adopt_snapshot(created, &req.owner)
    }

    /// Removes a snapshot LV whose tags prove it is `owner`'s; a missing LV
    /// is success, any other LV of the name is refused and kept.
    pub fn remove_snapshot(&self, vg: &str, name: &str, owner: &SnapshotOwner) -> Result<()> {
        validate_vg_name(vg)?;
        validate_lv_name(name)?;
        let vg_lock = self.inner.locks.for_vg(vg);
        let _held = hold(&vg_lock);
        let Some(existing) = self.find_lv(vg, name)? else {
            tracing::debug!(%vg, lv = %name, "snapshot to remove is already gone");
            return Ok(());
        };
        adopt_snapshot(existing, owner)?;
        let out = self.run(args::lvremove(self.metadata_only(), vg, name))?;
        if out.success() || classify(&out.stderr) == Failure::LvNotFound {
            tracing::info!(%vg, lv = %name, content_uid = %owner.content_uid, "removed snapshot");
            return Ok(());
        }
        Err(self.failure(out, vg, name, 0))
    }

    /// Thin LVs need the pool's device: lvm sends it messages.
    fn refuse_thin_without_device_mapper(&self, vg: &str, lv: &str) -> Result<()> {
        if self.metadata_only() {
            return Err(Error::Unsupported {
                operation: format!("creating thin snapshot {vg}/{lv}"),
                reason: "device-mapper is not available (metadata-only mode)".into(),
            });
        }
        Ok(())
    }

    /// Removes the LV; an LV that is already gone is success. A missing VG is
    /// `VgNotFound`, not success: the disk may only be absent for a while.
    pub fn remove_lv(&self, vg: &str, lv: &str) -> Result<()> {
        validate_vg_name(vg)?;
        validate_lv_name(lv)?;
        let vg_lock = self.inner.locks.for_vg(vg);
        let _held = hold(&vg_lock);
        let out = self.run(args::lvremove(self.metadata_only(), vg, lv))?;
        if out.success() {
            tracing::info!(%vg, %lv, "removed logical volume");
            return Ok(());
        }
        if classify(&out.stderr) == Failure::LvNotFound {
            tracing::debug!(%vg, %lv, "logical volume to remove is already gone");
            return Ok(());
        }
        Err(self.failure(out, vg, lv, 0))
    }

    /// Grows the LV to at least `size_bytes` (rounded up to whole extents by lvm).
    /// Never shrinks: a smaller or equal size returns the LV unchanged.
    pub fn extend_lv(&self, vg: &str, lv: &str, size_bytes: u64) -> Result<LogicalVolume> {
        validate_vg_name(vg)?;
        validate_lv_name(lv)?;
        let size = self.size_arg(size_bytes)?;
        let vg_lock = self.inner.locks.for_vg(vg);
        let _held = hold(&vg_lock);
        self.extend_locked(vg, lv, size_bytes, &size)
    }

    /// `extend_lv` with the VG lock already held.
    fn extend_locked(
        &self,
        vg: &str,
        lv: &str,
        size_bytes: u64,
        size: &str,
    ) -> Result<LogicalVolume> {
        let not_found = || Error::LvNotFound {
            vg: vg.to_string(),
            lv: lv.to_string(),
        };
        let current = self.find_lv(vg, lv)?.ok_or_else(not_found)?;
        if current.size_bytes >= size_bytes {
            return Ok(current);
        }
        let out = self.run(args::lvextend(self.metadata_only(), vg, lv, size))?;
        if !out.success() {
            return Err(self.failure(out, vg, lv, size_bytes - current.size_bytes));
        }
        let grown = self.find_lv(vg, lv)?.ok_or_else(not_found)?;
        tracing::info!(%vg, %lv, from = current.size_bytes, to = grown.size_bytes, "extended logical volume");
        Ok(grown)
    }

    /// Activates the LV and returns its device path. Needs device-mapper.
    pub fn activate_lv(&self, vg: &str, lv: &str) -> Result<PathBuf> {
        validate_vg_name(vg)?;
        validate_lv_name(lv)?;
        if self.metadata_only() {
            return Err(Error::Unsupported {
                operation: format!("activating {vg}/{lv}"),
                reason: "device-mapper is not available (metadata-only mode)".into(),
            });
        }
        let vg_lock = self.inner.locks.for_vg(vg);
        let _held = hold(&vg_lock);
        let out = self.run(args::activate(self.metadata_only(), vg, lv))?;
        if !out.success() {
            return Err(self.failure(out, vg, lv, 0));
        }
        Ok(device_path(vg, lv))
    }

    fn run(&self, args: Vec<String>) -> Result<Output> {
        self.inner.runner.run(&args)
    }

    fn size_arg(&self, size_bytes: u64) -> Result<String> {
        size_argument(size_bytes).ok_or_else(|| Error::Unsupported {
            operation: format!("a size of {size_bytes} bytes"),
            reason: "larger than lvm can address".into(),
        })
    }

    /// Turns a failed command into the most specific error. `requested` is the
    /// number of bytes the command tried to allocate.
    /// Removes lvmpin tags of `lv` that are not `wanted` (lvm may copy a
    /// source's tags to a snapshot). Returns whether any were removed.
    fn drop_stray_tags(
        &self,
        vg: &str,
        lv: &str,
        tags: &[String],
        wanted: &[String],
    ) -> Result<bool> {
        let stray = stray_tags(tags, wanted);
        if stray.is_empty() {
            return Ok(false);
        }
        let out = self.run(args::deltags(self.metadata_only(), vg, lv, &stray))?;
        if !out.success() {
            return Err(self.failure(out, vg, lv, 0));
        }
        Ok(true)
    }

    fn failure(&self, out: Output, vg: &str, lv: &str, requested: u64) -> Error {
        match classify(&out.stderr) {
            Failure::VgNotFound => Error::VgNotFound { vg: vg.to_string() },
            Failure::LvNotFound => Error::LvNotFound {
                vg: vg.to_string(),
                lv: lv.to_string(),
            },
            Failure::InsufficientSpace => {
                // The VG lock is held, so this free figure is the one lvcreate saw.
                let free = self
                    .report()
                    .ok()
                    .and_then(|r| r.volume_group(vg).map(|g| g.free_bytes))
                    .unwrap_or(0);
                Error::InsufficientSpace {
                    vg: vg.to_string(),
                    requested,
                    free,
                }
            }
            Failure::AlreadyExists | Failure::Other => out.into_failure(),
        }
    }
}
