//! Argument vectors for each lvm2 command, as pure functions of the request and
//! the mode. Names reaching here are already validated.

use crate::report::{LV_COLUMNS, VG_COLUMNS};
use crate::request::CreateLv;
use crate::tags::owner_tags;

/// What a new thin snapshot is for: it decides its activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SnapshotUse {
    /// A VolumeSnapshotContent's snapshot: kept inactive with lvm's
    /// activation-skip flag, so nothing activates (or mounts) it by accident.
    Snapshot,
    /// A claim's restore or clone: activatable and active, like any volume.
    Volume,
}

/// Machine-readable output with sizes as plain byte counts.
const JSON_IN_BYTES: &[&str] = &["--reportformat", "json", "--units", "b", "--nosuffix"];

/// Every VG with its LVs in one command (one report per scan).
#[rustfmt::skip]
const FULLREPORT: &[&str] = &[
    "--configreport", "vg", "-o", VG_COLUMNS,
    "--configreport", "lv", "-o", LV_COLUMNS,
    // fullreport always prints these subreports; keep them tiny.
    "--configreport", "pv", "-o", "pv_name",
    "--configreport", "pvseg", "-o", "pvseg_start",
    "--configreport", "seg", "-o", "segtype",
];

/// The subcommand plus what every command needs in this mode.
fn base(subcommand: &str, metadata_only: bool) -> Vec<String> {
    let mut args = vec![subcommand.to_string()];
    if metadata_only {
        args.extend(["--driverloaded", "n"].map(String::from));
    }
    args
}

fn extend(args: &mut Vec<String>, more: &[&str]) {
    args.extend(more.iter().map(|a| a.to_string()));
}

pub(crate) fn fullreport(metadata_only: bool) -> Vec<String> {
    let mut args = base("fullreport", metadata_only);
    extend(&mut args, JSON_IN_BYTES);
    extend(&mut args, FULLREPORT);
    args
}

pub(crate) fn find_lv(metadata_only: bool, vg: &str, lv: &str) -> Vec<String> {
    let mut args = base("lvs", metadata_only);
    extend(&mut args, JSON_IN_BYTES);
    // The selection keeps a missing LV from being an error (a missing VG still
    // is); validated names hold no quote, so it cannot be escaped.
    let columns = format!("vg_name,{LV_COLUMNS}");
    let select = format!("lv_name=\"{lv}\"");
    extend(&mut args, &["-o", &columns, "--select", &select, vg]);
    args
}

pub(crate) fn lvcreate(metadata_only: bool, req: &CreateLv, size: &str) -> Vec<String> {
    let mut args = base("lvcreate", metadata_only);
    extend(&mut args, &["--name", &req.name]);
    // Tags go in the same command, so the LV never exists without its owner.
    for tag in owner_tags(&req.owner) {
        extend(&mut args, &["--addtag", &tag]);
    }
    if metadata_only {
        extend(&mut args, &["--activate", "n", "--zero", "n"]);
    } else {
        // A new claim must never see an old filesystem signature: the node
        // service would mount it instead of formatting.
        extend(&mut args, &["--wipesignatures", "y"]);
    }
    // stdin is /dev/null: any prompt would read "no" and fail the create.
    extend(&mut args, &["--yes"]);
    match &req.thin_pool {
        Some(pool) => {
            let target = format!("{}/{pool}", req.vg);
            extend(
                &mut args,
                &["--type", "thin", "--virtualsize", size, &target],
            );
        }
        None => extend(&mut args, &["--size", size, &req.vg]),
    }
    args
}

/// A thin snapshot of `vg/source` with `tags`, in one command so it never
/// exists untagged. No signature wipe: its data is the point. No size: with
/// one, lvm would make an old-style snapshot (the source is checked to be
/// thin before). lvm 2.03 refuses `--type thin` beside `--snapshot`, and
/// checks for the dm-snapshot target (docs/install.md).
pub(crate) fn lvcreate_snapshot(
    metadata_only: bool,
    vg: &str,
    name: &str,
    source: &str,
    tags: &[String],
    usage: SnapshotUse,
) -> Vec<String> {
    let mut args = base("lvcreate", metadata_only);
    extend(&mut args, &["--snapshot", "--name", name]);
    for tag in tags {
        extend(&mut args, &["--addtag", tag]);
    }
    match usage {
        SnapshotUse::Snapshot => {
            extend(&mut args, &["--setactivationskip", "y", "--activate", "n"])
        }
        SnapshotUse::Volume => extend(&mut args, &["--setactivationskip", "n", "--activate", "y"]),
    }
    extend(&mut args, &["--yes", &format!("{vg}/{source}")]);
    args
}

pub(crate) fn deltags(metadata_only: bool, vg: &str, lv: &str, tags: &[String]) -> Vec<String> {
    let mut args = base("lvchange", metadata_only);
    for tag in tags {
        extend(&mut args, &["--deltag", tag]);
    }
    args.push(format!("{vg}/{lv}"));
    args
}

pub(crate) fn lvremove(metadata_only: bool, vg: &str, lv: &str) -> Vec<String> {
    let mut args = base("lvremove", metadata_only);
    extend(&mut args, &["--force", "--yes", &format!("{vg}/{lv}")]);
    args
}

pub(crate) fn lvextend(metadata_only: bool, vg: &str, lv: &str, size: &str) -> Vec<String> {
    let mut args = base("lvextend", metadata_only);
    extend(&mut args, &["--size", size, &format!("{vg}/{lv}")]);
    args
}

pub(crate) fn activate(metadata_only: bool, vg: &str, lv: &str) -> Vec<String> {
    let mut args = base("lvchange", metadata_only);
    extend(&mut args, &["--activate", "y", &format!("{vg}/{lv}")]);
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::Owner;

    fn req(thin_pool: Option<&str>) -> CreateLv {
        CreateLv {
            vg: "vg0".into(),
            name: "pvc-1".into(),
            size_bytes: 1000,
            thin_pool: thin_pool.map(String::from),
            source: None,
            owner: Owner {
                claim_uid: "1".into(),
                claim_namespace: "ns".into(),
                claim_name: "c".into(),
                pv_name: "pvc-1".into(),
            },
        }
    }

    const TAGS: &str = "--addtag lvmpin.io/claim-uid=1 --addtag lvmpin.io/claim-namespace=ns \
                        --addtag lvmpin.io/claim-name=c --addtag lvmpin.io/pv-name=pvc-1";

    #[test]
    fn lvcreate_per_mode() {
        assert_eq!(
            lvcreate(true, &req(None), "1024b").join(" "),
            format!(
                "lvcreate --driverloaded n --name pvc-1 {TAGS} --activate n --zero n --yes --size 1024b vg0"
            )
        );
        assert_eq!(
            lvcreate(false, &req(None), "1024b").join(" "),
            format!("lvcreate --name pvc-1 {TAGS} --wipesignatures y --yes --size 1024b vg0")
        );
        assert_eq!(
            lvcreate(false, &req(Some("pool0")), "1024b").join(" "),
            format!(
                "lvcreate --name pvc-1 {TAGS} --wipesignatures y --yes --type thin --virtualsize 1024b vg0/pool0"
            )
        );
    }

    #[test]
    fn other_commands() {
        let cases = [
            (
                fullreport(true),
                "fullreport --driverloaded n --reportformat json --units b --nosuffix \
                 --configreport vg -o vg_name,vg_uuid,vg_size,vg_free,vg_extent_size,pv_count,vg_missing_pv_count,lv_count,vg_tags \
                 --configreport lv -o lv_name,lv_uuid,lv_size,lv_attr,lv_tags,pool_lv,lv_active,lv_layout,data_percent,metadata_percent,origin,lv_time \
                 --configreport pv -o pv_name --configreport pvseg -o pvseg_start --configreport seg -o segtype",
            ),
            (
                find_lv(false, "vg0", "pvc-1"),
                "lvs --reportformat json --units b --nosuffix \
                 -o vg_name,lv_name,lv_uuid,lv_size,lv_attr,lv_tags,pool_lv,lv_active,lv_layout,data_percent,metadata_percent,origin,lv_time \
                 --select lv_name=\"pvc-1\" vg0",
            ),
            (
                lvremove(true, "vg0", "pvc-1"),
                "lvremove --driverloaded n --force --yes vg0/pvc-1",
            ),
            (
                lvextend(false, "vg0", "pvc-1", "2048b"),
                "lvextend --size 2048b vg0/pvc-1",
            ),
            (
                activate(false, "vg0", "pvc-1"),
                "lvchange --activate y vg0/pvc-1",
            ),
            (
                deltags(false, "vg0", "pvc-1", &["a=1".into(), "b=2".into()]),
                "lvchange --deltag a=1 --deltag b=2 vg0/pvc-1",
            ),
        ];
        for (args, want) in cases {
            assert_eq!(args.join(" "), want);
        }
    }

    #[test]
    fn snapshot_commands() {
        let tags = [
            "lvmpin.io/snapshot-content-uid=s".to_string(),
            "lvmpin.io/snapshot-content-name=c".to_string(),
        ];
        assert_eq!(
            lvcreate_snapshot(
                false,
                "vg0",
                "snap-s",
                "pvc-1",
                &tags,
                SnapshotUse::Snapshot
            )
            .join(" "),
            "lvcreate --snapshot --name snap-s --addtag lvmpin.io/snapshot-content-uid=s \
             --addtag lvmpin.io/snapshot-content-name=c --setactivationskip y --activate n \
             --yes vg0/pvc-1"
        );
        let claim = owner_tags(&req(None).owner);
        let restore =
            lvcreate_snapshot(false, "vg0", "pvc-2", "snap-s", &claim, SnapshotUse::Volume);
        assert_eq!(
            restore.join(" "),
            format!(
                "lvcreate --snapshot --name pvc-2 {TAGS} --setactivationskip n --activate y --yes vg0/snap-s"
            )
        );
        // Never a wipe or a size: the data is the point, and a size would
        // make an old-style (non-thin) snapshot.
        for a in &restore {
            assert!(
                !a.starts_with("--wipe") && !a.starts_with("--size") && !a.starts_with("--zero"),
                "{a}"
            );
        }
        assert_eq!(
            lvcreate_snapshot(true, "vg0", "snap-s", "pvc-1", &[], SnapshotUse::Snapshot)[..3],
            ["lvcreate", "--driverloaded", "n"]
        );
    }
}
