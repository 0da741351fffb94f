//! Volume ids as the node service sees them.

use lvmpin_api::VolumeId;

use super::error::{Error, Result};

/// An id that is not `<vg>/<lv>` names no volume we could have created, so it
/// is NotFound (what csi-sanity expects for random ids), not InvalidArgument.
pub fn parse(raw: &str) -> Result<VolumeId> {
    raw.parse()
        .map_err(|_| Error::VolumeNotFound(raw.to_string()))
}
