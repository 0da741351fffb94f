//! lvm2 layer (placeholder until issue 2 lands).
#![forbid(unsafe_code)]
