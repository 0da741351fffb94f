//! What a failed lvm command means, read from its stderr (`LC_ALL=C` keeps the
//! messages in English and stable).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    VgNotFound,
    LvNotFound,
    AlreadyExists,
    InsufficientSpace,
    Other,
}

pub(crate) fn classify(stderr: &str) -> Failure {
    let lower = stderr.to_ascii_lowercase();
    // A missing VG also makes lvm say it cannot process it; check it first.
    if lower.contains("volume group \"") && lower.contains("\" not found") {
        Failure::VgNotFound
    } else if lower.contains("failed to find logical volume") {
        Failure::LvNotFound
    } else if lower.contains("already exists in volume group") {
        Failure::AlreadyExists
    } else if lower.contains("insufficient free space")
        || lower.contains("insufficient suitable allocatable extents")
    {
        Failure::InsufficientSpace
    } else {
        Failure::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Messages as lvm2 2.03 prints them (captured on this machine).
    #[test]
    fn table() {
        let cases = [
            (
                "  Volume group \"novg\" not found\n  Cannot process volume group novg\n",
                Failure::VgNotFound,
            ),
            (
                "  WARNING: Activation disabled.\n  Failed to find logical volume \"vg/nope\"\n",
                Failure::LvNotFound,
            ),
            (
                "  Logical Volume \"lv1\" already exists in volume group \"vg\"\n",
                Failure::AlreadyExists,
            ),
            (
                "  Volume group \"vg\" has insufficient free space (44 extents): 256 required.\n",
                Failure::InsufficientSpace,
            ),
            (
                "  Insufficient suitable allocatable extents for logical volume x: 5 more required\n",
                Failure::InsufficientSpace,
            ),
            ("  --size may not be zero.\n", Failure::Other),
            ("", Failure::Other),
        ];
        for (stderr, want) in cases {
            assert_eq!(classify(stderr), want, "{stderr}");
        }
    }
}
