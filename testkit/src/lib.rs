//! Test helpers shared by lvmpin's crates, so that fixtures cannot drift
//! apart: one throwaway VG on a loop device, one claim builder, the PV the
//! agent is expected to create, and one verifier of Kubernetes API calls.
//! Never a dependency of a production binary.
#![forbid(unsafe_code)]

pub mod api_calls;
pub mod loop_vg;
pub mod objects;
pub mod vm;

pub use api_calls::{Call, verify};
pub use loop_vg::LoopVg;
pub use objects::{ClaimBuilder, class, expected_pv, pv_from_json};
