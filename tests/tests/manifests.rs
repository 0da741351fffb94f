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
#[path = "manifests/kind_config.rs"]
mod kind_config;
#[path = "manifests/kustomize.rs"]
mod kustomize;
#[path = "manifests/load.rs"]
mod load;
#[path = "manifests/rbac.rs"]
mod rbac;
#[path = "manifests/scheduler_config.rs"]
mod scheduler_config;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use kustomize::{Located, Tree};
use load::{FileContent, Object};
use scheduler_config::Mode;

const CRD_FILE: &str = "base/crds.yaml";
const REGENERATE: &str =
    "cargo run -q -p lvmpin-api --bin lvmpin-crdgen > manifests/base/crds.yaml";

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
