//! `helm install` and `helm upgrade` of charts/lvmpin on upstream
//! kube-apiserver (kube-local, no kubelet: the objects are created and
//! validated, no pod runs), and `kubectl get lvmnodes` printing the
//! columns of the installed CRD.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use lvmpin_api::{LvmNode, LvmNodeSpec, LvmNodeStatus, LvmNodeSummary, VolumeGroupStatus};
use lvmpin_e2e::helm;
use lvmpin_sim::testbed::kube_local::{self, KubeLocal};
use lvmpin_sim::wait;

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap_or_else(|e| panic!("kubectl: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubectl {args:?}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_and_upgrades_on_kube_apiserver() {
    let Some(h) = helm::helm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let kl = KubeLocal::start(
        dir.path(),
        &kube_local::scheduler_config("no-extender"),
        None,
        Duration::from_secs(180),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = kl.ready.kubeconfig.clone();
    let kc = kubeconfig.display().to_string();
    let chart = helm::chart_dir().display().to_string();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // The namespace first, as docs/install.md says.
    kubectl(
        &kubeconfig,
        &[
            "apply",
            "-f",
            &repo
                .join("manifests/base/namespace.yaml")
                .display()
                .to_string(),
        ],
    );
    let helm_ok = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--kubeconfig", &kc, "--namespace", "lvmpin-system"]);
        helm::run(&h, &all).unwrap_or_else(|e| panic!("{e}"))
    };
    let out = helm_ok(&[
        "install",
        "lvmpin",
        &chart,
        "--set",
        "scheduler.managedResource=true,scheduler.configMap=true",
    ]);
    assert!(
        out.contains("STATUS: deployed") && out.contains("KubeSchedulerConfiguration"),
        "{out}"
    );
    // The Deployment extender becomes a DaemonSet; the agent gets the
    // per-node VG annotation.
    let out = helm_ok(&[
        "upgrade",
        "lvmpin",
        &chart,
        "--set",
        "extender.workload=DaemonSet,agent.volumeGroupsAnnotation=lvmpin.io/volume-groups",
    ]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    let objects = kubectl(
        &kubeconfig,
        &[
            "-n",
            "lvmpin-system",
            "get",
            "daemonsets,deployments,services",
            "-o",
            "name",
        ],
    );
    assert!(
        objects.contains("daemonset.apps/lvmpin-scheduler-extender")
            && !objects.contains("deployment.apps/lvmpin-scheduler-extender")
            && !objects.contains("service/lvmpin-scheduler-extender"),
        "{objects}"
    );

    // kubectl get lvmnodes prints the summary of a report.
    let api: Api<LvmNode> = Api::all(kl.client());
    wait::until(
        "the LvmNode CRD to serve",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { api.list(&Default::default()).await.ok() },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let node = LvmNode::new(
        "node-a",
        LvmNodeSpec {
            node_name: "node-a".into(),
        },
    );
    api.create(&PostParams::default(), &node).await.unwrap();
    let vgs = vec![VolumeGroupStatus {
        name: "lvmpin".into(),
        size_bytes: 10 << 30,
        free_bytes: 4 << 30,
        volumes: vec!["pvc-1".into(), "pvc-2".into()],
        healthy: true,
        ..Default::default()
    }];
    let status = LvmNodeStatus {
        summary: Some(LvmNodeSummary::of(&vgs)),
        volume_groups: vgs,
        ..Default::default()
    };
    api.patch_status(
        "node-a",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await
    .unwrap();
    let table = kubectl(&kubeconfig, &["get", "lvmnodes"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "VGS", "SIZE", "FREE", "VOLUMES", "HEALTHY", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        row[..6],
        ["node-a", "lvmpin", "10.0GiB", "4.0GiB", "2", "true"],
        "{table}"
    );

    let out = helm_ok(&["uninstall", "lvmpin"]);
    assert!(out.contains("uninstalled"), "{out}");
    kl.shutdown().await;
}
