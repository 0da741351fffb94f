//! The agent's own capacity guard, the last line against overcommit. Pure.
//!
//! `--spare-bytes` is kept free in every VG: a linear LV that would leave less
//! than that is refused like a full VG, which reschedules the claim. Thin LVs
//! take space from their pool, not the VG, so only the pool's own checks apply.

use crate::backend::{Scan, Volume};
use crate::error::{Error, Result};

/// Rounds a size up to whole extents, as lvcreate does.
pub fn extent_round_up(size: u64, extent: u64) -> u64 {
    if extent == 0 {
        return size;
    }
    size.div_ceil(extent).saturating_mul(extent)
}

/// What a create must do, decided from a fresh scan.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateCheck {
    /// The LV already exists (an earlier attempt got this far).
    Exists(Box<Volume>),
    Create,
}

pub fn check_create(
    scan: &Scan,
    vg: &str,
    lv: &str,
    size: u64,
    thin: bool,
    spare: u64,
) -> Result<CreateCheck> {
    if let Some(v) = scan.volume(vg, lv) {
        return Ok(CreateCheck::Exists(Box::new(v.clone())));
    }
    let Some(group) = scan.volume_group(vg) else {
        return Err(Error::VgNotFound { vg: vg.to_string() });
    };
    if thin {
        return Ok(CreateCheck::Create);
    }
    let needed = extent_round_up(size, group.extent_size_bytes);
    if needed.saturating_add(spare) > group.free_bytes {
        return Err(Error::InsufficientSpace {
            vg: vg.to_string(),
            requested: needed,
            free: group.free_bytes,
            spare,
        });
    }
    Ok(CreateCheck::Create)
}

/// Books a volume we just created into a cached scan, so the next check does
/// not need another lvm call.
pub fn apply_created(scan: &mut Scan, v: &Volume) {
    if scan.volume(&v.vg, &v.name).is_some() {
        return;
    }
    if let Some(g) = scan.volume_groups.iter_mut().find(|g| g.name == v.vg) {
        if v.pool.is_none() {
            g.free_bytes = g.free_bytes.saturating_sub(v.size_bytes);
        }
        g.lv_count += 1;
    }
    scan.volumes.push(v.clone());
}

pub fn apply_removed(scan: &mut Scan, vg: &str, lv: &str) {
    let Some(pos) = scan.volumes.iter().position(|v| v.vg == vg && v.name == lv) else {
        return;
    };
    let v = scan.volumes.remove(pos);
    if let Some(g) = scan.volume_groups.iter_mut().find(|g| g.name == vg) {
        if v.pool.is_none() {
            g.free_bytes = g.free_bytes.saturating_add(v.size_bytes);
        }
        g.lv_count = g.lv_count.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::VolumeGroup;

    fn scan(free: u64) -> Scan {
        Scan {
            volume_groups: vec![VolumeGroup {
                name: "vg0".into(),
                size_bytes: 100 << 20,
                free_bytes: free,
                extent_size_bytes: 4 << 20,
                ..Default::default()
            }],
            volumes: vec![Volume {
                vg: "vg0".into(),
                name: "pvc-old".into(),
                ..Default::default()
            }],
            thin_pools: vec![],
        }
    }

    #[test]
    fn table() {
        let mb = 1u64 << 20;
        let ok = |r: Result<CreateCheck>| matches!(r, Ok(CreateCheck::Create));
        let no_room = |r: Result<CreateCheck>| matches!(r, Err(Error::InsufficientSpace { .. }));
        assert!(ok(check_create(
            &scan(8 * mb),
            "vg0",
            "pvc-a",
            8 * mb,
            false,
            0
        )));
        // 5 MiB rounds up to two 4 MiB extents.
        assert!(no_room(check_create(
            &scan(7 * mb),
            "vg0",
            "pvc-a",
            5 * mb,
            false,
            0
        )));
        assert!(ok(check_create(
            &scan(12 * mb),
            "vg0",
            "pvc-a",
            5 * mb,
            false,
            4 * mb
        )));
        assert!(no_room(check_create(
            &scan(12 * mb),
            "vg0",
            "pvc-a",
            5 * mb,
            false,
            5 * mb
        )));
        assert!(ok(check_create(
            &scan(0),
            "vg0",
            "pvc-a",
            5 * mb,
            true,
            5 * mb
        )));
        assert!(matches!(
            check_create(&scan(0), "vg0", "pvc-old", 5 * mb, false, 0),
            Ok(CreateCheck::Exists(_))
        ));
        assert!(matches!(
            check_create(&scan(0), "vg9", "pvc-a", mb, false, 0),
            Err(Error::VgNotFound { .. })
        ));
        assert_eq!(extent_round_up(5 * mb, 4 * mb), 8 * mb);
        assert_eq!(extent_round_up(5, 0), 5);
    }

    #[test]
    fn booking_keeps_the_cache_in_step() {
        let mut r = scan(64 << 20);
        let v = Volume {
            vg: "vg0".into(),
            name: "pvc-a".into(),
            size_bytes: 8 << 20,
            ..Default::default()
        };
        apply_created(&mut r, &v);
        apply_created(&mut r, &v);
        assert_eq!(r.volume_groups[0].free_bytes, 56 << 20);
        assert_eq!(r.volume_groups[0].lv_count, 1);
        assert!(r.volume("vg0", "pvc-a").is_some());
        apply_removed(&mut r, "vg0", "pvc-a");
        apply_removed(&mut r, "vg0", "pvc-a");
        assert_eq!(r.volume_groups[0].free_bytes, 64 << 20);
        assert_eq!(r.volume_groups[0].lv_count, 0);
    }
}
