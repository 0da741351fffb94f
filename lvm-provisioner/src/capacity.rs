//! The agent's own capacity guard, the last line against overcommit. Pure.
//!
//! `--spare-bytes` is kept free in every VG: a linear LV that would leave less
//! than that is refused like a full VG, which reschedules the claim. Thin LVs
//! take space from their pool, not the VG, so only the pool's own checks
//! apply: the class's virtual capacity and data/metadata limits
//! (`lvmpin_api::thin`), the same rules the extender places by.

use lvmpin_api::thin::{PoolUsage, ThinLimits, virtual_free, virtual_size};

use crate::backend::{Scan, Volume};
use crate::error::{Error, Result};
use crate::lvm_node_status::promised_bytes;

/// A thin create: the pool and the class's limits on it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThinTarget<'a> {
    pub pool: &'a str,
    pub limits: &'a ThinLimits,
}

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
    thin: Option<ThinTarget<'_>>,
    spare: u64,
) -> Result<CreateCheck> {
    if let Some(v) = scan.volume(vg, lv) {
        return Ok(CreateCheck::Exists(Box::new(v.clone())));
    }
    let Some(group) = scan.volume_group(vg) else {
        return Err(Error::VgNotFound { vg: vg.to_string() });
    };
    let needed = extent_round_up(size, group.extent_size_bytes);
    if let Some(t) = thin {
        check_thin(scan, vg, t, needed)?;
        return Ok(CreateCheck::Create);
    }
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

/// The pool's guard. A pool missing from the scan is left to lvcreate, whose
/// "not found" the caller already treats as final for this node.
fn check_thin(scan: &Scan, vg: &str, t: ThinTarget<'_>, needed: u64) -> Result<()> {
    let Some(pool) = scan
        .thin_pools
        .iter()
        .find(|p| p.vg == vg && p.name == t.pool)
    else {
        return Ok(());
    };
    let usage = PoolUsage {
        size_bytes: pool.size_bytes,
        data_percent: pool.data_percent,
        metadata_percent: pool.metadata_percent,
        promised_bytes: promised_bytes(scan, vg, t.pool),
    };
    let full = |reason: String| Error::ThinPoolFull {
        vg: vg.to_string(),
        pool: t.pool.to_string(),
        reason,
    };
    let free = virtual_free(&usage, t.limits).map_err(|l| full(l.to_string()))?;
    if needed > free {
        return Err(full(format!(
            "needs {needed} virtual bytes, {free} left of {} (pool {} bytes × overprovision ratio {}, {} promised)",
            virtual_size(usage.size_bytes, t.limits),
            usage.size_bytes,
            t.limits.ratio_text(),
            usage.promised_bytes
        )));
    }
    Ok(())
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
            None,
            0
        )));
        // 5 MiB rounds up to two 4 MiB extents.
        assert!(no_room(check_create(
            &scan(7 * mb),
            "vg0",
            "pvc-a",
            5 * mb,
            None,
            0
        )));
        assert!(ok(check_create(
            &scan(12 * mb),
            "vg0",
            "pvc-a",
            5 * mb,
            None,
            4 * mb
        )));
        assert!(no_room(check_create(
            &scan(12 * mb),
            "vg0",
            "pvc-a",
            5 * mb,
            None,
            5 * mb
        )));
        // A thin LV takes nothing from the VG: no pool in the scan is left
        // to lvcreate.
        let lim = ThinLimits::default();
        let pool = ThinTarget {
            pool: "pool",
            limits: &lim,
        };
        assert!(ok(check_create(
            &scan(0),
            "vg0",
            "pvc-a",
            5 * mb,
            Some(pool),
            5 * mb
        )));
        assert!(matches!(
            check_create(&scan(0), "vg0", "pvc-old", 5 * mb, None, 0),
            Ok(CreateCheck::Exists(_))
        ));
        assert!(matches!(
            check_create(&scan(0), "vg9", "pvc-a", mb, None, 0),
            Err(Error::VgNotFound { .. })
        ));
        assert_eq!(extent_round_up(5 * mb, 4 * mb), 8 * mb);
        assert_eq!(extent_round_up(5, 0), 5);
    }

    /// The agent's thin guard: a pool of 100 MiB holding a 60 MiB thin LV.
    #[test]
    fn thin_guard_table() {
        use crate::backend::ThinPool;
        let mb = 1u64 << 20;
        let with_pool = |data: f64, meta: f64| {
            let mut s = scan(0);
            s.thin_pools.push(ThinPool {
                vg: "vg0".into(),
                name: "pool".into(),
                size_bytes: 100 * mb,
                data_percent: data,
                metadata_percent: meta,
            });
            s.volumes.push(Volume {
                vg: "vg0".into(),
                name: "pvc-thin".into(),
                size_bytes: 60 * mb,
                pool: Some("pool".into()),
                owner: None,
                ..Default::default()
            });
            s
        };
        let lim = |ratio_milli| ThinLimits {
            ratio_milli,
            ..Default::default()
        };
        // name, data%, metadata%, ratio, size, Err text or Ok
        type Case = (&'static str, f64, f64, u64, u64, Option<&'static str>);
        let cases: &[Case] = &[
            ("fits the ratio-1 room", 10.0, 1.0, 1000, 40 * mb, None),
            (
                "one extent over the room",
                10.0,
                1.0,
                1000,
                41 * mb,
                Some("needs 46137344 virtual bytes, 41943040 left"),
            ),
            ("ratio 2 doubles the room", 10.0, 1.0, 2000, 140 * mb, None),
            (
                "data at the limit",
                90.0,
                1.0,
                2000,
                4 * mb,
                Some("data use 90.0%"),
            ),
            (
                "metadata over the limit",
                10.0,
                91.0,
                2000,
                4 * mb,
                Some("metadata use 91.0%"),
            ),
        ];
        for (name, data, meta, ratio, size, want) in cases {
            let l = lim(*ratio);
            let got = check_create(
                &with_pool(*data, *meta),
                "vg0",
                "pvc-new",
                *size,
                Some(ThinTarget {
                    pool: "pool",
                    limits: &l,
                }),
                0,
            );
            match (got, want) {
                (Ok(CreateCheck::Create), None) => {}
                (Err(e @ Error::ThinPoolFull { .. }), Some(text)) => {
                    let m = e.to_string();
                    assert!(m.contains(text), "{name}: {m}");
                    assert!(m.contains("thin pool vg0/pool"), "{name}: {m}");
                    assert!(e.needs_reschedule(), "{name}");
                }
                (got, _) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
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
