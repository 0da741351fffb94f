//! `lvmpin-controller`: parses flags and wires the parts together.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use lvmpin_cluster_controller::context::{Context, Settings};
use lvmpin_cluster_controller::metrics::Metrics;
use lvmpin_cluster_controller::runtime;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(version, about = "lvmpin cluster controller: recovery from lost nodes")]
struct Cli {
    /// How long a Node object must be gone before lvmpin acts on its claims
    /// and volumes.
    #[arg(long, env = "LVMPIN_NODE_GONE_GRACE", default_value = "30s")]
    node_gone_grace: humantime::Duration,
    /// Hand a claim waiting on a node back to the scheduler once that node's
    /// agent has not reported for this long.
    #[arg(long, env = "LVMPIN_AGENT_SILENCE", default_value = "5m")]
    agent_silence: humantime::Duration,
    /// Longest time between two passes when no watch event arrives.
    #[arg(long, default_value = "10s")]
    resync: humantime::Duration,
    #[arg(long, default_value = "0.0.0.0:9809")]
    metrics_listen: SocketAddr,
    /// kubeconfig file; default: in-cluster config, then ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// This replica's name in Events (default: the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

async fn client(kubeconfig: Option<PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(&path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let identity = cli
        .identity
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "lvmpin-controller".into());
    let client = client(cli.kubeconfig).await?;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let settings = Settings {
        node_gone_grace: cli.node_gone_grace.into(),
        agent_silence: cli.agent_silence.into(),
        resync: cli.resync.into(),
    };
    tracing::info!(?settings, "starting lvmpin-controller");
    let ctx = Arc::new(Context::new(client, metrics, settings, identity));
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        on_signal.cancel();
    });
    runtime::run(ctx, registry, cli.metrics_listen, stop).await?;
    Ok(())
}
