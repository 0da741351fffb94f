//! Whether this node may provision at all. Pure: what the host offers and
//! what the operator allowed in, the mode out.
//!
//! Without the kernel's device-mapper lvm2 can still edit metadata (it runs
//! with `--driverloaded n`, creating LVs with `--activate n --zero n`), but no
//! LV can be activated, wiped, formatted or mounted. That is useful to tests
//! and demos on machines without device-mapper, and never in production: an
//! LV that is never zeroed may expose an earlier tenant's data once a host
//! with device-mapper activates it. So it needs an explicit flag; without it
//! such a node reports its VGs unhealthy and provisions nothing.

/// How the agent uses lvm2 on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LvmMode {
    /// device-mapper works: everything is available.
    Full,
    /// No device-mapper, allowed by `--metadata-only-for-tests`.
    MetadataOnlyForTests,
    /// No device-mapper and no permission: report and refuse, with the reason.
    Unusable(String),
}

pub fn lvm_mode(device_mapper_present: bool, metadata_only_for_tests: bool) -> LvmMode {
    match (device_mapper_present, metadata_only_for_tests) {
        (true, _) => LvmMode::Full,
        (false, true) => LvmMode::MetadataOnlyForTests,
        (false, false) => LvmMode::Unusable(
            "device-mapper is not available on this node, so no logical volume can be activated \
             or wiped; the agent provisions nothing here (--metadata-only-for-tests allows \
             metadata-only LVs for tests and demos)"
                .to_string(),
        ),
    }
}

impl LvmMode {
    /// Why this node must not provision, if it must not.
    pub fn host_problem(&self) -> Option<String> {
        match self {
            LvmMode::Unusable(why) => Some(why.clone()),
            LvmMode::Full | LvmMode::MetadataOnlyForTests => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            (true, false, "full"),
            // The flag allows the degraded mode; it never forces it.
            (true, true, "full"),
            (false, true, "metadata-only"),
            (false, false, "unusable"),
        ];
        for (dm, flag, want) in cases {
            let mode = lvm_mode(dm, flag);
            let got = match &mode {
                LvmMode::Full => "full",
                LvmMode::MetadataOnlyForTests => "metadata-only",
                LvmMode::Unusable(_) => "unusable",
            };
            assert_eq!(got, want, "device-mapper {dm}, flag {flag}");
            assert_eq!(mode.host_problem().is_some(), want == "unusable");
        }
        let why = lvm_mode(false, false).host_problem().unwrap();
        assert!(why.contains("device-mapper"), "{why}");
        assert!(why.contains("--metadata-only-for-tests"), "{why}");
    }
}
