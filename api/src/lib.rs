//! Types and names shared by the lvmpin scheduler extender and node agent.
//!
//! Everything here is plain data and pure functions so that both binaries
//! (and their tests) agree on one definition of a claim's size, a volume
//! handle and the capacity report.
#![forbid(unsafe_code)]

pub mod claim;
pub mod debug_view;
pub mod lvm_node;
pub mod names;
pub mod node;
pub mod patch;
pub mod quantity;
pub mod snapshot;
pub mod text;
pub mod thin;
pub mod volume;
pub mod volume_id;

pub use claim::{
    ClaimSizeError, ClaimSource, Unsupported, claim_size_bytes, claim_source, unsupported,
};
pub use lvm_node::{
    LvmNode, LvmNodeSpec, LvmNodeStatus, LvmNodeSummary, NodeCondition, ThinPoolStatus,
    VolumeGroupStatus,
};
pub use quantity::{QuantityError, parse_quantity_bytes};
pub use volume_id::{VolumeId, VolumeIdError};
