//! lvmpin's kube-scheduler extender: places pods by free LVM capacity and
//! reserves what it promises, so concurrent scheduling never overcommits a VG.
//!
//! Pure core: `facts` (what objects tell us), `index` (the cluster view),
//! `claims` (pod → demand), `capacity`, `thin` (thin pool keys and room), `reservations`, `placement`,
//! `node_view` (asked nodes resolved once), `engine`.
//! Shell: `context` (the shared `App`), `wire` + `http` (the verbs), `debug`
//! and `access` (read-only views for `kubectl lvmpin`, behind token reviews), `bind`,
//! `events`, `watch`, `leader`, `metrics`, and `runtime` (every task under one shutdown).
#![forbid(unsafe_code)]

pub mod access;
pub mod bind;
pub mod capacity;
pub mod claims;
pub mod context;
pub mod debug;
pub mod engine;
pub mod error;
pub mod events;
pub mod facts;
pub mod http;
pub mod index;
pub mod leader;
pub mod metrics;
pub mod node_view;
pub mod placement;
pub mod reservations;
pub mod runtime;
pub mod snapshot_watch;
pub mod sources;
pub mod thin;
pub mod watch;
pub mod wire;
pub mod zone_ratio;

#[doc(hidden)]
#[cfg(any(test, feature = "testutil"))]
pub mod testutil;

pub use error::{Error, Result};
