//! References between the objects of one install: namespaces, service
//! accounts, RBAC roles and subjects, selectors, classes, ports.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::kustomize::Located;
use super::load::Object;

type Labels = BTreeMap<String, String>;

/// Whether `selector` selects pods labelled `labels`.
pub fn selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expr = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    let empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|m| m.is_empty());
    !empty && by_label && by_expr
}

/// Checks the references inside one set of objects applied together.
pub fn check_references(objs: &[Located]) -> Vec<String> {
    let mut errs = Vec::new();
    let key = |o: &Object| {
        (
            o.kind().to_string(),
            o.namespace().unwrap_or("").to_string(),
            o.name().to_string(),
        )
    };
    let mut seen = BTreeSet::new();
    for l in objs {
        if l.object.name().is_empty() {
            errs.push(format!("{}: {} has no name", l.origin, l.object.kind()));
        }
        if !seen.insert(key(&l.object)) {
            errs.push(format!(
                "{}: {} {} is defined twice",
                l.origin,
                l.object.kind(),
                l.object.name()
            ));
        }
    }
    let exists = |kind: &str, ns: &str, name: &str| {
        seen.contains(&(kind.to_string(), ns.to_string(), name.to_string()))
    };
    let namespaces: BTreeSet<&str> = objs
        .iter()
        .filter(|l| matches!(l.object, Object::Namespace(_)))
        .map(|l| l.object.name())
        .collect();

    for l in objs {
        let o = &l.object;
        let at = &l.origin;
        let ns = o.namespace().unwrap_or("");
        match (o.is_namespaced(), o.namespace()) {
            (true, None) => errs.push(format!(
                "{at}: {} {} needs metadata.namespace",
                o.kind(),
                o.name()
            )),
            (true, Some(n)) if !namespaces.contains(n) => errs.push(format!(
                "{at}: namespace {n} of {} {} is not created by these manifests",
                o.kind(),
                o.name()
            )),
            (false, Some(n)) => errs.push(format!(
                "{at}: cluster-scoped {} {} has namespace {n}",
                o.kind(),
                o.name()
            )),
            _ => {}
        }

        if let Some(template) = o.pod_template() {
            let labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            let selector = match o {
                Object::DaemonSet(d) => d.spec.as_ref().map(|s| &s.selector),
                Object::Deployment(d) => d.spec.as_ref().map(|s| &s.selector),
                Object::StatefulSet(s) => s.spec.as_ref().map(|s| &s.selector),
                _ => None,
            };
            if !selector.is_some_and(|s| selector_matches(s, &labels)) {
                errs.push(format!(
                    "{at}: the selector of {} {} does not match its pod template labels",
                    o.kind(),
                    o.name()
                ));
            }
            // A StatefulSet's claim templates are volumes of its pods too.
            let claim_volumes: Vec<String> = match o {
                Object::StatefulSet(s) => s
                    .spec
                    .iter()
                    .flat_map(|s| s.volume_claim_templates.iter().flatten())
                    .filter_map(|t| t.metadata.name.clone())
                    .collect(),
                _ => Vec::new(),
            };
            if let Some(spec) = &template.spec {
                errs.extend(check_pod_spec(at, ns, spec, &claim_volumes, &exists));
            }
        }

        match o {
            Object::Pod(p) => {
                if let Some(spec) = &p.spec {
                    errs.extend(check_pod_spec(at, ns, spec, &[], &exists));
                }
            }
            Object::StatefulSet(s) => {
                let spec = s.spec.as_ref();
                if let Some(svc) = spec.and_then(|s| s.service_name.as_deref())
                    && !exists("Service", ns, svc)
                {
                    errs.push(format!("{at}: serviceName {svc} names no Service in {ns}"));
                }
                for t in spec
                    .and_then(|s| s.volume_claim_templates.as_ref())
                    .into_iter()
                    .flatten()
                {
                    if let Some(class) = t
                        .spec
                        .as_ref()
                        .and_then(|s| s.storage_class_name.as_deref())
                        && !exists("StorageClass", "", class)
                    {
                        errs.push(format!(
                            "{at}: volumeClaimTemplate uses unknown StorageClass {class}"
                        ));
                    }
                }
            }
            Object::PersistentVolumeClaim(c) => {
                if let Some(class) = c
                    .spec
                    .as_ref()
                    .and_then(|s| s.storage_class_name.as_deref())
                    && !exists("StorageClass", "", class)
                {
                    errs.push(format!("{at}: claim uses unknown StorageClass {class}"));
                }
            }
            Object::Service(s) => {
                let spec = s.spec.clone().unwrap_or_default();
                let selector = spec.selector.clone().unwrap_or_default();
                let backends: Vec<&Located> = objs
                    .iter()
                    .filter(|w| w.object.namespace() == Some(ns))
                    .filter(|w| {
                        w.object
                            .pod_template()
                            .and_then(|t| t.metadata.as_ref())
                            .and_then(|m| m.labels.as_ref())
                            .is_some_and(|l| {
                                !selector.is_empty()
                                    && selector.iter().all(|(k, v)| l.get(k) == Some(v))
                            })
                    })
                    .collect();
                if backends.is_empty() {
                    errs.push(format!(
                        "{at}: Service {} selects no workload's pods",
                        s.metadata.name.as_deref().unwrap_or("")
                    ));
                }
                for port in spec.ports.iter().flatten() {
                    if let Some(IntOrString::String(name)) = &port.target_port {
                        let served = backends.iter().any(|w| {
                            w.object
                                .pod_template()
                                .and_then(|t| t.spec.as_ref())
                                .is_some_and(|p| {
                                    p.containers.iter().any(|c| {
                                        c.ports
                                            .iter()
                                            .flatten()
                                            .any(|cp| cp.name.as_deref() == Some(name))
                                    })
                                })
                        });
                        if !served {
                            errs.push(format!(
                                "{at}: targetPort {name} is no named port of the selected pods"
                            ));
                        }
                    }
                }
            }
            Object::PodDisruptionBudget(p) => {
                let selector = p.spec.as_ref().and_then(|s| s.selector.clone());
                let matched = objs.iter().any(|w| {
                    w.object.namespace() == Some(ns)
                        && w.object
                            .pod_template()
                            .and_then(|t| t.metadata.as_ref())
                            .and_then(|m| m.labels.as_ref())
                            .zip(selector.as_ref())
                            .is_some_and(|(l, s)| selector_matches(s, l))
                });
                if !matched {
                    errs.push(format!(
                        "{at}: PodDisruptionBudget {} selects no workload's pods",
                        o.name()
                    ));
                }
            }
            Object::ClusterRoleBinding(b) => {
                if b.role_ref.kind != "ClusterRole" || !exists("ClusterRole", "", &b.role_ref.name)
                {
                    errs.push(format!(
                        "{at}: roleRef {} {} does not exist",
                        b.role_ref.kind, b.role_ref.name
                    ));
                }
                errs.extend(check_subjects(
                    at,
                    b.subjects.as_deref().unwrap_or(&[]),
                    &exists,
                ));
            }
            Object::RoleBinding(b) => {
                let ok = match b.role_ref.kind.as_str() {
                    "ClusterRole" => exists("ClusterRole", "", &b.role_ref.name),
                    "Role" => exists("Role", ns, &b.role_ref.name),
                    _ => false,
                };
                if !ok {
                    errs.push(format!(
                        "{at}: roleRef {} {} does not exist in {ns}",
                        b.role_ref.kind, b.role_ref.name
                    ));
                }
                errs.extend(check_subjects(
                    at,
                    b.subjects.as_deref().unwrap_or(&[]),
                    &exists,
                ));
            }
            Object::ValidatingAdmissionPolicyBinding(b) => {
                let policy = b
                    .spec
                    .as_ref()
                    .and_then(|s| s.policy_name.as_deref())
                    .unwrap_or("");
                if !exists("ValidatingAdmissionPolicy", "", policy) {
                    errs.push(format!(
                        "{at}: policyName {policy} names no ValidatingAdmissionPolicy"
                    ));
                }
            }
            _ => {}
        }
    }
    errs
}

fn check_subjects(
    at: &str,
    subjects: &[k8s_openapi::api::rbac::v1::Subject],
    exists: &dyn Fn(&str, &str, &str) -> bool,
) -> Vec<String> {
    let mut errs = Vec::new();
    if subjects.is_empty() {
        errs.push(format!("{at}: binding has no subjects"));
    }
    for s in subjects {
        if s.kind != "ServiceAccount" {
            errs.push(format!(
                "{at}: subject kind {} is not a ServiceAccount of lvmpin",
                s.kind
            ));
            continue;
        }
        let ns = s.namespace.as_deref().unwrap_or("");
        if !exists("ServiceAccount", ns, &s.name) {
            errs.push(format!(
                "{at}: subject ServiceAccount {ns}/{} does not exist",
                s.name
            ));
        }
    }
    errs
}

fn check_pod_spec(
    at: &str,
    ns: &str,
    spec: &PodSpec,
    claim_volumes: &[String],
    exists: &dyn Fn(&str, &str, &str) -> bool,
) -> Vec<String> {
    let mut errs = Vec::new();
    if let Some(sa) = spec.service_account_name.as_deref()
        && !exists("ServiceAccount", ns, sa)
    {
        errs.push(format!(
            "{at}: serviceAccountName {sa} names no ServiceAccount in {ns}"
        ));
    }
    let volumes: BTreeSet<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .chain(claim_volumes.iter().map(String::as_str))
        .collect();
    for v in spec.volumes.iter().flatten() {
        if let Some(claim) = &v.persistent_volume_claim
            && !exists("PersistentVolumeClaim", ns, &claim.claim_name)
        {
            errs.push(format!(
                "{at}: volume {} uses unknown claim {}",
                v.name, claim.claim_name
            ));
        }
    }
    for c in &spec.containers {
        let ports: BTreeSet<&str> = c
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.name.as_deref())
            .collect();
        let probes = [&c.liveness_probe, &c.readiness_probe, &c.startup_probe];
        for probe in probes.into_iter().flatten() {
            if let Some(IntOrString::String(p)) = probe.http_get.as_ref().map(|h| &h.port)
                && !ports.contains(p.as_str())
            {
                errs.push(format!(
                    "{at}: container {} probes unknown port {p}",
                    c.name
                ));
            }
        }
        for m in c.volume_mounts.iter().flatten() {
            if !volumes.contains(m.name.as_str()) {
                errs.push(format!(
                    "{at}: container {} mounts unknown volume {}",
                    c.name, m.name
                ));
            }
        }
        for d in c.volume_devices.iter().flatten() {
            if !volumes.contains(d.name.as_str()) {
                errs.push(format!(
                    "{at}: container {} uses unknown volume device {}",
                    c.name, d.name
                ));
            }
        }
    }
    errs
}
