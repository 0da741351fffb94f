//! `hack/kind-config.yaml`: the kind cluster's kube-scheduler must get one of
//! the scheduler configurations under `manifests/scheduler/`.

use std::collections::BTreeSet;

use serde_json::Value;

/// `hack/kind-config.yaml` hands kube-scheduler one of the configurations
/// above: kind mounts the directory into the node, kubeadm mounts it into the
/// scheduler's pod, and `config` names a file that exists.
pub fn check_kind_config(text: &str, scheduler_files: &BTreeSet<String>) -> Vec<String> {
    let mut errs = Vec::new();
    let cfg: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => return vec![format!("hack/kind-config.yaml: {e}")],
    };
    if cfg["kind"] != "Cluster" || cfg["apiVersion"] != "kind.x-k8s.io/v1alpha4" {
        errs.push("kind-config: expected kind.x-k8s.io/v1alpha4 Cluster".into());
    }
    let patches: Vec<Value> = cfg["kubeadmConfigPatches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().and_then(|s| serde_yaml::from_str(s).ok()))
        .collect();
    let Some(cluster) = patches.iter().find(|p| p["kind"] == "ClusterConfiguration") else {
        return vec!["kind-config: no ClusterConfiguration patch for kube-scheduler".into()];
    };
    if cluster.get("apiVersion").is_some() {
        errs.push(
            "kind-config: the kubeadm patch must not set apiVersion (kind picks the kubeadm API version)".into(),
        );
    }
    let sched = &cluster["scheduler"];
    let Some(config) = sched["extraArgs"]["config"].as_str() else {
        return vec!["kind-config: scheduler.extraArgs.config is not set".into()];
    };
    let volume = sched["extraVolumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| {
            v["mountPath"]
                .as_str()
                .is_some_and(|p| config.starts_with(&format!("{p}/")))
        });
    let Some(volume) = volume else {
        return vec![format!(
            "kind-config: no scheduler.extraVolumes entry mounts {config}"
        )];
    };
    let node_path = volume["hostPath"].as_str().unwrap_or("");
    let mount_path = volume["mountPath"].as_str().unwrap_or("");
    let file = &config[mount_path.len() + 1..];
    let node_mount = cfg["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["role"] == "control-plane")
        .flat_map(|n| n["extraMounts"].as_array().cloned().unwrap_or_default())
        .find(|m| m["containerPath"] == node_path);
    match node_mount.as_ref().and_then(|m| m["hostPath"].as_str()) {
        None => errs.push(format!(
            "kind-config: no control-plane extraMounts entry provides {node_path}"
        )),
        Some(host) => {
            let rel = host.trim_start_matches("./");
            let want = format!("{}/{file}", rel.trim_start_matches("manifests/"));
            if !rel.starts_with("manifests/") || !scheduler_files.contains(&want) {
                errs.push(format!(
                    "kind-config: kube-scheduler reads {config}, i.e. {host}/{file}, which is not a scheduler configuration under manifests/"
                ));
            }
        }
    }
    errs
}
