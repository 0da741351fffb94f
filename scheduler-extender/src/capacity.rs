//! Free space arithmetic: what a node's VG can still promise.

use crate::facts::VgState;

/// LVM allocates whole extents, so a claim takes its size rounded up to one.
pub fn round_to_extent(bytes: u64, extent: u64) -> u64 {
    if extent == 0 {
        return bytes;
    }
    bytes.div_ceil(extent).saturating_mul(extent)
}

/// Bytes a set of claims takes in this VG.
pub fn need_in(vg: &VgState, sizes: &[u64]) -> u64 {
    need_with_extent(vg.extent, sizes)
}

/// Bytes a set of claims takes in a VG of this extent size.
pub fn need_with_extent(extent: u64, sizes: &[u64]) -> u64 {
    sizes.iter().fold(0u64, |acc, s| {
        acc.saturating_add(round_to_extent(*s, extent))
    })
}

/// Reported free − reservations not yet visible in the report − spare.
pub fn available(vg: &VgState, reserved: u64, spare: u64) -> u64 {
    available_of(vg.free, reserved, spare)
}

/// `available` from the reported free bytes alone.
pub fn available_of(free: u64, reserved: u64, spare: u64) -> u64 {
    free.saturating_sub(reserved).saturating_sub(spare)
}

/// The share of a VG of `size` bytes left free once `need` of `avail` is
/// taken, in 0..=1; None when it does not fit.
pub fn left_share(size: u64, avail: u64, need: u64) -> Option<f64> {
    if need > avail {
        return None;
    }
    let left = if size == 0 {
        0.0
    } else {
        (avail - need) as f64 / size as f64
    };
    Some(left.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vg(free: u64, extent: u64) -> VgState {
        VgState {
            name: "vg".into(),
            size: 100,
            free,
            extent,
            healthy: true,
            ..Default::default()
        }
    }

    /// name, free, extent, sizes, reserved, spare, want need, want available
    type Case = (&'static str, u64, u64, &'static [u64], u64, u64, u64, u64);

    #[test]
    fn table() {
        let cases: &[Case] = &[
            ("exact extents", 100, 4, &[8, 4], 0, 0, 12, 100),
            ("rounds each claim up", 100, 4, &[1, 5], 0, 0, 12, 100),
            ("no extent size reported", 100, 0, &[1, 5], 0, 0, 6, 100),
            ("reservations subtract", 100, 4, &[4], 30, 0, 4, 70),
            ("spare subtracts", 100, 4, &[4], 30, 10, 4, 60),
            ("never below zero", 10, 4, &[4], 30, 10, 4, 0),
        ];
        for (name, free, extent, sizes, reserved, spare, need, avail) in cases {
            let v = vg(*free, *extent);
            assert_eq!(need_in(&v, sizes), *need, "{name}");
            assert_eq!(available(&v, *reserved, *spare), *avail, "{name}");
        }
    }
}
