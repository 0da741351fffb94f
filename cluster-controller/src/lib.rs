//! lvmpin's cluster-wide controller: what no node agent can do because the
//! node is gone (see docs/operations.md, "Node loss").
//!
//! Pure decisions: `plan` (over facts read by `facts`). Shells that perform
//! them: `actions`, `runtime`.
#![forbid(unsafe_code)]

pub mod actions;
pub mod context;
pub mod error;
pub mod facts;
pub mod http;
pub mod metrics;
pub mod plan;
pub mod runtime;
