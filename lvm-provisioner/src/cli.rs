//! Command-line flags (with environment fallbacks) of `lvmpin-agent`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    lvmpin_api::parse_quantity_bytes(s).map_err(|e| e.to_string())
}

/// Unlike clap's own path parser this accepts "", which means "off".
fn path_or_empty(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "lvmpin-agent",
    about = "lvmpin node agent: LVM capacity reports, volume provisioning and the CSI node service"
)]
pub struct Args {
    /// This node's name (from the downward API: spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// Volume groups this agent manages; repeat the flag or give a comma-separated list.
    #[arg(
        long = "volume-group",
        env = "LVMPIN_VOLUME_GROUPS",
        value_delimiter = ',',
        required = true
    )]
    pub volume_groups: Vec<String>,
    /// A Node annotation (e.g. lvmpin.io/volume-groups) whose comma-separated
    /// VG names, when the agent's node carries it, replace --volume-group for
    /// this node. Read at start; empty turns the override off.
    #[arg(long, default_value = "")]
    pub volume_groups_annotation: String,
    /// Bytes to keep free in every VG (a Kubernetes quantity, e.g. 1Gi); creates
    /// that would eat into them are refused and the claim is rescheduled.
    #[arg(long, default_value = "0", value_parser = parse_bytes)]
    pub spare_bytes: u64,
    /// How often to rescan LVM when nothing happened.
    #[arg(long, default_value = "10s")]
    pub scan_interval: humantime::Duration,
    /// Rewrite the LvmNode report at least this often even when nothing
    /// changed (checked at each scan), so lastScanTime shows the agent is
    /// alive; lvmpin-controller and the extender judge silence by it.
    #[arg(long, default_value = "1m")]
    pub report_heartbeat: humantime::Duration,
    /// Kubeconfig file; without it the in-cluster or default config is used.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    #[arg(long, default_value = "lvm")]
    pub lvm_binary: PathBuf,
    /// Upper bound for any single lvm command; slower ones are killed.
    #[arg(long, default_value = "60s")]
    pub lvm_timeout: humantime::Duration,
    /// Socket of the CSI node service; an empty value turns the service off.
    #[arg(
        long,
        default_value = "/var/lib/kubelet/plugins/lvm.lvmpin.io/csi.sock",
        value_parser = path_or_empty
    )]
    pub csi_socket: PathBuf,
    /// kubelet's root; plugin registration goes in its plugins_registry/.
    #[arg(long, default_value = "/var/lib/kubelet")]
    pub kubelet_dir: PathBuf,
    #[arg(long, default_value = "0.0.0.0:9808")]
    pub metrics_listen: SocketAddr,
    /// The agent's namespace (from the downward API: metadata.namespace),
    /// where it keeps one CSIStorageCapacity per StorageClass for this node.
    /// Required (except with --csi-only): the CSIDriver opts into capacity
    /// tracking, so kube-scheduler places no claim on a node whose agent
    /// publishes none.
    #[arg(long, env = "POD_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// Serve only CSI (Identity, Node, Controller) and kubelet registration,
    /// without any Kubernetes API access: for the standard sidecar set-up
    /// (external-provisioner --node-deployment, external-resizer) and for
    /// conformance tests. No LvmNode, no CSIStorageCapacity, no watches.
    #[arg(long)]
    pub csi_only: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// TESTS AND DEMOS ONLY. On a host without device-mapper, create LVs in
    /// lvm2's metadata-only mode (never activated, never wiped). Without it
    /// such a host reports its VGs unhealthy and provisions nothing.
    #[arg(long)]
    pub metadata_only_for_tests: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_lists() {
        let a = Args::try_parse_from([
            "lvmpin-agent",
            "--node-name",
            "n1",
            "--volume-group",
            "vg0,vg1",
            "--volume-group",
            "vg2",
            "--spare-bytes",
            "1Gi",
            "--namespace",
            "lvmpin-system",
        ])
        .unwrap();
        assert_eq!(a.volume_groups, vec!["vg0", "vg1", "vg2"]);
        assert_eq!(a.spare_bytes, 1 << 30);
        assert_eq!(*a.scan_interval, std::time::Duration::from_secs(10));
        assert_eq!(a.metrics_listen.port(), 9808);
        assert!(!a.metadata_only_for_tests);
        assert!(
            Args::try_parse_from([
                "lvmpin-agent",
                "--node-name",
                "n1",
                "--volume-group",
                "vg0",
                "--spare-bytes",
                "lots"
            ])
            .is_err()
        );
    }
}
