//! What the manifests promise about each lvmpin component: its flags, its
//! host access, its privileges, the CSIDriver and the StorageClasses.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use lvmpin_api::names;

use super::kustomize::Located;
use super::load::Object;
use super::scheduler_config::ServedExtender;

/// Flags of `lvmpin-agent` (lvm-provisioner/src, clap). Update with the code.
pub const AGENT_FLAGS: &[&str] = &[
    "--node-name",
    "--volume-group",
    "--volume-groups-annotation",
    "--spare-bytes",
    "--scan-interval",
    "--report-heartbeat",
    "--kubeconfig",
    "--lvm-binary",
    "--lvm-timeout",
    "--csi-socket",
    "--kubelet-dir",
    "--metrics-listen",
    "--namespace",
    "--csi-only",
    "--log-format",
    "--metadata-only-for-tests",
];
/// Environment variables `lvmpin-agent` reads (clap `env` fallbacks and the log
/// filter), plus LVM_SYSTEM_DIR, which lvm2 itself reads. Update with the code.
pub const AGENT_ENV: &[&str] = &[
    "NODE_NAME",
    "POD_NAMESPACE",
    "LVMPIN_VOLUME_GROUPS",
    "KUBECONFIG",
    "RUST_LOG",
    "LVM_SYSTEM_DIR",
];

/// Flags of `lvmpin-scheduler-extender` (scheduler-extender/src, clap).
pub const EXTENDER_FLAGS: &[&str] = &[
    "--listen",
    "--url-prefix",
    "--tls-cert",
    "--tls-key",
    "--mode",
    "--strategy",
    "--spare-bytes",
    "--body-limit",
    "--reservation-ttl",
    "--agent-silence",
    "--kubeconfig",
    "--log-format",
    "--leader-elect",
    "--lease-namespace",
    "--lease-name",
    "--identity",
];
/// Environment variables `lvmpin-scheduler-extender` reads (its clap `env`
/// fallbacks, and the log filter).
pub const EXTENDER_ENV: &[&str] = &[
    "LVMPIN_LISTEN",
    "LVMPIN_URL_PREFIX",
    "LVMPIN_TLS_CERT",
    "LVMPIN_TLS_KEY",
    "LVMPIN_MODE",
    "LVMPIN_STRATEGY",
    "LVMPIN_SPARE_BYTES",
    "LVMPIN_BODY_LIMIT",
    "LVMPIN_RESERVATION_TTL",
    "LVMPIN_AGENT_SILENCE",
    "KUBECONFIG",
    "LVMPIN_LOG_FORMAT",
    "LVMPIN_LEADER_ELECT",
    "LVMPIN_LEASE_NAMESPACE",
    "LVMPIN_LEASE_NAME",
    "POD_NAME",
    "RUST_LOG",
    // Read by kube-rs's in-cluster configuration.
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
];
pub const EXTENDER_DEFAULT_LISTEN: &str = "0.0.0.0:8080";

/// Flags of `lvmpin-controller` (cluster-controller/src, clap).
pub const CONTROLLER_FLAGS: &[&str] = &[
    "--node-gone-grace",
    "--agent-silence",
    "--resync",
    "--metrics-listen",
    "--kubeconfig",
    "--identity",
    "--log-format",
];
/// Environment variables `lvmpin-controller` reads.
pub const CONTROLLER_ENV: &[&str] = &[
    "LVMPIN_NODE_GONE_GRACE",
    "LVMPIN_AGENT_SILENCE",
    "KUBECONFIG",
    "POD_NAME",
    "RUST_LOG",
    // Read by kube-rs's in-cluster configuration.
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
];

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Binary {
    Agent,
    Extender,
    Controller,
}

/// Which lvmpin binary a container runs, from its image name.
pub fn binary_of(c: &Container) -> Option<Binary> {
    let image = c.image.as_deref().unwrap_or("");
    let repo = image
        .rsplit('/')
        .next()
        .unwrap_or("")
        .split([':', '@'])
        .next()
        .unwrap_or("");
    match repo {
        "lvmpin-agent" => Some(Binary::Agent),
        "lvmpin-scheduler-extender" => Some(Binary::Extender),
        "lvmpin-controller" => Some(Binary::Controller),
        _ => None,
    }
}

/// `--name=value` / `--name value` pairs of a container's args.
pub fn flags(c: &Container) -> Vec<(String, Option<String>)> {
    let args = c.args.clone().unwrap_or_default();
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if let Some((k, v)) = a.split_once('=') {
            out.push((k.to_string(), Some(v.to_string())));
        } else if args.get(i + 1).is_some_and(|n| !n.starts_with("--")) {
            out.push((a.clone(), args.get(i + 1).cloned()));
            i += 1;
        } else {
            out.push((a.clone(), None));
        }
        i += 1;
    }
    out
}

fn flag(c: &Container, name: &str) -> Option<String> {
    flags(c)
        .into_iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v)
}

/// Every (origin, pod spec) in the objects.
fn pod_specs(objs: &[Located]) -> Vec<(&str, &str, &PodSpec)> {
    objs.iter()
        .filter_map(|l| {
            let spec = match &l.object {
                Object::Pod(p) => p.spec.as_ref(),
                o => o.pod_template().and_then(|t| t.spec.as_ref()),
            }?;
            Some((l.origin.as_str(), l.object.name(), spec))
        })
        .collect()
}

/// Containers of lvmpin binaries pass only flags and env vars the binaries
/// know, and no command (the image's entrypoint is the binary).
pub fn check_flags(objs: &[Located]) -> Vec<String> {
    let mut errs = Vec::new();
    for (at, _, spec) in pod_specs(objs) {
        for c in &spec.containers {
            let Some(bin) = binary_of(c) else { continue };
            let (known, env) = match bin {
                Binary::Agent => (AGENT_FLAGS, AGENT_ENV),
                Binary::Extender => (EXTENDER_FLAGS, EXTENDER_ENV),
                Binary::Controller => (CONTROLLER_FLAGS, CONTROLLER_ENV),
            };
            if c.command.is_some() {
                errs.push(format!(
                    "{at}: container {} overrides the image's command",
                    c.name
                ));
            }
            for (k, _) in flags(c) {
                if !known.contains(&k.as_str()) {
                    errs.push(format!(
                        "{at}: container {} passes unknown flag {k} to {bin:?}",
                        c.name
                    ));
                }
            }
            for e in c.env.iter().flatten() {
                if !env.contains(&e.name.as_str()) {
                    errs.push(format!(
                        "{at}: container {} sets env {} which {bin:?} does not read",
                        c.name, e.name
                    ));
                }
            }
        }
    }
    errs
}

/// Where the extender workloads serve.
pub fn served_extenders(objs: &[Located]) -> Vec<ServedExtender> {
    pod_specs(objs)
        .into_iter()
        .flat_map(|(_, _, spec)| spec.containers.iter())
        .filter(|c| binary_of(c) == Some(Binary::Extender))
        .map(|c| ServedExtender {
            listen: flag(c, "--listen").unwrap_or_else(|| EXTENDER_DEFAULT_LISTEN.into()),
            url_prefix: flag(c, "--url-prefix")
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_string(),
        })
        .collect()
}

/// The agent DaemonSet reaches what it needs on the host.
pub fn check_agent(objs: &[Located]) -> Vec<String> {
    let mut errs = Vec::new();
    let agents: Vec<_> = objs
        .iter()
        .filter_map(|l| match &l.object {
            Object::DaemonSet(d) => d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .filter(|p| {
                    p.containers
                        .iter()
                        .any(|c| binary_of(c) == Some(Binary::Agent))
                })
                .map(|p| (l.origin.as_str(), p)),
            _ => None,
        })
        .collect();
    let [(at, spec)] = agents.as_slice() else {
        return vec![format!(
            "expected one agent DaemonSet, found {}",
            agents.len()
        )];
    };
    let Some(c) = spec
        .containers
        .iter()
        .find(|c| binary_of(c) == Some(Binary::Agent))
    else {
        return errs;
    };
    let node_name_from_downward_api = c.env.iter().flatten().any(|e| {
        e.name == "NODE_NAME"
            && e.value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .is_some_and(|f| f.field_path == "spec.nodeName")
    });
    if !node_name_from_downward_api {
        errs.push(format!(
            "{at}: NODE_NAME must come from the downward API (fieldRef spec.nodeName)"
        ));
    }
    if c.liveness_probe.is_none() || c.readiness_probe.is_none() {
        errs.push(format!(
            "{at}: the agent needs liveness and readiness probes"
        ));
    }
    let kubelet_dir = flag(c, "--kubelet-dir").unwrap_or_else(|| "/var/lib/kubelet".into());
    let csi_socket = flag(c, "--csi-socket")
        .unwrap_or_else(|| format!("{kubelet_dir}/plugins/{}/csi.sock", names::DRIVER_NAME));
    // (host path, mounted at the same path, needs Bidirectional propagation)
    let needed = [
        ("/dev".to_string(), false),
        ("/run/lvm".to_string(), false),
        ("/run/lock/lvm".to_string(), false),
        (format!("{kubelet_dir}/plugins"), true),
        (format!("{kubelet_dir}/pods"), true),
        (format!("{kubelet_dir}/plugins_registry"), false),
    ];
    let mounts: Vec<(String, String, Option<String>)> = c
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let v = spec.volumes.iter().flatten().find(|v| v.name == m.name)?;
            let host = v.host_path.as_ref()?.path.clone();
            Some((host, m.mount_path.clone(), m.mount_propagation.clone()))
        })
        .collect();
    for (path, bidirectional) in needed {
        match mounts.iter().find(|(host, _, _)| *host == path) {
            None => errs.push(format!("{at}: the agent needs host path {path}")),
            Some((_, inside, _)) if *inside != path => errs.push(format!(
                "{at}: host path {path} must be mounted at the same path (kubelet passes host paths), not {inside}"
            )),
            Some((_, _, prop)) if bidirectional && prop.as_deref() != Some("Bidirectional") => {
                errs.push(format!("{at}: {path} needs mountPropagation: Bidirectional"))
            }
            _ => {}
        }
    }
    if !mounts
        .iter()
        .any(|(_, inside, _)| csi_socket.starts_with(&format!("{inside}/")))
    {
        errs.push(format!(
            "{at}: CSI socket {csi_socket} is on no host path mount"
        ));
    }
    errs
}

/// Only the agent is privileged; every other lvmpin container runs as non-root
/// without privilege escalation.
pub fn check_privileges(objs: &[Located]) -> Vec<String> {
    let mut errs = Vec::new();
    for (at, _, spec) in pod_specs(objs) {
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let sc = c.security_context.clone().unwrap_or_default();
            let privileged = sc.privileged == Some(true);
            match binary_of(c) {
                Some(Binary::Agent) => {}
                Some(Binary::Extender | Binary::Controller) => {
                    let non_root = sc.run_as_non_root.or_else(|| {
                        spec.security_context
                            .as_ref()
                            .and_then(|p| p.run_as_non_root)
                    });
                    if privileged
                        || non_root != Some(true)
                        || sc.allow_privilege_escalation != Some(false)
                    {
                        errs.push(format!(
                            "{at}: container {} must be non-root, unprivileged, without privilege escalation",
                            c.name
                        ));
                    }
                }
                None if privileged => {
                    errs.push(format!("{at}: container {} must not be privileged", c.name))
                }
                None => {}
            }
        }
    }
    errs
}

pub fn check_csi_driver(objs: &[Located]) -> Vec<String> {
    let drivers: Vec<_> = objs
        .iter()
        .filter_map(|l| match &l.object {
            Object::CsiDriver(d) => Some((l.origin.as_str(), d)),
            _ => None,
        })
        .collect();
    let [(at, d)] = drivers.as_slice() else {
        return vec![format!("expected one CSIDriver, found {}", drivers.len())];
    };
    let mut errs = Vec::new();
    if d.metadata.name.as_deref() != Some(names::DRIVER_NAME) {
        errs.push(format!(
            "{at}: CSIDriver must be named {}",
            names::DRIVER_NAME
        ));
    }
    let s = &d.spec;
    if s.attach_required != Some(false) {
        errs.push(format!(
            "{at}: attachRequired must be false (local LVs attach nothing)"
        ));
    }
    if s.fs_group_policy.as_deref() != Some("File") {
        errs.push(format!("{at}: fsGroupPolicy must be File"));
    }
    if s.volume_lifecycle_modes.as_deref() != Some(&["Persistent".to_string()][..]) {
        errs.push(format!("{at}: volumeLifecycleModes must be [Persistent]"));
    }
    // The agents publish CSIStorageCapacity; without the opt-in a scheduler
    // without the extender would place claims capacity-blind.
    if s.storage_capacity != Some(true) {
        errs.push(format!("{at}: storageCapacity must be true"));
    }
    errs
}

pub fn check_storage_classes(objs: &[Located]) -> Vec<String> {
    let mut errs = Vec::new();
    let known: BTreeSet<&str> = [
        names::PARAM_VOLUME_GROUP,
        names::PARAM_THIN_POOL,
        names::PARAM_THIN_OVERPROVISION_RATIO,
        names::PARAM_THIN_DATA_LIMIT,
        names::PARAM_THIN_METADATA_LIMIT,
        names::PARAM_FSTYPE,
        names::NODE_LOSS_POLICY,
    ]
    .into();
    for l in objs {
        let Object::StorageClass(sc) = &l.object else {
            continue;
        };
        let at = &l.origin;
        if sc.provisioner != names::DRIVER_NAME {
            errs.push(format!("{at}: provisioner must be {}", names::DRIVER_NAME));
        }
        if sc.volume_binding_mode.as_deref() != Some("WaitForFirstConsumer") {
            errs.push(format!(
                "{at}: volumeBindingMode must be WaitForFirstConsumer"
            ));
        }
        if sc.allow_volume_expansion != Some(true) {
            errs.push(format!("{at}: allowVolumeExpansion must be true"));
        }
        let params = sc.parameters.clone().unwrap_or_default();
        if params
            .get(names::PARAM_VOLUME_GROUP)
            .is_none_or(|v| v.is_empty())
        {
            errs.push(format!(
                "{at}: parameter {} is required",
                names::PARAM_VOLUME_GROUP
            ));
        }
        if let Some(fs) = params.get(names::PARAM_FSTYPE)
            && fs != "ext4"
            && fs != "xfs"
        {
            errs.push(format!(
                "{at}: {} must be ext4 or xfs, not {fs}",
                names::PARAM_FSTYPE
            ));
        }
        if let Some(p) = params.get(names::NODE_LOSS_POLICY)
            && p != "keep"
            && p != "recreate"
        {
            errs.push(format!(
                "{at}: {} must be keep or recreate, not {p}",
                names::NODE_LOSS_POLICY
            ));
        }
        for k in params.keys() {
            if !known.contains(k.as_str()) {
                errs.push(format!("{at}: unknown StorageClass parameter {k}"));
            }
        }
    }
    errs
}

/// `(flag, env)` pairs declared with clap's `#[arg(long ...)]` in Rust source:
/// the field after the attribute names the flag unless `long = "..."` does.
/// Used to keep the flag tables above in step with the binaries.
pub fn clap_flags_in_source(text: &str) -> Vec<(String, Option<String>)> {
    let quoted = |attr: &str, key: &str| {
        let i = attr.find(&format!("{key} = \""))? + key.len() + 4;
        attr[i..].split('"').next().map(str::to_string)
    };
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if !line.starts_with("#[arg(") {
            continue;
        }
        let mut attr = line.to_string();
        while !attr.ends_with(")]") {
            match lines.next() {
                Some(l) => attr.push_str(l),
                None => return out,
            }
        }
        let has_long = attr.contains("(long")
            || attr.contains(" long,")
            || attr.contains(" long)")
            || attr.contains("long =");
        if !has_long {
            continue;
        }
        // The field follows, after any doc comments or further attributes.
        let field = lines
            .by_ref()
            .find(|l| !l.starts_with("///") && !l.starts_with("#[") && !l.is_empty());
        let Some(name) = field
            .and_then(|f| f.trim_start_matches("pub ").split(':').next())
            .map(str::trim)
        else {
            continue;
        };
        let flag = quoted(&attr, "long").unwrap_or_else(|| name.replace('_', "-"));
        out.push((format!("--{flag}"), quoted(&attr, "env")));
    }
    out
}

/// Every `.rs` file under `dir`, recursively.
pub fn rust_sources(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "rs")
                && let Ok(text) = std::fs::read_to_string(&p)
            {
                out.push((p.display().to_string(), text));
            }
        }
    }
    out
}
