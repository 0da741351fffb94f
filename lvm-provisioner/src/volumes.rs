//! LV operations as the reconcilers use them: serialised, checked against the
//! cached scan (refreshed whenever it could mislead), and followed by a
//! capacity scan.

use crate::backend::{CreateVolume, Scan, Volume, VolumeBackend};
use crate::capacity::{CreateCheck, apply_created, apply_removed, check_create};
use crate::context::Context;
use crate::error::{Error, Result};

fn check(ctx_spare: u64, scan: &Scan, req: &CreateVolume) -> Result<CreateCheck> {
    check_create(
        scan,
        &req.vg,
        &req.name,
        req.size_bytes,
        req.thin_pool.is_some(),
        ctx_spare,
    )
}

pub async fn ensure_volume<B: VolumeBackend>(
    ctx: &Context<B>,
    req: CreateVolume,
) -> Result<Volume> {
    let mut state = ctx.lvm_state.lock().await;
    let spare = ctx.config.spare_bytes;
    let cached = state.as_ref().map(|r| check(spare, r, &req));
    let decision = match cached {
        // Only a cached "go ahead" is trusted: lvcreate itself refuses when the
        // cache was too optimistic, but a cached "no room" or "missing" may be
        // stale (the VG grew, a PV came back) and would reschedule for nothing.
        Some(Ok(CreateCheck::Create)) => CreateCheck::Create,
        _ => {
            let fresh = ctx.backend.scan().await?;
            let d = check(spare, &fresh, &req);
            *state = Some(fresh);
            if d.is_err() {
                // The VG changed behind our back (someone else's LV, a lost
                // PV). Scan it now, or the extender keeps choosing this
                // node until the next periodic scan.
                ctx.status_dirty.notify_one();
            }
            d?
        }
    };
    match decision {
        CreateCheck::Exists(v) if v.owner.as_ref() == Some(&req.owner) => Ok(*v),
        CreateCheck::Exists(v) => Err(Error::OwnedByAnother {
            vg: v.vg,
            lv: v.name,
            message: format!("its tags do not name claim uid {}", req.owner.claim_uid),
        }),
        CreateCheck::Create => match ctx.backend.create(req).await {
            Ok(v) => {
                if let Some(r) = state.as_mut() {
                    apply_created(r, &v);
                }
                ctx.status_dirty.notify_one();
                Ok(v)
            }
            Err(e) => {
                // The cache was too optimistic; the next scan rescans.
                *state = None;
                ctx.status_dirty.notify_one();
                Err(e)
            }
        },
    }
}

/// Removes an LV only if its tags name `pv_name` (or it is already gone): a PV
/// whose handle points at someone else's LV must not destroy that data. The
/// cached scan may say "ours"; "not there" or "someone else's" is always
/// confirmed on a fresh scan.
pub async fn remove_volume<B: VolumeBackend>(
    ctx: &Context<B>,
    vg: &str,
    lv: &str,
    pv_name: &str,
) -> Result<()> {
    let mut state = ctx.lvm_state.lock().await;
    let names_pv = |r: &Scan| {
        r.volume(vg, lv)
            .map(|v| v.owner.as_ref().map(|o| o.pv_name.as_str()) == Some(pv_name))
    };
    let cached_ours = state.as_ref().and_then(names_pv) == Some(true);
    if !cached_ours {
        let fresh = ctx.backend.scan().await?;
        let verdict = names_pv(&fresh);
        *state = Some(fresh);
        match verdict {
            None => return Ok(()),
            Some(false) => {
                return Err(Error::OwnedByAnother {
                    vg: vg.into(),
                    lv: lv.into(),
                    message: format!("its tags do not name PV {pv_name}; refusing to remove it"),
                });
            }
            Some(true) => {}
        }
    }
    let removed = ctx.backend.remove(vg, lv).await;
    match (&removed, state.as_mut()) {
        (Ok(()), Some(r)) => apply_removed(r, vg, lv),
        (Err(_), _) => *state = None,
        _ => {}
    }
    if removed.is_ok() {
        ctx.status_dirty.notify_one();
    }
    removed
}

/// Extends an LV only if its tags name the claim (uid) and its PV, as removal
/// does: a PV whose handle points at someone else's LV must not grow that LV
/// out of this claim's request. The cached scan may say "ours"; "not there" or
/// "someone else's" is always confirmed on a fresh scan.
pub async fn extend_volume<B: VolumeBackend>(
    ctx: &Context<B>,
    vg: &str,
    lv: &str,
    size: u64,
    claim_uid: &str,
    pv_name: &str,
) -> Result<Volume> {
    let mut state = ctx.lvm_state.lock().await;
    let names_claim = |r: &Scan| {
        r.volume(vg, lv).map(|v| {
            v.owner
                .as_ref()
                .is_some_and(|o| o.claim_uid == claim_uid && o.pv_name == pv_name)
        })
    };
    if state.as_ref().and_then(names_claim) != Some(true) {
        let fresh = ctx.backend.scan().await?;
        let verdict = names_claim(&fresh);
        *state = Some(fresh);
        match verdict {
            None => {
                return Err(Error::LvNotFound {
                    vg: vg.into(),
                    lv: lv.into(),
                });
            }
            Some(false) => {
                return Err(Error::OwnedByAnother {
                    vg: vg.into(),
                    lv: lv.into(),
                    message: format!(
                        "its tags do not name claim uid {claim_uid} and PV {pv_name}; refusing to extend it"
                    ),
                });
            }
            Some(true) => {}
        }
    }
    let result = ctx.backend.extend(vg, lv, size).await;
    *state = None;
    if result.is_ok() {
        ctx.status_dirty.notify_one();
    }
    result
}

/// The scan the capacity scan is built from: fresh when asked (periodic
/// scans, which also resynchronise the cache) or when nothing is cached.
pub async fn scan<B: VolumeBackend>(ctx: &Context<B>, fresh: bool) -> Result<Scan> {
    let mut state = ctx.lvm_state.lock().await;
    match state.as_ref() {
        Some(r) if !fresh => Ok(r.clone()),
        _ => {
            let r = ctx.backend.scan().await;
            *state = r.as_ref().ok().cloned();
            r
        }
    }
}
