//! Thin pool accounting shared by the extender (placement), the agent (its
//! create guard, CSIStorageCapacity, warnings) and the simulator, so all of
//! them charge a thin claim the same way.
//!
//! A thin LV takes no VG extents when it is made; it takes pool blocks as it
//! is written. So a thin claim is charged against its pool's *virtual
//! capacity*, `floor(pool size × ratio)`, less the virtual sizes of the thin
//! LVs already in the pool ("promised"). The ratio is the class's
//! overprovisioning: 1 never promises more than the pool holds. Promises say
//! nothing about what is really written, so a pool whose data or metadata use
//! is at or over the class's limit takes no new volume at all, whatever its
//! virtual room: a full pool stops every write of every volume in it (data)
//! or can be damaged (metadata).

use std::collections::BTreeMap;

use thiserror::Error;

use crate::names::{
    PARAM_THIN_DATA_LIMIT, PARAM_THIN_METADATA_LIMIT, PARAM_THIN_OVERPROVISION_RATIO,
    PARAM_THIN_POOL,
};

/// Default data and metadata limits, in percent. lvm2's dmeventd starts
/// warning at 80% (lvm2 `daemons/dmeventd/plugins/thin/dmeventd_thin.c`,
/// `WARNING_THRESH`); 90 leaves the volumes already promised the last tenth
/// to keep writing into while an operator grows the pool.
pub const DEFAULT_PERCENT_LIMIT: u8 = 90;

/// The largest overprovision ratio a class may ask for. Beyond it a pool
/// of any size promises more than any disk holds.
pub const MAX_RATIO_MILLI: u64 = 100_000;

/// A thin class's limits on its pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ThinLimits {
    /// Overprovision ratio in thousandths (1.5 → 1500), so that sums and
    /// comparisons are exact.
    pub ratio_milli: u64,
    /// No new volume once the pool's data use is at or over this percent.
    pub data_percent: u8,
    /// No new volume once the pool's metadata use is at or over this percent.
    pub metadata_percent: u8,
}

impl Default for ThinLimits {
    fn default() -> Self {
        Self {
            ratio_milli: 1000,
            data_percent: DEFAULT_PERCENT_LIMIT,
            metadata_percent: DEFAULT_PERCENT_LIMIT,
        }
    }
}

impl ThinLimits {
    /// The limits that hold when claims of both classes go to one pool.
    pub fn strictest(self, other: Self) -> Self {
        Self {
            ratio_milli: self.ratio_milli.min(other.ratio_milli),
            data_percent: self.data_percent.min(other.data_percent),
            metadata_percent: self.metadata_percent.min(other.metadata_percent),
        }
    }

    /// The ratio as written in a class, e.g. "1.5".
    pub fn ratio_text(&self) -> String {
        let whole = self.ratio_milli / 1000;
        let frac = self.ratio_milli % 1000;
        if frac == 0 {
            whole.to_string()
        } else {
            format!("{whole}.{frac:03}")
                .trim_end_matches('0')
                .to_string()
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ThinParamError {
    #[error(
        "{key}={value:?} is not a positive decimal ratio with at most three decimals, at most 100 (e.g. \"1.5\")"
    )]
    Ratio { key: &'static str, value: String },
    #[error("{key}={value:?} is not a whole percent from 1 to 100")]
    Percent { key: &'static str, value: String },
    #[error("{key} applies only to a thin class: set {PARAM_THIN_POOL} too")]
    NotThin { key: &'static str },
}

/// The thin limits a class's parameters set: None for a class without a
/// thin pool (which may not set them either), the defaults for what is
/// left out.
pub fn limits_from_params(
    params: Option<&BTreeMap<String, String>>,
) -> Result<Option<ThinLimits>, ThinParamError> {
    let get = |k: &str| params.and_then(|p| p.get(k)).map(String::as_str);
    let thin = get(PARAM_THIN_POOL).is_some_and(|p| !p.is_empty());
    if !thin {
        for key in [
            PARAM_THIN_OVERPROVISION_RATIO,
            PARAM_THIN_DATA_LIMIT,
            PARAM_THIN_METADATA_LIMIT,
        ] {
            if get(key).is_some() {
                return Err(ThinParamError::NotThin { key });
            }
        }
        return Ok(None);
    }
    let mut limits = ThinLimits::default();
    if let Some(v) = get(PARAM_THIN_OVERPROVISION_RATIO) {
        limits.ratio_milli = parse_ratio_milli(v).ok_or_else(|| ThinParamError::Ratio {
            key: PARAM_THIN_OVERPROVISION_RATIO,
            value: v.to_string(),
        })?;
    }
    for (key, slot) in [
        (PARAM_THIN_DATA_LIMIT, &mut limits.data_percent),
        (PARAM_THIN_METADATA_LIMIT, &mut limits.metadata_percent),
    ] {
        if let Some(v) = get(key) {
            *slot = parse_percent(v).ok_or_else(|| ThinParamError::Percent {
                key,
                value: v.to_string(),
            })?;
        }
    }
    Ok(Some(limits))
}

/// "1", "1.5", "0.25" → thousandths; None for anything else (signs,
/// exponents, more than three decimals, zero, over the maximum).
pub fn parse_ratio_milli(s: &str) -> Option<u64> {
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 6 || frac.len() > 3 || !digits(whole) || !digits(frac) {
        return None;
    }
    if s.contains('.') && frac.is_empty() {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let frac: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().ok()?
    };
    let milli = whole.checked_mul(1000)?.checked_add(frac)?;
    (milli > 0 && milli <= MAX_RATIO_MILLI).then_some(milli)
}

fn parse_percent(s: &str) -> Option<u8> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let p: u8 = s.parse().ok()?;
    (1..=100).contains(&p).then_some(p)
}

/// What a pool's report says, as placement reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PoolUsage {
    pub size_bytes: u64,
    pub data_percent: f64,
    pub metadata_percent: f64,
    /// Virtual bytes of the thin LVs in the pool.
    pub promised_bytes: u64,
}

/// Which of a class's limits a pool has reached.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PoolLimit {
    Data { percent: f64, limit: u8 },
    Metadata { percent: f64, limit: u8 },
}

impl std::fmt::Display for PoolLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolLimit::Data { percent, limit } => write!(
                f,
                "data use {percent:.1}% is at or over the limit of {limit}% ({PARAM_THIN_DATA_LIMIT})"
            ),
            PoolLimit::Metadata { percent, limit } => write!(
                f,
                "metadata use {percent:.1}% is at or over the limit of {limit}% ({PARAM_THIN_METADATA_LIMIT})"
            ),
        }
    }
}

/// `floor(size × ratio)`.
pub fn virtual_size(size_bytes: u64, limits: &ThinLimits) -> u64 {
    let v = u128::from(size_bytes) * u128::from(limits.ratio_milli) / 1000;
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// The first limit the pool's real use has reached, data first.
pub fn limit_reached(pool: &PoolUsage, limits: &ThinLimits) -> Option<PoolLimit> {
    // NaN (an unreadable report) counts as over: unknown use is not room.
    let over = |p: f64, l: u8| p.is_nan() || p >= f64::from(l);
    if over(pool.data_percent, limits.data_percent) {
        return Some(PoolLimit::Data {
            percent: pool.data_percent,
            limit: limits.data_percent,
        });
    }
    if over(pool.metadata_percent, limits.metadata_percent) {
        return Some(PoolLimit::Metadata {
            percent: pool.metadata_percent,
            limit: limits.metadata_percent,
        });
    }
    None
}

/// Virtual bytes the pool can still promise under `limits`, before
/// reservations: `floor(size × ratio) − promised`, or why it takes nothing.
pub fn virtual_free(pool: &PoolUsage, limits: &ThinLimits) -> Result<u64, PoolLimit> {
    match limit_reached(pool, limits) {
        Some(l) => Err(l),
        None => Ok(virtual_size(pool.size_bytes, limits).saturating_sub(pool.promised_bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_parsing_table() {
        let cases: &[(&str, Option<u64>)] = &[
            ("1", Some(1000)),
            ("1.0", Some(1000)),
            ("1.5", Some(1500)),
            ("0.25", Some(250)),
            ("2.125", Some(2125)),
            ("100", Some(100_000)),
            ("100.001", None),
            ("0", None),
            ("0.000", None),
            ("0.0001", None),
            ("-1", None),
            ("+1", None),
            ("1e3", None),
            ("1.", None),
            (".5", None),
            ("", None),
            ("1,5", None),
            (" 1", None),
            ("99999999999999999999", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_ratio_milli(text), *want, "{text:?}");
        }
    }

    fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn class_parameters_table() {
        let pool = (PARAM_THIN_POOL, "pool0");
        let lim = |r, d, m| ThinLimits {
            ratio_milli: r,
            data_percent: d,
            metadata_percent: m,
        };
        type Case = (
            &'static str,
            Vec<(&'static str, &'static str)>,
            Result<Option<ThinLimits>, &'static str>,
        );
        let cases: Vec<Case> = vec![
            ("linear class", vec![], Ok(None)),
            ("thin, defaults", vec![pool], Ok(Some(lim(1000, 90, 90)))),
            (
                "thin, all set",
                vec![
                    pool,
                    (PARAM_THIN_OVERPROVISION_RATIO, "2.5"),
                    (PARAM_THIN_DATA_LIMIT, "80"),
                    (PARAM_THIN_METADATA_LIMIT, "70"),
                ],
                Ok(Some(lim(2500, 80, 70))),
            ),
            (
                "bad ratio",
                vec![pool, (PARAM_THIN_OVERPROVISION_RATIO, "-2")],
                Err("thin-overprovision-ratio=\"-2\" is not a positive decimal"),
            ),
            (
                "zero percent",
                vec![pool, (PARAM_THIN_DATA_LIMIT, "0")],
                Err("thin-data-percent-limit=\"0\" is not a whole percent"),
            ),
            (
                "percent over 100",
                vec![pool, (PARAM_THIN_METADATA_LIMIT, "101")],
                Err("thin-metadata-percent-limit=\"101\""),
            ),
            (
                "decimal percent",
                vec![pool, (PARAM_THIN_DATA_LIMIT, "85.5")],
                Err("not a whole percent"),
            ),
            (
                "ratio without pool",
                vec![(PARAM_THIN_OVERPROVISION_RATIO, "2")],
                Err("applies only to a thin class"),
            ),
        ];
        for (name, kv, want) in cases {
            let p = params(&kv);
            match (limits_from_params(Some(&p)), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "{name}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{name}: {e}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(limits_from_params(None), Ok(None));
    }

    #[test]
    fn virtual_free_table() {
        const GI: u64 = 1 << 30;
        let usage = |size, data, meta, promised| PoolUsage {
            size_bytes: size,
            data_percent: data,
            metadata_percent: meta,
            promised_bytes: promised,
        };
        let lim = |r| ThinLimits {
            ratio_milli: r,
            ..Default::default()
        };
        type Case = (
            &'static str,
            PoolUsage,
            ThinLimits,
            Result<u64, &'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "empty pool, ratio 1",
                usage(10 * GI, 0.0, 1.0, 0),
                lim(1000),
                Ok(10 * GI),
            ),
            (
                "ratio 2 doubles",
                usage(10 * GI, 0.0, 1.0, 0),
                lim(2000),
                Ok(20 * GI),
            ),
            (
                "promised subtracts",
                usage(10 * GI, 5.0, 1.0, 15 * GI),
                lim(2000),
                Ok(5 * GI),
            ),
            (
                "overpromised is zero",
                usage(10 * GI, 5.0, 1.0, 25 * GI),
                lim(2000),
                Ok(0),
            ),
            (
                "floor of a fraction",
                usage(3, 0.0, 0.0, 0),
                lim(1500),
                Ok(4),
            ),
            (
                "data just under",
                usage(10 * GI, 89.99, 1.0, 0),
                lim(1000),
                Ok(10 * GI),
            ),
            (
                "data at limit",
                usage(10 * GI, 90.0, 1.0, 0),
                lim(1000),
                Err("data use 90.0%"),
            ),
            (
                "metadata over",
                usage(10 * GI, 1.0, 95.0, 0),
                lim(1000),
                Err("metadata use 95.0%"),
            ),
            (
                "unreadable use",
                usage(10 * GI, f64::NAN, 1.0, 0),
                lim(1000),
                Err("data use"),
            ),
            (
                "no overflow",
                usage(u64::MAX, 0.0, 0.0, 0),
                lim(MAX_RATIO_MILLI),
                Ok(u64::MAX),
            ),
        ];
        for (name, pool, limits, want) in cases {
            match (virtual_free(&pool, &limits), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "{name}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{name}: {e}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn strictest_and_text() {
        let a = ThinLimits {
            ratio_milli: 2000,
            data_percent: 80,
            metadata_percent: 95,
        };
        let b = ThinLimits {
            ratio_milli: 1500,
            data_percent: 90,
            metadata_percent: 70,
        };
        assert_eq!(
            a.strictest(b),
            ThinLimits {
                ratio_milli: 1500,
                data_percent: 80,
                metadata_percent: 70
            }
        );
        assert_eq!(a.ratio_text(), "2");
        assert_eq!(b.ratio_text(), "1.5");
        assert_eq!(
            ThinLimits {
                ratio_milli: 2125,
                ..a
            }
            .ratio_text(),
            "2.125"
        );
    }
}
