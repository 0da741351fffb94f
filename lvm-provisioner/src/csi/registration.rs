//! kubelet plugin registration served by the agent itself, so no
//! node-driver-registrar sidecar is needed. kubelet finds the socket under
//! `<kubelet dir>/plugins_registry/`, calls GetInfo, then tells us how
//! registration went through NotifyRegistrationStatus.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use lvmpin_api::names::DRIVER_NAME;
use lvmpin_csi_proto::PLUGIN_TYPE_CSI;
use lvmpin_csi_proto::pluginregistration as reg;
use tonic::{Request, Response, Status};
use tracing::{error, info};

/// CSI versions we announce; kubelet picks the highest 1.x.
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0"];

/// `<kubelet_dir>/plugins_registry/lvm.lvmpin.io-reg.sock`.
pub fn socket_path(kubelet_dir: &Path) -> PathBuf {
    kubelet_dir
        .join("plugins_registry")
        .join(format!("{DRIVER_NAME}-reg.sock"))
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RegistrationState {
    /// kubelet has not reported yet (or there is no kubelet, as in the simulator).
    #[default]
    Waiting,
    Registered,
    Failed(String),
}

/// Shared with the agent's `/readyz`: a failed registration makes it unready.
#[derive(Debug, Clone, Default)]
pub struct RegistrationHealth(Arc<RwLock<RegistrationState>>);

impl RegistrationHealth {
    pub fn state(&self) -> RegistrationState {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// False only after kubelet said registration failed; kubelet retries on
    /// the next socket event, and a later success makes us ready again.
    pub fn is_ready(&self) -> bool {
        !matches!(self.state(), RegistrationState::Failed(_))
    }

    fn set(&self, s: RegistrationState) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = s;
    }
}

#[derive(Debug, Clone)]
pub struct RegistrationService {
    /// The CSI socket path as kubelet (on the host) sees it.
    pub endpoint: String,
    pub health: RegistrationHealth,
}

#[tonic::async_trait]
impl reg::registration_server::Registration for RegistrationService {
    async fn get_info(
        &self,
        _: Request<reg::InfoRequest>,
    ) -> Result<Response<reg::PluginInfo>, Status> {
        info!(endpoint = %self.endpoint, "kubelet asked for plugin info");
        Ok(Response::new(reg::PluginInfo {
            r#type: PLUGIN_TYPE_CSI.to_string(),
            name: DRIVER_NAME.to_string(),
            endpoint: self.endpoint.clone(),
            supported_versions: SUPPORTED_VERSIONS.iter().map(|s| s.to_string()).collect(),
        }))
    }

    async fn notify_registration_status(
        &self,
        request: Request<reg::RegistrationStatus>,
    ) -> Result<Response<reg::RegistrationStatusResponse>, Status> {
        let status = request.into_inner();
        if status.plugin_registered {
            info!("kubelet registered the CSI plugin");
            self.health.set(RegistrationState::Registered);
        } else {
            error!(error = %status.error, "kubelet failed to register the CSI plugin");
            self.health.set(RegistrationState::Failed(status.error));
        }
        Ok(Response::new(reg::RegistrationStatusResponse {}))
    }
}
