//! The real `lvmpin-agent` binary against the simulator's API server, for
//! what its node tells it: the VG override of `--volume-groups-annotation`,
//! the `status.summary` behind `kubectl get lvmnodes`, and the metric names
//! its `/metrics` serves (the ones manifests/monitoring relies on).
//!
//! No VG exists: the agent reports each configured VG as not found, which is
//! all these checks need, and its lvm2 sees no device at all (a private
//! `LVM_SYSTEM_DIR` whose filter rejects everything).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::PostParams;
use lvmpin_api::LvmNode;
use lvmpin_sim::control_plane::{ControlPlane, ControlPlaneOptions};
use lvmpin_sim::testbed::process::free_port;
use lvmpin_sim::testbed::{Binaries, ManagedProcess, install};
use lvmpin_sim::{wait, workload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "manifests/monitoring.rs"]
#[allow(dead_code)]
mod monitoring;

const ANNOTATION: &str = "lvmpin.io/volume-groups";

fn lvm_dir(dir: &Path) -> std::path::PathBuf {
    let lvm = dir.join("lvm");
    std::fs::create_dir_all(lvm.join("lock")).unwrap();
    std::fs::write(
        lvm.join("lvm.conf"),
        format!(
            "devices {{\n  global_filter = [ \"r|.*|\" ]\n  obtain_device_list_from_udev = 0\n}}\nglobal {{\n  locking_dir = \"{}\"\n}}\n",
            lvm.join("lock").display()
        ),
    )
    .unwrap();
    lvm
}

struct Bed {
    cp: ControlPlane,
    dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
    agent_bin: std::path::PathBuf,
}

async fn bed() -> Bed {
    let bins = tokio::task::spawn_blocking(|| Binaries::locate_or_build(false))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let cp = ControlPlane::start(ControlPlaneOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    install::install_sim(&cp.client())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    cp.write_kubeconfig(&kubeconfig).unwrap();
    Bed {
        cp,
        dir,
        kubeconfig,
        agent_bin: bins.agent,
    }
}

impl Bed {
    async fn node(&self, name: &str, annotation: Option<&str>) {
        let mut n = workload::node(name);
        if let Some(v) = annotation {
            n.metadata.annotations = Some(BTreeMap::from([(ANNOTATION.into(), v.into())]));
        }
        Api::<Node>::all(self.cp.client())
            .create(&PostParams::default(), &n)
            .await
            .unwrap();
    }

    fn agent(&self, node: &str, metrics_port: u16) -> ManagedProcess {
        let args = [
            "--node-name",
            node,
            "--volume-group",
            "lvmpin",
            "--volume-groups-annotation",
            ANNOTATION,
            "--kubeconfig",
            &self.kubeconfig.display().to_string(),
            "--csi-socket",
            "",
            "--namespace",
            install::NAMESPACE,
            "--scan-interval",
            "1s",
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
            "--metadata-only-for-tests",
        ]
        .map(String::from)
        .to_vec();
        ManagedProcess::spawn(
            &format!("agent-{node}"),
            &self.agent_bin,
            args,
            vec![(
                "LVM_SYSTEM_DIR".into(),
                lvm_dir(self.dir.path()).display().to_string(),
            )],
            self.dir.path().join(format!("agent-{node}.log")),
        )
        .unwrap()
    }

    /// The summary of a node's report once it names `want` VGs.
    async fn summary(&self, node: &str, want: &str) -> lvmpin_api::LvmNodeSummary {
        let api = Api::<LvmNode>::all(self.cp.client());
        wait::until(
            &format!("LvmNode {node} reporting VGs {want}"),
            Duration::from_secs(60),
            Duration::from_millis(200),
            || async {
                let n = api.get_opt(node).await.ok().flatten()?;
                let s = n.status?.summary?;
                (s.volume_groups == want).then_some(s)
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

async fn http_get(port: u16, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_annotation_overrides_volume_groups_and_the_summary_shows_them() {
    let b = bed().await;
    b.node("plain", None).await;
    b.node("tiered", Some("fast, slow")).await;
    b.node("broken", Some("fast,-rf")).await;
    let port = free_port().unwrap();
    let _plain = b.agent("plain", port);
    let _tiered = b.agent("tiered", free_port().unwrap());
    let mut broken = b.agent("broken", free_port().unwrap());

    // Without the annotation: --volume-group.
    let s = b.summary("plain", "lvmpin").await;
    assert!(!s.healthy, "no VG exists, so none is healthy: {s:?}");
    assert_eq!((s.size.as_str(), s.volumes), ("0B", 0));
    // With it: the annotation's names, in order.
    b.summary("tiered", "fast,slow").await;
    // A malformed value stops the agent with an error that names it.
    wait::until(
        "the agent with a malformed annotation to exit",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let exited = broken.exited();
            async move { exited }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let log = std::fs::read_to_string(&broken.log).unwrap_or_default();
    assert!(
        log.contains(ANNOTATION) && log.contains("-rf"),
        "the error should name the annotation and the bad VG: {log}"
    );
    assert!(
        Api::<LvmNode>::all(b.cp.client())
            .get_opt("broken")
            .await
            .unwrap()
            .is_none(),
        "a refused override must not be reported"
    );

    // The metric names manifests/monitoring uses are served.
    let text = wait::until(
        "the agent's /metrics to show a written report",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let t = http_get(port, "/metrics").await;
            t.contains("lvmpin_agent_report_timestamp_seconds ")
                .then_some(t)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // Families without samples are not encoded; the plain metrics always are.
    for name in [
        "lvmpin_agent_provision_duration_seconds",
        "lvmpin_agent_orphan_volumes",
        "lvmpin_agent_report_timestamp_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "/metrics lacks {name}:\n{text}"
        );
    }
    // Every served series is one the source parser of the monitoring checks
    // finds, so that parser's names (suffixes included) are the real ones.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let exported = monitoring::all_exported(&repo).unwrap_or_else(|e| panic!("{e}"));
    let served: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("lvmpin_"))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    assert!(served.len() > 3, "{text}");
    for name in served {
        assert!(
            exported.contains(name),
            "{name} is served but the monitoring checks do not know it"
        );
    }
}
