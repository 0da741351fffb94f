//! Typed view of one lvm report, and its pure parser.
//!
//! The shell runs `lvm fullreport --reportformat json --units b --nosuffix` with
//! the columns below; everything here is plain data so that parsing is tested
//! without lvm2, and odd or partial output becomes `Error::Parse`, never a panic.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::tags::{Owner, owner_from_tags};

/// Columns of the VG subreport.
pub const VG_COLUMNS: &str =
    "vg_name,vg_uuid,vg_size,vg_free,vg_extent_size,pv_count,vg_missing_pv_count,lv_count,vg_tags";
/// Columns of the LV subreport (`vg_name` is added where the report is not per VG).
pub const LV_COLUMNS: &str = "lv_name,lv_uuid,lv_size,lv_attr,lv_tags,pool_lv,lv_active,lv_layout,data_percent,metadata_percent";

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
    /// Decoded from `tags`; `None` for LVs lvmpin did not create.
    pub owner: Option<Owner>,
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

fn split_tags(tags: &str) -> Vec<String> {
    tags.split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}
