//! `lvmpin-scheduler-extender`: parses flags and wires the parts together.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use lvmpin_scheduler_extender::bind::Binder;
use lvmpin_scheduler_extender::engine::{Settings, State};
use lvmpin_scheduler_extender::http::{App, Readiness, router};
use lvmpin_scheduler_extender::leader::{self, Leadership, LeaseConfig};
use lvmpin_scheduler_extender::placement::{Mode, Strategy};
use lvmpin_scheduler_extender::watch;

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

async fn kube_client(kubeconfig: Option<PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
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
    };
    kube::Client::try_from(config).context("building the Kubernetes client")
}

/// SIGTERM (what the kubelet sends) or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
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

    let client = kube_client(kubeconfig).await?;
    let leadership = Arc::new(if leader_elect {
        Leadership::elected()
    } else {
        Leadership::single()
    });
    let app = Arc::new(App::new(
        State::default(),
        Settings {
            mode,
            strategy,
            spare,
            reservation_ttl: reservation_ttl.into(),
        },
        Readiness::new(&watch::KINDS),
        leadership.clone(),
        Some(Binder {
            client: client.clone(),
        }),
    ));
    tracing::info!(?mode, ?strategy, spare, body_limit, %listen, prefix = %url_prefix, leader_elect, "starting lvmpin scheduler extender");

    watch::spawn_all(client.clone(), app.clone());
    if leader_elect {
        let identity = match identity {
            Some(i) => i,
            None => std::env::var("HOSTNAME")
                .context("--identity or HOSTNAME is needed with --leader-elect")?,
        };
        tokio::spawn(leader::run(
            client.clone(),
            LeaseConfig {
                namespace: lease_namespace,
                name: lease_name,
                identity,
                lease_duration: Duration::from_secs(15),
                renew_every: Duration::from_secs(4),
            },
            leadership,
        ));
    }
    // Reservations also end without any request arriving (TTL, settled
    // claims), and agents fall silent without any event.
    let agent_silence: Duration = agent_silence.into();
    let pruner = app.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let mut state = pruner.lock();
            let State {
                index,
                reservations,
            } = &mut *state;
            reservations.prune(index, Instant::now());
            index.mark_silent(std::time::SystemTime::now(), agent_silence);
            pruner.metrics.reservations.set(reservations.len() as i64);
        }
    });

    let routes = router(app, &url_prefix, body_limit).into_make_service();
    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        shutdown.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                .await
                .with_context(|| format!("loading TLS {} / {}", cert.display(), key.display()))?;
            axum_server::bind_rustls(listen, tls)
                .handle(handle)
                .serve(routes)
                .await
                .context("HTTPS server")?;
        }
        _ => {
            axum_server::bind(listen)
                .handle(handle)
                .serve(routes)
                .await
                .context("HTTP server")?;
        }
    }
    Ok(())
}
