//! End-to-end throughput bench (harness = false): 1,000 pods on 100 nodes with
//! real agents and the real extender, decisive then advisory mode, then (on
//! the upstream control plane) without the extender as the baseline.
//! Needs root and lvm2. `LVMPIN_BENCH_PODS` / `LVMPIN_BENCH_NODES` scale it
//! down; `LVMPIN_CONTROL_PLANE=kube` runs it on kube-scheduler.

use lvmpin_sim::bench::{self, BenchOptions};
use lvmpin_sim::testbed::{Backend, Binaries, Mode};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let opts = BenchOptions {
        pods: env_or("LVMPIN_BENCH_PODS", 1000),
        nodes: env_or("LVMPIN_BENCH_NODES", 100),
        backend: Backend::from_env_or(Backend::Sim)?,
        ..BenchOptions::default()
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let release = opts.release;
        let bins =
            tokio::task::spawn_blocking(move || Binaries::locate_or_build(release)).await??;
        let mut runs = vec![Some(Mode::Decisive), Some(Mode::Advisory)];
        if opts.backend == Backend::Kube {
            runs.push(None);
        }
        for mode in runs {
            let r = bench::run(&opts, mode, bins.clone()).await?;
            println!("{r}");
        }
        anyhow::Ok(())
    })
}
