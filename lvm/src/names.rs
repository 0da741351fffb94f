//! LVM's naming rules (lvm(8), "VALID NAMES"), checked before any command runs so
//! that a bad name is a clear error and never reaches an argument vector where it
//! could be read as an option or a `vg/lv` path.

use crate::error::{Error, Result};

/// lvm2's NAME_LEN is 128 including the terminating NUL.
const MAX_NAME_LEN: usize = 127;

/// Substrings lvm reserves for the hidden sub-volumes of RAID, cache, thin, VDO and
/// writecache LVs.
const RESERVED_LV_SUBSTRINGS: &[&str] = &[
    "_cdata", "_cmeta", "_corig", "_iorig", "_mimage", "_mlog", "_pmspare", "_rimage", "_rmeta",
    "_tdata", "_tmeta", "_vdata", "_vorigin", "_wcorig",
];

/// lvm refuses LV names that start with these (its own snapshot and pvmove LVs).
const RESERVED_LV_PREFIXES: &[&str] = &["snapshot", "pvmove"];

pub fn validate_vg_name(name: &str) -> Result<()> {
    common_rules("volume group", name)
}

pub fn validate_lv_name(name: &str) -> Result<()> {
    common_rules("logical volume", name)?;
    let invalid = |reason: String| Error::InvalidName {
        kind: "logical volume",
        name: name.to_string(),
        reason,
    };
    if let Some(p) = RESERVED_LV_PREFIXES.iter().find(|p| name.starts_with(**p)) {
        return Err(invalid(format!(
            "names starting with {p:?} are reserved by lvm"
        )));
    }
    if let Some(s) = RESERVED_LV_SUBSTRINGS.iter().find(|s| name.contains(**s)) {
        return Err(invalid(format!(
            "{s:?} is reserved by lvm for internal volumes"
        )));
    }
    Ok(())
}

fn common_rules(kind: &'static str, name: &str) -> Result<()> {
    let invalid = |reason: String| Error::InvalidName {
        kind,
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("the name is empty".into()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(format!(
            "{} characters, at most {MAX_NAME_LEN} are allowed",
            name.len()
        )));
    }
    if name == "." || name == ".." {
        return Err(invalid("\".\" and \"..\" are not allowed".into()));
    }
    if name.starts_with('-') {
        return Err(invalid("the name must not begin with '-'".into()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | '.' | '-')))
    {
        return Err(invalid(format!(
            "character {c:?} is not allowed (only a-z A-Z 0-9 + _ . -)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lv_names() {
        let max = "x".repeat(127);
        for n in [
            "pvc-6f1c0b8e-2f3a-4c55-9a43-1d2e3f405060",
            "a",
            "A+b.c_d-e",
            "lvol0",
            max.as_str(),
        ] {
            assert!(validate_lv_name(n).is_ok(), "{n}");
        }
        let bad = [
            ("", "empty"),
            (".", "not allowed"),
            ("..", "not allowed"),
            ("-x", "begin"),
            ("a/b", "'/'"),
            ("a b", "' '"),
            ("a;rm", "';'"),
            ("ä", "'ä'"),
            ("snapshot1", "reserved"),
            ("pvmove0", "reserved"),
            ("my_tdatabase", "reserved"),
            ("x_rimage_0", "reserved"),
        ];
        for (n, why) in bad {
            let err = validate_lv_name(n).expect_err(n).to_string();
            assert!(err.contains(why), "{n}: {err}");
        }
        let long = "x".repeat(128);
        assert!(validate_lv_name(&long).is_err());
    }

    #[test]
    fn vg_names() {
        for n in ["vg0", "lvmpin-test-123-4", "data.ssd", "snapshot"] {
            assert!(validate_vg_name(n).is_ok(), "{n}");
        }
        for n in ["", "-vg", "vg/x", "vg\n", "..", "v g"] {
            let err = validate_vg_name(n).expect_err(n);
            assert!(matches!(
                err,
                Error::InvalidName {
                    kind: "volume group",
                    ..
                }
            ));
        }
    }
}
