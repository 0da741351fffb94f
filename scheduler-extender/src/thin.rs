//! Thin claims in placement: what a demanded capacity key stands for, and
//! how much room it has on a node.
//!
//! Placement sums a pod's claims per *capacity key* and checks each key
//! against the node. A linear class's key is its VG name; a thin class's key
//! names the pool and carries the class's limits,
//! `<vg>/<pool>:<ratio‰>:<data%>:<metadata%>`, so that the same machinery
//! (per-key columns in the node view, per-key reservations) charges thin
//! claims against the pool's virtual capacity and never against VG free
//! space. LVM names cannot hold `/` or `:` (lvm2 `lib/misc/lvm-string.c`,
//! `validate_name`), so keys never collide with a VG name.
//!
//! Reservations are kept per pool (`<vg>/<pool>`, the key without limits):
//! every class with claims in one pool draws on the same promises.

use lvmpin_api::thin::{PoolLimit, ThinLimits, virtual_free, virtual_size};

use crate::facts::{NodeLvm, VgState};
use crate::placement::bytes;

/// The demanded key of a thin class's claims.
pub fn demand_key(vg: &str, pool: &str, l: &ThinLimits) -> String {
    format!(
        "{vg}/{pool}:{}:{}:{}",
        l.ratio_milli, l.data_percent, l.metadata_percent
    )
}

/// The key reservations are summed under: the pool for a thin key, the VG
/// for a linear one.
pub fn reservation_key(key: &str) -> &str {
    key.split_once(':').map_or(key, |(k, _)| k)
}

/// The VG of a key.
pub fn vg_of(key: &str) -> &str {
    key.split_once('/').map_or(key, |(vg, _)| vg)
}

/// The pool and limits of a thin key; None for a VG name.
pub fn pool_of(key: &str) -> Option<(&str, ThinLimits)> {
    let (_, rest) = key.split_once('/')?;
    let mut parts = rest.split(':');
    let pool = parts.next()?;
    let limits = ThinLimits {
        ratio_milli: parts.next()?.parse().ok()?,
        data_percent: parts.next()?.parse().ok()?,
        metadata_percent: parts.next()?.parse().ok()?,
    };
    Some((pool, limits))
}

/// Bytes of the extender's `--spare-bytes` a key keeps free: the spare is
/// VG space, which thin volumes do not take.
pub fn spare_for(key: &str, spare: u64) -> u64 {
    if key.contains('/') { 0 } else { spare }
}

/// What a key can still take on a node, before reservations and spare.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Room {
    /// The VG's size, or the pool's virtual size.
    pub size: u64,
    /// The VG's free bytes, or the pool's virtual free bytes.
    pub free: u64,
    pub extent: u64,
    /// Thin keys: the pool's promised bytes, for messages.
    pub promised: u64,
}

/// Why a key has no room at all on a node.
#[derive(Clone, Debug, PartialEq)]
pub enum NoRoom<'a> {
    NoVg(&'a str),
    Unhealthy(&'a VgState),
    NoPool(&'a str, &'a str),
    /// The agent does not report promised bytes (older than thin accounting).
    NoPromised(&'a str, &'a str),
    Limit(&'a str, &'a str, PoolLimit),
    /// The key does not parse; only a key not made by `demand_key`.
    BadKey(&'a str),
}

impl std::fmt::Display for NoRoom<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoRoom::NoVg(vg) => write!(f, "volume group {vg} does not exist on this node"),
            NoRoom::Unhealthy(vg) => write!(
                f,
                "volume group {} is unhealthy: {}",
                vg.name,
                vg.message.as_deref().unwrap_or("no detail reported")
            ),
            NoRoom::NoPool(vg, pool) => {
                write!(f, "thin pool {vg}/{pool} does not exist on this node")
            }
            NoRoom::NoPromised(vg, pool) => write!(
                f,
                "thin pool {vg}/{pool}: the node's agent does not report its promised bytes (upgrade the agent)"
            ),
            NoRoom::Limit(vg, pool, l) => write!(f, "thin pool {vg}/{pool}: {l}"),
            NoRoom::BadKey(k) => write!(f, "unreadable capacity key {k:?}"),
        }
    }
}

/// The room of `key` on a node.
pub fn room<'a>(lvm: &'a NodeLvm, key: &'a str) -> Result<Room, NoRoom<'a>> {
    let vg_name = vg_of(key);
    let vg = lvm.vg(vg_name).ok_or(NoRoom::NoVg(vg_name))?;
    if !vg.healthy {
        return Err(NoRoom::Unhealthy(vg));
    }
    if !key.contains('/') {
        return Ok(Room {
            size: vg.size,
            free: vg.free,
            extent: vg.extent,
            promised: 0,
        });
    }
    let (pool_name, limits) = pool_of(key).ok_or(NoRoom::BadKey(key))?;
    let pool = vg
        .thin_pools
        .iter()
        .find(|p| p.name == pool_name)
        .ok_or(NoRoom::NoPool(vg_name, pool_name))?;
    let usage = pool.usage.ok_or(NoRoom::NoPromised(vg_name, pool_name))?;
    let free = virtual_free(&usage, &limits).map_err(|l| NoRoom::Limit(vg_name, pool_name, l))?;
    Ok(Room {
        size: virtual_size(usage.size_bytes, &limits),
        free,
        extent: vg.extent,
        promised: usage.promised_bytes,
    })
}

/// Why `need` bytes do not fit in `avail` of `key`, naming the pool and
/// the ratio for a thin key.
pub fn shortfall(key: &str, room: &Room, need: u64, avail: u64, held: u64, spare: u64) -> String {
    match pool_of(key) {
        None => format!(
            "volume group {key}: needs {}, only {} available (free {} - reserved {} - spare {})",
            bytes(need),
            bytes(avail),
            bytes(room.free),
            bytes(held),
            bytes(spare)
        ),
        Some((pool, limits)) => format!(
            "thin pool {}/{pool}: needs {}, only {} available (virtual size {} = pool size × overprovision ratio {} - promised {} - reserved {})",
            vg_of(key),
            bytes(need),
            bytes(avail),
            bytes(room.size),
            limits.ratio_text(),
            bytes(room.promised),
            bytes(held)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::PoolState;
    use lvmpin_api::thin::PoolUsage;

    const GI: u64 = 1 << 30;

    #[test]
    fn keys_round_trip() {
        let l = ThinLimits {
            ratio_milli: 2500,
            data_percent: 80,
            metadata_percent: 70,
        };
        let k = demand_key("vg1", "pool0", &l);
        assert_eq!(k, "vg1/pool0:2500:80:70");
        assert_eq!(reservation_key(&k), "vg1/pool0");
        assert_eq!(vg_of(&k), "vg1");
        assert_eq!(pool_of(&k), Some(("pool0", l)));
        assert_eq!(reservation_key("vg1"), "vg1");
        assert_eq!(vg_of("vg1"), "vg1");
        assert_eq!(pool_of("vg1"), None);
        assert_eq!(pool_of("vg1/pool0:x:1:1"), None);
        assert_eq!((spare_for("vg1", 7), spare_for(&k, 7)), (7, 0));
    }

    fn node(data: f64, promised: Option<u64>, healthy: bool) -> NodeLvm {
        NodeLvm {
            vgs: vec![VgState {
                name: "vg1".into(),
                size: 100 * GI,
                // The pool fills the VG: no VG free space at all.
                free: 0,
                extent: 4 << 20,
                healthy,
                message: (!healthy).then(|| "PV missing".into()),
                thin_pools: vec![PoolState {
                    name: "pool0".into(),
                    usage: promised.map(|p| PoolUsage {
                        size_bytes: 100 * GI,
                        data_percent: data,
                        metadata_percent: 5.0,
                        promised_bytes: p,
                    }),
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn room_table() {
        let lim = |r| ThinLimits {
            ratio_milli: r,
            ..Default::default()
        };
        let thin = |r| demand_key("vg1", "pool0", &lim(r));
        type Case = (
            &'static str,
            NodeLvm,
            String,
            Result<(u64, u64), &'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "linear sees the full VG",
                node(0.0, Some(0), true),
                "vg1".into(),
                Ok((100 * GI, 0)),
            ),
            (
                "thin, ratio 1",
                node(0.0, Some(30 * GI), true),
                thin(1000),
                Ok((100 * GI, 70 * GI)),
            ),
            (
                "thin, ratio 1.5",
                node(0.0, Some(30 * GI), true),
                thin(1500),
                Ok((150 * GI, 120 * GI)),
            ),
            (
                "thin, overpromised",
                node(0.0, Some(300 * GI), true),
                thin(2000),
                Ok((200 * GI, 0)),
            ),
            (
                "data limit",
                node(95.0, Some(0), true),
                thin(2000),
                Err("thin pool vg1/pool0: data use 95.0% is at or over the limit of 90%"),
            ),
            (
                "older agent",
                node(0.0, None, true),
                thin(1000),
                Err("does not report its promised bytes"),
            ),
            (
                "missing pool",
                node(0.0, Some(0), true),
                demand_key("vg1", "other", &lim(1000)),
                Err("thin pool vg1/other does not exist"),
            ),
            (
                "missing VG",
                node(0.0, Some(0), true),
                "vg9".into(),
                Err("vg9 does not exist"),
            ),
            (
                "unhealthy VG",
                node(0.0, Some(0), false),
                thin(1000),
                Err("unhealthy: PV missing"),
            ),
        ];
        for (name, lvm, key, want) in cases {
            match (room(&lvm, &key), want) {
                (Ok(r), Ok((size, free))) => assert_eq!((r.size, r.free), (size, free), "{name}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{name}: {e}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }
}
