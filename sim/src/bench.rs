//! End-to-end throughput: pods from creation to bound, per second, through a
//! control plane (the simulator's, or upstream kube-scheduler and friends via
//! kube-local), the real extender and real agents on loop-backed VGs; plus the
//! peak RSS (VmHWM) of every process and, on kube-scheduler, the time its
//! scheduling cycles took (from its own `/metrics`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};

use crate::error::{Error, Result};
use crate::testbed::process::peak_rss_kib;
use crate::testbed::{Backend, Binaries, Mode, Testbed, TestbedOptions};
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
    pub backend: Backend,
    /// Create this many pods first; once they are bound, kill the extender
    /// for good and create the rest (the ignorable set-up losing its
    /// extender).
    pub kill_extender_at: Option<usize>,
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
            backend: Backend::Sim,
            kill_extender_at: None,
        }
    }
}

/// kube-scheduler's own account of its cycles: mean seconds per attempt of
/// `scheduler_scheduling_algorithm_duration_seconds` (filter and score,
/// extender calls included) and `scheduler_scheduling_attempt_duration_seconds`
/// (the whole attempt), from pkg/scheduler/metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct SchedulerCycle {
    pub algorithm_mean_s: f64,
    pub attempt_mean_s: f64,
    pub attempts: f64,
}

#[derive(Debug, Clone)]
pub struct BenchResult {
    /// `decisive`, `advisory` or `none` (the scheduler does not call the extender).
    pub label: &'static str,
    /// Pods bound when the extender was killed, if it was.
    pub extender_killed_at: Option<usize>,
    pub backend: Backend,
    pub pods: usize,
    pub nodes: usize,
    pub seconds: f64,
    pub pods_per_second: f64,
    pub p50_ms: u128,
    pub p99_ms: u128,
    /// Failed scheduling attempts (simulator only).
    pub retries: Option<u64>,
    pub reschedules: u64,
    pub cycle: Option<SchedulerCycle>,
    pub rss_sim_kib: u64,
    pub rss_extender_kib: u64,
    pub rss_agent_max_kib: u64,
    pub rss_agent_mean_kib: u64,
}

impl std::fmt::Display for BenchResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:<9} {} pods / {} nodes: {:.1} s, {:.1} pods/s, creation→bound p50 {} ms p99 {} ms, reschedules {}",
            self.backend.as_str(),
            match self.extender_killed_at {
                Some(n) => format!("{} (extender killed after {n} bound)", self.label),
                None => self.label.to_string(),
            },
            self.pods,
            self.nodes,
            self.seconds,
            self.pods_per_second,
            self.p50_ms,
            self.p99_ms,
            self.reschedules,
        )?;
        if let Some(r) = self.retries {
            write!(f, ", retries {r}")?;
        }
        if let Some(c) = self.cycle {
            write!(
                f,
                "; kube-scheduler: {:.0} attempts, algorithm (filter+score, extender included) mean {:.2} ms, whole attempt mean {:.2} ms",
                c.attempts,
                c.algorithm_mean_s * 1e3,
                c.attempt_mean_s * 1e3
            )?;
        }
        write!(
            f,
            "; peak RSS: this process {} MiB, extender {} MiB, agent max {} MiB mean {} MiB",
            self.rss_sim_kib / 1024,
            self.rss_extender_kib / 1024,
            self.rss_agent_max_kib / 1024,
            self.rss_agent_mean_kib / 1024,
        )
    }
}

/// The sum of every sample of `name` (Prometheus text format) whose labels
/// contain `label` (e.g. `verb="filter"`; "" for all); `None` if there is none.
pub fn sample_sum(text: &str, name: &str, label: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) || !rest.contains(label) {
            continue;
        }
        let value: f64 = line.rsplit(' ').next()?.parse().ok()?;
        *found.get_or_insert(0.0) += value;
    }
    found
}

/// Sum and count of a histogram over all its label sets.
pub fn histogram_sum_count(text: &str, name: &str) -> Option<(f64, f64)> {
    Some((
        sample_sum(text, &format!("{name}_sum"), "")?,
        sample_sum(text, &format!("{name}_count"), "")?,
    ))
}

fn scheduler_cycle(metrics: &str) -> Option<SchedulerCycle> {
    let (alg_sum, alg_count) =
        histogram_sum_count(metrics, "scheduler_scheduling_algorithm_duration_seconds")?;
    let (att_sum, att_count) =
        histogram_sum_count(metrics, "scheduler_scheduling_attempt_duration_seconds")?;
    Some(SchedulerCycle {
        algorithm_mean_s: alg_sum / alg_count.max(1.0),
        attempt_mean_s: att_sum / att_count.max(1.0),
        attempts: att_count,
    })
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// One run: `mode` with the extender, or `None` for a scheduler that does
/// not call it (the baseline of the extender's cost).
pub async fn run(opts: &BenchOptions, mode: Option<Mode>, bins: Binaries) -> Result<BenchResult> {
    let tb = Testbed::start_with(
        TestbedOptions {
            backend: opts.backend,
            nodes: opts.nodes,
            vg_bytes: opts.vg_bytes,
            mode: mode.unwrap_or(Mode::Decisive),
            scheduler_uses_extender: mode.is_some(),
            node_cache_capable: true,
            scan_interval: opts.scan_interval.clone(),
            release: opts.release,
            log_filter: "warn".into(),
            ..TestbedOptions::default()
        },
        bins,
    )
    .await?;
    let mut tb = tb;
    let result = measure(&mut tb, opts, mode).await;
    tb.shutdown().await;
    result
}

async fn measure(tb: &mut Testbed, opts: &BenchOptions, mode: Option<Mode>) -> Result<BenchResult> {
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
    let mut bound_at: HashMap<String, Instant> = HashMap::new();
    let mut killed_at = None;
    let total = pods.len();
    let deadline = Instant::now() + opts.timeout;
    // With kill_extender_at, the first pods are placed with the extender; it
    // is killed once they are bound, and the rest are created after that.
    let first_wave = opts
        .kill_extender_at
        .filter(|_| mode.is_some())
        .map_or(total, |k| k.min(total));
    for (wave, range) in [(0, 0..first_wave), (1, first_wave..total)] {
        if range.is_empty() {
            continue;
        }
        if wave == 1 {
            tb.extender.kill().await;
            killed_at = Some(bound_at.len());
        }
        for p in &pods[range.clone()] {
            pods_api.create(&PostParams::default(), p).await?;
            created.insert(p.metadata.name.clone().unwrap_or_default(), Instant::now());
        }
        while bound_at.len() < range.end {
            if Instant::now() >= deadline {
                return Err(tb.with_logs(Error::Timeout {
                    what: format!(
                        "{} bench pods to be bound ({} were)",
                        range.end,
                        bound_at.len()
                    ),
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
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut lat: Vec<u128> = bound_at
        .iter()
        .filter_map(|(n, t)| Some(t.duration_since(*created.get(n)?).as_millis()))
        .collect();
    lat.sort_unstable();
    let agents: Vec<u64> = tb.agents.iter().filter_map(|a| a.peak_rss_kib()).collect();
    let cycle = match tb.scheduler_metrics().await? {
        Some(text) => scheduler_cycle(&text),
        None => None,
    };
    Ok(BenchResult {
        label: mode.map_or("none", Mode::as_str),
        extender_killed_at: killed_at,
        backend: opts.backend,
        pods: total,
        nodes: opts.nodes,
        seconds,
        pods_per_second: total as f64 / seconds.max(1e-9),
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        retries: tb.sim_stats().map(|s| s.retries),
        reschedules: tb.reschedules().await?,
        cycle,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_sums_add_up_over_labels() {
        let text = "# HELP x_seconds help\n# TYPE x_seconds histogram\n\
            x_seconds_bucket{result=\"a\",le=\"+Inf\"} 3\n\
            x_seconds_sum{result=\"a\"} 0.5\n\
            x_seconds_count{result=\"a\"} 3\n\
            x_seconds_sum{result=\"b\"} 1.5\n\
            x_seconds_count{result=\"b\"} 1\n\
            x_seconds_longer_sum 99\n";
        assert_eq!(histogram_sum_count(text, "x_seconds"), Some((2.0, 4.0)));
        assert_eq!(histogram_sum_count(text, "y_seconds"), None);
        assert_eq!(histogram_sum_count("x_seconds_sum 1\n", "x_seconds"), None);
    }
}
