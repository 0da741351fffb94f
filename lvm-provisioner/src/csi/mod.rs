//! CSI node service and kubelet plugin registration (issue 6).
