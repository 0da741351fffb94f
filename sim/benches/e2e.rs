//! End-to-end throughput bench (harness = false): 1,000 pods on 100 nodes with
//! real agents and the real extender, decisive then advisory mode.
//! Needs root and lvm2. `LVMPIN_BENCH_PODS` / `LVMPIN_BENCH_NODES` scale it down.

use lvmpin_sim::bench::{self, BenchOptions};
use lvmpin_sim::testbed::{Binaries, Mode};

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
        ..BenchOptions::default()
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let release = opts.release;
        let bins =
            tokio::task::spawn_blocking(move || Binaries::locate_or_build(release)).await??;
        for mode in [Mode::Decisive, Mode::Advisory] {
            let r = bench::run(&opts, mode, bins.clone()).await?;
            println!("{r}");
        }
        anyhow::Ok(())
    })
}
