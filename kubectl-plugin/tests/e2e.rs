//! The real `kubectl-lvmpin` binary against a testbed (the real extender and
//! agents on loop-backed VGs), on the simulator and on upstream Kubernetes
//! (`kube-local`; build it first with `bash hack/kube-local/build.sh`).
//! Runs as root: `cargo nextest run -p lvmpin-kubectl --test e2e`.
//! With `--no-capture` the tables the binary printed are shown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{ListParams, PostParams};
use lvmpin_api::LvmNode;
use lvmpin_sim::testbed::install::{ClusterAccess, service_account_kubeconfig};
use lvmpin_sim::testbed::{Backend, Testbed, TestbedOptions};
use lvmpin_sim::{wait, workload};
use serde_json::{Value, json};

const NS: &str = "default";
const SYSTEM_NS: &str = "lvmpin-system";

/// One run of the binary: exit success, stdout, stderr.
async fn run(kubeconfig: &Path, extender: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-lvmpin"));
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    cmd.env_remove("LVMPIN_EXTENDER_URL");
    if let Some(url) = extender {
        cmd.arg("--extender-url").arg(url);
    }
    let out = cmd.output().await.expect("run kubectl-lvmpin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn run_ok(kubeconfig: &Path, extender: Option<&str>, args: &[&str]) -> String {
    let (ok, out, err) = run(kubeconfig, extender, args).await;
    assert!(ok, "kubectl lvmpin {args:?} failed: {err}");
    out
}

async fn run_json(kubeconfig: &Path, extender: Option<&str>, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let out = run_ok(kubeconfig, extender, &a).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// The operator's kubeconfig (a token user) and one whose user may not read
/// the debug views (None on the simulator, which allows everyone).
async fn operator_kubeconfigs(tb: &Testbed) -> (PathBuf, Option<PathBuf>) {
    let dir = tb.dir.path();
    match tb.backend() {
        Backend::Sim => {
            // The simulator authenticates no one: any token is `sim-admin`.
            let path = dir.join("operator.kubeconfig");
            let kc = json!({
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "sim", "cluster": {"server": tb.control_plane.url()}}],
                "users": [{"name": "operator", "user": {"token": "operator-token"}}],
                "contexts": [{"name": "operator", "context": {"cluster": "sim", "user": "operator", "namespace": NS}}],
                "current-context": "operator",
            });
            std::fs::write(&path, kc.to_string()).expect("write kubeconfig");
            (path, None)
        }
        Backend::Kube => {
            let client = tb.client();
            let sas = Api::<ServiceAccount>::namespaced(client.clone(), SYSTEM_NS);
            for name in ["test-operator", "test-nobody"] {
                let sa = ServiceAccount {
                    metadata: ObjectMeta {
                        name: Some(name.into()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                sas.create(&PostParams::default(), &sa)
                    .await
                    .expect("create SA");
            }
            let binding = ClusterRoleBinding {
                metadata: ObjectMeta {
                    name: Some("test-operator-lvmpin-viewer".into()),
                    ..Default::default()
                },
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "ClusterRole".into(),
                    name: "lvmpin-viewer".into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: "test-operator".into(),
                    namespace: Some(SYSTEM_NS.into()),
                    ..Default::default()
                }]),
            };
            Api::<ClusterRoleBinding>::all(client.clone())
                .create(&PostParams::default(), &binding)
                .await
                .expect("bind lvmpin-viewer");
            let access = ClusterAccess::from_kubeconfig(&tb.kubeconfig).expect("cluster access");
            let op = service_account_kubeconfig(&client, &access, dir, "test-operator")
                .await
                .expect("operator kubeconfig");
            let nobody = service_account_kubeconfig(&client, &access, dir, "test-nobody")
                .await
                .expect("nobody kubeconfig");
            (op, Some(nobody))
        }
    }
}

/// The bearer token of a kubeconfig this test wrote (JSON).
fn token_of(kubeconfig: &Path) -> String {
    let text = std::fs::read_to_string(kubeconfig).expect("read kubeconfig");
    let v: Value = serde_json::from_str(&text).expect("kubeconfig JSON");
    v["users"][0]["user"]["token"]
        .as_str()
        .expect("a token user")
        .to_string()
}

/// A raw GET of the extender with an optional bearer token: status and body.
async fn get_status(url: &str, token: Option<&str>) -> (u16, String) {
    use http_body_util::BodyExt;
    let http: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let mut req = http::Request::get(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = http
        .request(req.body(Default::default()).unwrap())
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The extender's own filter answer for `pod` over `nodes`: the
/// unresolvable reasons per node.
async fn filter_reasons(tb: &Testbed, pod: &Pod, nodes: &[String]) -> BTreeMap<String, String> {
    use http_body_util::BodyExt;
    let http: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let body = json!({"Pod": pod, "NodeNames": nodes}).to_string();
    let req = http::Request::post(format!("{}/filter", tb.extender_url))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = http.request(req).await.expect("filter");
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v: Value = serde_json::from_slice(&bytes).expect("filter JSON");
    serde_json::from_value(v["FailedAndUnresolvableNodes"].clone()).expect("failed nodes map")
}

async fn scenario(backend: Backend) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the testbed makes loop devices and VGs: run as root"
    );
    let tb = Testbed::start(TestbedOptions {
        backend,
        nodes: 2,
        vg_bytes: 256 << 20,
        ..TestbedOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("testbed: {e}"));
    tb.wait_ready(Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tb.wait_extender_ready(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ext = tb.extender_url.as_str();
    let (kc, nobody) = operator_kubeconfigs(&tb).await;
    let client = tb.client();
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS);
    let pods = Api::<Pod>::namespaced(client.clone(), NS);

    // A pod that fits, bound with its volume.
    claims
        .create(
            &PostParams::default(),
            &workload::claim(NS, "fit", &tb.class, "64Mi"),
        )
        .await
        .expect("claim fit");
    pods.create(
        &PostParams::default(),
        &workload::pod(NS, "fit-0", &["fit".into()]),
    )
    .await
    .expect("pod fit-0");
    let placed = tb
        .wait_bound(NS, &["fit-0".to_string()], Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let fit_node = placed["fit-0"].clone();
    let fit = wait::until(
        "claim fit bound and its LV reported",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || {
            let claims = claims.clone();
            let client = client.clone();
            let node = fit_node.clone();
            async move {
                let c = claims.get("fit").await.ok()?;
                c.spec.as_ref()?.volume_name.as_ref()?;
                let lv = format!("pvc-{}", c.metadata.uid.as_deref()?);
                let report = Api::<LvmNode>::all(client).get(&node).await.ok()?;
                report
                    .status?
                    .volume_groups
                    .iter()
                    .any(|vg| vg.volumes.contains(&lv))
                    .then_some(c)
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{}", tb.with_logs(e)));

    // A pod whose claim is bigger than every VG.
    claims
        .create(
            &PostParams::default(),
            &workload::claim(NS, "big", &tb.class, "1Gi"),
        )
        .await
        .expect("claim big");
    pods.create(
        &PostParams::default(),
        &workload::pod(NS, "big-0", &["big".into()]),
    )
    .await
    .expect("pod big-0");

    // why: every node with the extender's own reason.
    let why = wait::until(
        "why big-0 to see the pod",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let (ok, out, _) = run(&kc, Some(ext), &["why", "big-0", "-n", NS, "-o", "json"]).await;
            let v: Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
            (v["outcome"] == "noNode").then_some(v)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{}", tb.with_logs(e)));
    let pod = pods.get("big-0").await.expect("get big-0");
    let want = filter_reasons(&tb, &pod, &tb.node_names).await;
    let got: BTreeMap<String, String> = why["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            assert_eq!(n["verdict"], "unresolvable", "{n}");
            (
                n["node"].as_str().unwrap().to_string(),
                n["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, want, "why's reasons are the extender filter's");
    assert_eq!(got.len(), tb.node_names.len());
    assert_eq!(why["claims"][0]["name"], "big");
    assert_eq!(why["claims"][0]["bytes"], 1u64 << 30);
    assert_eq!(why["claims"][0]["volumeGroup"], tb.vg.as_str());
    let why_table = run_ok(&kc, Some(ext), &["why", "big-0", "-n", NS]).await;
    for (node, reason) in &want {
        assert!(
            why_table
                .lines()
                .any(|l| l.starts_with(node.as_str()) && l.contains(reason.as_str())),
            "{node}: {reason} not in\n{why_table}"
        );
    }
    println!("$ kubectl lvmpin why big-0\n{why_table}");

    // nodes: size, free and volumes as the LvmNodes say, reserved from the extender.
    let reports = Api::<LvmNode>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list LvmNodes")
        .items;
    let rows = run_json(&kc, Some(ext), &["nodes"]).await;
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), reports.len());
    for r in &reports {
        let vg = &r.status.as_ref().expect("status").volume_groups[0];
        let row = rows
            .iter()
            .find(|x| x["node"] == r.spec.node_name.as_str())
            .unwrap_or_else(|| panic!("no row for {}", r.spec.node_name));
        assert_eq!(row["volumeGroup"], vg.name.as_str());
        assert_eq!(row["sizeBytes"], vg.size_bytes);
        assert_eq!(row["freeBytes"], vg.free_bytes);
        assert_eq!(row["volumes"], vg.volumes.len());
        assert!(row["reservedBytes"].is_u64(), "{row}");
        assert_eq!(row["stale"], false);
    }
    let nodes_table = run_ok(&kc, Some(ext), &["nodes"]).await;
    println!("$ kubectl lvmpin nodes\n{nodes_table}");

    // volumes: claim → PV → LV → node.
    let pv = fit
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap();
    let lv = format!("pvc-{}", fit.metadata.uid.as_deref().unwrap());
    let vols = run_json(&kc, None, &["volumes"]).await;
    let row = vols["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["claim"] == "fit")
        .unwrap_or_else(|| panic!("no row for claim fit: {vols}"))
        .clone();
    assert_eq!(row["namespace"], NS);
    assert_eq!(row["persistentVolume"], pv.as_str());
    assert_eq!(row["logicalVolume"], lv.as_str());
    assert_eq!(row["volumeGroup"], tb.vg.as_str());
    assert_eq!(row["node"], fit_node.as_str());
    assert_eq!(row["sizeBytes"], 64u64 << 20);
    assert_eq!(vols["orphans"], json!([]));
    let other = tb.node_names.iter().find(|n| **n != fit_node).unwrap();
    let elsewhere = run_json(&kc, None, &["volumes", "--node", other]).await;
    assert!(
        elsewhere["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["claim"] != "fit"),
        "{elsewhere}"
    );
    let volumes_table = run_ok(&kc, None, &["volumes"]).await;
    assert!(
        volumes_table
            .lines()
            .any(|l| l.contains("fit") && l.contains(&pv) && l.contains(&fit_node)),
        "{volumes_table}"
    );
    println!("$ kubectl lvmpin volumes\n{volumes_table}");

    // Hostile names stop before any request.
    let (ok, _, err) = run(&kc, Some(ext), &["why", "../../x", "-n", NS]).await;
    assert!(!ok && err.contains("pod name"), "{err}");

    // Unauthenticated and unauthorised calls.
    let url = format!("{ext}/debug/v1/nodes");
    let (code, body) = get_status(&url, None).await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("bearer token"), "{body}");
    let token = token_of(&kc);
    let (code, body) = get_status(&format!("{ext}/debug/v1/why/{NS}/Bad_Name"), Some(&token)).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("DNS-1123"), "{body}");
    if let Some(nobody) = nobody {
        let (code, body) = get_status(&url, Some("not-a-token")).await;
        assert_eq!(code, 401, "{body}");
        let (code, body) = get_status(&url, Some(&token_of(&nobody))).await;
        assert_eq!(code, 403, "{body}");
        assert!(body.contains("lvmpin-viewer"), "{body}");
        let (ok, _, err) = run(&nobody, Some(ext), &["nodes"]).await;
        assert!(!ok, "an unbound service account read the cluster");
        assert!(err.contains("forbidden"), "{err}");
    }
    tb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_on_the_simulator() {
    scenario(Backend::Sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_on_upstream_kubernetes() {
    scenario(Backend::Kube).await;
}
