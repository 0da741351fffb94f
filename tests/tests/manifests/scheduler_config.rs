//! The kube-scheduler configuration examples (`manifests/scheduler/`).
//!
//! kube-scheduler decodes its `--config` file strictly: an unknown or
//! miscased field stops it from starting. These structs mirror the upstream
//! `kubescheduler.config.k8s.io/v1` types (k8s.io/kube-scheduler
//! `config/v1/types.go` and component-base `config/v1alpha1`) for the fields a
//! configuration may use, with the same JSON names, and refuse anything else.

// Many fields exist only so that strict decoding accepts what upstream accepts;
// the checks read a few of them.
#![allow(dead_code)]

use serde::Deserialize;
use serde_json::Value;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeSchedulerConfiguration {
    pub api_version: String,
    pub kind: String,
    pub parallelism: Option<i32>,
    pub leader_election: Option<LeaderElectionConfiguration>,
    pub client_connection: Option<ClientConnectionConfiguration>,
    // DebuggingConfiguration is embedded inline upstream.
    pub enable_profiling: Option<bool>,
    pub enable_contention_profiling: Option<bool>,
    pub percentage_of_nodes_to_score: Option<i32>,
    pub pod_initial_backoff_seconds: Option<i64>,
    pub pod_max_backoff_seconds: Option<i64>,
    #[serde(default)]
    pub profiles: Vec<KubeSchedulerProfile>,
    #[serde(default)]
    pub extenders: Vec<Extender>,
    pub delay_cache_until_active: Option<bool>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LeaderElectionConfiguration {
    pub leader_elect: Option<bool>,
    pub lease_duration: Option<String>,
    pub renew_deadline: Option<String>,
    pub retry_period: Option<String>,
    pub resource_lock: Option<String>,
    pub resource_name: Option<String>,
    pub resource_namespace: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientConnectionConfiguration {
    pub kubeconfig: Option<String>,
    pub accept_content_types: Option<String>,
    pub content_type: Option<String>,
    pub qps: Option<f32>,
    pub burst: Option<i32>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeSchedulerProfile {
    pub scheduler_name: Option<String>,
    pub percentage_of_nodes_to_score: Option<i32>,
    // Plugin sets and plugin args have their own strict types upstream; lvmpin's
    // examples do not use them, so they are carried opaquely.
    pub plugins: Option<Value>,
    pub plugin_config: Option<Vec<Value>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Extender {
    pub url_prefix: String,
    pub filter_verb: Option<String>,
    pub preempt_verb: Option<String>,
    pub prioritize_verb: Option<String>,
    pub weight: Option<i64>,
    pub bind_verb: Option<String>,
    // Upstream's JSON name keeps the acronym upper case.
    #[serde(rename = "enableHTTPS")]
    pub enable_https: Option<bool>,
    pub tls_config: Option<ExtenderTlsConfig>,
    /// A Go duration such as "5s" or "1m30s".
    pub http_timeout: Option<String>,
    pub node_cache_capable: Option<bool>,
    pub managed_resources: Option<Vec<ExtenderManagedResource>>,
    pub ignorable: Option<bool>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtenderTlsConfig {
    pub insecure: Option<bool>,
    pub server_name: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub ca_file: Option<String>,
    pub cert_data: Option<String>,
    pub key_data: Option<String>,
    pub ca_data: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtenderManagedResource {
    pub name: String,
    pub ignored_by_scheduler: Option<bool>,
}

/// Where an extender process serves, read from its workload's flags.
#[derive(Clone, Debug, PartialEq)]
pub struct ServedExtender {
    /// `--listen`, host:port.
    pub listen: String,
    /// `--url-prefix`, "" or a path starting with '/'.
    pub url_prefix: String,
}

/// The verbs the extender serves, as `<url-prefix>/<route>`. Must match the
/// extender's router (scheduler-extender/src); update with the code.
pub const EXTENDER_ROUTES: &[(&str, &str)] = &[
    ("filterVerb", "filter"),
    ("prioritizeVerb", "prioritize"),
    ("bindVerb", "bind"),
];

/// Which verbs an example must configure, from its file name.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Decisive,
    Advisory,
    /// The stock scheduler on CSIStorageCapacity alone.
    NoExtender,
}

pub fn check_scheduler_config(
    name: &str,
    cfg: &KubeSchedulerConfiguration,
    mode: Mode,
    served: &[ServedExtender],
) -> Vec<String> {
    let mut errs = Vec::new();
    let mut err = |m: String| errs.push(format!("{name}: {m}"));
    if cfg.api_version != "kubescheduler.config.k8s.io/v1" {
        err(format!(
            "apiVersion must be kubescheduler.config.k8s.io/v1, not {}",
            cfg.api_version
        ));
    }
    if cfg.kind != "KubeSchedulerConfiguration" {
        err(format!(
            "kind must be KubeSchedulerConfiguration, not {}",
            cfg.kind
        ));
    }
    let kubeconfig = cfg
        .client_connection
        .as_ref()
        .and_then(|c| c.kubeconfig.as_deref())
        .unwrap_or("");
    if kubeconfig.is_empty() {
        err("clientConnection.kubeconfig must be set: with --config, kube-scheduler ignores --kubeconfig".into());
    }
    if cfg.percentage_of_nodes_to_score != Some(100) {
        err(
            "percentageOfNodesToScore should be 100 so the extender sees every feasible node"
                .into(),
        );
    }
    if cfg
        .extenders
        .iter()
        .filter(|e| e.bind_verb.is_some())
        .count()
        > 1
    {
        err("only one extender may set bindVerb".into());
    }
    if mode == Mode::NoExtender {
        if !cfg.extenders.is_empty() {
            err("a no-extender configuration must list no extenders".into());
        }
        return errs;
    }
    let [ext] = cfg.extenders.as_slice() else {
        err(format!(
            "expected exactly one extender, found {}",
            cfg.extenders.len()
        ));
        return errs;
    };
    let verbs = [
        ("filterVerb", ext.filter_verb.as_deref()),
        ("prioritizeVerb", ext.prioritize_verb.as_deref()),
        ("bindVerb", ext.bind_verb.as_deref()),
    ];
    let wanted: &[&str] = match mode {
        Mode::Decisive => &["filterVerb", "bindVerb"],
        Mode::Advisory => &["filterVerb", "prioritizeVerb", "bindVerb"],
        Mode::NoExtender => &[],
    };
    for (field, value) in verbs {
        match (wanted.contains(&field), value) {
            (true, None) => err(format!("{mode:?} mode needs {field}")),
            (false, Some(_)) => err(format!("{mode:?} mode must not set {field}")),
            _ => {}
        }
    }
    if ext.preempt_verb.is_some() {
        err("preemptVerb is not served by the extender".into());
    }
    if ext.prioritize_verb.is_some() && ext.weight.unwrap_or(0) < 1 {
        err("weight must be at least 1 when prioritizeVerb is set".into());
    }
    if ext.node_cache_capable != Some(true) {
        err("nodeCacheCapable should be true: the extender keeps its own node cache".into());
    }
    for m in ext.managed_resources.iter().flatten() {
        if m.ignored_by_scheduler != Some(true) {
            err(format!(
                "managedResources {}: ignoredByScheduler must be true, since no node advertises it",
                m.name
            ));
        }
    }
    if ext.ignorable != Some(true) {
        err("ignorable must be true: otherwise one failed extender stops all scheduling".into());
    }
    if let Some(t) = &ext.http_timeout
        && let Err(e) = parse_go_duration(t)
    {
        err(format!("httpTimeout {t:?}: {e}"));
    }
    let https = ext.enable_https == Some(true);
    let Some((scheme, authority, path)) = split_url(&ext.url_prefix) else {
        err(format!(
            "urlPrefix {:?} is not an absolute http(s) URL",
            ext.url_prefix
        ));
        return errs;
    };
    if scheme != if https { "https" } else { "http" } {
        err(format!(
            "urlPrefix scheme {scheme} does not match enableHTTPS={https}"
        ));
    }
    if ext.url_prefix.ends_with('/') {
        err("urlPrefix must not end with '/': kube-scheduler appends \"/<verb>\"".into());
    }
    let Some(server) = served.iter().find(|s| listen_matches(&s.listen, authority)) else {
        err(format!(
            "urlPrefix {} points at no extender in the manifests (they listen on {:?})",
            ext.url_prefix,
            served.iter().map(|s| s.listen.as_str()).collect::<Vec<_>>()
        ));
        return errs;
    };
    for (field, value) in verbs {
        let Some(verb) = value else { continue };
        let requested = format!("{path}/{verb}");
        let route = EXTENDER_ROUTES
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, r)| format!("{}/{r}", server.url_prefix));
        if route.as_deref() != Some(requested.as_str()) {
            err(format!(
                "{field} makes kube-scheduler POST {requested}, but the extender serves it at {}",
                route.unwrap_or_default()
            ));
        }
    }
    errs
}

/// `http://host:port/path` → ("http", "host:port", "/path"); path may be "".
fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    (!authority.is_empty()).then_some((scheme, authority, path.trim_end_matches('/')))
}

/// Whether a server listening on `listen` answers at `authority`.
fn listen_matches(listen: &str, authority: &str) -> bool {
    let (Some((lhost, lport)), Some((_, aport))) =
        (listen.rsplit_once(':'), authority.rsplit_once(':'))
    else {
        return false;
    };
    lport == aport && (lhost == "0.0.0.0" || lhost == "[::]" || listen == authority)
}

/// Parses a Go `time.Duration` string ("10s", "1m30s", "500ms") into seconds.
pub fn parse_go_duration(s: &str) -> Result<f64, String> {
    if s == "0" {
        return Ok(0.0);
    }
    let mut rest = s;
    let mut total = 0.0;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in {s:?}"))?;
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("bad number in {s:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown unit {other:?} in {s:?}")),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Ok(total)
}
