//! Runs inside the QEMU guest built by `hack/vm/run.sh` (see
//! `tests/csi_vm.rs`). Creates a VG on the virtio disk, starts the real
//! `lvmpin-agent` binary in `--csi-only` mode on the production socket layout,
//! and drives it over gRPC the way kubelet and the CSI sidecars do; then runs
//! upstream csi-sanity against it. Snapshots, restores and clones go through
//! the agent library's real `LvmBackend`, their data through the agent's mounts. Exits non-zero on the first failed check.
//! Also measures stage and publish latency (BENCH lines).
#![forbid(unsafe_code)]

mod agent;
mod cycles;
mod hostile;
mod kubelet;
mod node_server;
mod sanity;
mod snapshots;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, ensure};
use clap::Parser;

pub const VG: &str = "vmvg";
pub const MIB: u64 = 1 << 20;

#[derive(Parser, Debug)]
struct Args {
    /// Block device to turn into the volume group.
    #[arg(long)]
    disk: PathBuf,
    /// Directory (the 9p share) for bench results.
    #[arg(long)]
    results: PathBuf,
    /// Extra stage/publish/unpublish/unstage rounds per filesystem, for latency.
    #[arg(long, default_value_t = 5)]
    bench_rounds: usize,
    #[arg(long, default_value = "/usr/sbin/lvmpin-agent")]
    agent: PathBuf,
    #[arg(long, default_value = "/usr/sbin/csi-sanity")]
    csi_sanity: PathBuf,
    /// Leave csi-sanity out (the latency bench).
    #[arg(long)]
    skip_sanity: bool,
    /// Run only the snapshot, restore and clone checks.
    #[arg(long)]
    only_snapshots: bool,
    /// Leave the snapshot checks out (tests/snapshot_vm.rs runs them alone).
    #[arg(long, conflicts_with = "only_snapshots")]
    skip_snapshots: bool,
    /// Be a node of a cluster whose control plane runs on the host: serve
    /// the host's requests on this TCP port (see node_server.rs).
    #[arg(long, conflicts_with_all = ["only_snapshots", "skip_snapshots"])]
    serve: Option<u16>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => {
            println!("GUEST: all CSI checks passed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("GUEST: CHECK FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn sh(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    ensure!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn step(name: &str) {
    println!("GUEST: {name}");
}

async fn run(args: Args) -> Result<()> {
    let disk = args.disk.display().to_string();
    step(&format!("pvcreate + vgcreate {VG} on {disk}"));
    sh("lvm", &["pvcreate", "-y", &disk])?;
    sh("lvm", &["vgcreate", VG, &disk])?;

    if let Some(port) = args.serve {
        return node_server::serve(&args.agent, port).await;
    }
    let mut agent = agent::Agent::start(&args.agent, &["--csi-only"]).await?;
    agent::registration(&agent).await?;
    let mut k = kubelet::Kubelet::connect(&agent).await?;
    k.identity().await?;

    if args.only_snapshots {
        snapshots::all(&mut k).await?;
        return agent.stop().await;
    }
    let mut bench = vec![];
    for fs in ["ext4", "xfs"] {
        bench.push(cycles::filesystem(&mut k, fs, args.bench_rounds).await?);
    }
    cycles::block(&mut k).await?;
    cycles::wipe(&mut k).await?;
    if !args.skip_snapshots {
        snapshots::all(&mut k).await?;
    }
    hostile::all(&mut k, &mut agent).await?;

    if !args.skip_sanity {
        for kind in sanity::KINDS {
            sanity::run(&args.csi_sanity, &agent, kind).await?;
            agent.alive()?;
        }
    }

    for line in &bench {
        println!("{line}");
    }
    std::fs::write(args.results.join("bench.txt"), bench.join("\n") + "\n")?;
    agent.stop().await
}
