//! The upstream control plane as a child process: `hack/kube-local` builds one
//! Go binary that runs etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler from the `k8s.io/kubernetes` module (see
//! `hack/kube-local/README.md`). This module starts it, waits for its ready
//! file and hands out an admin client.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::testbed::process::{ManagedProcess, target_dir, workspace_root};
use crate::wait;

pub const KUBE_LOCAL_BIN: &str = "kube-local";

/// What kube-local writes to `<data-dir>/ready.json` once every component
/// answers its health check.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadyInfo {
    pub kubeconfig: PathBuf,
    pub apiserver: String,
    pub scheduler_metrics: String,
    /// The CA of every serving certificate kube-local made.
    pub ca_file: PathBuf,
}

/// A running kube-local; stopped with SIGTERM on `shutdown` or on drop.
pub struct KubeLocal {
    process: ManagedProcess,
    pub ready: ReadyInfo,
    client: kube::Client,
}

/// `LVMPIN_KUBE_LOCAL` or `<target>/kube-local/kube-local` (where `.ci/run`
/// and `hack/kube-local/build.sh` put it).
pub fn binary() -> Result<PathBuf> {
    let path = std::env::var_os("LVMPIN_KUBE_LOCAL")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("kube-local").join(KUBE_LOCAL_BIN));
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::BinaryMissing(format!(
            "{} (build it with `bash hack/kube-local/build.sh`; needs Go)",
            path.display()
        )))
    }
}

/// The scheduler configuration users deploy, from `manifests/scheduler/`.
pub fn scheduler_config(name: &str) -> PathBuf {
    workspace_root()
        .join("manifests")
        .join("scheduler")
        .join(format!("{name}.yaml"))
}

impl KubeLocal {
    /// Start kube-local in `dir`. `scheduler_config` is a
    /// KubeSchedulerConfiguration file whose extender URLs are rewritten to
    /// `extender_url` (which must be `None` for a file without extenders).
    pub async fn start(
        dir: &Path,
        scheduler_config: &Path,
        extender_url: Option<&str>,
        timeout: Duration,
    ) -> Result<Self> {
        let bin = binary()?;
        let data = dir.join("kube-local");
        std::fs::create_dir_all(&data).map_err(|e| Error::io(&data, e))?;
        let mut args = vec!["--data-dir".to_string(), data.display().to_string()];
        args.extend([
            "--scheduler-config".to_string(),
            scheduler_config.display().to_string(),
        ]);
        if let Some(url) = extender_url {
            args.extend(["--extender-url".to_string(), url.to_string()]);
        }
        let mut process = ManagedProcess::spawn(
            "kube-local",
            &bin,
            args,
            Vec::new(),
            dir.join("kube-local.log"),
        )?;
        let ready_file = data.join("ready.json");
        let r = wait::until(
            "kube-local to report ready",
            timeout,
            Duration::from_millis(100),
            || {
                let exited = process.exited();
                let ready = std::fs::read(&ready_file)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<ReadyInfo>(&b).ok());
                async move {
                    match exited {
                        Some(status) => Some(Err(status)),
                        None => ready.map(Ok),
                    }
                }
            },
        )
        .await;
        let ready = match r {
            Ok(Ok(ready)) => ready,
            Ok(Err(status)) => {
                return Err(Error::ApiServer(format!(
                    "kube-local exited ({status}) before it was ready:\n{}",
                    process.log_tail(30)
                )));
            }
            Err(e) => {
                return Err(Error::ApiServer(format!("{e}\n{}", process.log_tail(30))));
            }
        };
        let client = client_from_kubeconfig(&ready.kubeconfig).await?;
        Ok(KubeLocal {
            process,
            ready,
            client,
        })
    }

    /// A client with the admin identity (group system:masters).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    pub fn log(&self) -> &Path {
        &self.process.log
    }

    /// kube-scheduler's `/metrics` text (served without credentials).
    pub async fn scheduler_metrics(&self) -> Result<String> {
        let url = &self.ready.scheduler_metrics;
        let base = url.strip_suffix("/metrics").unwrap_or(url);
        let kc: Kubeconfig = serde_json::from_value(serde_json::json!({
            "clusters": [{"name": "kube-scheduler", "cluster": {
                "server": base,
                "certificate-authority": self.ready.ca_file,
            }}],
            "contexts": [{"name": "kube-scheduler", "context": {"cluster": "kube-scheduler"}}],
            "current-context": "kube-scheduler",
        }))
        .map_err(|e| Error::ApiServer(format!("kubeconfig for kube-scheduler: {e}")))?;
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| Error::ApiServer(format!("kube-scheduler at {base}: {e}")))?;
        let client = kube::Client::try_from(config)?;
        let req = http::Request::get("/metrics")
            .body(Vec::new())
            .map_err(|e| Error::ApiServer(format!("{url}: {e}")))?;
        Ok(client.request_text(req).await?)
    }

    pub async fn shutdown(mut self) {
        self.process.stop(Duration::from_secs(20)).await;
    }
}

pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client> {
    let kc = Kubeconfig::read_from(path)
        .map_err(|e| Error::ApiServer(format!("reading {}: {e}", path.display())))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::ApiServer(format!("kubeconfig {}: {e}", path.display())))?;
    Ok(kube::Client::try_from(config)?)
}
