//! `CreateLv`: what a caller asks `Lvm::create_lv` for. Plain data, shared by
//! the argument builder (`args`) and the command sequencer (`ops`).

use crate::tags::Owner;

/// A request for an LV owned by one claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateLv {
    pub vg: String,
    pub name: String,
    pub size_bytes: u64,
    /// Create a thin LV of this pool instead of a linear one.
    pub thin_pool: Option<String>,
    pub owner: Owner,
}
