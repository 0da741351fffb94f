//! `bench all`: the benches at small sizes, summed up in one table (and the
//! same rows as JSON) so that two runs can be compared line by line. Each
//! row comes from an existing bench; nothing is measured here twice:
//! - the filter's cost against the do-nothing floor extender, from the
//!   extender's in-process bench (`cargo bench -p lvmpin-scheduler-extender
//!   -- floor N`, which the floor router is private to);
//! - filter latency, CPU and RSS of the real extender by node count, from
//!   `bench extender-scale` (`scale_bench`);
//! - the agent's memory and reads per claim, from `bench agent-scale`;
//! - pods/s from creation to bound and RSS per process, from the burst bench
//!   (`bench::run`, decisive mode, the simulator's control plane);
//! - kube-scheduler's own algorithm time with and without lvmpin claims,
//!   from `bench scheduler-overhead` (kube-local, needs its Go build).
//!
//! A part that cannot run here (no cargo for the floor, no root or lvm2 for
//! the agents) gives a row saying why instead of a number.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::agent_scale::{self, AgentScaleOptions};
use crate::bench::{self, BenchOptions};
use crate::error::{Error, Result};
use crate::scale_bench;
use crate::scheduler_overhead::{self, CapacityCheck, OverheadOptions};
use crate::testbed::process::{Binaries, cargo_command};
use crate::testbed::{Backend, Mode};

#[derive(Debug, Clone)]
pub struct AllOptions {
    /// Node counts for the floor ratio (in-process, no API server).
    pub floor_nodes: Vec<usize>,
    /// (nodes, claims) for the extender at scale.
    pub scale_sizes: Vec<(usize, usize)>,
    pub scale_requests: usize,
    /// Claims (and as many PVs) of other nodes for the agent's overhead.
    pub agent_claims: usize,
    /// Pods and nodes of the burst.
    pub burst_pods: usize,
    pub burst_nodes: usize,
    /// Nodes and pods per burst of the kube-scheduler overhead part; 0
    /// nodes leaves it out.
    pub scheduler_nodes: usize,
    pub scheduler_pods: usize,
    /// Leave out the parts that need root and lvm2 (agents on loop devices).
    pub no_agents: bool,
}

impl Default for AllOptions {
    fn default() -> Self {
        Self {
            floor_nodes: vec![1000],
            scale_sizes: vec![(100, 1000), (1000, 10_000)],
            scale_requests: 200,
            agent_claims: 2000,
            burst_pods: 100,
            burst_nodes: 10,
            scheduler_nodes: 100,
            scheduler_pods: 100,
            no_agents: false,
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub bench: &'static str,
    pub what: String,
    /// None: not measured (`note` says why).
    pub value: Option<f64>,
    pub unit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn row(bench: &'static str, what: impl Into<String>, value: f64, unit: &'static str) -> Row {
    Row {
        bench,
        what: what.into(),
        value: Some(value),
        unit,
        note: None,
    }
}

fn skipped(bench: &'static str, what: impl Into<String>, why: impl Into<String>) -> Row {
    Row {
        bench,
        what: what.into(),
        value: None,
        unit: "",
        note: Some(why.into()),
    }
}

/// The table as text: one row per line, columns aligned.
pub fn render(rows: &[Row]) -> String {
    let what_w = rows.iter().map(|r| r.what.len()).max().unwrap_or(0);
    let mut out = format!(
        "{:<15} {:<what_w$} {:>12}  unit\n",
        "bench", "measure", "value"
    );
    for r in rows {
        let value = match r.value {
            Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
            Some(v) => format!("{v:.2}"),
            None => "-".into(),
        };
        out.push_str(&format!(
            "{:<15} {:<what_w$} {:>12}  {}",
            r.bench, r.what, value, r.unit
        ));
        if let Some(n) = &r.note {
            out.push_str(&format!("  ({n})"));
        }
        out.push('\n');
    }
    out
}

/// The ratios in one `filter/floor` line of the extender's bench:
/// `filter/floor, Decisive, 1000 nodes: p50 1.05x, p99 1.10x (cpu p50 ...`.
/// Returns (mode, nodes, p50 ratio, p99 ratio).
pub fn parse_floor_line(line: &str) -> Option<(String, usize, f64, f64)> {
    let rest = line.strip_prefix("filter/floor, ")?;
    let (mode, rest) = rest.split_once(", ")?;
    let (nodes, rest) = rest.split_once(" nodes: p50 ")?;
    let (p50, rest) = rest.split_once("x, p99 ")?;
    let (p99, _) = rest.split_once('x')?;
    Some((
        mode.to_string(),
        nodes.trim().parse().ok()?,
        p50.trim().parse().ok()?,
        p99.trim().parse().ok()?,
    ))
}

fn floor_rows(nodes: &[usize]) -> Vec<Row> {
    const WHAT: &str = "filter / floor extender";
    let mut cmd = cargo_command();
    cmd.args([
        "bench",
        "-q",
        "-p",
        "lvmpin-scheduler-extender",
        "--bench",
        "extender",
        "--",
        "floor",
    ]);
    cmd.args(nodes.iter().map(|n| n.to_string()));
    let out = match cmd.output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let last = err.lines().last().unwrap_or("").to_string();
            return vec![skipped(
                "floor",
                WHAT,
                format!("cargo bench failed: {last}"),
            )];
        }
        Err(e) => return vec![skipped("floor", WHAT, format!("cannot run cargo: {e}"))],
    };
    let rows: Vec<Row> = out
        .lines()
        .filter_map(parse_floor_line)
        .flat_map(|(mode, n, p50, p99)| {
            [
                row(
                    "floor",
                    format!("filter/floor p50, {mode}, {n} nodes"),
                    p50,
                    "x",
                ),
                row(
                    "floor",
                    format!("filter/floor p99, {mode}, {n} nodes"),
                    p99,
                    "x",
                ),
            ]
        })
        .collect();
    if rows.is_empty() {
        return vec![skipped("floor", WHAT, "the bench printed no ratio")];
    }
    rows
}

fn scale_rows(r: &scale_bench::ScaleResult) -> Vec<Row> {
    let at = format!("{} nodes/{} claims", r.nodes, r.claims);
    let ms = |us: u128| us as f64 / 1e3;
    let mut rows = vec![
        row(
            "extender",
            format!("filter p50, {at}"),
            ms(r.filter_p50_us),
            "ms",
        ),
        row(
            "extender",
            format!("filter p99, {at}"),
            ms(r.filter_p99_us),
            "ms",
        ),
    ];
    if let Some(cpu) = r.filter_cpu_us {
        rows.push(row(
            "extender",
            format!("CPU per filter, {at}"),
            cpu / 1e3,
            "ms",
        ));
    }
    rows.extend([
        row(
            "extender",
            format!("ready after start, {at}"),
            r.ready_seconds,
            "s",
        ),
        row(
            "extender",
            format!("slowest filter during relist, {at}"),
            ms(r.relist_max_filter_us),
            "ms",
        ),
        row(
            "extender",
            format!("RSS extender (peak), {at}"),
            r.rss_peak_kib as f64 / 1024.0,
            "MiB",
        ),
    ]);
    rows
}

fn agent_rows(r: &agent_scale::AgentScaleResult) -> Vec<Row> {
    let per = |v: f64| v / r.claims.max(1) as f64;
    let extra_kib = r.restart.peak_rss_kib.saturating_sub(r.empty.peak_rss_kib) as f64;
    vec![
        row(
            "agent",
            "RSS agent, empty cluster (peak)",
            r.empty.peak_rss_kib as f64 / 1024.0,
            "MiB",
        ),
        row(
            "agent",
            format!("peak RSS per claim of other nodes ({} claims)", r.claims),
            per(extra_kib * 1024.0),
            "B",
        ),
        row(
            "agent",
            format!("bytes read per claim on restart ({} claims)", r.claims),
            per(r.restart.bytes_received as f64),
            "B",
        ),
    ]
}

fn burst_rows(r: &bench::BenchResult) -> Vec<Row> {
    let at = format!("{} pods/{} nodes", r.pods, r.nodes);
    let mib = |k: u64| k as f64 / 1024.0;
    vec![
        row(
            "burst",
            format!("pods/s to bound, {at}"),
            r.pods_per_second,
            "1/s",
        ),
        row(
            "burst",
            format!("creation→bound p99, {at}"),
            r.p99_ms as f64,
            "ms",
        ),
        row("burst", "RSS simulator (peak)", mib(r.rss_sim_kib), "MiB"),
        row(
            "burst",
            "RSS extender (peak)",
            mib(r.rss_extender_kib),
            "MiB",
        ),
        row(
            "burst",
            "RSS agent, max over nodes (peak)",
            mib(r.rss_agent_max_kib),
            "MiB",
        ),
    ]
}

fn scheduler_rows(r: &scheduler_overhead::OverheadResult) -> Vec<Row> {
    r.bursts
        .iter()
        .flat_map(|b| {
            let at = format!(
                "{}, {} nodes (storageCapacity {})",
                b.label, r.nodes, b.storage_capacity
            );
            let extender = b.extender_p50_ratio.map(|r| {
                row(
                    "kube-scheduler",
                    format!("algorithm p50 / same without extender, {at}"),
                    r,
                    "x",
                )
            });
            [
                row(
                    "kube-scheduler",
                    format!("algorithm p50, {at}"),
                    b.algorithm_p50_ms,
                    "ms",
                ),
                row(
                    "kube-scheduler",
                    format!("algorithm p50 / claim-less, {at}"),
                    b.algorithm_p50_ratio,
                    "x",
                ),
                row(
                    "kube-scheduler",
                    format!("extender filter mean, {at}"),
                    b.extender_filter_mean_ms,
                    "ms",
                ),
                row(
                    "kube-scheduler",
                    format!("pods/s to a node, {at}"),
                    b.pods_per_second,
                    "1/s",
                ),
            ]
            .into_iter()
            .chain(extender)
        })
        .collect()
}

/// Runs every part in turn (never two at once: each is timed) and returns
/// the rows. The scale part failing fails the run; the others give a row
/// saying why.
pub async fn run(opts: &AllOptions, bins: &Binaries, dir: &Path) -> Result<Vec<Row>> {
    let floor_nodes = opts.floor_nodes.clone();
    let mut rows = tokio::task::spawn_blocking(move || floor_rows(&floor_nodes))
        .await
        .map_err(|e| Error::ApiServer(format!("the floor bench panicked: {e}")))?;
    for &(nodes, claims) in &opts.scale_sizes {
        let r = scale_bench::run_one(nodes, claims, opts.scale_requests, bins, dir).await?;
        rows.extend(scale_rows(&r));
    }
    const SCHED: &str = "kube-scheduler algorithm with claims";
    if opts.scheduler_nodes == 0 {
        rows.push(skipped("kube-scheduler", SCHED, "--scheduler-nodes 0"));
    } else {
        let sched = OverheadOptions {
            nodes: opts.scheduler_nodes,
            pods: opts.scheduler_pods,
            timeout: Duration::from_secs(600),
            capacity_check: CapacityCheck::Both,
            managed: true,
            chunks: 4,
        };
        match scheduler_overhead::run(&sched, bins).await {
            Ok(r) => rows.extend(scheduler_rows(&r)),
            Err(e) => rows.push(skipped("kube-scheduler", SCHED, e.to_string())),
        }
    }
    if opts.no_agents {
        rows.push(skipped("agent", "agent overhead per claim", "--no-agents"));
        rows.push(skipped("burst", "pods/s to bound", "--no-agents"));
        return Ok(rows);
    }
    let agent = AgentScaleOptions {
        claims: opts.agent_claims,
        volumes: opts.agent_claims,
        agent: bins.agent.clone(),
        unlabelled: false,
        quiet: Duration::from_secs(3),
        timeout: Duration::from_secs(300),
    };
    match agent_scale::run(&agent).await {
        Ok(r) => rows.extend(agent_rows(&r)),
        Err(e) => rows.push(skipped("agent", "agent overhead per claim", e.to_string())),
    }
    let burst = BenchOptions {
        pods: opts.burst_pods,
        nodes: opts.burst_nodes,
        backend: Backend::Sim,
        ..BenchOptions::default()
    };
    match bench::run(&burst, Some(Mode::Decisive), bins.clone()).await {
        Ok(r) => rows.extend(burst_rows(&r)),
        Err(e) => rows.push(skipped("burst", "pods/s to bound", e.to_string())),
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_lines_parse_and_others_do_not() {
        let line = "filter/floor, Decisive, 1000 nodes: p50 1.05x, p99 1.31x (cpu p50 1.02x, p99 1.20x; goal <= 1.2x at 5000)";
        assert_eq!(
            parse_floor_line(line),
            Some(("Decisive".into(), 1000, 1.05, 1.31))
        );
        for other in [
            "floor      parse + echo names        1000 nodes",
            "filter/floor, Decisive, many nodes: p50 1x, p99 1x",
            "",
        ] {
            assert_eq!(parse_floor_line(other), None, "{other}");
        }
    }

    #[test]
    fn the_table_aligns_and_says_why_a_value_is_missing() {
        let rows = vec![
            row("extender", "filter p50, 100 nodes/1000 claims", 0.25, "ms"),
            skipped("agent", "agent overhead per claim", "no root"),
        ];
        let text = render(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].contains("0.25  ms"), "{text}");
        assert!(lines[2].ends_with("-    (no root)"), "{text}");
        let json = serde_json::to_value(&rows).unwrap();
        assert_eq!(json[0]["value"], 0.25);
        assert!(json[1]["value"].is_null());
        assert_eq!(json[1]["note"], "no root");
    }
}
