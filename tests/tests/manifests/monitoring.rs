//! The alerts and the dashboard of manifests/monitoring/ name only metrics
//! the binaries export. The exported names are read from the registrations in
//! the source (`register("name", ..., m.field.clone())` under
//! `sub_registry_with_prefix("prefix")`, the field's type giving the suffixes
//! prometheus-client adds: `_total` for counters, `_bucket`/`_sum`/`_count`
//! for histograms).

use std::collections::BTreeSet;
use std::path::Path;

/// Metrics the rules may use that lvmpin does not export: Prometheus's own,
/// and kube-state-metrics' (LvmpinExtenderNotReady, LvmpinAgentDown).
pub const EXTERNAL_METRICS: &[&str] = &[
    "kube_pod_status_ready",
    "kube_daemonset_status_number_unavailable",
];

/// The crates whose `metrics.rs` files register lvmpin's metrics.
pub const METRIC_SOURCES: &[&str] = &[
    "lvm-provisioner/src/metrics.rs",
    "lvm-provisioner/src/csi/metrics.rs",
    "scheduler-extender/src/metrics.rs",
    "cluster-controller/src/metrics.rs",
];

/// Exported series names of one metrics source file.
pub fn exported_names(text: &str) -> Result<BTreeSet<String>, String> {
    let quoted_after = |s: &str, key: &str| -> Option<String> {
        let i = s.find(key)? + key.len();
        let rest = &s[i..];
        let start = rest.find('"')? + 1;
        let end = rest[start..].find('"')? + start;
        Some(rest[start..end].to_string())
    };
    let prefix = quoted_after(text, "sub_registry_with_prefix(")
        .ok_or("no sub_registry_with_prefix(\"...\")")?;
    // Field name -> its type, from `pub name: Type,` lines, and type aliases.
    let mut types = std::collections::BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("type ")
            && let Some((name, ty)) = rest.split_once('=')
        {
            types.insert(name.trim().to_string(), ty.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("pub ")
            && let Some((name, ty)) = rest.split_once(':')
            && !name.contains(' ')
            && !name.contains('(')
        {
            types.insert(name.trim().to_string(), ty.trim().to_string());
        }
    }
    let kind_of = |field: &str| -> Option<&'static str> {
        let mut ty = types.get(field)?.clone();
        for _ in 0..3 {
            let alias = ty.trim_end_matches([',', ';']).to_string();
            match types.get(&alias) {
                Some(t) => ty = t.clone(),
                None => break,
            }
        }
        ["Histogram", "Counter", "Gauge"]
            .into_iter()
            .find(|k| ty.contains(k))
    };
    let mut out = BTreeSet::new();
    // Each register( call: its first string literal and the `m.<field>` it passes.
    for call in text.split(".register(").skip(1) {
        let body = &call[..call.find(");").unwrap_or(call.len())];
        let name = quoted_after(body, "").ok_or("register( without a name")?;
        let field = body
            .rsplit("m.")
            .next()
            .and_then(|f| f.split('.').next())
            .ok_or_else(|| format!("register(\"{name}\") passes no m.<field>"))?;
        let full = format!("{prefix}_{name}");
        match kind_of(field) {
            Some("Histogram") => {
                for s in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{full}{s}"));
                }
            }
            Some("Counter") => {
                out.insert(format!("{full}_total"));
            }
            Some(_) => {
                out.insert(full);
            }
            None => return Err(format!("{name}: no type found for field {field}")),
        }
    }
    if out.is_empty() {
        return Err("no register(...) calls".into());
    }
    Ok(out)
}

/// Every `lvmpin_…` and external metric name a PromQL text mentions.
pub fn metric_names(promql: &str) -> BTreeSet<String> {
    promql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("lvmpin_") || w.starts_with("kube_") || *w == "up")
        .map(str::to_string)
        .collect()
}

/// Unknown metrics of `exprs` ((where, PromQL) pairs).
pub fn unknown_metrics(exprs: &[(String, String)], exported: &BTreeSet<String>) -> Vec<String> {
    let mut errs = Vec::new();
    for (at, expr) in exprs {
        let names = metric_names(expr);
        if names.is_empty() {
            errs.push(format!("{at}: names no metric: {expr}"));
        }
        for n in names {
            if !exported.contains(&n) && !EXTERNAL_METRICS.contains(&n.as_str()) {
                errs.push(format!(
                    "{at}: {n} is not exported by lvmpin (see {METRIC_SOURCES:?})"
                ));
            }
        }
    }
    errs
}

/// (alert name, expr) of a PrometheusRule document.
pub fn rule_exprs(rule: &serde_json::Value) -> Vec<(String, String)> {
    rule.pointer("/spec/groups")
        .and_then(|g| g.as_array())
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap_or("?");
            (
                format!("rule {name}"),
                r["expr"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// (panel title, expr) of every target of a Grafana dashboard.
pub fn dashboard_exprs(dash: &serde_json::Value) -> Vec<(String, String)> {
    dash["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            p["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |t| {
                    (
                        format!("panel {title}"),
                        t["expr"].as_str().unwrap_or("").to_string(),
                    )
                })
        })
        .collect()
}

pub fn all_exported(repo: &Path) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    for f in METRIC_SOURCES {
        let text = std::fs::read_to_string(repo.join(f)).map_err(|e| format!("{f}: {e}"))?;
        out.extend(exported_names(&text).map_err(|e| format!("{f}: {e}"))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_become_series_names() {
        let src = r#"
type Hist = Family<L, Histogram, fn() -> Histogram>;
pub struct M {
    pub ops: Family<L, Counter>,
    pub took: Hist,
    pub free: Gauge,
}
fn f() {
    let r = registry.sub_registry_with_prefix("lvmpin_x");
    r.register("operations", "help", m.ops.clone());
    r.register(
        "duration_seconds",
        "help",
        m.took.clone(),
    );
    r.register("free_bytes", "help", m.free.clone());
}
"#;
        let got = exported_names(src).unwrap();
        let want: BTreeSet<String> = [
            "lvmpin_x_operations_total",
            "lvmpin_x_duration_seconds_bucket",
            "lvmpin_x_duration_seconds_sum",
            "lvmpin_x_duration_seconds_count",
            "lvmpin_x_free_bytes",
        ]
        .map(String::from)
        .into();
        assert_eq!(got, want);
        assert!(exported_names("fn f() {}").is_err());
    }

    #[test]
    fn unknown_names_are_reported() {
        let exported: BTreeSet<String> = ["lvmpin_a_total".to_string()].into();
        let exprs = vec![
            ("ok".to_string(), "rate(lvmpin_a_total[5m]) > 0".to_string()),
            ("typo".to_string(), "rate(lvmpin_b_total[5m])".to_string()),
            (
                "external".to_string(),
                "kube_pod_status_ready == 0".to_string(),
            ),
            ("none".to_string(), "vector(1)".to_string()),
        ];
        let errs = unknown_metrics(&exprs, &exported);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("lvmpin_b_total") && errs[1].starts_with("none"));
    }
}
