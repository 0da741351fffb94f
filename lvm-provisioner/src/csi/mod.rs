//! CSI Identity, Node and Controller services and kubelet plugin registration
//! (CSI spec v1; kubelet `pkg/kubelet/pluginmanager` registration protocol;
//! the facts used are in docs/protocols.md, "CSI node service" and "Plugin
//! registration with kubelet").
//!
//! Layout: `request` and `controller_request` check arguments (`paths` confines
//! mount paths to kubelet's directory, `bounded` cuts echoed values); `stage`,
//! `publish`, `stats` and `expand` decide with pure planning functions over
//! the mount table and act through two edges, `VolumeSource` (the LVs) and
//! `Mounter` (kernel + tools); `service`, `controller` and `registration` are
//! the gRPC shells; `serve` wires them to unix sockets.
//!
//! The agent wires it in with one call (`runtime::spawn_csi`) and lets
//! `/readyz` consult `health.is_ready()`.

pub mod authority;
pub mod blkid;
pub mod bounded;
pub mod client;
pub mod command;
pub mod controller;
pub mod controller_request;
pub mod device;
pub mod error;
pub mod expand;
pub mod guard;
mod lvm_source;
pub use lvm_source::LvmVolumes;
pub mod metrics;
pub mod mounter;
pub mod mountinfo;
pub mod naming;
pub mod options;
pub mod paths;
pub mod publish;
pub mod registration;
pub mod request;
pub mod service;
pub mod source;
pub mod stage;
pub mod stats;
mod volume_id;

use std::future::Future;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lvmpin_csi_proto::csi::v1::{
    controller_server::ControllerServer, identity_server::IdentityServer, node_server::NodeServer,
};
use lvmpin_csi_proto::pluginregistration::registration_server::RegistrationServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tracing::{info, warn};

use crate::backend::VolumeBackend;

pub use controller::ControllerService;
pub use controller_request::Scope;
pub use error::{Error, Result};
pub use metrics::CsiMetrics;
pub use mounter::{Mounter, SysMounter};
pub use registration::{RegistrationHealth, RegistrationState};
pub use service::CsiService;
pub use source::{VolumeInfo, VolumeSource};

#[derive(Debug, Clone)]
pub struct CsiOptions {
    pub node_name: String,
    /// Where the CSI gRPC service listens.
    pub csi_socket: PathBuf,
    /// kubelet's root (usually /var/lib/kubelet); the registration socket goes
    /// in its `plugins_registry/`, and every staging and target path must lie
    /// inside it.
    pub kubelet_dir: PathBuf,
    /// The CSI socket path as kubelet sees it, when the agent runs in a
    /// container with a different mount layout; defaults to `csi_socket`.
    pub kubelet_endpoint: Option<PathBuf>,
    pub metrics: CsiMetrics,
}

/// How long shutdown waits for open CSI and registration connections.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves CSI on `opts.csi_socket` and plugin registration on
/// `<kubelet_dir>/plugins_registry/lvm.lvmpin.io-reg.sock` until `shutdown`
/// completes, then removes both sockets. Without a controller, the plugin is
/// node-only: Controller calls are UNIMPLEMENTED and Identity says so.
pub async fn serve<B: VolumeBackend>(
    opts: CsiOptions,
    source: Arc<dyn VolumeSource>,
    controller: Option<ControllerService<B>>,
    health: RegistrationHealth,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    serve_with_mounter(
        opts,
        source,
        Arc::new(SysMounter::default()),
        controller,
        health,
        shutdown,
    )
    .await
}

pub async fn serve_with_mounter<B: VolumeBackend>(
    opts: CsiOptions,
    source: Arc<dyn VolumeSource>,
    mounter: Arc<dyn Mounter>,
    controller: Option<ControllerService<B>>,
    health: RegistrationHealth,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let CsiOptions {
        node_name,
        csi_socket,
        kubelet_dir,
        kubelet_endpoint,
        metrics,
    } = opts;
    if node_name.is_empty() {
        return Err(Error::InvalidArgument(
            "node name is required for CSI".into(),
        ));
    }
    let root = paths::MountRoot::new(&kubelet_dir)?;
    let reg_socket = registration::socket_path(&kubelet_dir);
    let csi_listener = bind(&csi_socket)?;
    let reg_listener = bind(&reg_socket)?;
    let endpoint = kubelet_endpoint.unwrap_or_else(|| csi_socket.clone());
    info!(
        csi = %csi_socket.display(),
        registration = %reg_socket.display(),
        node = %node_name,
        "serving CSI node service"
    );

    let svc = CsiService::new(
        node_name,
        root,
        controller.is_some(),
        source,
        mounter,
        metrics,
    );
    let reg = registration::RegistrationService {
        endpoint: endpoint.to_string_lossy().into_owned(),
        health,
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let csi_server = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(svc.clone()))
        .add_service(NodeServer::new(svc))
        .add_optional_service(controller.map(ControllerServer::new))
        .serve_with_incoming_shutdown(lenient_incoming(csi_listener), stopped(rx.clone()));
    let reg_server = tonic::transport::Server::builder()
        .add_service(RegistrationServer::new(reg))
        .serve_with_incoming_shutdown(lenient_incoming(reg_listener), stopped(rx));
    let servers = async { tokio::try_join!(csi_server, reg_server) };
    tokio::pin!(servers);
    tokio::pin!(shutdown);
    let result = tokio::select! {
        r = &mut servers => r,
        () = &mut shutdown => {
            let _ = tx.send(true);
            // A client holding its connection open must not keep the
            // sockets, and the process, for ever; kubelet's grace period
            // (30 s by default) bounds the whole shutdown anyway.
            match tokio::time::timeout(DRAIN, &mut servers).await {
                Ok(r) => r,
                Err(_) => {
                    warn!(seconds = DRAIN.as_secs(), "CSI connections still open at shutdown; closing");
                    Ok(((), ()))
                }
            }
        }
    };
    // Removing the registration socket is how kubelet learns we are gone.
    for path in [&reg_socket, &csi_socket] {
        let _ = std::fs::remove_file(path);
    }
    info!("CSI node service stopped");
    result.map(drop).map_err(Error::from)
}

/// Accepted connections, each behind the `:authority` relay.
fn lenient_incoming(
    listener: UnixListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::io::DuplexStream>> {
    use futures::StreamExt;
    UnixListenerStream::new(listener).map(|conn| conn.map(authority::lenient))
}

/// Binds a unix socket, creating parent directories and replacing a stale
/// socket left by a previous run (but never a file that is not a socket).
fn bind(path: &Path) -> Result<UnixListener> {
    let listen_err = |source| Error::Listen {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(listen_err)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path).map_err(listen_err)?,
        Ok(_) => {
            return Err(listen_err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "path exists and is not a socket",
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(listen_err(e)),
    }
    UnixListener::bind(path).map_err(listen_err)
}
