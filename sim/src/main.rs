//! `lvmpin-sim`: flags and wiring only; the parts live in the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::PostParams;
use lvmpin_sim::agent_scale::{self, AgentScaleOptions};
use lvmpin_sim::bench::{self, BenchOptions};
use lvmpin_sim::bench_all::{self, AllOptions};
use lvmpin_sim::control_plane::{ControlPlane, ControlPlaneOptions};
use lvmpin_sim::demo::{self, DemoOptions};
use lvmpin_sim::scale_bench::{self, ScaleOptions};
use lvmpin_sim::scheduler::{ExtenderConfig, SchedulerConfig};
use lvmpin_sim::scheduler_overhead::{self, CapacityCheck, OverheadOptions};
use lvmpin_sim::testbed::{Backend, Binaries, Cluster, Mode, Testbed, TestbedOptions};
use lvmpin_sim::workload;

#[derive(Parser)]
#[command(version, about = "Local cluster simulator for lvmpin")]
struct Cli {
    #[arg(long, env = "LVMPIN_LOG_FORMAT", default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Decisive,
    Advisory,
    Both,
}

#[derive(Subcommand)]
enum Cmd {
    /// API server + PV controller + scheduler driver until Ctrl-C.
    Serve {
        #[arg(long, env = "LVMPIN_SIM_LISTEN", default_value = "127.0.0.1:6443")]
        listen: SocketAddr,
        /// Where to write the kubeconfig for other processes.
        #[arg(
            long,
            env = "LVMPIN_SIM_KUBECONFIG",
            default_value = "lvmpin-sim.kubeconfig"
        )]
        kubeconfig_out: PathBuf,
        /// Extender URL prefix, e.g. http://127.0.0.1:8080 (none: no extender).
        #[arg(long, env = "LVMPIN_SIM_EXTENDER_URL")]
        extender_url: Option<String>,
        /// Send node names only (true) or full Node objects (false).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        extender_node_cache_capable: bool,
        /// Call the extender's prioritize verb.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        extender_prioritize: bool,
        /// Bind through the extender's bind verb (else the scheduler binds).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        extender_bind: bool,
        #[arg(long, default_value_t = 1)]
        extender_weight: i64,
        #[arg(long)]
        extender_ignorable: bool,
        #[arg(long, default_value = "5s")]
        extender_timeout: humantime::Duration,
        /// VolumeBinding's bind timeout.
        #[arg(long, default_value = "600s")]
        bind_timeout: humantime::Duration,
        /// Create this many Ready nodes named node-0, node-1, ...
        #[arg(long, default_value_t = 0)]
        nodes: usize,
        #[arg(long)]
        no_scheduler: bool,
        #[arg(long)]
        no_pv_controller: bool,
        #[arg(long, default_value_t = 100_000)]
        watch_history: usize,
        /// Serve the scheduler's counters at /metrics on this address.
        #[arg(long, env = "LVMPIN_SIM_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
    },
    /// A whole cluster that stays up until Ctrl-C: control plane, one
    /// loop-backed VG per node, the real extender and agents. Drive it over REST.
    Cluster {
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: SocketAddr,
        #[arg(long, default_value = "lvmpin-sim.kubeconfig")]
        kubeconfig_out: PathBuf,
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value = "1Gi")]
        vg_size: String,
        #[arg(long, value_enum, default_value = "decisive")]
        mode: ModeArg,
        /// Send full Node objects to the extender instead of names.
        #[arg(long)]
        full_node_list: bool,
        #[arg(long, default_value = "1s")]
        scan_interval: String,
        /// Use release builds of the extender and agent.
        #[arg(long)]
        release: bool,
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// The README demo: 3 loop-backed nodes, real extender and agents, a StatefulSet.
    Demo {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        #[arg(long, default_value = "1Gi")]
        vg_size: String,
        #[arg(long, value_enum, default_value = "decisive")]
        mode: ModeArg,
        /// Do not install lvm2 when it is missing; just say what to install.
        #[arg(long)]
        no_install: bool,
        /// `sim`: the simulator's control plane (no Go needed). `kube`: upstream
        /// kube-apiserver, kube-controller-manager and kube-scheduler from
        /// `bash hack/kube-local/build.sh`.
        #[arg(long, default_value = "sim", value_parser = ["sim", "kube"])]
        control_plane: String,
    },
    /// Pods/s from creation to bound, and peak RSS of every process
    /// (`bench agent-scale`: one agent's memory and reads at cluster scale;
    /// `bench extender-scale`: the extender against a large cluster; `bench
    /// all`: every bench at small sizes in one table).
    Bench {
        #[command(subcommand)]
        kind: Option<BenchKind>,
        #[arg(long, default_value_t = 1000)]
        pods: usize,
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        #[arg(long, value_enum, default_value = "both")]
        mode: ModeArg,
        #[arg(long, default_value = "30s")]
        scan_interval: String,
        /// `sim` or `kube` (upstream control plane from `bash hack/kube-local/build.sh`).
        #[arg(long, default_value = "sim", value_parser = ["sim", "kube"])]
        control_plane: String,
        /// Also run once with a scheduler that does not call the extender, as
        /// the baseline of the extender's cost.
        #[arg(long)]
        baseline: bool,
        /// Each node's volume group (a quantity).
        #[arg(long, default_value = "1Gi")]
        vg_size: String,
        /// Each pod's claim (a quantity).
        #[arg(long, default_value = "8Mi")]
        claim_size: String,
        /// Create this many pods first; once they are bound, kill the
        /// extender for good and create the rest.
        #[arg(long)]
        kill_extender_at: Option<usize>,
    },
}

/// `1000x10000` → (1000, 10000).
fn parse_size(s: &str) -> Result<(usize, usize)> {
    let (n, c) = s
        .split_once('x')
        .with_context(|| format!("size {s:?}: expected NODESxCLAIMS"))?;
    Ok((
        n.trim()
            .parse()
            .with_context(|| format!("size {s:?}: nodes"))?,
        c.trim()
            .parse()
            .with_context(|| format!("size {s:?}: claims"))?,
    ))
}

#[derive(Subcommand)]
enum BenchKind {
    /// Every bench at small sizes, in one table: the filter against the
    /// do-nothing floor, the extender by node count (latency, CPU, ready,
    /// relist, RSS), the agent's overhead per claim, pods/s and RSS per
    /// process. The agent and burst parts need root and lvm2.
    All {
        /// Node counts for the floor ratio (in-process bench).
        #[arg(long, default_value = "1000", value_delimiter = ',')]
        floor_nodes: Vec<usize>,
        /// `NODESxCLAIMS` for the extender at scale, comma-separated.
        #[arg(long, default_value = "100x1000,1000x10000", value_delimiter = ',')]
        sizes: Vec<String>,
        /// Filter requests measured per size.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Claims and PVs of other nodes for the agent's overhead.
        #[arg(long, default_value_t = 2000)]
        agent_claims: usize,
        /// Pods of the burst (pods/s).
        #[arg(long, default_value_t = 100)]
        burst_pods: usize,
        /// Nodes of the burst, each with a loop-backed VG.
        #[arg(long, default_value_t = 10)]
        burst_nodes: usize,
        /// Nodes of the kube-scheduler overhead part (kube-local); 0 leaves
        /// it out.
        #[arg(long, default_value_t = 100)]
        scheduler_nodes: usize,
        /// Pods per burst of the kube-scheduler overhead part.
        #[arg(long, default_value_t = 100)]
        scheduler_pods: usize,
        /// Leave out the agent and burst parts (they need root and lvm2).
        #[arg(long)]
        no_agents: bool,
        /// Also write the rows here as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The extender against a large simulated cluster (no agents): time to
    /// ready, RSS, filter latency naming every node, and filters during a
    /// full relist after every watch expired.
    ExtenderScale {
        /// `NODESxCLAIMS` per run, comma-separated.
        #[arg(long, default_value = "1000x10000,10000x100000", value_delimiter = ',')]
        sizes: Vec<String>,
        /// Filter requests measured per size.
        #[arg(long, default_value_t = 500)]
        requests: usize,
        /// Also write the results here as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// One agent's memory (VmRSS, VmHWM) and the bytes it reads from the API
    /// server: in an empty cluster, while claims and PVs of other nodes are
    /// created, and restarted against them. Simulator control plane, one
    /// loop-backed VG (root and lvm2 needed).
    AgentScale {
        #[arg(long, default_value_t = 50_000)]
        claims: usize,
        #[arg(long, default_value_t = 50_000)]
        volumes: usize,
        /// The agent binary to measure (default: this workspace's, built if missing).
        #[arg(long)]
        agent: Option<PathBuf>,
        /// Create the PVs without the `lvmpin.io/node` label, as agents
        /// before it did (the first restart after an upgrade).
        #[arg(long)]
        unlabelled_volumes: bool,
        /// Settled: nothing read for this long.
        #[arg(long, default_value = "3s")]
        quiet: humantime::Duration,
        #[arg(long, default_value = "600s")]
        timeout: humantime::Duration,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Upstream kube-scheduler's own cycle for pods with lvmpin claims
    /// against the same pods without, in one run on kube-local with the real
    /// extender and synthetic LvmNode reports (no agents); pods/s per burst.
    SchedulerOverhead {
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        #[arg(long, default_value_t = 1000)]
        pods: usize,
        #[arg(long, default_value = "600s")]
        timeout: humantime::Duration,
        /// Which claim bursts to run: with the CSIDriver's storageCapacity
        /// as installed (on), turned off, or both.
        #[arg(long, value_enum, default_value = "both")]
        capacity_check: CapacityCheck,
        /// Run kube-scheduler with decisive-managed.yaml and add a claim
        /// burst the extender does not see (the baseline of what it adds);
        /// false: decisive.yaml, every pod goes to the extender.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        managed: bool,
        /// Rounds the claim bursts are made in, alternating their kinds.
        #[arg(long, default_value_t = 4)]
        chunks: usize,
        /// Also write the result here as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn modes(m: ModeArg) -> Vec<Mode> {
    match m {
        ModeArg::Decisive => vec![Mode::Decisive],
        ModeArg::Advisory => vec![Mode::Advisory],
        ModeArg::Both => vec![Mode::Decisive, Mode::Advisory],
    }
}

fn init_logs(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve {
            listen,
            kubeconfig_out,
            extender_url,
            extender_node_cache_capable,
            extender_prioritize,
            extender_bind,
            extender_weight,
            extender_ignorable,
            extender_timeout,
            bind_timeout,
            nodes,
            no_scheduler,
            no_pv_controller,
            watch_history,
            metrics_listen,
        } => {
            init_logs(cli.log_format, "info");
            let extenders = extender_url
                .map(|url| {
                    let base = ExtenderConfig::lvmpin(&url);
                    ExtenderConfig {
                        prioritize_verb: base
                            .prioritize_verb
                            .clone()
                            .filter(|_| extender_prioritize),
                        bind_verb: base.bind_verb.clone().filter(|_| extender_bind),
                        weight: extender_weight,
                        node_cache_capable: extender_node_cache_capable,
                        ignorable: extender_ignorable,
                        http_timeout: extender_timeout.into(),
                        ..base
                    }
                })
                .into_iter()
                .collect();
            let scheduler = (!no_scheduler).then(|| SchedulerConfig {
                extenders,
                bind_timeout: bind_timeout.into(),
                ..SchedulerConfig::default()
            });
            let cp = ControlPlane::start(ControlPlaneOptions {
                listen,
                watch_history,
                scheduler,
                pv_controller: !no_pv_controller,
            })
            .await?;
            cp.write_kubeconfig(&kubeconfig_out)?;
            let _metrics = match metrics_listen {
                Some(addr) => {
                    let (local, task) = lvmpin_sim::metrics::serve(addr, &cp.stats).await?;
                    tracing::info!(%local, "metrics at /metrics");
                    Some(task)
                }
                None => None,
            };
            let api = Api::<Node>::all(cp.client());
            for i in 0..nodes {
                api.create(
                    &PostParams::default(),
                    &workload::node(&format!("node-{i}")),
                )
                .await
                .with_context(|| format!("creating node-{i}"))?;
            }
            tracing::info!(url = %cp.url(), kubeconfig = %kubeconfig_out.display(), "simulated control plane serving");
            shutdown_signal().await;
            cp.shutdown().await;
            Ok(())
        }
        Cmd::Cluster {
            listen,
            kubeconfig_out,
            nodes,
            vg_size,
            mode,
            full_node_list,
            scan_interval,
            release,
            metrics_listen,
        } => {
            init_logs(cli.log_format, "info");
            let vg_bytes = lvmpin_api::parse_quantity_bytes(&vg_size).context("--vg-size")?;
            let opts = TestbedOptions {
                nodes,
                vg_bytes,
                mode: modes(mode).first().copied().unwrap_or(Mode::Decisive),
                node_cache_capable: !full_node_list,
                scan_interval,
                release,
                listen,
                ..TestbedOptions::default()
            };
            let start = Testbed::start(opts);
            let tb = tokio::select! {
                tb = start => tb?,
                _ = shutdown_signal() => { eprintln!("interrupted: cleaned up"); return Ok(()); }
            };
            std::fs::copy(&tb.kubeconfig, &kubeconfig_out)
                .with_context(|| format!("writing {}", kubeconfig_out.display()))?;
            let _metrics = match (metrics_listen, &tb.control_plane) {
                (Some(addr), Cluster::Sim(cp)) => {
                    Some(lvmpin_sim::metrics::serve(addr, &cp.stats).await?)
                }
                _ => None,
            };
            println!(
                "cluster up: API server {}, kubeconfig {}, StorageClass {:?} (VG {}), nodes {:?}, extender {}, logs in {}",
                tb.control_plane.url(),
                kubeconfig_out.display(),
                tb.class,
                tb.vg,
                tb.node_names,
                tb.extender_url,
                tb.dir.path().display()
            );
            shutdown_signal().await;
            tb.shutdown().await;
            Ok(())
        }
        Cmd::Demo {
            nodes,
            replicas,
            vg_size,
            mode,
            no_install,
            control_plane,
        } => {
            init_logs(cli.log_format, "warn");
            let backend = Backend::parse(&control_plane)?;
            let vg_bytes = lvmpin_api::parse_quantity_bytes(&vg_size).context("--vg-size")?;
            let mode = modes(mode).first().copied().unwrap_or(Mode::Decisive);
            let opts = DemoOptions {
                nodes,
                vg_bytes,
                replicas,
                mode,
                install: !no_install,
                backend,
            };
            tokio::select! {
                r = demo::run(opts) => r.context("demo failed")?,
                _ = shutdown_signal() => {
                    // Dropping the demo future stops the processes and removes
                    // the VGs, loop devices and files (their Drop impls).
                    eprintln!("interrupted: cleaned up");
                }
            }
            Ok(())
        }
        Cmd::Bench {
            kind:
                Some(BenchKind::AgentScale {
                    claims,
                    volumes,
                    agent,
                    unlabelled_volumes,
                    quiet,
                    timeout,
                    json,
                }),
            ..
        } => {
            init_logs(cli.log_format, "warn");
            let agent = match agent {
                Some(path) => path,
                None => {
                    let release = !cfg!(debug_assertions);
                    tokio::task::spawn_blocking(move || Binaries::locate_or_build(release))
                        .await??
                        .agent
                }
            };
            let opts = AgentScaleOptions {
                claims,
                volumes,
                agent,
                unlabelled: unlabelled_volumes,
                quiet: quiet.into(),
                timeout: timeout.into(),
            };
            let r = tokio::select! {
                r = agent_scale::run(&opts) => r?,
                _ = shutdown_signal() => { eprintln!("interrupted: cleaned up"); return Ok(()); }
            };
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("{r}");
            }
            Ok(())
        }
        Cmd::Bench {
            kind: None,
            pods,
            nodes,
            mode,
            scan_interval,
            control_plane,
            baseline,
            vg_size,
            claim_size,
            kill_extender_at,
        } => {
            init_logs(cli.log_format, "warn");
            let opts = BenchOptions {
                pods,
                nodes,
                scan_interval,
                backend: Backend::parse(&control_plane)?,
                vg_bytes: lvmpin_api::parse_quantity_bytes(&vg_size).context("--vg-size")?,
                claim_size,
                kill_extender_at,
                ..BenchOptions::default()
            };
            let release = opts.release;
            let bins =
                tokio::task::spawn_blocking(move || Binaries::locate_or_build(release)).await??;
            let mut runs: Vec<Option<Mode>> = modes(mode).into_iter().map(Some).collect();
            if baseline {
                runs.push(None);
            }
            for m in runs {
                let run = bench::run(&opts, m, bins.clone());
                let r = tokio::select! {
                    r = run => r?,
                    _ = shutdown_signal() => { eprintln!("interrupted: cleaned up"); return Ok(()); }
                };
                println!("{r}");
            }
            Ok(())
        }
        Cmd::Bench {
            kind:
                Some(BenchKind::All {
                    floor_nodes,
                    sizes,
                    requests,
                    agent_claims,
                    burst_pods,
                    burst_nodes,
                    scheduler_nodes,
                    scheduler_pods,
                    no_agents,
                    json,
                }),
            ..
        } => {
            init_logs(cli.log_format, "warn");
            let opts = AllOptions {
                floor_nodes,
                scale_sizes: sizes.iter().map(|s| parse_size(s)).collect::<Result<_>>()?,
                scale_requests: requests,
                agent_claims,
                burst_pods,
                burst_nodes,
                scheduler_nodes,
                scheduler_pods,
                no_agents,
            };
            let release = !cfg!(debug_assertions);
            let bins =
                tokio::task::spawn_blocking(move || Binaries::locate_or_build(release)).await??;
            let dir = tempfile::Builder::new()
                .prefix("lvmpin-bench-all-")
                .tempdir()
                .context("creating a temporary directory")?;
            let rows = tokio::select! {
                r = bench_all::run(&opts, &bins, dir.path()) => r?,
                _ = shutdown_signal() => { eprintln!("interrupted: cleaned up"); return Ok(()); }
            };
            print!("{}", bench_all::render(&rows));
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&rows)?;
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        Cmd::Bench {
            kind:
                Some(BenchKind::ExtenderScale {
                    sizes,
                    requests,
                    json,
                }),
            ..
        } => {
            init_logs(cli.log_format, "warn");
            let opts = ScaleOptions {
                sizes: sizes.iter().map(|s| parse_size(s)).collect::<Result<_>>()?,
                requests,
            };
            let release = !cfg!(debug_assertions);
            let bins =
                tokio::task::spawn_blocking(move || Binaries::locate_or_build(release)).await??;
            let results = tokio::select! {
                r = scale_bench::run(&opts, &bins) => r?,
                _ = shutdown_signal() => { eprintln!("interrupted: cleaned up"); return Ok(()); }
            };
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&results)?;
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        Cmd::Bench {
            kind:
                Some(BenchKind::SchedulerOverhead {
                    nodes,
                    pods,
                    timeout,
                    capacity_check,
                    managed,
                    chunks,
                    json,
                }),
            ..
        } => {
            init_logs(cli.log_format, "warn");
            let opts = OverheadOptions {
                nodes,
                pods,
                timeout: timeout.into(),
                capacity_check,
                managed,
                chunks,
            };
            let release = !cfg!(debug_assertions);
            let bins =
                tokio::task::spawn_blocking(move || Binaries::locate_or_build(release)).await??;
            let result = tokio::select! {
                r = scheduler_overhead::run(&opts, &bins) => r?,
                _ = shutdown_signal() => { eprintln!("interrupted: cleaned up"); return Ok(()); }
            };
            println!("{result}");
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&result)?;
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
    }
}
