//! `kubectl-lvmpin`: kubectl finds it on PATH and runs it as `kubectl lvmpin`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use k8s_openapi::jiff::Timestamp;
use lvmpin_kubectl::fetch::{self, Extender};
use lvmpin_kubectl::format::{self, Output};
use lvmpin_kubectl::plan::{self, Command};
use lvmpin_kubectl::report;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl lvmpin",
    version,
    about = "lvmpin's view of the cluster: capacity and promises per node, volumes, and why a pod waits"
)]
struct Cli {
    /// kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// Namespace (why: of the pod; volumes: only this one; default: every namespace).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    /// table, json or yaml.
    #[arg(short = 'o', long, global = true, default_value = "table")]
    output: Output,
    /// The extender's address, e.g. http://127.0.0.1:8080 after
    /// `kubectl -n lvmpin-system port-forward svc/lvmpin-scheduler-extender 8080`.
    #[arg(long, global = true, env = "LVMPIN_EXTENDER_URL")]
    extender_url: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Per node and volume group: size, free, reserved by the extender,
    /// volumes, thin pools, last report (stale ones flagged).
    Nodes,
    /// Why a pod is Pending: its claims, each node's verdict from the
    /// extender's filter (a dry run), and the pod's last Events.
    Why {
        /// The pod's name.
        pod: String,
    },
    /// Claim, PV, LV, node and size of lvmpin's volumes, and LVs the agents
    /// report that no PV references.
    Volumes {
        /// Only volumes on this node.
        #[arg(long)]
        node: Option<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The crate's errors already carry their causes' messages.
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // kube-rs builds its TLS on rustls; the process picks the one provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let session = fetch::connect(cli.kubeconfig.clone(), cli.context.clone()).await?;
    let cmd = match &cli.command {
        Cmd::Nodes => Command::Nodes,
        Cmd::Why { pod } => Command::Why {
            namespace: cli
                .namespace
                .clone()
                .unwrap_or_else(|| session.default_namespace.clone()),
            pod: pod.clone(),
        },
        Cmd::Volumes { node } => Command::Volumes {
            namespace: cli.namespace.clone(),
            node: node.clone(),
        },
    };
    let extender = match &cli.extender_url {
        Some(url) => {
            let base = plan::extender_base(url)?;
            let token = session
                .token
                .clone()
                .ok_or(lvmpin_kubectl::Error::NoToken)?;
            Some(Extender::new(base, token))
        }
        None => None,
    };
    let requests = plan::plan(&cmd, extender.is_some())?;
    let got = fetch::fetch(&session.client, extender.as_ref(), &requests).await?;
    let text = match cmd {
        Command::Nodes => {
            let rows = report::node_rows(
                &got.lvm_nodes,
                got.extender_nodes.as_ref(),
                Timestamp::now(),
            );
            format::render(cli.output, rows.as_slice(), format::nodes_table)?
        }
        Command::Why { .. } => {
            let (Some(pod), Some(view)) = (&got.pod, got.why.clone()) else {
                anyhow::bail!("the plan for why fetched no pod or no verdicts");
            };
            let r = report::why_report(pod, view, &got.events);
            format::render(cli.output, &r, format::why_text)?
        }
        Command::Volumes { namespace, node } => {
            let r = report::volume_report(
                &got.claims,
                &got.pvs,
                &got.classes,
                &got.lvm_nodes,
                namespace.as_deref(),
                node.as_deref(),
            );
            format::render(cli.output, &r, format::volumes_text)?
        }
    };
    print!("{text}");
    Ok(())
}
