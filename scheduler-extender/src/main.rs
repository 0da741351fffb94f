//! `lvmpin-scheduler-extender`: parses flags and hands them to `runtime::run`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use lvmpin_scheduler_extender::engine::Settings;
use lvmpin_scheduler_extender::leader::LeaseConfig;
use lvmpin_scheduler_extender::placement::{Mode, Strategy};
use lvmpin_scheduler_extender::runtime::{self, Config, ServerConfig};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "kube-scheduler extender placing pods by free LVM capacity"
)]
struct Cli {
    #[arg(long, env = "LVMPIN_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Path prefix of the verbs: "" serves /filter, "/lvmpin" serves /lvmpin/filter.
    #[arg(long, env = "LVMPIN_URL_PREFIX", default_value = "")]
    url_prefix: String,
    /// PEM certificate for HTTPS (kube-scheduler `enableHTTPS`); needs --tls-key.
    #[arg(long, env = "LVMPIN_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, env = "LVMPIN_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// decisive: return only the chosen node; advisory: return all that fit.
    #[arg(long, env = "LVMPIN_MODE", default_value = "decisive")]
    mode: Mode,
    /// spread or binpack, applied after zone and same-owner spreading.
    #[arg(long, env = "LVMPIN_STRATEGY", default_value = "spread")]
    strategy: Strategy,
    /// Bytes kept free in every volume group (a quantity, e.g. 10Gi).
    #[arg(long, env = "LVMPIN_SPARE_BYTES", default_value = "0")]
    spare_bytes: String,
    /// Largest request body accepted (a quantity).
    #[arg(long, env = "LVMPIN_BODY_LIMIT", default_value = "64Mi")]
    body_limit: String,
    /// How long an unconfirmed reservation lives.
    #[arg(long, env = "LVMPIN_RESERVATION_TTL", default_value = "5m")]
    reservation_ttl: humantime::Duration,
    /// A node whose agent has not reported for this long takes no new claims
    /// (agents rewrite their report at least every minute). Keep it equal to
    /// lvmpin-controller's --agent-silence.
    #[arg(long, env = "LVMPIN_AGENT_SILENCE", default_value = "5m")]
    agent_silence: humantime::Duration,
    /// kubeconfig file; default: in-cluster config, then ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    #[arg(long, env = "LVMPIN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Run several replicas: elect a leader with a Lease; followers answer Error
    /// and report not ready.
    #[arg(long, env = "LVMPIN_LEADER_ELECT", default_value_t = false)]
    leader_elect: bool,
    #[arg(long, env = "LVMPIN_LEASE_NAMESPACE", default_value = "kube-system")]
    lease_namespace: String,
    #[arg(
        long,
        env = "LVMPIN_LEASE_NAME",
        default_value = "lvmpin-scheduler-extender"
    )]
    lease_name: String,
    /// This replica's identity in the Lease (default: the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn kube_config(kubeconfig: Option<PathBuf>) -> anyhow::Result<kube::Config> {
    Ok(match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(&path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .with_context(|| format!("using kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no in-cluster config and no kubeconfig")?,
    })
}

/// SIGTERM (what the kubelet sends) or Ctrl-C cancels `shutdown`.
async fn shutdown_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
                _ = shutdown.cancelled() => return,
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
    shutdown.cancel();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli {
        listen,
        url_prefix,
        tls_cert,
        tls_key,
        mode,
        strategy,
        spare_bytes,
        body_limit,
        reservation_ttl,
        agent_silence,
        kubeconfig,
        log_format,
        leader_elect,
        lease_namespace,
        lease_name,
        identity,
    } = Cli::parse();
    init_logs(&log_format);
    let _ = rustls::crypto::ring::default_provider().install_default();

    let spare = lvmpin_api::parse_quantity_bytes(&spare_bytes)
        .with_context(|| format!("--spare-bytes {spare_bytes:?}"))?;
    let body_limit = usize::try_from(
        lvmpin_api::parse_quantity_bytes(&body_limit)
            .with_context(|| format!("--body-limit {body_limit:?}"))?,
    )
    .context("--body-limit is too large")?;
    if !url_prefix.is_empty() && !url_prefix.starts_with('/') {
        bail!("--url-prefix must be empty or start with '/', got {url_prefix:?}");
    }

    let kube_config = kube_config(kubeconfig).await?;
    let election = if leader_elect {
        let identity = match identity {
            Some(i) => i,
            None => std::env::var("HOSTNAME")
                .context("--identity or HOSTNAME is needed with --leader-elect")?,
        };
        Some(LeaseConfig {
            namespace: lease_namespace,
            name: lease_name,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(4),
        })
    } else {
        None
    };
    tracing::info!(?mode, ?strategy, spare, body_limit, %listen, prefix = %url_prefix, leader_elect, "starting lvmpin scheduler extender");
    let config = Config {
        server: ServerConfig {
            listen,
            url_prefix,
            body_limit,
            tls: tls_cert.zip(tls_key),
        },
        settings: Settings {
            mode,
            strategy,
            spare,
            reservation_ttl: reservation_ttl.into(),
        },
        agent_silence: agent_silence.into(),
        election,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(shutdown.clone()));
    runtime::run(kube_config, config, shutdown).await?;
    Ok(())
}
