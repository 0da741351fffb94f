//! lvmpin's local cluster simulator: an in-memory Kubernetes API server, the
//! control-plane behaviour the flow needs, and the demo.
#![forbid(unsafe_code)]

pub mod agent_scale;
pub mod apiserver;
pub mod bench;
pub mod control_plane;
pub mod demo;
pub mod error;
pub mod informer;
pub mod metrics;
pub mod pv_controller;
pub mod scale_bench;
pub mod scheduler;
pub mod scheduler_overhead;
pub mod testbed;
pub mod wait;
pub mod workload;
