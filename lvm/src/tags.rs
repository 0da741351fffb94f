//! Ownership recorded on the LV itself, so that the disk alone says which claim an
//! LV belongs to (after a crash, a lost API server or a node reinstall).
//!
//! Each field becomes one tag `lvmpin.io/<key>=<value>`. LVM tags may only hold
//! `A-Z a-z 0-9 _ + . - / = ! : & #`, and `,` separates tags in reports, so values
//! keep `A-Z a-z 0-9 . _ -` as they are and write every other byte as `#` plus two
//! upper-case hex digits. Kubernetes names and UIDs never need escaping, so the
//! tags stay readable in `lvs -o lv_tags`.

/// Prefix shared by every tag lvmpin writes.
pub const TAG_PREFIX: &str = "lvmpin.io/";

const KEY_UID: &str = "lvmpin.io/claim-uid=";
const KEY_NAMESPACE: &str = "lvmpin.io/claim-namespace=";
const KEY_NAME: &str = "lvmpin.io/claim-name=";
const KEY_PV: &str = "lvmpin.io/pv-name=";
// A snapshot belongs to a VolumeSnapshotContent, not to a claim; its keys differ
// so that no snapshot LV ever reads as a claim's volume.
const KEY_CONTENT_UID: &str = "lvmpin.io/snapshot-content-uid=";
const KEY_CONTENT_NAME: &str = "lvmpin.io/snapshot-content-name=";

/// The claim (and PV) an LV was created for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    pub claim_uid: String,
    pub claim_namespace: String,
    pub claim_name: String,
    pub pv_name: String,
}

/// The VolumeSnapshotContent a snapshot LV was created for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotOwner {
    pub content_uid: String,
    pub content_name: String,
}

/// The tags that record `owner`, in a fixed order.
pub fn owner_tags(owner: &Owner) -> Vec<String> {
    [
        (KEY_UID, &owner.claim_uid),
        (KEY_NAMESPACE, &owner.claim_namespace),
        (KEY_NAME, &owner.claim_name),
        (KEY_PV, &owner.pv_name),
    ]
    .into_iter()
    .map(|(key, value)| format!("{key}{}", encode(value)))
    .collect()
}

/// The tags that record a snapshot's `owner`, in a fixed order.
pub fn snapshot_owner_tags(owner: &SnapshotOwner) -> Vec<String> {
    [
        (KEY_CONTENT_UID, &owner.content_uid),
        (KEY_CONTENT_NAME, &owner.content_name),
    ]
    .into_iter()
    .map(|(key, value)| format!("{key}{}", encode(value)))
    .collect()
}

/// True if any tag uses a snapshot key, whole or not.
pub fn has_snapshot_tags(tags: &[String]) -> bool {
    tags.iter()
        .any(|t| t.starts_with(KEY_CONTENT_UID) || t.starts_with(KEY_CONTENT_NAME))
}

/// True if any tag uses a claim key, whole or not.
pub fn has_claim_tags(tags: &[String]) -> bool {
    tags.iter().any(|t| {
        [KEY_UID, KEY_NAMESPACE, KEY_NAME, KEY_PV]
            .iter()
            .any(|k| t.starts_with(k))
    })
}

/// The value of `key` if it is present exactly once and decodes cleanly.
fn field(tags: &[String], key: &str) -> Option<String> {
    let mut values = tags.iter().filter_map(|t| t.strip_prefix(key));
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    decode(value)
}

/// Reads a snapshot's owner back. `None` unless both fields are present exactly
/// once and decode cleanly, and no claim tag is present: an LV carrying both
/// kinds is half-way between snapshot and volume and is nobody's.
pub fn snapshot_owner_from_tags(tags: &[String]) -> Option<SnapshotOwner> {
    if has_claim_tags(tags) {
        return None;
    }
    Some(SnapshotOwner {
        content_uid: field(tags, KEY_CONTENT_UID)?,
        content_name: field(tags, KEY_CONTENT_NAME)?,
    })
}

/// Reads the owner back. `None` unless all four fields are present exactly once
/// and decode cleanly, and no snapshot tag is present: a half-tagged LV is not
/// treated as anyone's, and a snapshot is never a claim's volume.
pub fn owner_from_tags(tags: &[String]) -> Option<Owner> {
    if has_snapshot_tags(tags) {
        return None;
    }
    let field = |key: &str| field(tags, key);
    Some(Owner {
        claim_uid: field(KEY_UID)?,
        claim_namespace: field(KEY_NAMESPACE)?,
        claim_name: field(KEY_NAME)?,
        pv_name: field(KEY_PV)?,
    })
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if is_plain(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("#{b:02X}"));
        }
    }
    out
}

fn decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                let hex = value.get(i + 1..i + 3)?;
                if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if is_plain(b) => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// True for characters LVM accepts in a tag.
#[cfg(test)]
fn is_lvm_tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+.-/=!:&#".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn owner() -> Owner {
        Owner {
            claim_uid: "6f1c0b8e-2f3a-4c55-9a43-1d2e3f405060".into(),
            claim_namespace: "db".into(),
            claim_name: "data-mysql-0".into(),
            pv_name: "pvc-6f1c0b8e-2f3a-4c55-9a43-1d2e3f405060".into(),
        }
    }

    #[test]
    fn kubernetes_names_stay_readable() {
        assert_eq!(
            owner_tags(&owner()),
            vec![
                "lvmpin.io/claim-uid=6f1c0b8e-2f3a-4c55-9a43-1d2e3f405060",
                "lvmpin.io/claim-namespace=db",
                "lvmpin.io/claim-name=data-mysql-0",
                "lvmpin.io/pv-name=pvc-6f1c0b8e-2f3a-4c55-9a43-1d2e3f405060",
            ]
        );
    }

    #[test]
    fn odd_characters_are_escaped() {
        assert_eq!(encode("a b,c#ü"), "a#20b#2Cc#23#C3#BC");
        assert_eq!(decode("a#20b#2Cc#23#C3#BC").as_deref(), Some("a b,c#ü"));
    }

    #[test]
    fn partial_or_broken_tags_mean_no_owner() {
        let mut tags = owner_tags(&owner());
        tags.push("unrelated".into());
        assert_eq!(owner_from_tags(&tags), Some(owner()));

        let missing: Vec<String> = tags[1..].to_vec();
        assert_eq!(owner_from_tags(&missing), None);

        let mut twice = owner_tags(&owner());
        twice.push("lvmpin.io/claim-name=other".into());
        assert_eq!(owner_from_tags(&twice), None);

        for bad in ["#4", "#ZZ", "a b", "#FF", "x,y"] {
            let mut t = owner_tags(&owner());
            t[2] = format!("lvmpin.io/claim-name={bad}");
            assert_eq!(owner_from_tags(&t), None, "{bad}");
        }
        assert_eq!(owner_from_tags(&[]), None);
    }

    fn snap() -> SnapshotOwner {
        SnapshotOwner {
            content_uid: "0a1b2c3d-0000-4000-8000-000000000001".into(),
            content_name: "snapcontent-0a1b2c3d".into(),
        }
    }

    #[test]
    fn snapshot_tags_are_distinct_from_claim_tags() {
        let tags = snapshot_owner_tags(&snap());
        assert_eq!(
            tags,
            vec![
                "lvmpin.io/snapshot-content-uid=0a1b2c3d-0000-4000-8000-000000000001",
                "lvmpin.io/snapshot-content-name=snapcontent-0a1b2c3d",
            ]
        );
        assert_eq!(snapshot_owner_from_tags(&tags), Some(snap()));
        assert_eq!(owner_from_tags(&tags), None);
        assert_eq!(snapshot_owner_from_tags(&owner_tags(&owner())), None);
    }

    #[test]
    fn mixed_or_partial_snapshot_tags_mean_no_owner_of_either_kind() {
        let mut both = owner_tags(&owner());
        both.extend(snapshot_owner_tags(&snap()));
        assert_eq!(owner_from_tags(&both), None);
        assert_eq!(snapshot_owner_from_tags(&both), None);

        let half = snapshot_owner_tags(&snap())[..1].to_vec();
        assert_eq!(snapshot_owner_from_tags(&half), None);
        // Even a lone snapshot key keeps an LV from reading as a claim's.
        let mut claim_and_half = owner_tags(&owner());
        claim_and_half.extend(half);
        assert_eq!(owner_from_tags(&claim_and_half), None);

        let mut twice = snapshot_owner_tags(&snap());
        twice.push("lvmpin.io/snapshot-content-name=other".into());
        assert_eq!(snapshot_owner_from_tags(&twice), None);
    }

    proptest! {
        #[test]
        fn snapshot_round_trip(uid in ".*", name in "\\PC*") {
            let o = SnapshotOwner { content_uid: uid, content_name: name };
            let tags = snapshot_owner_tags(&o);
            for t in &tags {
                prop_assert!(t.chars().all(is_lvm_tag_char), "{t}");
            }
            prop_assert_eq!(snapshot_owner_from_tags(&tags), Some(o));
        }

        #[test]
        fn round_trip(uid in ".*", ns in ".*", name in ".*", pv in "\\PC*") {
            let o = Owner { claim_uid: uid, claim_namespace: ns, claim_name: name, pv_name: pv };
            let tags = owner_tags(&o);
            for t in &tags {
                prop_assert!(t.chars().all(is_lvm_tag_char), "{t}");
            }
            prop_assert_eq!(owner_from_tags(&tags), Some(o));
        }

        #[test]
        fn decoding_arbitrary_tags_never_panics(tags in proptest::collection::vec(".*", 0..8)) {
            let _ = owner_from_tags(&tags);
        }
    }
}
