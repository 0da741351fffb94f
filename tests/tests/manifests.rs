//! Checks of everything under `manifests/` (and `hack/kind-config.yaml`), the
//! way an operator's tooling would see it: every YAML document decodes into its
//! typed object, kustomizations are complete, references resolve, RBAC covers
//! exactly the API calls of each binary, the kube-scheduler configurations
//! decode strictly and reach routes the extender serves, and the CRD matches
//! the Rust types. Each check has a test below that feeds it a broken input.
#![forbid(unsafe_code)]

#[path = "manifests/components.rs"]
mod components;
#[path = "manifests/crossref.rs"]
mod crossref;
#[path = "manifests/docs_links.rs"]
mod docs_links;
#[path = "manifests/helm.rs"]
mod helm;
#[path = "manifests/images.rs"]
mod images;
#[path = "manifests/kind_config.rs"]
mod kind_config;
#[path = "manifests/kustomize.rs"]
mod kustomize;
#[path = "manifests/load.rs"]
mod load;
#[path = "manifests/monitoring.rs"]
mod monitoring;
#[path = "manifests/rbac.rs"]
mod rbac;
#[path = "manifests/scheduler_config.rs"]
mod scheduler_config;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use kustomize::{Located, Tree};
use load::{FileContent, Object};
use scheduler_config::Mode;

const CRD_FILE: &str = "base/crds.yaml";
const REGENERATE: &str = "cargo run -q -p lvmpin-api --bin lvmpin-crdgen > manifests/base/crds.yaml && cp manifests/base/crds.yaml charts/lvmpin/templates/crds.yaml";

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fail_on(errs: Vec<String>) {
    assert!(
        errs.is_empty(),
        "{} problem(s):\n  {}",
        errs.len(),
        errs.join("\n  ")
    );
}

/// The parsed manifests tree and the object sets applied together.
struct Manifests {
    tree: Tree,
    /// (name, objects): each top-level install kustomization plus every add-on
    /// kustomization (StorageClasses, examples) applied on top of it.
    installs: Vec<(String, Vec<Located>)>,
    /// Problems found while reading and resolving.
    problems: Vec<String>,
}

fn parse_tree(files: &BTreeMap<String, String>) -> (Tree, Vec<String>) {
    let mut tree = Tree::new();
    let mut problems = Vec::new();
    for (name, text) in files {
        match load::parse_file(name, text) {
            Ok(c) => {
                tree.insert(name.clone(), c);
            }
            Err(e) => problems.push(e),
        }
    }
    (tree, problems)
}

fn resolve_installs(tree: Tree, mut problems: Vec<String>) -> Manifests {
    let mut used = BTreeSet::new();
    let mut resolved = Vec::new();
    for top in kustomize::top_level(&tree) {
        match kustomize::resolve(&tree, &top, &mut used) {
            Ok(objs) => resolved.push((top, objs)),
            Err(e) => problems.extend(e),
        }
    }
    problems.extend(kustomize::unlisted_files(&tree, &used));
    let is_install = |objs: &[Located]| {
        objs.iter()
            .any(|l| matches!(l.object, Object::Namespace(_)) && l.object.name() == "lvmpin-system")
    };
    let addons: Vec<Located> = resolved
        .iter()
        .filter(|(_, o)| !is_install(o))
        .flat_map(|(_, o)| o.clone())
        .collect();
    let installs: Vec<(String, Vec<Located>)> = resolved
        .iter()
        .filter(|(_, o)| is_install(o))
        .map(|(name, o)| {
            let mut all = o.clone();
            all.extend(addons.iter().cloned());
            (format!("manifests/{name}"), all)
        })
        .collect();
    if installs.is_empty() {
        problems.push("no kustomization installs namespace lvmpin-system".into());
    }
    Manifests {
        tree,
        installs,
        problems,
    }
}

fn load_manifests() -> Manifests {
    let files = match load::read_tree(&repo_dir().join("manifests")) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    };
    let (tree, problems) = parse_tree(&files);
    resolve_installs(tree, problems)
}

fn for_each_install(m: &Manifests, check: impl Fn(&[Located]) -> Vec<String>) -> Vec<String> {
    m.installs
        .iter()
        .flat_map(|(name, objs)| {
            check(objs)
                .into_iter()
                .map(move |e| format!("[{name}] {e}"))
        })
        .collect()
}

fn scheduler_configs(tree: &Tree) -> Vec<(&str, &scheduler_config::KubeSchedulerConfiguration)> {
    tree.iter()
        .filter_map(|(f, c)| match c {
            FileContent::SchedulerConfig(s) => Some((f.as_str(), s.as_ref())),
            _ => None,
        })
        .collect()
}

fn check_scheduler_configs(m: &Manifests) -> Vec<String> {
    let served: Vec<_> = m
        .installs
        .iter()
        .flat_map(|(_, objs)| components::served_extenders(objs))
        .collect();
    let configs = scheduler_configs(&m.tree);
    let mut errs = Vec::new();
    let mut modes = BTreeSet::new();
    for (name, cfg) in &configs {
        let mode = if name.contains("advisory") {
            Mode::Advisory
        } else if name.contains("no-extender") {
            Mode::NoExtender
        } else if name.contains("decisive") {
            Mode::Decisive
        } else {
            errs.push(format!(
                "{name}: name it after its mode (decisive, advisory or no-extender)"
            ));
            continue;
        };
        modes.insert(format!("{mode:?}"));
        errs.extend(scheduler_config::check_scheduler_config(
            name, cfg, mode, &served,
        ));
    }
    if modes.len() != 3 {
        errs.push(format!(
            "expected decisive, advisory and no-extender examples, found {modes:?}"
        ));
    }
    errs
}

fn crd_drift(checked_in: &CustomResourceDefinition) -> Option<String> {
    let want = serde_json::to_value(lvmpin_api::LvmNode::crd()).ok()?;
    let have = serde_json::to_value(checked_in).ok()?;
    let at = load::first_difference(&want, &have, String::new())
        .or_else(|| load::first_difference(&have, &want, String::new()))?;
    Some(format!(
        "manifests/{CRD_FILE} differs from lvmpin_api::LvmNode::crd() at {at}; regenerate it: {REGENERATE}"
    ))
}

#[test]
fn every_manifest_parses_and_every_kustomization_is_complete() {
    let m = load_manifests();
    fail_on(m.problems);
}

#[test]
fn references_resolve_in_every_install() {
    let m = load_manifests();
    fail_on(for_each_install(&m, crossref::check_references));
}

#[test]
fn every_api_call_of_each_binary_is_allowed() {
    let m = load_manifests();
    fail_on(for_each_install(&m, |objs| {
        [&rbac::AGENT, &rbac::EXTENDER, &rbac::CONTROLLER]
            .into_iter()
            .flat_map(|c| rbac::missing_permissions(objs, c))
            .collect()
    }));
}

#[test]
fn no_rule_grants_more_than_the_calls_need() {
    let m = load_manifests();
    fail_on(for_each_install(&m, |objs| {
        [&rbac::AGENT, &rbac::EXTENDER, &rbac::CONTROLLER]
            .into_iter()
            .flat_map(|c| rbac::excess_permissions(objs, c))
            .collect()
    }));
}

#[test]
fn the_viewer_role_grants_exactly_what_kubectl_lvmpin_calls() {
    let m = load_manifests();
    fail_on(for_each_install(&m, |objs| {
        let rules = rbac::cluster_role_rules(objs, rbac::VIEWER_ROLE);
        if rules.is_empty() {
            return vec![format!("no ClusterRole {}", rbac::VIEWER_ROLE)];
        }
        let mut errs = rbac::missing_in(&rules, &rbac::PLUGIN);
        errs.extend(rbac::excess_in(rules, &rbac::PLUGIN));
        errs
    }));
}

#[test]
fn scheduler_configs_decode_strictly_and_reach_the_extender() {
    let m = load_manifests();
    fail_on(m.problems.clone());
    fail_on(check_scheduler_configs(&m));
}

#[test]
fn storage_classes_and_csi_driver_are_right() {
    let m = load_manifests();
    fail_on(for_each_install(&m, |objs| {
        let mut e = components::check_storage_classes(objs);
        e.extend(components::check_csi_driver(objs));
        e
    }));
}

#[test]
fn workloads_have_their_host_access_flags_and_privileges() {
    let m = load_manifests();
    fail_on(for_each_install(&m, |objs| {
        let mut e = components::check_agent(objs);
        e.extend(components::check_flags(objs));
        e.extend(components::check_privileges(objs));
        e
    }));
}

/// The flag tables the manifests are checked against, compared with the clap
/// definitions in the binaries' source, and with docs/configuration.md.
fn flag_table_drift(crate_dir: &str, flags: &[&str], env: &[&str]) -> Vec<String> {
    let declared: Vec<(String, Option<String>)> =
        components::rust_sources(&repo_dir().join(crate_dir).join("src"))
            .iter()
            .flat_map(|(_, text)| components::clap_flags_in_source(text))
            .collect();
    let mut errs = Vec::new();
    if declared.is_empty() {
        errs.push(format!(
            "found no #[arg(long ...)] in {crate_dir}/src: teach components::clap_flags_in_source the new layout"
        ));
    }
    let doc = std::fs::read_to_string(repo_dir().join("docs/configuration.md")).unwrap_or_default();
    for (flag, var) in &declared {
        if !flags.contains(&flag.as_str()) {
            errs.push(format!("{crate_dir} declares {flag}; add it to the flag table in tests/tests/manifests/components.rs"));
        }
        if let Some(v) = var
            && !env.contains(&v.as_str())
        {
            errs.push(format!("{crate_dir} reads env {v}; add it to the env table in tests/tests/manifests/components.rs"));
        }
        if !doc.contains(&format!("`{flag}`")) {
            errs.push(format!(
                "docs/configuration.md does not document {flag} of {crate_dir}"
            ));
        }
    }
    for f in flags {
        if !declared.iter().any(|(d, _)| d == f) {
            errs.push(format!(
                "{crate_dir} no longer declares {f}; remove it from the flag table"
            ));
        }
    }
    errs
}

#[test]
fn flag_tables_match_the_binaries_and_the_docs() {
    let mut errs = flag_table_drift(
        "lvm-provisioner",
        components::AGENT_FLAGS,
        components::AGENT_ENV,
    );
    errs.extend(flag_table_drift(
        "scheduler-extender",
        components::EXTENDER_FLAGS,
        components::EXTENDER_ENV,
    ));
    errs.extend(flag_table_drift(
        "cluster-controller",
        components::CONTROLLER_FLAGS,
        components::CONTROLLER_ENV,
    ));
    fail_on(errs);
}

#[test]
fn docs_point_at_files_and_sections_that_exist() {
    let repo = repo_dir();
    let mut errs = Vec::new();
    let entries = std::fs::read_dir(repo.join("docs")).unwrap_or_else(|e| panic!("docs/: {e}"));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "md") {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            errs.extend(docs_links::check_doc(&repo, &name, &text));
        }
    }
    fail_on(errs);
}

#[test]
fn checked_in_crd_matches_the_rust_types() {
    let m = load_manifests();
    let Some(FileContent::Objects(objs)) = m.tree.get(CRD_FILE) else {
        panic!("manifests/{CRD_FILE} is missing; generate it: {REGENERATE}");
    };
    let crds: Vec<_> = objs
        .iter()
        .filter_map(|o| match o {
            Object::Crd(c) => Some(c),
            _ => None,
        })
        .collect();
    let [crd] = crds.as_slice() else {
        panic!(
            "manifests/{CRD_FILE} should hold exactly the LvmNode CRD; regenerate it: {REGENERATE}"
        );
    };
    if let Some(e) = crd_drift(crd) {
        panic!("{e}");
    }
}

#[test]
fn kind_config_gives_kube_scheduler_our_configuration() {
    let m = load_manifests();
    let files: BTreeSet<String> = scheduler_configs(&m.tree)
        .into_iter()
        .map(|(f, _)| f.to_string())
        .collect();
    let text = std::fs::read_to_string(repo_dir().join("hack/kind-config.yaml"))
        .unwrap_or_else(|e| panic!("hack/kind-config.yaml: {e}"));
    fail_on(kind_config::check_kind_config(&text, &files));
}

/// Each check above, fed a broken input, must complain.
#[path = "manifests/broken.rs"]
mod broken;

/// The objects of `kubectl apply -k manifests/<dir>` as raw documents.
fn kustomize_documents(dir: &str) -> Vec<serde_json::Value> {
    let files = load::read_tree(&repo_dir().join("manifests")).unwrap_or_else(|e| panic!("{e}"));
    let (tree, problems) = parse_tree(&files);
    fail_on(problems);
    let objs = kustomize::resolve(&tree, dir, &mut BTreeSet::new())
        .unwrap_or_else(|e| panic!("manifests/{dir}: {e:?}"));
    helm::raw_documents(&files, &objs).unwrap_or_else(|e| panic!("{e}"))
}

fn helm_render(helm_bin: &Path, sets: &[&str]) -> Vec<serde_json::Value> {
    let text = helm::template(helm_bin, sets).unwrap_or_else(|e| panic!("{e}"));
    helm::documents(&text).unwrap_or_else(|e| panic!("helm template {sets:?}: {e}"))
}

#[test]
fn helm_lint_passes_with_defaults_and_every_option() {
    let Some(h) = helm::helm() else { return };
    let chart = helm::chart_dir();
    let chart = chart.to_string_lossy();
    for sets in [
        vec![],
        vec![
            "namespace.create=true,scheduler.configMap=true,scheduler.managedResource=true",
            "monitoring.podMonitor.enabled=true,monitoring.prometheusRule.enabled=true,monitoring.dashboard.enabled=true",
            "agent.volumeGroupsAnnotation=lvmpin.io/volume-groups,agent.spareBytes=1Gi,extender.spareBytes=1Gi",
        ],
        vec!["extender.workload=DaemonSet,extender.mode=advisory"],
        vec!["scheduler.setup=no-extender"],
    ] {
        let mut args = vec!["lint", "--strict", chart.as_ref()];
        for s in &sets {
            args.extend(["--set", s]);
        }
        let out = helm::run(&h, &args).unwrap_or_else(|e| panic!("{e}"));
        assert!(out.contains("0 chart(s) failed"), "{sets:?}: {out}");
    }
}

/// With its default values the chart renders what `kubectl apply -k
/// manifests/` applies, object by object and field by field, except the
/// Namespace: `helm install` keeps its release record in the namespace, so
/// it must exist before the chart is installed, and the chart renders it
/// only with namespace.create=true (then the sets are equal). Helm's
/// `app.kubernetes.io/managed-by` and `helm.sh/chart` labels are not added,
/// so nothing needs normalising.
#[test]
fn helm_default_render_is_the_kustomize_install() {
    let Some(h) = helm::helm() else { return };
    let kustomized = kustomize_documents("");
    let without_ns: Vec<_> = kustomized
        .iter()
        .filter(|d| d.get("kind").and_then(|k| k.as_str()) != Some("Namespace"))
        .cloned()
        .collect();
    assert_eq!(without_ns.len() + 1, kustomized.len());
    let cases: [(&[&str], &[serde_json::Value], &str); 3] = [
        (&[], &without_ns, "manifests/ without the Namespace"),
        (&["namespace.create=true"], &kustomized, "manifests/"),
        (
            &["namespace.create=true", "extender.workload=DaemonSet"],
            &kustomize_documents("control-plane"),
            "manifests/control-plane",
        ),
    ];
    for (sets, want, what) in cases {
        let got = helm_render(&h, sets);
        fail_on(helm::compare(
            (what, want),
            (&format!("helm {sets:?}"), &got),
        ));
    }
}

/// Renders of other values pass the checks `manifests/` passes, and each value
/// lands where it should.
#[test]
fn helm_values_reach_the_objects_and_pass_the_install_checks() {
    use serde_json::json;
    let Some(h) = helm::helm() else { return };
    let container = |docs: &[serde_json::Value], kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .map(|d| d["spec"]["template"]["spec"]["containers"][0].clone())
            .unwrap_or(serde_json::Value::Null)
    };
    let env = |c: &serde_json::Value, name: &str| {
        c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
            .unwrap_or(serde_json::Value::Null)
    };
    let has_arg = |c: &serde_json::Value, a: &str| {
        c["args"].as_array().is_some_and(|v| v.contains(&json!(a)))
    };
    type Check = Box<dyn Fn(&[serde_json::Value]) -> Result<(), String>>;
    // (values, whether the extender is installed, what the render must show)
    let cases: Vec<(&[&str], bool, Check)> = vec![
        (
            &[
                "image.tag=v9.9.9",
                "agent.image.repository=registry.example.com/lvmpin-agent",
                "controller.image.tag=v1.2.3",
            ],
            true,
            Box::new(move |d| {
                let images = (
                    container(d, "DaemonSet", "lvmpin-agent")["image"].clone(),
                    container(d, "Deployment", "lvmpin-controller")["image"].clone(),
                    container(d, "Deployment", "lvmpin-scheduler-extender")["image"].clone(),
                );
                let want = (
                    json!("registry.example.com/lvmpin-agent:v9.9.9"),
                    json!("ghcr.io/lvmpin/lvmpin-controller:v1.2.3"),
                    json!("ghcr.io/lvmpin/lvmpin-scheduler-extender:v9.9.9"),
                );
                (images == want).then_some(()).ok_or(format!("{images:?}"))
            }),
        ),
        (
            &[
                "agent.volumeGroups={fast,slow}",
                "agent.volumeGroupsAnnotation=lvmpin.io/volume-groups",
                "agent.spareBytes=1Gi",
                "agent.kubeletDir=/var/lib/k0s/kubelet",
            ],
            true,
            Box::new(move |d| {
                let c = container(d, "DaemonSet", "lvmpin-agent");
                let ok = env(&c, "LVMPIN_VOLUME_GROUPS") == json!("fast,slow")
                    && has_arg(&c, "--volume-groups-annotation=lvmpin.io/volume-groups")
                    && has_arg(&c, "--spare-bytes=1Gi")
                    && has_arg(&c, "--kubelet-dir=/var/lib/k0s/kubelet");
                ok.then_some(()).ok_or(format!("{c}"))
            }),
        ),
        (
            &[
                "extender.mode=advisory",
                "extender.strategy=binpack",
                "extender.priorityClassName=high",
                "agent.priorityClassName=",
                "agent.tolerations=null",
                "controller.resources.limits.memory=1Gi",
            ],
            true,
            Box::new(move |d| {
                let e = container(d, "Deployment", "lvmpin-scheduler-extender");
                let pod = |kind: &str, name: &str| {
                    d.iter()
                        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
                        .map(|o| o["spec"]["template"]["spec"].clone())
                        .unwrap_or_default()
                };
                let agent = pod("DaemonSet", "lvmpin-agent");
                let ok = has_arg(&e, "--mode=advisory")
                    && has_arg(&e, "--strategy=binpack")
                    && pod("Deployment", "lvmpin-scheduler-extender")["priorityClassName"]
                        == "high"
                    && agent.get("priorityClassName").is_none()
                    && agent.get("tolerations").is_none()
                    && container(d, "Deployment", "lvmpin-controller")["resources"]["limits"]["memory"]
                        == "1Gi";
                ok.then_some(()).ok_or(format!("{e} {agent}"))
            }),
        ),
        (
            &["scheduler.setup=no-extender"],
            false,
            Box::new(|d| {
                let extender: Vec<_> = d
                    .iter()
                    .map(helm::key)
                    .filter(|k| k.contains("lvmpin-scheduler-extender"))
                    .collect();
                extender
                    .is_empty()
                    .then_some(())
                    .ok_or(format!("{extender:?}"))
            }),
        ),
        (
            &[
                "extender.workload=DaemonSet",
                "scheduler.managedResource=true",
                "monitoring.podMonitor.enabled=true",
                "monitoring.prometheusRule.enabled=true",
                "monitoring.dashboard.enabled=true",
                "commonLabels.team=storage",
            ],
            true,
            Box::new(|d| {
                let kinds: BTreeSet<&str> = d.iter().filter_map(|o| o["kind"].as_str()).collect();
                let unlabelled: Vec<_> = d
                    .iter()
                    .filter(|o| {
                        o["metadata"]["labels"]["team"] != "storage"
                            && o["kind"] != "CustomResourceDefinition"
                    })
                    .map(helm::key)
                    .collect();
                let ok = [
                    "MutatingAdmissionPolicy",
                    "PodMonitor",
                    "PrometheusRule",
                    "ConfigMap",
                ]
                .iter()
                .all(|k| kinds.contains(k))
                    && unlabelled.is_empty();
                ok.then_some(())
                    .ok_or(format!("{kinds:?}, unlabelled {unlabelled:?}"))
            }),
        ),
    ];
    let mut errs = Vec::new();
    for (sets, with_extender, check) in cases {
        // The Namespace too, so that the references to it resolve.
        let mut all = sets.to_vec();
        all.push("namespace.create=true");
        let docs = helm_render(&h, &all);
        if let Err(e) = check(&docs) {
            errs.push(format!("{sets:?}: {e}"));
        }
        let objs = match helm::located(&docs) {
            Ok(o) => o,
            Err(e) => {
                errs.extend(e);
                continue;
            }
        };
        let mut found = crossref::check_references(&objs);
        let components: Vec<&rbac::Component> = if with_extender {
            vec![&rbac::AGENT, &rbac::EXTENDER, &rbac::CONTROLLER]
        } else {
            vec![&rbac::AGENT, &rbac::CONTROLLER]
        };
        for c in components {
            found.extend(rbac::missing_permissions(&objs, c));
            found.extend(rbac::excess_permissions(&objs, c));
        }
        found.extend(components::check_agent(&objs));
        found.extend(components::check_flags(&objs));
        found.extend(components::check_privileges(&objs));
        found.extend(components::check_csi_driver(&objs));
        errs.extend(found.into_iter().map(|e| format!("helm {sets:?}: {e}")));
    }
    fail_on(errs);
}

#[test]
fn helm_refuses_bad_values_with_a_clear_error() {
    let Some(h) = helm::helm() else { return };
    // (values, part of the error)
    let cases: [(&[&str], &str); 6] = [
        (&["extender.mode=bogus"], "extender/mode"),
        (&["extender.workload=StatefulSet"], "extender/workload"),
        (&["scheduler.setup=maybe"], "scheduler/setup"),
        (&["agent.volumeGroups=null"], "agent.volumeGroups"),
        (&["agent.volumeGroups={-rf}"], "agent/volumeGroups"),
        (
            &["scheduler.managedResource=true", "extender.mode=advisory"],
            "needs extender.mode=decisive",
        ),
    ];
    for (sets, want) in cases {
        match helm::template(&h, sets) {
            Ok(_) => panic!("helm template {sets:?} succeeded"),
            Err(e) => assert!(e.contains(want), "{sets:?}: {e}"),
        }
    }
}

/// The KubeSchedulerConfiguration the chart prints (NOTES) and keeps with
/// scheduler.configMap decodes strictly and reaches the rendered extender.
#[test]
fn helm_scheduler_configuration_matches_the_set_up() {
    let Some(h) = helm::helm() else { return };
    let cases: [(&[&str], Mode); 4] = [
        (&["extender.workload=DaemonSet"], Mode::Decisive),
        (
            &["extender.workload=DaemonSet", "extender.mode=advisory"],
            Mode::Advisory,
        ),
        (&["extender.clusterIP=10.96.0.50"], Mode::Decisive),
        (&["scheduler.setup=no-extender"], Mode::NoExtender),
    ];
    let mut errs = Vec::new();
    for (sets, mode) in cases {
        let mut all = sets.to_vec();
        all.push("scheduler.configMap=true");
        let docs = helm_render(&h, &all);
        let Some(text) = docs
            .iter()
            .find(|d| d["metadata"]["name"] == "lvmpin-scheduler-configuration")
            .and_then(|d| d["data"]["scheduler.yaml"].as_str())
        else {
            errs.push(format!(
                "{sets:?}: no ConfigMap lvmpin-scheduler-configuration"
            ));
            continue;
        };
        let name = format!("helm {sets:?}");
        match load::parse_file(&name, text) {
            Ok(FileContent::SchedulerConfig(cfg)) => {
                let objs = helm::located(&docs).unwrap_or_else(|e| panic!("{e:?}"));
                let mut served = components::served_extenders(&objs);
                // The Service forwards its ClusterIP's port 8080 to the pod's.
                if sets.contains(&"extender.clusterIP=10.96.0.50") {
                    served
                        .iter_mut()
                        .for_each(|s| s.listen = "10.96.0.50:8080".into());
                }
                errs.extend(scheduler_config::check_scheduler_config(
                    &name, &cfg, mode, &served,
                ));
            }
            Ok(_) => errs.push(format!("{name}: not a KubeSchedulerConfiguration")),
            Err(e) => errs.push(e),
        }
    }
    fail_on(errs);
}

/// The chart's monitoring objects are the plain files of manifests/monitoring/.
#[test]
fn helm_monitoring_objects_are_the_plain_files() {
    let Some(h) = helm::helm() else { return };
    let docs = helm_render(
        &h,
        &[
            "monitoring.podMonitor.enabled=true,monitoring.prometheusRule.enabled=true,monitoring.dashboard.enabled=true",
        ],
    );
    let plain = kustomize_documents("monitoring");
    let mut errs = Vec::new();
    for kind in ["PrometheusRule", "PodMonitor"] {
        let find = |d: &[serde_json::Value]| {
            d.iter()
                .find(|o| o["kind"] == kind)
                .map(|o| o["spec"].clone())
        };
        match (find(&plain), find(&docs)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => errs.push(format!(
                "{kind}: manifests/monitoring and the chart differ (copy the spec into charts/lvmpin/files/): {}",
                load::first_difference(&a.unwrap_or_default(), &b.unwrap_or_default(), String::new())
                    .unwrap_or_else(|| "one is missing".into())
            )),
        }
    }
    let file =
        std::fs::read_to_string(repo_dir().join("manifests/monitoring/grafana-dashboard.json"))
            .unwrap_or_else(|e| panic!("grafana-dashboard.json: {e}"));
    let rendered = docs
        .iter()
        .find(|o| o["metadata"]["name"] == "lvmpin-grafana-dashboard")
        .and_then(|o| o["data"]["lvmpin.json"].as_str())
        .unwrap_or("");
    let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t).ok();
    if parse(&file).is_none() || parse(&file) != parse(rendered) {
        errs.push("the chart's dashboard differs from manifests/monitoring/grafana-dashboard.json (copy it to charts/lvmpin/files/)".into());
    }
    fail_on(errs);
}

/// The chart keeps a copy of the CRD; it must be the generated one.
#[test]
fn helm_chart_crd_is_the_generated_one() {
    let ours =
        std::fs::read_to_string(repo_dir().join("manifests").join(CRD_FILE)).unwrap_or_default();
    let chart =
        std::fs::read_to_string(helm::chart_dir().join("templates/crds.yaml")).unwrap_or_default();
    assert!(
        !ours.is_empty() && ours == chart,
        "charts/lvmpin/templates/crds.yaml differs from manifests/{CRD_FILE}; regenerate both: {REGENERATE}"
    );
}

/// Every metric the alerts and the dashboard use is one the code registers.
#[test]
fn monitoring_uses_only_exported_metrics() {
    let exported = monitoring::all_exported(&repo_dir()).unwrap_or_else(|e| panic!("{e}"));
    let rule = kustomize_documents("monitoring")
        .into_iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("manifests/monitoring has a PrometheusRule");
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_dir().join("manifests/monitoring/grafana-dashboard.json"))
            .unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("manifests/monitoring/grafana-dashboard.json: {e}"));
    let mut exprs = monitoring::rule_exprs(&rule);
    let panels = monitoring::dashboard_exprs(&dash);
    assert!(
        exprs.len() >= 7 && panels.len() >= 5,
        "{exprs:?} {panels:?}"
    );
    exprs.extend(panels);
    fail_on(monitoring::unknown_metrics(&exprs, &exported));
}

/// `promtool check rules` on the PrometheusRule's groups. Skipped without
/// promtool unless LVMPIN_REQUIRE_PROMTOOL is set (.ci/run installs Debian's
/// prometheus package, which has it, and sets the variable).
#[test]
fn promtool_accepts_the_rules() {
    let promtool = std::env::var_os("LVMPIN_PROMTOOL").unwrap_or_else(|| "promtool".into());
    if Command::new(&promtool).arg("--version").output().is_err() {
        let msg = format!(
            "no {} on PATH (Debian package prometheus)",
            promtool.to_string_lossy()
        );
        if std::env::var_os("LVMPIN_REQUIRE_PROMTOOL").is_some() {
            panic!("LVMPIN_REQUIRE_PROMTOOL is set but there is {msg}");
        }
        eprintln!("SKIPPED: {msg}; LVMPIN_REQUIRE_PROMTOOL=1 makes this a failure");
        return;
    }
    let rule = kustomize_documents("monitoring")
        .into_iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("manifests/monitoring has a PrometheusRule");
    let dir = std::env::temp_dir().join(format!("lvmpin-promtool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("rules.yaml");
    let spec = serde_yaml::to_string(&rule["spec"]).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&file, spec).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("promtool: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("SUCCESS"), "{text}");
}

/// The agent image installs a package for every program the agent runs, and
/// nothing else; the other two images have no shell or package manager.
#[test]
fn images_hold_what_the_binaries_run() {
    let repo = repo_dir();
    let read =
        |p: &str| std::fs::read_to_string(repo.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let mut programs = BTreeSet::new();
    for f in [
        "lvm-provisioner/src/cli.rs",
        "lvm-provisioner/src/csi/mounter.rs",
    ] {
        programs.extend(images::programs_in_source(&read(f)));
    }
    assert!(
        programs.contains("lvm") && programs.contains("blkid"),
        "found only {programs:?}: teach images::programs_in_source the new layout"
    );
    let mut errs = Vec::new();
    let (_, installed, _) = images::final_stage(&read("images/agent.Dockerfile"));
    errs.extend(images::check_agent_image(&programs, &installed));
    for f in [
        "images/scheduler-extender.Dockerfile",
        "images/controller.Dockerfile",
    ] {
        let (from, packages, runs) = images::final_stage(&read(f));
        if !from.contains("distroless") || runs || !packages.is_empty() {
            errs.push(format!(
                "{f}: the final stage must be distroless with no RUN ({from})"
            ));
        }
    }
    for f in [
        "images/agent.Dockerfile",
        "images/scheduler-extender.Dockerfile",
        "images/controller.Dockerfile",
    ] {
        if !read(f).contains("CARGO_PROFILE_RELEASE_STRIP=symbols") {
            errs.push(format!(
                "{f}: build with CARGO_PROFILE_RELEASE_STRIP=symbols (stripped binary)"
            ));
        }
    }
    fail_on(errs);
}
