//! End-to-end throughput: pods from creation to bound, per second, through the
//! simulated control plane, the real extender and real agents on loop-backed
//! VGs; plus the peak RSS (VmHWM) of every process.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};

use crate::error::{Error, Result};
use crate::testbed::process::peak_rss_kib;
use crate::testbed::{Binaries, Mode, Testbed, TestbedOptions};
use crate::workload::StatefulSetLike;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub pods: usize,
    pub nodes: usize,
    pub vg_bytes: u64,
    pub claim_size: String,
    /// Agents report after every LV change anyway; a long periodic scan keeps
    /// 100 agents from spending the machine's CPU on `lvm fullreport`.
    pub scan_interval: String,
    pub release: bool,
    pub timeout: Duration,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            pods: 1000,
            nodes: 100,
            vg_bytes: 1 << 30,
            claim_size: "8Mi".into(),
            scan_interval: "30s".into(),
            release: !cfg!(debug_assertions),
            timeout: Duration::from_secs(900),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BenchResult {
    pub mode: Mode,
    pub pods: usize,
    pub nodes: usize,
    pub seconds: f64,
    pub pods_per_second: f64,
    pub p50_ms: u128,
    pub p99_ms: u128,
    pub retries: u64,
    pub reschedules: u64,
    pub rss_sim_kib: u64,
    pub rss_extender_kib: u64,
    pub rss_agent_max_kib: u64,
    pub rss_agent_mean_kib: u64,
}

impl std::fmt::Display for BenchResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<9} {} pods / {} nodes: {:.1} s, {:.1} pods/s, creation→bound p50 {} ms p99 {} ms, retries {}, reschedules {}; \
             peak RSS: simulator {} MiB, extender {} MiB, agent max {} MiB mean {} MiB",
            self.mode.as_str(),
            self.pods,
            self.nodes,
            self.seconds,
            self.pods_per_second,
            self.p50_ms,
            self.p99_ms,
            self.retries,
            self.reschedules,
            self.rss_sim_kib / 1024,
            self.rss_extender_kib / 1024,
            self.rss_agent_max_kib / 1024,
            self.rss_agent_mean_kib / 1024,
        )
    }
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub async fn run(opts: &BenchOptions, mode: Mode, bins: Binaries) -> Result<BenchResult> {
    let tb = Testbed::start_with(
        TestbedOptions {
            nodes: opts.nodes,
            vg_bytes: opts.vg_bytes,
            mode,
            node_cache_capable: true,
            scan_interval: opts.scan_interval.clone(),
            release: opts.release,
            log_filter: "warn".into(),
            ..TestbedOptions::default()
        },
        bins,
    )
    .await?;
    let result = measure(&tb, opts, mode).await;
    tb.shutdown().await;
    result
}

async fn measure(tb: &Testbed, opts: &BenchOptions, mode: Mode) -> Result<BenchResult> {
    let set = StatefulSetLike {
        namespace: "default".into(),
        name: "bench".into(),
        replicas: opts.pods,
        class: tb.class.clone(),
        templates: vec![("data".into(), opts.claim_size.clone())],
    };
    let (claims, pods) = set.objects();
    let claims_api = Api::<PersistentVolumeClaim>::namespaced(tb.client(), "default");
    for c in &claims {
        claims_api.create(&PostParams::default(), c).await?;
    }
    let pods_api = Api::<Pod>::namespaced(tb.client(), "default");
    let start = Instant::now();
    let mut created: HashMap<String, Instant> = HashMap::new();
    for p in &pods {
        pods_api.create(&PostParams::default(), p).await?;
        created.insert(p.metadata.name.clone().unwrap_or_default(), Instant::now());
    }
    let mut bound_at: HashMap<String, Instant> = HashMap::new();
    let total = pods.len();
    let deadline = Instant::now() + opts.timeout;
    while bound_at.len() < total {
        if Instant::now() >= deadline {
            return Err(tb.with_logs(Error::Timeout {
                what: format!("{total} bench pods to be bound ({} were)", bound_at.len()),
                after: opts.timeout,
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(list) = pods_api.list(&ListParams::default()).await else {
            continue;
        };
        let now = Instant::now();
        for p in &list.items {
            if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
                && let Some(n) = p.metadata.name.clone()
            {
                bound_at.entry(n).or_insert(now);
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut lat: Vec<u128> = bound_at
        .iter()
        .filter_map(|(n, t)| Some(t.duration_since(*created.get(n)?).as_millis()))
        .collect();
    lat.sort_unstable();
    let agents: Vec<u64> = tb.agents.iter().filter_map(|a| a.peak_rss_kib()).collect();
    let stats = tb.sim_stats().unwrap_or_default();
    Ok(BenchResult {
        mode,
        pods: total,
        nodes: opts.nodes,
        seconds,
        pods_per_second: total as f64 / seconds.max(1e-9),
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        retries: stats.retries,
        reschedules: stats.reschedules,
        rss_sim_kib: peak_rss_kib(std::process::id()).unwrap_or(0),
        rss_extender_kib: tb.extender.peak_rss_kib().unwrap_or(0),
        rss_agent_max_kib: agents.iter().copied().max().unwrap_or(0),
        rss_agent_mean_kib: if agents.is_empty() {
            0
        } else {
            agents.iter().sum::<u64>() / agents.len() as u64
        },
    })
}
