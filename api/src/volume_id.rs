//! CSI volume handle: `<vg>/<lv>`, the same spelling `lvs` uses.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("volume id {0:?} is not of the form <volume-group>/<logical-volume>")]
pub struct VolumeIdError(pub String);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VolumeId {
    pub vg: String,
    pub lv: String,
}

impl VolumeId {
    pub fn new(vg: impl Into<String>, lv: impl Into<String>) -> Self {
        Self {
            vg: vg.into(),
            lv: lv.into(),
        }
    }
}

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.vg, self.lv)
    }
}

impl FromStr for VolumeId {
    type Err = VolumeIdError;

    /// Checks only the shape; the LVM layer validates the names themselves.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((vg, lv)) if !vg.is_empty() && !lv.is_empty() && !lv.contains('/') => {
                Ok(Self::new(vg, lv))
            }
            _ => Err(VolumeIdError(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        assert_eq!("vg0/pvc-1".parse(), Ok(VolumeId::new("vg0", "pvc-1")));
        assert_eq!(VolumeId::new("a", "b").to_string(), "a/b");
        for bad in ["", "vg", "/lv", "vg/", "a/b/c"] {
            assert!(bad.parse::<VolumeId>().is_err(), "{bad}");
        }
    }
}
