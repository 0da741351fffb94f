//! Typed view of one lvm report, and its pure parser.
//!
//! The shell runs `lvm fullreport --reportformat json --units b --nosuffix` with
//! the columns below; everything here is plain data so that parsing is tested
//! without lvm2, and odd or partial output becomes `Error::Parse`, never a panic.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::tags::{Owner, SnapshotOwner, owner_from_tags, snapshot_owner_from_tags};

/// Columns of the VG subreport.
pub const VG_COLUMNS: &str =
    "vg_name,vg_uuid,vg_size,vg_free,vg_extent_size,pv_count,vg_missing_pv_count,lv_count,vg_tags";
/// Columns of the LV subreport (`vg_name` is added where the report is not per VG).
pub const LV_COLUMNS: &str = "lv_name,lv_uuid,lv_size,lv_attr,lv_tags,pool_lv,lv_active,lv_layout,data_percent,metadata_percent,origin,lv_time";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub volume_groups: Vec<VolumeGroup>,
    /// Every visible LV, thin pools included (they also appear in `thin_pools`).
    pub logical_volumes: Vec<LogicalVolume>,
    pub thin_pools: Vec<ThinPool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeGroup {
    pub name: String,
    pub uuid: String,
    pub size_bytes: u64,
    pub free_bytes: u64,
    pub extent_size_bytes: u64,
    pub pv_count: u32,
    pub missing_pv_count: u32,
    pub lv_count: u32,
    pub tags: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogicalVolume {
    pub vg: String,
    pub name: String,
    pub uuid: String,
    pub size_bytes: u64,
    /// lvs(8) `lv_attr`, e.g. `-wi-a-----`.
    pub attr: String,
    pub tags: Vec<String>,
    /// The thin pool of a thin LV.
    pub pool: Option<String>,
    pub active: bool,
    /// Decoded from `tags`; `None` for LVs lvmpin did not create, and for
    /// snapshots.
    pub owner: Option<Owner>,
    /// Decoded from `tags`; set on lvmpin's snapshot LVs only.
    pub snapshot_owner: Option<SnapshotOwner>,
    /// The LV this one is a snapshot of, while it exists: lvm forgets the
    /// origin of a thin snapshot once the origin is removed.
    pub origin: Option<String>,
    /// lvm's creation time in seconds since the epoch; `None` when lvm left it
    /// out or printed it in a form other than its default.
    pub created_unix: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ThinPool {
    pub vg: String,
    pub name: String,
    pub size_bytes: u64,
    /// Percent of the pool's data space in use. lvm only knows this while the pool
    /// is active; an inactive pool (and every pool without device-mapper) reads 0.
    pub data_percent: f64,
    pub metadata_percent: f64,
}

impl Report {
    pub fn volume_group(&self, vg: &str) -> Option<&VolumeGroup> {
        self.volume_groups.iter().find(|g| g.name == vg)
    }

    pub fn lvs_in<'a>(&'a self, vg: &'a str) -> impl Iterator<Item = &'a LogicalVolume> + 'a {
        self.logical_volumes.iter().filter(move |l| l.vg == vg)
    }

    pub fn thin_pools_in<'a>(&'a self, vg: &'a str) -> impl Iterator<Item = &'a ThinPool> + 'a {
        self.thin_pools.iter().filter(move |p| p.vg == vg)
    }

    pub fn find_lv(&self, vg: &str, lv: &str) -> Option<&LogicalVolume> {
        self.logical_volumes
            .iter()
            .find(|l| l.vg == vg && l.name == lv)
    }
}

impl LogicalVolume {
    /// The stable device path lvm creates on activation.
    pub fn path(&self) -> PathBuf {
        device_path(&self.vg, &self.name)
    }

    pub fn is_thin_pool(&self) -> bool {
        self.attr.starts_with('t')
    }

    /// A thin LV (a volume or a snapshot of one); lvs(8) `lv_attr` type `V`.
    pub fn is_thin_volume(&self) -> bool {
        self.attr.starts_with('V')
    }
}

/// Where lvm puts an active LV's device node.
pub fn device_path(vg: &str, lv: &str) -> PathBuf {
    PathBuf::from("/dev").join(vg).join(lv)
}

impl ThinPool {
    /// Data bytes not yet written by any thin LV of the pool.
    pub fn free_bytes(&self) -> u64 {
        let used = (self.size_bytes as f64 * self.data_percent.clamp(0.0, 100.0) / 100.0).ceil();
        self.size_bytes.saturating_sub(used as u64)
    }
}

#[derive(Deserialize)]
struct RawDocument {
    report: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(default)]
    vg: Vec<RawVg>,
    #[serde(default)]
    lv: Vec<RawLv>,
}

#[derive(Deserialize)]
struct RawVg {
    vg_name: String,
    vg_uuid: String,
    vg_size: String,
    vg_free: String,
    vg_extent_size: String,
    pv_count: String,
    vg_missing_pv_count: String,
    lv_count: String,
    vg_tags: String,
}

#[derive(Deserialize)]
struct RawLv {
    /// Present in `lvs` output; `fullreport` groups LVs under their VG instead.
    #[serde(default)]
    vg_name: Option<String>,
    lv_name: String,
    lv_uuid: String,
    lv_size: String,
    lv_attr: String,
    lv_tags: String,
    pool_lv: String,
    lv_layout: String,
    data_percent: String,
    metadata_percent: String,
    /// Absent from reports of older column lists (and their fixtures).
    #[serde(default)]
    origin: String,
    #[serde(default)]
    lv_time: String,
}

/// Parses `lvm fullreport` JSON (one entry per VG).
pub fn parse_report(json: &str) -> Result<Report> {
    let doc = read_document(json, "fullreport")?;
    let mut report = Report::default();
    for entry in doc.report {
        let vg_name = match entry.vg.as_slice() {
            [] if entry.lv.is_empty() => continue, // orphan PVs only
            [] => {
                return Err(Error::parse(
                    "fullreport",
                    "a report entry lists logical volumes but no volume group",
                ));
            }
            [vg] => vg.vg_name.clone(),
            _ => {
                return Err(Error::parse(
                    "fullreport",
                    "a report entry lists more than one volume group",
                ));
            }
        };
        for vg in entry.vg {
            report.volume_groups.push(convert_vg(vg)?);
        }
        for lv in entry.lv {
            push_lv(&mut report, lv, Some(&vg_name))?;
        }
    }
    Ok(report)
}

/// Parses `lvs -o vg_name,<LV_COLUMNS>` JSON; used to look up single LVs.
pub fn parse_lvs(json: &str) -> Result<Vec<LogicalVolume>> {
    let doc = read_document(json, "lvs")?;
    let mut report = Report::default();
    for entry in doc.report {
        for lv in entry.lv {
            push_lv(&mut report, lv, None)?;
        }
    }
    Ok(report.logical_volumes)
}

fn read_document(json: &str, context: &str) -> Result<RawDocument> {
    serde_json::from_str(json).map_err(|e| Error::parse(context, e.to_string()))
}

fn convert_vg(raw: RawVg) -> Result<VolumeGroup> {
    let ctx = format!("volume group {:?}", raw.vg_name);
    Ok(VolumeGroup {
        size_bytes: number(&ctx, "vg_size", &raw.vg_size)?,
        free_bytes: number(&ctx, "vg_free", &raw.vg_free)?,
        extent_size_bytes: number(&ctx, "vg_extent_size", &raw.vg_extent_size)?,
        pv_count: number(&ctx, "pv_count", &raw.pv_count)?,
        missing_pv_count: number(&ctx, "vg_missing_pv_count", &raw.vg_missing_pv_count)?,
        lv_count: number(&ctx, "lv_count", &raw.lv_count)?,
        tags: split_tags(&raw.vg_tags),
        name: non_empty(&ctx, "vg_name", raw.vg_name)?,
        uuid: raw.vg_uuid,
    })
}

fn push_lv(report: &mut Report, raw: RawLv, vg: Option<&str>) -> Result<()> {
    let vg = match (vg, raw.vg_name.as_deref()) {
        (Some(vg), _) => vg.to_string(),
        (None, Some(vg)) if !vg.is_empty() => vg.to_string(),
        (None, _) => {
            return Err(Error::parse(
                format!("logical volume {:?}", raw.lv_name),
                "no vg_name column",
            ));
        }
    };
    let ctx = format!("logical volume {vg}/{}", raw.lv_name);
    let tags = split_tags(&raw.lv_tags);
    let lv = LogicalVolume {
        size_bytes: number(&ctx, "lv_size", &raw.lv_size)?,
        active: raw.lv_attr.chars().nth(4) == Some('a'),
        pool: Some(raw.pool_lv.trim_matches(['[', ']']).to_string()).filter(|p| !p.is_empty()),
        owner: owner_from_tags(&tags),
        snapshot_owner: snapshot_owner_from_tags(&tags),
        origin: Some(raw.origin.trim_matches(['[', ']']).to_string()).filter(|o| !o.is_empty()),
        created_unix: unix_time(&raw.lv_time),
        tags,
        name: non_empty(&ctx, "lv_name", raw.lv_name)?,
        uuid: raw.lv_uuid,
        attr: raw.lv_attr,
        vg,
    };
    let layout_is_pool = {
        let parts: Vec<&str> = raw.lv_layout.split(',').collect();
        parts.contains(&"thin") && parts.contains(&"pool")
    };
    if lv.is_thin_pool() || layout_is_pool {
        report.thin_pools.push(ThinPool {
            vg: lv.vg.clone(),
            name: lv.name.clone(),
            size_bytes: lv.size_bytes,
            data_percent: percent(&ctx, "data_percent", &raw.data_percent)?,
            metadata_percent: percent(&ctx, "metadata_percent", &raw.metadata_percent)?,
        });
    }
    report.logical_volumes.push(lv);
    Ok(())
}

fn non_empty(ctx: &str, column: &str, value: String) -> Result<String> {
    if value.is_empty() {
        return Err(Error::parse(ctx, format!("{column} is empty")));
    }
    Ok(value)
}

fn number<T: std::str::FromStr>(ctx: &str, column: &str, value: &str) -> Result<T> {
    value.trim().parse().map_err(|_| {
        Error::parse(
            ctx,
            format!(
                "{column} is {value:?}, expected a whole number (were --units b --nosuffix passed?)"
            ),
        )
    })
}

/// lvm leaves percentages empty when it cannot know them (inactive pools).
fn percent(ctx: &str, column: &str, value: &str) -> Result<f64> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(0.0);
    }
    match value.parse::<f64>() {
        Ok(p) if p.is_finite() && p >= 0.0 => Ok(p),
        _ => Err(Error::parse(
            ctx,
            format!("{column} is {value:?}, expected a percentage"),
        )),
    }
}

/// lvm's default `report/time_format`, `%Y-%m-%d %T %z` (e.g. `2026-11-30
/// 16:00:00 +0000`), as seconds since the epoch. The time is informational:
/// anything else is `None`, never a failed report.
pub(crate) fn unix_time(value: &str) -> Option<i64> {
    let mut parts = value.split_whitespace();
    let (date, time, zone) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let nums = |s: &str, sep: char| -> Option<Vec<i64>> {
        s.split(sep)
            .map(|n| {
                n.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| n.parse().ok())
                    .flatten()
            })
            .collect()
    };
    let (d, t) = (nums(date, '-')?, nums(time, ':')?);
    let ([y, mo, da], [h, mi, s]) = (d.as_slice(), t.as_slice()) else {
        return None;
    };
    let (y, mo, da, h, mi, s) = (*y, *mo, *da, *h, *mi, *s);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let z = zone.get(1..)?;
    if z.len() != 4 || !z.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let offset = sign * (z[..2].parse::<i64>().ok()? * 3600 + z[2..].parse::<i64>().ok()? * 60);
    Some(days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + s - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn split_tags(tags: &str) -> Vec<String> {
    tags.split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lv_time_in_lvm_default_format() {
        let cases = [
            ("1970-01-01 00:00:00 +0000", Some(0)),
            ("2026-11-30 16:00:00 +0000", Some(1_796_054_400)),
            ("2026-11-30 17:30:00 +0130", Some(1_796_054_400)),
            ("2024-02-29 12:00:00 -0500", Some(1_709_226_000)),
            ("", None),
            ("2026-11-30", None),
            ("2026-13-01 00:00:00 +0000", None),
            ("2026-11-30 16:00:00 UTC", None),
            ("2026-11-30 16:00:00 +0000 extra", None),
            ("2026-11-+3 16:00:00 +0000", None),
            ("1764518400", None),
        ];
        for (value, want) in cases {
            assert_eq!(unix_time(value), want, "{value:?}");
        }
    }

    #[test]
    fn snapshot_columns() {
        let json = r#"{"report":[{"lv":[
            {"vg_name":"vg0","lv_name":"snap-1","lv_uuid":"u","lv_size":"1073741824","lv_attr":"Vwi---tz-k",
             "lv_tags":"lvmpin.io/snapshot-content-uid=1,lvmpin.io/snapshot-content-name=c1","pool_lv":"pool0",
             "lv_active":"","lv_layout":"thin,sparse","data_percent":"","metadata_percent":"",
             "origin":"pvc-1","lv_time":"2026-11-30 16:00:00 +0000"},
            {"vg_name":"vg0","lv_name":"pvc-1","lv_uuid":"v","lv_size":"1073741824","lv_attr":"Vwi-a-tz--",
             "lv_tags":"","pool_lv":"pool0","lv_active":"active","lv_layout":"thin,sparse",
             "data_percent":"1.00","metadata_percent":"","origin":"","lv_time":""}
        ]}]}"#;
        let lvs = parse_lvs(json).unwrap();
        let snap = &lvs[0];
        assert_eq!(snap.origin.as_deref(), Some("pvc-1"));
        assert_eq!(snap.created_unix, Some(1_796_054_400));
        assert_eq!(
            snap.snapshot_owner,
            Some(SnapshotOwner {
                content_uid: "1".into(),
                content_name: "c1".into()
            })
        );
        assert_eq!(snap.owner, None);
        assert!(snap.is_thin_volume() && !snap.active);
        assert_eq!((lvs[1].origin.as_ref(), lvs[1].created_unix), (None, None));
    }
}
