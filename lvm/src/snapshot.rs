//! Pure decisions behind thin snapshots, restores and clones.
//!
//! A snapshot is `lvcreate --snapshot` of a thin LV without a size: a new
//! thin LV of the same pool sharing the origin's blocks. lvm gives it the
//! activation-skip flag, so plain activation ignores it. A restore or clone is
//! the same command from a snapshot or a volume, made activatable, owned by
//! a claim, and grown to the requested size.

use crate::error::{Error, Result, SourceProblem};
use crate::report::LogicalVolume;
use crate::tags::{SnapshotOwner, TAG_PREFIX};

fn invalid(source: &LogicalVolume, reason: String) -> Error {
    Error::InvalidSource(Box::new(SourceProblem {
        vg: source.vg.clone(),
        lv: source.name.clone(),
        reason,
    }))
}

/// Snapshots are for thin volumes only: an old-style snapshot of a linear LV
/// is a copy-on-write area that breaks once full, not a volume.
pub(crate) fn check_snapshot_source(source: &LogicalVolume) -> Result<()> {
    if !source.is_thin_volume() {
        return Err(invalid(
            source,
            format!(
                "it is not a thin volume (lv_attr {:?}); snapshots are for thin volumes only",
                source.attr
            ),
        ));
    }
    Ok(())
}

/// A restore or clone: a thin source in the requested pool, no larger than
/// the requested size (an LV never shrinks).
pub(crate) fn check_clone_source(
    source: &LogicalVolume,
    thin_pool: Option<&str>,
    size_bytes: u64,
) -> Result<()> {
    check_snapshot_source(source)?;
    if source.pool.as_deref() != thin_pool {
        return Err(invalid(
            source,
            format!(
                "it is in thin pool {}, the new volume asks for {}",
                source.pool.as_deref().unwrap_or("(none)"),
                thin_pool.map_or("no thin pool".to_string(), |p| format!("thin pool {p}")),
            ),
        ));
    }
    if size_bytes < source.size_bytes {
        return Err(invalid(
            source,
            format!(
                "it holds {} bytes, more than the {size_bytes} bytes requested",
                source.size_bytes
            ),
        ));
    }
    Ok(())
}

/// An existing LV of the snapshot's name is the snapshot only if its tags
/// name the same VolumeSnapshotContent.
pub(crate) fn adopt_snapshot(
    existing: LogicalVolume,
    owner: &SnapshotOwner,
) -> Result<LogicalVolume> {
    if existing.snapshot_owner.as_ref() == Some(owner) {
        Ok(existing)
    } else {
        Err(Error::SnapshotOwnedByAnother {
            vg: existing.vg,
            lv: existing.name,
            owner: existing.snapshot_owner.map(Box::new),
        })
    }
}

/// lvmpin tags on `tags` that `wanted` does not hold: what a new LV may have
/// taken over from its source and must lose before it is anyone's.
pub(crate) fn stray_tags(tags: &[String], wanted: &[String]) -> Vec<String> {
    tags.iter()
        .filter(|t| t.starts_with(TAG_PREFIX) && !wanted.contains(t))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::{Owner, owner_tags, snapshot_owner_tags};

    const GI: u64 = 1 << 30;

    fn lv(attr: &str, pool: Option<&str>, size_bytes: u64) -> LogicalVolume {
        LogicalVolume {
            vg: "vg0".into(),
            name: "src".into(),
            attr: attr.into(),
            pool: pool.map(String::from),
            size_bytes,
            ..Default::default()
        }
    }

    #[test]
    fn sources() {
        let thin = || lv("Vwi-a-tz--", Some("pool0"), GI);
        type Case<'a> = (LogicalVolume, Option<&'a str>, u64, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (thin(), Some("pool0"), GI, None),
            (thin(), Some("pool0"), 3 * GI, None),
            // A snapshot (inactive, activation skip) is a thin volume too.
            (lv("Vwi---tz-k", Some("pool0"), GI), Some("pool0"), GI, None),
            (
                thin(),
                Some("pool0"),
                GI - 512,
                Some("holds 1073741824 bytes, more than the 1073741312 bytes requested"),
            ),
            (
                thin(),
                Some("pool1"),
                GI,
                Some("in thin pool pool0, the new volume asks for thin pool pool1"),
            ),
            (thin(), None, GI, Some("asks for no thin pool")),
            (
                lv("-wi-a-----", None, GI),
                None,
                GI,
                Some("not a thin volume (lv_attr \"-wi-a-----\")"),
            ),
            (
                lv("twi-aotz--", None, GI),
                None,
                GI,
                Some("not a thin volume"),
            ),
            // A cached LV names its cache pool in pool_lv; still not thin.
            (
                lv("Cwi-a-C---", Some("cpool"), GI),
                Some("cpool"),
                GI,
                Some("not a thin volume"),
            ),
        ];
        for (source, pool, size, want) in cases {
            let got = check_clone_source(&source, pool, size);
            match (want, &got) {
                (None, Ok(())) => {}
                (Some(want), Err(e @ Error::InvalidSource(_))) => {
                    let msg = e.to_string();
                    assert!(msg.contains(want), "{msg}");
                    assert!(
                        msg.starts_with("cannot use logical volume vg0/src"),
                        "{msg}"
                    );
                }
                _ => panic!("{source:?} {pool:?} {size}: want {want:?}, got {got:?}"),
            }
        }
        assert!(check_snapshot_source(&thin()).is_ok());
        assert!(check_snapshot_source(&lv("-wi-a-----", None, GI)).is_err());
    }

    #[test]
    fn adopt_only_the_same_content() {
        let me = SnapshotOwner {
            content_uid: "1".into(),
            content_name: "c1".into(),
        };
        let mut existing = lv("Vwi---tz-k", Some("pool0"), GI);
        existing.snapshot_owner = Some(me.clone());
        assert_eq!(adopt_snapshot(existing.clone(), &me).unwrap(), existing);
        let other = SnapshotOwner {
            content_uid: "2".into(),
            ..me.clone()
        };
        assert!(matches!(
            adopt_snapshot(existing, &other),
            Err(Error::SnapshotOwnedByAnother { owner: Some(o), .. }) if *o == me
        ));
        // A claim's volume of that name is never taken for the snapshot.
        let volume = lv("Vwi-a-tz--", Some("pool0"), GI);
        assert!(matches!(
            adopt_snapshot(volume, &me),
            Err(Error::SnapshotOwnedByAnother { owner: None, .. })
        ));
    }

    #[test]
    fn stray_tags_are_lvmpin_tags_not_wanted() {
        let claim = owner_tags(&Owner {
            claim_uid: "u".into(),
            claim_namespace: "ns".into(),
            claim_name: "c".into(),
            pv_name: "pvc-u".into(),
        });
        let snap = snapshot_owner_tags(&SnapshotOwner {
            content_uid: "s".into(),
            content_name: "sc".into(),
        });
        let mut tags = claim.clone();
        tags.extend(snap.clone());
        tags.push("admin-backup".into());
        assert_eq!(stray_tags(&tags, &claim), snap);
        assert_eq!(stray_tags(&claim, &claim), Vec::<String>::new());
    }
}
