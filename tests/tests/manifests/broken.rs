//! Broken inputs for each manifest check: every check must be able to fail.

use super::*;

fn objects(yaml: &str) -> Vec<Located> {
    match load::parse_file("test.yaml", yaml) {
        Ok(FileContent::Objects(o)) => o
            .into_iter()
            .enumerate()
            .map(|(i, object)| Located {
                origin: format!("test.yaml#{i}"),
                object,
            })
            .collect(),
        other => panic!("not objects: {other:?}"),
    }
}

/// Every object of every install, for mutating into broken variants.
fn real_install() -> Vec<Located> {
    let objs: Vec<Located> = load_manifests()
        .installs
        .into_iter()
        .flat_map(|(_, o)| o)
        .collect();
    assert!(!objs.is_empty(), "no install found under manifests/");
    objs
}

fn assert_complains(errs: &[String], needle: &str) {
    assert!(
        errs.iter().any(|e| e.contains(needle)),
        "expected a complaint containing {needle:?}, got {errs:#?}"
    );
}

#[test]
fn unknown_kind_is_refused() {
    let err = load::parse_file(
        "x.yaml",
        "apiVersion: v1\nkind: Secretz\nmetadata: {name: a}\n",
    )
    .unwrap_err();
    assert!(err.contains("unknown kind"), "{err}");
}

#[test]
fn misspelled_field_is_refused() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: n}\nspec:\n  containers:\n  - name: c\n    image: i\n    volumeMounts:\n    - {name: v, mountPath: /x, mountPropogation: Bidirectional}\n";
    let err = load::parse_file("x.yaml", yaml).unwrap_err();
    assert!(err.contains("mountPropogation"), "{err}");
}

#[test]
fn kustomization_with_missing_or_unlisted_files_is_refused() {
    let mut files = BTreeMap::new();
    files.insert("kustomization.yaml".to_string(), "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [ns.yaml, gone.yaml]\n".to_string());
    files.insert(
        "ns.yaml".to_string(),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: lvmpin-system}\n".to_string(),
    );
    files.insert(
        "stray.yaml".to_string(),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n".to_string(),
    );
    let (tree, problems) = parse_tree(&files);
    let m = resolve_installs(tree, problems);
    assert_complains(&m.problems, "gone.yaml does not exist");
    assert_complains(&m.problems, "stray.yaml is listed in no kustomization.yaml");
    let mut files2 = files.clone();
    files2.insert("kustomization.yaml".into(), "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [ns.yaml]\npatchesStrategicMerge: [p.yaml]\n".into());
    let (_, problems) = parse_tree(&files2);
    assert_complains(&problems, "patchesStrategicMerge");
}

const BASE: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: lvmpin-system}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa, namespace: lvmpin-system}\n---\n";

#[test]
fn dangling_references_are_found() {
    let yaml = format!(
        "{BASE}apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d, namespace: lvmpin-system}}\nspec:\n  selector: {{matchLabels: {{app: d}}}}\n  template:\n    metadata: {{labels: {{app: d}}}}\n    spec:\n      serviceAccountName: missing\n      containers: [{{name: c, image: i, ports: [{{name: http, containerPort: 80}}]}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: lvmpin-system}}\nspec:\n  selector: {{app: other}}\n  ports: [{{port: 80, targetPort: http}}]\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: p, namespace: lvmpin-system}}\nspec:\n  minAvailable: 1\n  selector: {{matchLabels: {{app: other}}}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: b}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: nope}}\nsubjects: [{{kind: ServiceAccount, name: ghost, namespace: lvmpin-system}}]\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: x, namespace: elsewhere}}\n"
    );
    let errs = crossref::check_references(&objects(&yaml));
    assert_complains(&errs, "serviceAccountName missing");
    assert_complains(&errs, "Service s selects no workload");
    assert_complains(&errs, "PodDisruptionBudget p selects no workload");
    assert_complains(&errs, "roleRef ClusterRole nope does not exist");
    assert_complains(&errs, "ServiceAccount lvmpin-system/ghost does not exist");
    assert_complains(&errs, "namespace elsewhere");
}

#[test]
fn dangling_workload_internals_are_found() {
    let yaml = format!(
        "{BASE}apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: web, namespace: lvmpin-system}}\nspec:\n  serviceName: nowhere\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: other}}}}\n    spec:\n      containers:\n      - name: c\n        image: i\n        volumeMounts: [{{name: data, mountPath: /d}}, {{name: cache, mountPath: /c}}]\n        livenessProbe: {{httpGet: {{path: /, port: metrics}}}}\n  volumeClaimTemplates:\n  - metadata: {{name: data}}\n    spec: {{storageClassName: no-such-class, accessModes: [ReadWriteOnce]}}\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata: {{name: b}}\nspec: {{policyName: ghost, validationActions: [Deny]}}\n"
    );
    let errs = crossref::check_references(&objects(&yaml));
    assert_complains(&errs, "serviceName nowhere names no Service");
    assert_complains(&errs, "does not match its pod template labels");
    assert_complains(&errs, "unknown StorageClass no-such-class");
    assert_complains(&errs, "mounts unknown volume cache");
    assert_complains(&errs, "probes unknown port metrics");
    assert_complains(&errs, "policyName ghost");
    // The claim template's name is a volume of the pods: no complaint for it.
    assert!(
        !errs.iter().any(|e| e.contains("unknown volume data")),
        "{errs:#?}"
    );
}

#[test]
fn a_missing_rule_and_an_extra_rule_are_found() {
    let mut objs = real_install();
    for l in &mut objs {
        if let Object::ClusterRole(r) = &mut l.object
            && r.metadata.name.as_deref() == Some("lvmpin-scheduler-extender")
            && let Some(rules) = &mut r.rules
        {
            rules.retain(|rule| !rule.resources.iter().flatten().any(|x| x == "pods/binding"));
            rules.push(k8s_openapi::api::rbac::v1::PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["secrets".into()]),
                verbs: vec!["get".into()],
                ..Default::default()
            });
        }
    }
    assert_complains(
        &rbac::missing_permissions(&objs, &rbac::EXTENDER),
        "create pods/binding",
    );
    assert_complains(
        &rbac::excess_permissions(&objs, &rbac::EXTENDER),
        "grants get secrets",
    );
}

fn config(yaml: &str) -> Result<scheduler_config::KubeSchedulerConfiguration, String> {
    match load::parse_file("s.yaml", yaml)? {
        FileContent::SchedulerConfig(c) => Ok(*c),
        other => Err(format!("not a scheduler config: {other:?}")),
    }
}

const GOOD_CONFIG: &str = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nclientConnection: {kubeconfig: /etc/kubernetes/scheduler.conf}\npercentageOfNodesToScore: 100\nextenders:\n- {urlPrefix: 'http://127.0.0.1:8099', filterVerb: filter, bindVerb: bind, nodeCacheCapable: true, httpTimeout: 10s, ignorable: true}\n";

fn served() -> Vec<scheduler_config::ServedExtender> {
    vec![scheduler_config::ServedExtender {
        listen: "127.0.0.1:8099".into(),
        url_prefix: String::new(),
    }]
}

#[test]
fn scheduler_config_checks_bite() {
    let good = config(GOOD_CONFIG).unwrap();
    assert_eq!(
        scheduler_config::check_scheduler_config("s", &good, Mode::Decisive, &served()),
        Vec::<String>::new()
    );
    // Upstream spells it enableHTTPS; strict decoding refuses other casings.
    let e =
        config(&GOOD_CONFIG.replace("nodeCacheCapable", "enableHttps: false, nodeCacheCapable"))
            .unwrap_err();
    assert!(e.contains("enableHttps"), "{e}");
    let e = config(&GOOD_CONFIG.replace("percentageOfNodesToScore", "percentageOfNodeToScore"))
        .unwrap_err();
    assert!(e.contains("percentageOfNodeToScore"), "{e}");
    let check = |yaml: &str, mode| {
        scheduler_config::check_scheduler_config("s", &config(yaml).unwrap(), mode, &served())
    };
    assert_complains(
        &check(
            &GOOD_CONFIG.replace("filterVerb: filter", "filterVerb: filters"),
            Mode::Decisive,
        ),
        "POST /filters",
    );
    assert_complains(
        &check(&GOOD_CONFIG.replace(", bindVerb: bind", ""), Mode::Decisive),
        "needs bindVerb",
    );
    assert_complains(&check(GOOD_CONFIG, Mode::Advisory), "needs prioritizeVerb");
    assert_complains(
        &check(
            &GOOD_CONFIG.replace(
                "bindVerb: bind",
                "bindVerb: bind, prioritizeVerb: prioritize",
            ),
            Mode::Advisory,
        ),
        "weight must be at least 1",
    );
    assert_complains(
        &check(
            &GOOD_CONFIG.replace(
                "clientConnection: {kubeconfig: /etc/kubernetes/scheduler.conf}\n",
                "",
            ),
            Mode::Decisive,
        ),
        "clientConnection.kubeconfig",
    );
    assert_complains(
        &check(&GOOD_CONFIG.replace("8099", "8080"), Mode::Decisive),
        "points at no extender",
    );
    assert_complains(
        &check(&GOOD_CONFIG.replace("10s", "10 seconds"), Mode::Decisive),
        "httpTimeout",
    );
    assert_complains(
        &check(
            &GOOD_CONFIG.replace("ignorable: true", "ignorable: false"),
            Mode::Decisive,
        ),
        "ignorable must be true",
    );
    assert_complains(&check(GOOD_CONFIG, Mode::NoExtender), "no extenders");
}

#[test]
fn go_durations_parse() {
    assert_eq!(scheduler_config::parse_go_duration("1m30s"), Ok(90.0));
    assert_eq!(scheduler_config::parse_go_duration("500ms"), Ok(0.5));
    assert!(scheduler_config::parse_go_duration("10").is_err());
    assert!(scheduler_config::parse_go_duration("").is_err());
}

#[test]
fn wrong_storage_class_and_csi_driver_are_found() {
    let yaml = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: s}\nprovisioner: other.io\nparameters: {csi.storage.k8s.io/fstype: btrfs, lvmpin.io/vg: x}\nvolumeBindingMode: Immediate\n---\napiVersion: storage.k8s.io/v1\nkind: CSIDriver\nmetadata: {name: lvm.lvmpin.io}\nspec: {attachRequired: true, fsGroupPolicy: None, volumeLifecycleModes: [Persistent, Ephemeral]}\n";
    let objs = objects(yaml);
    let errs = components::check_storage_classes(&objs);
    for needle in [
        "provisioner must be",
        "WaitForFirstConsumer",
        "allowVolumeExpansion",
        "lvmpin.io/volume-group is required",
        "btrfs",
        "unknown StorageClass parameter lvmpin.io/vg",
    ] {
        assert_complains(&errs, needle);
    }
    let errs = components::check_csi_driver(&objs);
    for needle in [
        "attachRequired",
        "fsGroupPolicy",
        "volumeLifecycleModes",
        "storageCapacity must be true",
    ] {
        assert_complains(&errs, needle);
    }
}

#[test]
fn agent_without_host_access_and_bad_flags_are_found() {
    let mut objs = load_manifests()
        .installs
        .into_iter()
        .next()
        .map(|(_, o)| o)
        .unwrap_or_default();
    for l in &mut objs {
        if let Object::DaemonSet(d) = &mut l.object
            && let Some(spec) = d.spec.as_mut().and_then(|s| s.template.spec.as_mut())
            && let Some(c) = spec
                .containers
                .iter_mut()
                .find(|c| components::binary_of(c) == Some(components::Binary::Agent))
        {
            for m in c.volume_mounts.iter_mut().flatten() {
                m.mount_propagation = None;
            }
            c.volume_mounts
                .as_mut()
                .unwrap()
                .retain(|m| m.mount_path != "/run/lock/lvm");
            c.env.as_mut().unwrap().retain(|e| e.name != "NODE_NAME");
            c.args.as_mut().unwrap().push("--volume-groups=x".into());
        }
    }
    let errs = components::check_agent(&objs);
    assert_complains(&errs, "NODE_NAME must come from the downward API");
    assert_complains(&errs, "host path /run/lock/lvm");
    assert_complains(
        &errs,
        "/var/lib/kubelet/pods needs mountPropagation: Bidirectional",
    );
    assert_complains(
        &components::check_flags(&objs),
        "unknown flag --volume-groups",
    );
}

#[test]
fn privileged_extender_is_found() {
    let mut objs = real_install();
    for l in &mut objs {
        if let Object::Deployment(d) = &mut l.object
            && let Some(spec) = d.spec.as_mut().and_then(|s| s.template.spec.as_mut())
        {
            for c in &mut spec.containers {
                c.security_context.get_or_insert_default().privileged = Some(true);
            }
        }
        if let Object::DaemonSet(d) = &mut l.object
            && let Some(spec) = d.spec.as_mut().and_then(|s| s.template.spec.as_mut())
            && spec
                .containers
                .iter()
                .any(|c| components::binary_of(c) == Some(components::Binary::Extender))
        {
            spec.security_context = None;
            for c in &mut spec.containers {
                c.security_context = None;
            }
        }
    }
    let errs = components::check_privileges(&objs);
    assert_complains(
        &errs,
        "extender/deployment.yaml#0: container extender must be non-root",
    );
    assert_complains(
        &errs,
        "control-plane/daemonset.yaml#0: container extender must be non-root",
    );
}

#[test]
fn crd_drift_is_found() {
    let mut crd = lvmpin_api::LvmNode::crd();
    assert_eq!(crd_drift(&crd), None);
    crd.spec.versions[0].name = "v1beta1".into();
    let e = crd_drift(&crd).unwrap_or_default();
    assert!(e.contains("lvmpin-crdgen"), "{e}");
}

#[test]
fn kind_config_pointing_at_a_missing_file_is_found() {
    let files: BTreeSet<String> = ["scheduler/decisive.yaml".to_string()].into();
    let text = std::fs::read_to_string(repo_dir().join("hack/kind-config.yaml")).unwrap();
    assert_eq!(
        kind_config::check_kind_config(&text, &files),
        Vec::<String>::new()
    );
    let errs =
        kind_config::check_kind_config(&text.replace("decisive.yaml", "decisiv.yaml"), &files);
    assert_complains(&errs, "not a scheduler configuration");
    let errs = kind_config::check_kind_config(
        &text.replace(
            "- |\n    kind: ClusterConfiguration",
            "- |\n    apiVersion: kubeadm.k8s.io/v1beta3\n    kind: ClusterConfiguration",
        ),
        &files,
    );
    assert_complains(&errs, "must not set apiVersion");
}

#[test]
fn clap_flags_are_read_from_source() {
    let src = r#"
        #[derive(Parser)]
        struct Cli {
            /// Where to listen.
            #[arg(long, env = "LVMPIN_LISTEN", default_value = "0.0.0.0:8080")]
            listen: SocketAddr,
            #[arg(
                long = "volume-group",
                env = "LVMPIN_VOLUME_GROUPS",
                value_delimiter = ','
            )]
            pub volume_groups: Vec<String>,
            #[arg(long, value_enum, default_value = "text")]
            pub log_format: LogFormat,
            #[arg(short)]
            verbose: bool,
        }
    "#;
    assert_eq!(
        components::clap_flags_in_source(src),
        vec![
            ("--listen".to_string(), Some("LVMPIN_LISTEN".to_string())),
            (
                "--volume-group".to_string(),
                Some("LVMPIN_VOLUME_GROUPS".to_string())
            ),
            ("--log-format".to_string(), None),
        ]
    );
    let real = components::rust_sources(&repo_dir().join("lvm-provisioner/src"))
        .iter()
        .flat_map(|(_, t)| components::clap_flags_in_source(t))
        .count();
    assert!(
        real >= components::AGENT_FLAGS.len(),
        "found only {real} agent flags"
    );
    assert_complains(
        &flag_table_drift(
            "lvm-provisioner",
            &components::AGENT_FLAGS[1..],
            components::AGENT_ENV,
        ),
        "declares --node-name; add it",
    );
}

#[test]
fn dead_doc_links_are_found() {
    let doc = "See [x](install.md#no-such-part), [y](gone.md), `manifests/nothing.yaml` and [ok](install.md#uninstall).";
    let errs = docs_links::check_doc(&repo_dir(), "t.md", doc);
    assert_complains(&errs, "missing anchor install.md#no-such-part");
    assert_complains(&errs, "missing gone.md");
    assert_complains(&errs, "`manifests/nothing.yaml` does not exist");
    assert_eq!(errs.len(), 3, "{errs:#?}");
}
