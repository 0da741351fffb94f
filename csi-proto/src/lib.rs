//! gRPC bindings for the two node-side protocols lvmpin speaks with kubelet:
//! CSI (`csi.v1`: Identity, Node and Controller capabilities) and the kubelet
//! plugin registration API (`pluginregistration`). Generated at build time from
//! `proto/` with protox and tonic-prost-build; both client and server sides.
#![forbid(unsafe_code)]

pub mod csi {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("csi.v1");
    }
}

pub mod pluginregistration {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("pluginregistration");
}

/// Every registration `type` kubelet knows; we only ever send the CSI one.
pub const PLUGIN_TYPE_CSI: &str = "CSIPlugin";

#[cfg(test)]
mod tests {
    use super::csi::v1::node_server::NodeServer;
    use super::csi::v1::node_service_capability::rpc::Type as NodeRpc;
    use super::pluginregistration::registration_server::RegistrationServer;
    use tonic::server::NamedService;

    // kubelet dials these exact service names; a package typo breaks registration.
    #[test]
    fn service_names_match_what_kubelet_dials() {
        assert_eq!(
            <RegistrationServer<()> as NamedService>::NAME,
            "pluginregistration.Registration"
        );
        assert_eq!(<NodeServer<()> as NamedService>::NAME, "csi.v1.Node");
    }

    #[test]
    fn enum_numbers_follow_the_spec() {
        assert_eq!(NodeRpc::StageUnstageVolume as i32, 1);
        assert_eq!(NodeRpc::VolumeCondition as i32, 4);
        assert_eq!(NodeRpc::VolumeMountGroup as i32, 6);
    }
}
