//! Pure decisions behind idempotent create and extend.

use crate::error::{Error, Result};
use crate::report::LogicalVolume;
use crate::tags::Owner;

/// An LV that already has the requested name is ours only if its tags name the
/// same claim; anything else (another claim, or no tags) must not be handed out.
pub(crate) fn adopt_existing(existing: LogicalVolume, owner: &Owner) -> Result<LogicalVolume> {
    if existing.owner.as_ref() == Some(owner) {
        Ok(existing)
    } else {
        Err(Error::OwnedByAnother {
            vg: existing.vg,
            lv: existing.name,
            owner: existing.owner.map(Box::new),
        })
    }
}

/// lvm takes sizes in bytes only as multiples of 512 (it rounds up to whole
/// extents itself); `None` when the rounding overflows.
pub(crate) fn size_argument(size_bytes: u64) -> Option<String> {
    let sectors = size_bytes.div_ceil(512);
    sectors.checked_mul(512).map(|b| format!("{b}b"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::owner_tags;

    fn owner(uid: &str) -> Owner {
        Owner {
            claim_uid: uid.into(),
            claim_namespace: "ns".into(),
            claim_name: "c".into(),
            pv_name: format!("pvc-{uid}"),
        }
    }

    fn lv(owner: Option<&Owner>) -> LogicalVolume {
        let tags = owner.map(owner_tags).unwrap_or_default();
        LogicalVolume {
            vg: "vg".into(),
            name: "pvc-1".into(),
            owner: owner.cloned(),
            tags,
            ..Default::default()
        }
    }

    #[test]
    fn adopt_only_our_own() {
        let me = owner("1");
        assert_eq!(adopt_existing(lv(Some(&me)), &me).unwrap(), lv(Some(&me)));
        let other = owner("2");
        match adopt_existing(lv(Some(&other)), &me) {
            Err(Error::OwnedByAnother { owner, lv, .. }) => {
                assert_eq!(owner, Some(Box::new(other)));
                assert_eq!(lv, "pvc-1");
            }
            r => panic!("{r:?}"),
        }
        assert!(matches!(
            adopt_existing(lv(None), &me),
            Err(Error::OwnedByAnother { owner: None, .. })
        ));
    }

    #[test]
    fn sizes_round_up_to_sectors() {
        assert_eq!(size_argument(0).as_deref(), Some("0b"));
        assert_eq!(size_argument(1).as_deref(), Some("512b"));
        assert_eq!(size_argument(512).as_deref(), Some("512b"));
        assert_eq!(size_argument(1 << 30).as_deref(), Some("1073741824b"));
        assert_eq!(size_argument(u64::MAX), None);
    }
}
