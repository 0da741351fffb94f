//! Output: kubectl-style tables (columns padded, three spaces apart), or the
//! same rows as JSON or YAML for scripts.

use std::str::FromStr;

use lvmpin_api::debug_view::{Outcome, VerdictKind};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::report::{NodeRow, VolumesReport, WhyReport};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Table,
    Json,
    Yaml,
}

impl FromStr for Output {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" | "wide" => Ok(Self::Table),
            "json" => Ok(Self::Json),
            "yaml" => Ok(Self::Yaml),
            other => Err(format!(
                "unknown output format {:?}: use table, json or yaml",
                lvmpin_api::text::cut(other, 40)
            )),
        }
    }
}

/// `v` as JSON or YAML, or `table(v)`.
pub fn render<T: Serialize + ?Sized>(
    out: Output,
    v: &T,
    table: impl FnOnce(&T) -> String,
) -> Result<String> {
    match out {
        Output::Table => Ok(table(v)),
        Output::Json => serde_json::to_string_pretty(v)
            .map(|s| s + "\n")
            .map_err(|e| Error::Encode {
                format: "JSON",
                message: e.to_string(),
            }),
        Output::Yaml => serde_yaml::to_string(v).map_err(|e| Error::Encode {
            format: "YAML",
            message: e.to_string(),
        }),
    }
}

/// Bytes in the largest binary unit that keeps at least 1, one decimal at
/// most: 1Gi, 1.5Gi, 512Mi, 0.
pub fn bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 5] = [
        ("Pi", 1 << 50),
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if b >= size {
            let tenths = (u128::from(b) * 10 + u128::from(size) / 2) / u128::from(size);
            return if tenths % 10 == 0 {
                format!("{}{unit}", tenths / 10)
            } else {
                format!("{}.{}{unit}", tenths / 10, tenths % 10)
            };
        }
    }
    b.to_string()
}

/// Seconds as kubectl prints ages: 45s, 3m, 5h, 2d.
pub fn age(seconds: i64) -> String {
    match seconds {
        s if s < 0 => "0s".into(),
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Columns padded to their widest cell, three spaces apart, as kubectl does.
/// Cells are single lines: line breaks and tabs become spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let clean = |s: &str| s.replace(['\n', '\r', '\t'], " ");
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clean(c)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, (c, w)) in cells.into_iter().zip(&widths).enumerate() {
            s.push_str(c);
            if i + 1 < n {
                s.push_str(&" ".repeat(w - c.chars().count() + 3));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(headers.to_vec());
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn opt_bytes(b: Option<u64>) -> String {
    b.map_or_else(|| "-".into(), bytes)
}

pub fn nodes_table(rows: &[NodeRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let thin = if r.thin_pools.is_empty() {
                "-".to_string()
            } else {
                r.thin_pools
                    .iter()
                    .map(|t| format!("{} {} {:.0}%", t.name, bytes(t.size_bytes), t.data_percent))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let report = match (&r.report_age_seconds, r.stale) {
                (Some(a), false) => age(*a),
                (Some(a), true) => format!("{} (stale)", age(*a)),
                (None, _) => "never (stale)".into(),
            };
            vec![
                r.node.clone(),
                r.volume_group.clone().unwrap_or_else(|| "-".into()),
                opt_bytes(r.size_bytes),
                opt_bytes(r.free_bytes),
                opt_bytes(r.reserved_bytes),
                r.volumes.map_or_else(|| "-".into(), |v| v.to_string()),
                thin,
                match r.healthy {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "-".into(),
                },
                report,
            ]
        })
        .collect();
    table(
        &[
            "NODE",
            "VG",
            "SIZE",
            "FREE",
            "RESERVED",
            "VOLUMES",
            "THIN POOLS",
            "HEALTHY",
            "LAST REPORT",
        ],
        &cells,
    )
}

fn outcome_text(o: Outcome) -> &'static str {
    match o {
        Outcome::Untouched => "the pod uses no lvmpin claim: the extender passes every node",
        Outcome::Placed => "the extender would pass a node now",
        Outcome::NoNode => "no node can take the pod's claims",
        Outcome::Refused => "a claim can never be placed",
        Outcome::Retry => {
            "the extender's caches lack an object the pod needs; kube-scheduler retries"
        }
    }
}

fn verdict_text(v: VerdictKind) -> &'static str {
    match v {
        VerdictKind::Pass => "pass",
        VerdictKind::NotChosen => "fits, not chosen",
        VerdictKind::Unresolvable => "fails",
        VerdictKind::Retry => "retry",
    }
}

pub fn why_text(r: &WhyReport) -> String {
    let mut out = format!("Pod:       {}/{} ({})\n", r.namespace, r.pod, r.phase);
    if let Some(n) = &r.bound_node {
        out.push_str(&format!("Bound to:  {n}\n"));
    }
    if let Some(n) = &r.reserved_on {
        out.push_str(&format!("Reserved:  on {n}\n"));
    }
    out.push_str(&format!("Verdict:   {}\n", outcome_text(r.outcome)));
    if let Some(m) = &r.message {
        out.push_str(&format!("Message:   {m}\n"));
    }
    out.push_str("\nClaims:\n");
    let claims: Vec<Vec<String>> = r
        .claims
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.volume_group.clone().unwrap_or_else(|| "-".into()),
                opt_bytes(c.bytes),
                c.pinned_to.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.push_str(&table(&["CLAIM", "VG", "SIZE", "BOUND ON"], &claims));
    out.push_str("\nNodes (the extender's filter, dry run):\n");
    let nodes: Vec<Vec<String>> = r
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.node.clone(),
                verdict_text(n.verdict).into(),
                n.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(&["NODE", "VERDICT", "REASON"], &nodes));
    out.push_str("\nEvents:\n");
    if r.events.is_empty() {
        out.push_str("<none>\n");
    } else {
        let evs: Vec<Vec<String>> = r
            .events
            .iter()
            .map(|e| {
                vec![
                    e.last_seen.clone().unwrap_or_else(|| "-".into()),
                    e.type_.clone(),
                    e.reason.clone(),
                    e.source.clone(),
                    e.message.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["LAST SEEN", "TYPE", "REASON", "FROM", "MESSAGE"],
            &evs,
        ));
    }
    out
}

pub fn volumes_text(r: &VolumesReport) -> String {
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = r
        .volumes
        .iter()
        .map(|v| {
            vec![
                dash(&v.namespace),
                dash(&v.claim),
                dash(&v.persistent_volume),
                match (&v.volume_group, &v.logical_volume) {
                    (Some(vg), Some(lv)) => format!("{vg}/{lv}"),
                    _ => "-".into(),
                },
                dash(&v.node),
                opt_bytes(v.size_bytes),
                v.phase.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &["NAMESPACE", "CLAIM", "PV", "LV", "NODE", "SIZE", "STATUS"],
        &rows,
    );
    if !r.orphans.is_empty() {
        out.push_str("\nLVs no PV references (orphans):\n");
        let rows: Vec<Vec<String>> = r
            .orphans
            .iter()
            .map(|o| {
                vec![
                    o.node.clone(),
                    format!("{}/{}", o.volume_group, o.logical_volume),
                ]
            })
            .collect();
        out.push_str(&table(&["NODE", "LV"], &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{EventRow, OrphanRow, ThinPoolRow, VolumeRow};
    use lvmpin_api::debug_view::{ClaimView, NodeVerdict};

    #[test]
    fn bytes_table() {
        let cases: &[(u64, &str)] = &[
            (0, "0"),
            (1023, "1023"),
            (1024, "1Ki"),
            (512 << 20, "512Mi"),
            (1 << 30, "1Gi"),
            (3 << 29, "1.5Gi"),
            ((1 << 30) - (4 << 20), "1020Mi"),
            (u64::MAX, "16384Pi"),
        ];
        for (b, want) in cases {
            assert_eq!(bytes(*b), *want, "{b}");
        }
    }

    #[test]
    fn age_table() {
        for (s, want) in [
            (-5, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (7199, "119m"),
            (7200, "2h"),
            (172_800, "2d"),
        ] {
            assert_eq!(age(s), want, "{s}");
        }
    }

    #[test]
    fn output_parse() {
        assert_eq!("json".parse(), Ok(Output::Json));
        assert_eq!("yaml".parse(), Ok(Output::Yaml));
        assert_eq!("table".parse(), Ok(Output::Table));
        assert!("xml".parse::<Output>().is_err());
    }

    #[test]
    fn table_pads_and_flattens() {
        let t = table(
            &["A", "BB"],
            &[
                vec!["xxx".into(), "y".into()],
                vec!["z".into(), "two\nlines".into()],
            ],
        );
        assert_eq!(t, "A     BB\nxxx   y\nz     two lines\n");
    }

    fn node_row() -> NodeRow {
        NodeRow {
            node: "node-0".into(),
            volume_group: Some("vg".into()),
            size_bytes: Some(1 << 30),
            free_bytes: Some(768 << 20),
            reserved_bytes: Some(256 << 20),
            volumes: Some(1),
            thin_pools: vec![ThinPoolRow {
                name: "tp".into(),
                size_bytes: 512 << 20,
                data_percent: 12.4,
            }],
            healthy: Some(true),
            last_report: Some("2026-01-01T00:00:00Z".into()),
            report_age_seconds: Some(3),
            stale: false,
        }
    }

    #[test]
    fn nodes_table_table() {
        let stale = NodeRow {
            node: "node-1".into(),
            report_age_seconds: Some(900),
            stale: true,
            ..Default::default()
        };
        let got = nodes_table(&[node_row(), stale]);
        let want = "\
NODE     VG   SIZE   FREE    RESERVED   VOLUMES   THIN POOLS     HEALTHY   LAST REPORT
node-0   vg   1Gi    768Mi   256Mi      1         tp 512Mi 12%   yes       3s
node-1   -    -      -       -          -         -              -         15m (stale)
";
        assert_eq!(got, want);
    }

    #[test]
    fn why_text_lists_claims_nodes_and_events() {
        let r = WhyReport {
            namespace: "default".into(),
            pod: "big-0".into(),
            phase: "Pending".into(),
            outcome: Outcome::NoNode,
            claims: vec![ClaimView {
                name: "data-big-0".into(),
                volume_group: Some("vg".into()),
                bytes: Some(2 << 30),
                pinned_to: None,
            }],
            nodes: vec![NodeVerdict {
                node: "node-0".into(),
                verdict: VerdictKind::Unresolvable,
                reason: Some("needs 2Gi".into()),
            }],
            events: vec![EventRow {
                last_seen: Some("2026-01-01T00:00:00Z".into()),
                type_: "Warning".into(),
                reason: "FailedScheduling".into(),
                source: "default-scheduler".into(),
                count: 1,
                message: "0/1 nodes".into(),
            }],
            ..Default::default()
        };
        let got = why_text(&r);
        let want = "\
Pod:       default/big-0 (Pending)
Verdict:   no node can take the pod's claims

Claims:
CLAIM        VG   SIZE   BOUND ON
data-big-0   vg   2Gi    -

Nodes (the extender's filter, dry run):
NODE     VERDICT   REASON
node-0   fails     needs 2Gi

Events:
LAST SEEN              TYPE      REASON             FROM                MESSAGE
2026-01-01T00:00:00Z   Warning   FailedScheduling   default-scheduler   0/1 nodes
";
        assert_eq!(got, want);
    }

    #[test]
    fn volumes_text_with_orphans() {
        let r = VolumesReport {
            volumes: vec![VolumeRow {
                namespace: Some("default".into()),
                claim: Some("data-web-0".into()),
                persistent_volume: Some("pvc-1".into()),
                volume_group: Some("vg".into()),
                logical_volume: Some("pvc-1".into()),
                node: Some("node-0".into()),
                size_bytes: Some(64 << 20),
                phase: "Bound".into(),
            }],
            orphans: vec![OrphanRow {
                node: "node-1".into(),
                volume_group: "vg".into(),
                logical_volume: "pvc-2".into(),
            }],
        };
        let want = "\
NAMESPACE   CLAIM        PV      LV         NODE     SIZE   STATUS
default     data-web-0   pvc-1   vg/pvc-1   node-0   64Mi   Bound

LVs no PV references (orphans):
NODE     LV
node-1   vg/pvc-2
";
        assert_eq!(volumes_text(&r), want);
    }

    #[test]
    fn json_and_yaml_carry_the_rows() {
        let rows = [node_row()];
        let j = render(Output::Json, &rows[..], nodes_table).unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v[0]["reservedBytes"], 256 << 20);
        assert_eq!(v[0]["thinPools"][0]["name"], "tp");
        let y = render(Output::Yaml, &rows[..], nodes_table).unwrap();
        assert!(y.contains("reservedBytes: 268435456"), "{y}");
        assert_eq!(
            render(Output::Table, &rows[..], nodes_table).unwrap(),
            nodes_table(&rows)
        );
    }
}
