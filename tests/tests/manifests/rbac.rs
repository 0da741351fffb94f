//! RBAC against the API calls each binary makes.
//!
//! The tables below list every call the agent and the extender make, read
//! from their code. **They must be updated together with the code**: a new
//! call without a rule fails `every_call_is_allowed`, and a rule without a
//! call fails `no_rule_grants_more_than_the_calls` (least privilege).

use k8s_openapi::api::rbac::v1::PolicyRule;

use super::kustomize::Located;
use super::load::Object;

/// One kind of request a component sends to the API server.
#[derive(Clone, Copy, Debug)]
pub struct ApiCall {
    pub verb: &'static str,
    /// "" for the core group.
    pub group: &'static str,
    /// Plural resource, with "/subresource" where there is one.
    pub resource: &'static str,
    /// Some(ns) when the call is confined to one namespace; None for
    /// cluster-scoped resources and list/watch across all namespaces.
    pub namespace: Option<&'static str>,
    /// Some(name) when the call always targets one object by name.
    pub name: Option<&'static str>,
}

const fn call(verb: &'static str, group: &'static str, resource: &'static str) -> ApiCall {
    ApiCall {
        verb,
        group,
        resource,
        namespace: None,
        name: None,
    }
}

/// A component: the service account it runs as and the calls it makes.
pub struct Component {
    pub name: &'static str,
    pub namespace: &'static str,
    pub service_account: &'static str,
    pub calls: &'static [ApiCall],
}

/// lvmpin-agent (lvm-provisioner/src).
pub const AGENT: Component = Component {
    name: "lvmpin-agent",
    namespace: "lvmpin-system",
    service_account: "lvmpin-agent",
    calls: &[
        // lvm_node_writer.rs: its own node's capacity report.
        call("get", "lvmpin.io", "lvmnodes"),
        call("create", "lvmpin.io", "lvmnodes"),
        call("patch", "lvmpin.io", "lvmnodes"),
        call("patch", "lvmpin.io", "lvmnodes/status"),
        // lvm_node_writer.rs: its Node, as the LvmNode's owner.
        call("get", "", "nodes"),
        // runtime.rs (controller, by label), pv_labels.rs (label patch),
        // provision.rs, startup.rs, reconcile_pv.rs.
        call("list", "", "persistentvolumes"),
        call("watch", "", "persistentvolumes"),
        call("get", "", "persistentvolumes"),
        call("create", "", "persistentvolumes"),
        call("patch", "", "persistentvolumes"),
        call("delete", "", "persistentvolumes"),
        // claim_watch.rs (metadata watch, get of this node's claims),
        // startup.rs (get), provision.rs (reschedule), resize.rs.
        call("get", "", "persistentvolumeclaims"),
        call("list", "", "persistentvolumeclaims"),
        call("watch", "", "persistentvolumeclaims"),
        call("patch", "", "persistentvolumeclaims"),
        call("patch", "", "persistentvolumeclaims/status"),
        // runtime.rs: StorageClass cache.
        call("list", "storage.k8s.io", "storageclasses"),
        call("watch", "storage.k8s.io", "storageclasses"),
        // events.rs: kube-runtime's Recorder (events.k8s.io/v1).
        call("create", "events.k8s.io", "events"),
        call("patch", "events.k8s.io", "events"),
        // snapshot_contents.rs: the API check (a list of one), this node's
        // contents by label, the annotation, finalizer and status patches.
        call("list", "snapshot.storage.k8s.io", "volumesnapshotcontents"),
        call("watch", "snapshot.storage.k8s.io", "volumesnapshotcontents"),
        call("patch", "snapshot.storage.k8s.io", "volumesnapshotcontents"),
        call(
            "patch",
            "snapshot.storage.k8s.io",
            "volumesnapshotcontents/status",
        ),
        // restore.rs: the snapshot a restore starts from, and its content.
        call("get", "snapshot.storage.k8s.io", "volumesnapshots"),
        call("get", "snapshot.storage.k8s.io", "volumesnapshotcontents"),
        // storage_capacity.rs: this node's CSIStorageCapacity objects.
        ApiCall {
            namespace: Some("lvmpin-system"),
            ..call("list", "storage.k8s.io", "csistoragecapacities")
        },
        ApiCall {
            namespace: Some("lvmpin-system"),
            ..call("create", "storage.k8s.io", "csistoragecapacities")
        },
        ApiCall {
            namespace: Some("lvmpin-system"),
            ..call("patch", "storage.k8s.io", "csistoragecapacities")
        },
        ApiCall {
            namespace: Some("lvmpin-system"),
            ..call("delete", "storage.k8s.io", "csistoragecapacities")
        },
    ],
};

/// lvmpin-scheduler-extender (scheduler-extender/src).
pub const EXTENDER: Component = Component {
    name: "lvmpin-scheduler-extender",
    namespace: "lvmpin-system",
    service_account: "lvmpin-scheduler-extender",
    calls: &[
        // watch.rs: one watcher per kind.
        call("list", "lvmpin.io", "lvmnodes"),
        call("watch", "lvmpin.io", "lvmnodes"),
        call("list", "", "persistentvolumeclaims"),
        call("watch", "", "persistentvolumeclaims"),
        call("list", "", "persistentvolumes"),
        call("watch", "", "persistentvolumes"),
        call("list", "storage.k8s.io", "storageclasses"),
        call("watch", "storage.k8s.io", "storageclasses"),
        call("list", "", "nodes"),
        call("watch", "", "nodes"),
        call("list", "", "pods"),
        call("watch", "", "pods"),
        call("list", "apps", "statefulsets"),
        call("watch", "apps", "statefulsets"),
        // snapshot_watch.rs: the API check (a list of one), then watches.
        call("list", "snapshot.storage.k8s.io", "volumesnapshots"),
        call("watch", "snapshot.storage.k8s.io", "volumesnapshots"),
        call("list", "snapshot.storage.k8s.io", "volumesnapshotcontents"),
        call("watch", "snapshot.storage.k8s.io", "volumesnapshotcontents"),
        // bind.rs: a pod not yet in the cache, selected-node, the binding.
        call("get", "", "pods"),
        call("patch", "", "persistentvolumeclaims"),
        call("create", "", "pods/binding"),
        // events.rs: zone-ratio Events through kube-runtime's Recorder.
        call("create", "events.k8s.io", "events"),
        call("patch", "events.k8s.io", "events"),
        // access.rs: who calls the debug endpoints, and may they.
        call("create", "authentication.k8s.io", "tokenreviews"),
        call("create", "authorization.k8s.io", "subjectaccessreviews"),
        // leader.rs, with --leader-elect --lease-namespace=lvmpin-system.
        ApiCall {
            namespace: Some("lvmpin-system"),
            ..call("create", "coordination.k8s.io", "leases")
        },
        ApiCall {
            namespace: Some("lvmpin-system"),
            name: Some("lvmpin-scheduler-extender"),
            ..call("get", "coordination.k8s.io", "leases")
        },
        ApiCall {
            namespace: Some("lvmpin-system"),
            name: Some("lvmpin-scheduler-extender"),
            ..call("update", "coordination.k8s.io", "leases")
        },
    ],
};

/// lvmpin-controller (cluster-controller/src).
pub const CONTROLLER: Component = Component {
    name: "lvmpin-controller",
    namespace: "lvmpin-system",
    service_account: "lvmpin-controller",
    calls: &[
        // runtime.rs: one watch cache per kind.
        call("list", "", "nodes"),
        call("watch", "", "nodes"),
        call("list", "lvmpin.io", "lvmnodes"),
        call("watch", "lvmpin.io", "lvmnodes"),
        call("list", "", "persistentvolumeclaims"),
        call("watch", "", "persistentvolumeclaims"),
        call("list", "", "persistentvolumes"),
        call("watch", "", "persistentvolumes"),
        call("list", "", "pods"),
        call("watch", "", "pods"),
        call("list", "storage.k8s.io", "storageclasses"),
        call("watch", "storage.k8s.io", "storageclasses"),
        // actions.rs: the live check that a Node is gone, and each action.
        call("get", "", "nodes"),
        call("patch", "", "persistentvolumeclaims"),
        call("delete", "", "persistentvolumeclaims"),
        call("delete", "", "pods"),
        call("get", "", "persistentvolumes"),
        call("patch", "", "persistentvolumes"),
        call("delete", "", "persistentvolumes"),
        // actions.rs: kube-runtime's Recorder (events.k8s.io/v1).
        call("create", "events.k8s.io", "events"),
        call("patch", "events.k8s.io", "events"),
    ],
};

/// The ClusterRole operators bind to run `kubectl lvmpin`.
pub const VIEWER_ROLE: &str = "lvmpin-viewer";

/// kubectl-lvmpin (kubectl-plugin/src/fetch.rs), as the user who runs it.
pub const PLUGIN: Component = Component {
    name: "kubectl-lvmpin",
    namespace: "",
    service_account: "",
    calls: &[
        // nodes and volumes.
        call("list", "lvmpin.io", "lvmnodes"),
        // The extender's access check of the debug endpoints (access.rs).
        call("get", "lvmpin.io", "lvmnodes"),
        // volumes.
        call("list", "", "persistentvolumeclaims"),
        call("list", "", "persistentvolumes"),
        call("list", "storage.k8s.io", "storageclasses"),
        // why.
        call("get", "", "pods"),
        call("list", "", "events"),
    ],
};

/// The rules of the ClusterRole `name`, as cluster-wide grants.
pub fn cluster_role_rules(objs: &[Located], name: &str) -> Vec<(Option<String>, PolicyRule)> {
    objs.iter()
        .filter_map(|l| match &l.object {
            Object::ClusterRole(r) if r.metadata.name.as_deref() == Some(name) => {
                Some(r.rules.clone().unwrap_or_default())
            }
            _ => None,
        })
        .flatten()
        .map(|r| (None, r))
        .collect()
}

/// Rules granted to a service account, with the namespace they are confined
/// to (None: cluster-wide).
pub fn granted_rules(objs: &[Located], ns: &str, sa: &str) -> Vec<(Option<String>, PolicyRule)> {
    let is_subject = |subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>| {
        subjects.iter().flatten().any(|s| {
            s.kind == "ServiceAccount" && s.name == sa && s.namespace.as_deref() == Some(ns)
        })
    };
    let role_rules = |kind: &str, role_ns: Option<&str>, name: &str| -> Vec<PolicyRule> {
        objs.iter()
            .find_map(|l| match &l.object {
                Object::ClusterRole(r)
                    if kind == "ClusterRole" && r.metadata.name.as_deref() == Some(name) =>
                {
                    Some(r.rules.clone().unwrap_or_default())
                }
                Object::Role(r)
                    if kind == "Role"
                        && r.metadata.name.as_deref() == Some(name)
                        && r.metadata.namespace.as_deref() == role_ns =>
                {
                    Some(r.rules.clone().unwrap_or_default())
                }
                _ => None,
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for l in objs {
        match &l.object {
            Object::ClusterRoleBinding(b) if is_subject(&b.subjects) => {
                out.extend(
                    role_rules(&b.role_ref.kind, None, &b.role_ref.name)
                        .into_iter()
                        .map(|r| (None, r)),
                );
            }
            Object::RoleBinding(b) if is_subject(&b.subjects) => {
                let bns = b.metadata.namespace.clone();
                out.extend(
                    role_rules(&b.role_ref.kind, bns.as_deref(), &b.role_ref.name)
                        .into_iter()
                        .map(|r| (bns.clone(), r)),
                );
            }
            _ => {}
        }
    }
    out
}

/// "pods/binding" for the core group, "coordination.k8s.io/leases" otherwise.
fn group_resource(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{group}/{resource}")
    }
}

fn contains(list: &Option<Vec<String>>, item: &str) -> bool {
    list.iter().flatten().any(|x| x == item || x == "*")
}

fn allows(scope: &Option<String>, rule: &PolicyRule, c: &ApiCall) -> bool {
    let scope_ok = match scope {
        None => true,
        Some(s) => c.namespace == Some(s.as_str()),
    };
    let names_ok = match &rule.resource_names {
        None => true,
        Some(n) if n.is_empty() => true,
        Some(n) => c.name.is_some_and(|name| n.iter().any(|x| x == name)),
    };
    scope_ok
        && names_ok
        && contains(&rule.api_groups, c.group)
        && contains(&rule.resources, c.resource)
        && rule.verbs.iter().any(|v| v == c.verb || v == "*")
}

/// Calls of `component` that its RBAC does not allow.
pub fn missing_permissions(objs: &[Located], component: &Component) -> Vec<String> {
    let rules = granted_rules(objs, component.namespace, component.service_account);
    missing_in(&rules, component)
}

/// Calls of `component` that `rules` do not allow.
pub fn missing_in(rules: &[(Option<String>, PolicyRule)], component: &Component) -> Vec<String> {
    component
        .calls
        .iter()
        .filter(|c| !rules.iter().any(|(scope, r)| allows(scope, r, c)))
        .map(|c| {
            format!(
                "{}: RBAC does not allow {} {} (namespace {:?}, name {:?})",
                component.name,
                c.verb,
                group_resource(c.group, c.resource),
                c.namespace,
                c.name
            )
        })
        .collect()
}

/// Grants of `component` that no call in its table needs, and wildcards.
pub fn excess_permissions(objs: &[Located], component: &Component) -> Vec<String> {
    excess_in(
        granted_rules(objs, component.namespace, component.service_account),
        component,
    )
}

/// Grants in `rules` that no call of `component` needs, and wildcards.
pub fn excess_in(rules: Vec<(Option<String>, PolicyRule)>, component: &Component) -> Vec<String> {
    let mut errs = Vec::new();
    for (scope, rule) in rules {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    if [group, resource, verb].iter().any(|x| x.contains('*')) {
                        errs.push(format!(
                            "{}: wildcard in rule {} {verb}",
                            component.name,
                            group_resource(group, resource)
                        ));
                        continue;
                    }
                    let used = component.calls.iter().any(|c| {
                        c.group == group
                            && c.resource == resource
                            && c.verb == verb
                            && scope.as_deref().is_none_or(|s| c.namespace == Some(s))
                    });
                    if !used {
                        errs.push(format!(
                            "{}: RBAC grants {verb} {} but the call table has no such call \
                             (remove the rule, or add the call the code makes)",
                            component.name,
                            group_resource(group, resource)
                        ));
                    }
                }
            }
        }
    }
    errs
}
