//! lvmpin node agent: capacity reports, LV and PV provisioning, expansion,
//! deletion, and the CSI node service.
//!
//! Pure decisions: `claim_plan`, `node_scope`, `lvm_mode`, `pv_body`, `capacity`, `expansion`,
//! `deletion`, `recovery`, `lvm_node_status`, `backoff`, and the plan of
//! `storage_capacity`. Shells that perform them: `reconcile_claim`,
//! `reconcile_pv`, `claim_watch`, `pv_labels`, `lvm_node_writer`, `startup`, `volumes`, `lvm_backend`, the
//! sync of `storage_capacity`, `runtime`.
#![forbid(unsafe_code)]

pub mod api_util;
pub mod backend;
pub mod backoff;
pub mod capacity;
pub mod claim_plan;
pub mod claim_watch;
pub mod cli;
pub mod context;
pub mod csi;
pub mod deletion;
pub mod error;
pub mod events;
pub mod expansion;
#[cfg(any(test, feature = "fake-backend"))]
pub mod fake_backend;
pub mod http;
pub mod lvm_backend;
pub mod lvm_mode;
pub mod lvm_node_status;
pub mod lvm_node_writer;
pub mod metrics;
pub mod node_scope;
pub mod node_volume_groups;
pub mod orphans;
pub mod provision;
pub mod pv_body;
pub mod pv_labels;
pub mod reconcile_claim;
pub mod reconcile_pv;
pub mod recovery;
pub mod resize;
pub mod restore;
pub mod restore_plan;
pub mod runtime;
pub mod snapshot_contents;
pub mod snapshot_plan;
pub mod startup;
pub mod storage_capacity;
pub mod thin_warnings;
pub mod volumes;

pub use error::{Error, Result};
