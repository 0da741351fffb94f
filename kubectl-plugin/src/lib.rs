//! `kubectl lvmpin`: what lvmpin holds and promises per node, the volumes it
//! made, and why a pod waits.
//!
//! Pure core: `plan` (what to request for a command), `report` (rows from
//! what came back), `format` (table, JSON, YAML). Shell: `fetch` (the
//! Kubernetes API through the user's kubeconfig, and the extender's
//! read-only debug endpoints with the same bearer token).
#![forbid(unsafe_code)]

pub mod error;
pub mod fetch;
pub mod format;
pub mod plan;
pub mod report;

pub use error::{Error, Result};
