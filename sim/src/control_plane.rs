//! The simulated control plane: API server, PV controller and scheduler, in
//! one process, as `lvmpin-sim serve`, the demo, the bench and the tests use it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::apiserver::{self, ApiServerOptions, RunningApiServer};
use crate::error::{Error, Result};
use crate::informer::AbortOnDrop;
use crate::scheduler::{self, SchedulerConfig, SchedulerStats};

#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    pub listen: SocketAddr,
    pub watch_history: usize,
    /// None: no scheduler (e.g. tests that place pods by hand).
    pub scheduler: Option<SchedulerConfig>,
    pub pv_controller: bool,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            watch_history: 100_000,
            scheduler: Some(SchedulerConfig::default()),
            pv_controller: true,
        }
    }
}

pub struct ControlPlane {
    api: RunningApiServer,
    client: kube::Client,
    pub stats: Arc<SchedulerStats>,
    tasks: Vec<AbortOnDrop>,
}

impl ControlPlane {
    pub async fn start(opts: ControlPlaneOptions) -> Result<Self> {
        let api = apiserver::start(ApiServerOptions {
            listen: opts.listen,
            watch_history: opts.watch_history,
        })
        .await?;
        let client = api.client().await?;
        let stats = Arc::new(SchedulerStats::default());
        let mut tasks = Vec::new();
        if opts.pv_controller {
            let c = client.clone();
            tasks.push(AbortOnDrop(tokio::spawn(crate::pv_controller::run(c))));
        }
        if let Some(cfg) = opts.scheduler {
            let c = client.clone();
            let s = stats.clone();
            tasks.push(AbortOnDrop(tokio::spawn(scheduler::run(c, cfg, s))));
        }
        Ok(Self {
            api,
            client,
            stats,
            tasks,
        })
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    pub fn url(&self) -> String {
        self.api.url()
    }

    pub fn write_kubeconfig(&self, path: &Path) -> Result<()> {
        self.api
            .write_kubeconfig(path)
            .map_err(|e| Error::io(path, e))
    }

    /// Every open watch ends with 410 Gone, so its client lists again.
    pub fn expire_watches(&self) {
        self.api.expire_watches();
    }

    pub async fn shutdown(self) {
        drop(self.tasks);
        self.api.shutdown().await;
    }
}
