//! lvmpin node agent: capacity reports, LV and PV provisioning, expansion,
//! deletion, and the CSI node service.
#![forbid(unsafe_code)]

pub mod csi;
