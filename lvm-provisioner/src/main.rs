//! `lvmpin-agent`: parses flags and wires the parts (see `runtime.rs`).

use anyhow::Context as _;
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use lvmpin_lvm::{Lvm, LvmConfig};
use lvmpin_provisioner::cli::{Args, LogFormat};
use lvmpin_provisioner::context::{AgentConfig, system_clock};
use lvmpin_provisioner::csi::LvmVolumes;
use lvmpin_provisioner::lvm_backend::LvmBackend;
use lvmpin_provisioner::lvm_mode::{LvmMode, lvm_mode};
use lvmpin_provisioner::node_volume_groups;
use lvmpin_provisioner::runtime::{Agent, CsiSetup, run_csi_only};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn kube_client(path: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let config = match path {
        Some(p) => {
            let kc = Kubeconfig::read_from(p)
                .with_context(|| format!("reading kubeconfig {}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and no in-cluster config")?,
    };
    Ok(kube::Client::try_from(config)?)
}

async fn shutdown_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM");
            let _ = ctrl_c.await;
            token.cancel();
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    token.cancel();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);
    let Args {
        node_name,
        volume_groups,
        volume_groups_annotation,
        spare_bytes,
        scan_interval,
        report_heartbeat,
        kubeconfig,
        lvm_binary,
        lvm_timeout,
        csi_socket,
        kubelet_dir,
        metrics_listen,
        namespace,
        csi_only,
        log_format: _,
        metadata_only_for_tests,
    } = args;

    anyhow::ensure!(
        !node_name.trim().is_empty(),
        "--node-name (NODE_NAME) is empty"
    );
    anyhow::ensure!(
        csi_only || !namespace.trim().is_empty(),
        "--namespace (POD_NAMESPACE) is empty: the agent must publish CSIStorageCapacity in its own namespace"
    );
    anyhow::ensure!(
        !csi_only || !csi_socket.as_os_str().is_empty(),
        "--csi-only needs a --csi-socket"
    );
    anyhow::ensure!(
        volume_groups.iter().all(|vg| !vg.trim().is_empty()),
        "--volume-group (LVMPIN_VOLUME_GROUPS) has an empty name: {volume_groups:?}"
    );
    let lvm = Lvm::new(LvmConfig {
        binary: lvm_binary,
        timeout: lvm_timeout.into(),
        ..LvmConfig::default()
    });
    let mode = lvm_mode(!lvm.metadata_only(), metadata_only_for_tests);
    match &mode {
        LvmMode::Full => {}
        LvmMode::MetadataOnlyForTests => tracing::warn!(
            "device-mapper is not available: running in METADATA-ONLY mode (--metadata-only-for-tests); \
             linear LVs can be created, extended and removed, but nothing can be activated, mounted \
             or thin-provisioned"
        ),
        LvmMode::Unusable(why) => tracing::error!("{why}"),
    }
    anyhow::ensure!(
        !csi_only || volume_groups_annotation.is_empty(),
        "--volume-groups-annotation needs the Kubernetes API, which --csi-only does not use"
    );
    // The client is made before the VGs are known: a node annotation may
    // name them.
    let client = if csi_only {
        None
    } else {
        Some(kube_client(kubeconfig.as_deref()).await?)
    };
    let volume_groups = match &client {
        Some(c) if !volume_groups_annotation.is_empty() => {
            let vgs = node_volume_groups::resolve(
                c.clone(),
                &node_name,
                &volume_groups,
                &volume_groups_annotation,
            )
            .await?;
            tracing::info!(volume_groups = ?vgs, annotation = %volume_groups_annotation, "volume groups of this node");
            vgs
        }
        _ => volume_groups,
    };
    let token = CancellationToken::new();
    tokio::spawn(shutdown_signal(token.clone()));

    // An empty --csi-socket turns the CSI node service off (e.g. several
    // agents on one machine in the simulator).
    let csi = (!csi_socket.as_os_str().is_empty()).then(|| CsiSetup {
        socket: csi_socket,
        kubelet_dir,
        source: Arc::new(LvmVolumes::new(lvm.clone(), volume_groups.clone())),
    });
    let config = AgentConfig {
        node_name,
        volume_groups,
        spare_bytes,
        scan_interval: scan_interval.into(),
        report_heartbeat: report_heartbeat.into(),
        namespace: Some(namespace),
        host_problem: mode.host_problem(),
    };
    let backend = LvmBackend::new(lvm);
    if csi_only {
        // Without the watches there is no LvmNode to report the problem in
        // and no claim to hand back: refuse to serve volumes at all.
        if let Some(why) = &config.host_problem {
            anyhow::bail!("{why}");
        }
        let csi = csi.context("--csi-only needs a --csi-socket")?;
        run_csi_only(backend, config, csi, Some(metrics_listen), token).await?;
        return Ok(());
    }
    let agent = Agent {
        client: client.context("the agent needs a Kubernetes client unless --csi-only")?,
        backend,
        config,
        metrics_listen: Some(metrics_listen),
        clock: system_clock(),
        csi,
    };
    agent.run(token).await?;
    Ok(())
}
