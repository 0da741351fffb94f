//! Which LV a volume name becomes, and when an LV is provably one of ours.
//!
//! The agent names a claim's LV and PV `pvc-<claim uid>`; CSI CreateVolume
//! gets a name from its caller (external-provisioner also uses
//! `pvc-<claim uid>`, csi-sanity uses anything up to 128 bytes). A name lvm
//! accepts as it is stays as it is, so `lvs` and `kubectl get pv` match by
//! eye; any other name becomes `csi-` plus a digest of it. The full name is
//! kept in the LV's `pv-name` owner tag either way.

use sha2::{Digest, Sha256};

use crate::backend::Owner;

/// Names longer than this are hashed, which leaves room for lvm's own
/// suffixes (`_tmeta`, snapshot names) within its 127-byte limit.
const MAX_PLAIN_LEN: usize = 63;
pub const HASHED_PREFIX: &str = "csi-";

fn plain(name: &str) -> bool {
    name.len() <= MAX_PLAIN_LEN
        && !name.starts_with(HASHED_PREFIX)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
        && lvmpin_lvm::validate_lv_name(name).is_ok()
        && !name.starts_with('-')
}

/// The LV that holds the volume called `name`.
pub fn lv_name(name: &str) -> String {
    if plain(name) {
        return name.to_string();
    }
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{HASHED_PREFIX}{hex}")
}

/// An LV is ours only when it carries a complete owner record (`pv_name` is
/// its volume name, `None` without one) whose volume name leads to this very
/// LV: an LV lvmpin did not create, or one whose tags were copied onto
/// another LV, never qualifies.
pub fn owned(pv_name: Option<&str>, lv: &str) -> bool {
    pv_name.is_some_and(|name| !name.is_empty() && lv_name(name) == lv)
}

/// `owned` for the agent's view of a volume.
pub fn owned_volume(owner: Option<&Owner>, lv: &str) -> bool {
    owned(owner.map(|o| o.pv_name.as_str()), lv)
}

/// A claim UID in a name external-provisioner made (`pvc-<uid>`), else "".
pub fn claim_uid_in(name: &str) -> &str {
    let Some(uid) = name.strip_prefix("pvc-") else {
        return "";
    };
    let groups: Vec<&str> = uid.split('-').collect();
    let shape = [8, 4, 4, 4, 12];
    let is_uuid = groups.len() == shape.len()
        && groups
            .iter()
            .zip(shape)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    if is_uuid { uid } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let uid = "6f1c0b8e-2f3a-4c55-9a43-1d2e3f405060";
        let claim = format!("pvc-{uid}");
        assert_eq!(lv_name(&claim), claim);
        assert_eq!(claim_uid_in(&claim), uid);
        assert_eq!(claim_uid_in("pvc-not-a-uid"), "");
        assert_eq!(claim_uid_in("data"), "");
        for odd in [
            "sanity-Node Service-very long name",
            "-leading-dash",
            "snapshot1",
            "a_tmeta",
            "csi-0123",
            &"x".repeat(128),
            "ünïcode",
        ] {
            let lv = lv_name(odd);
            assert!(
                lv.starts_with(HASHED_PREFIX) && lv.len() == 36,
                "{odd}: {lv}"
            );
            assert!(lvmpin_lvm::validate_lv_name(&lv).is_ok());
            assert_eq!(lv, lv_name(odd), "stable");
        }
        assert_ne!(lv_name("a b"), lv_name("a  b"));
    }

    #[test]
    fn ownership_needs_tags_that_lead_to_this_lv() {
        let owner = |pv: &str| Owner {
            pv_name: pv.into(),
            ..Owner::default()
        };
        assert!(owned_volume(Some(&owner("pvc-1")), "pvc-1"));
        assert!(owned(Some("a b"), &lv_name("a b")));
        assert!(!owned(None, "root"));
        assert!(!owned_volume(Some(&owner("pvc-1")), "pvc-2"));
        assert!(!owned(Some(""), ""));
    }
}
