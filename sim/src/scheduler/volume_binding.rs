//! kube-scheduler's VolumeBinding plugin for the dynamic-provisioning path
//! (pkg/scheduler/framework/plugins/volumebinding, binder.go, 1.37):
//! PreFilter sorts the pod's claims, Filter checks a node (`FindPodVolumes`,
//! with `checkVolumeProvisions` and `hasEnoughCapacity`), Reserve assumes
//! `selected-node` on claim copies read at cycle start, PreBind writes them and
//! `checkBindings` decides whether to wait, proceed or give up.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::{CSIDriver, CSIStorageCapacity, StorageClass};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use lvmpin_api::names::ANN_SELECTED_NODE;
use lvmpin_api::quantity::parse_quantity_bytes;

use super::nodes::{label_selector_matches, selector_matches};
use crate::pv_controller::plan::{ANN_BIND_COMPLETED, claim_class};

pub const REASON_NODE_CONFLICT: &str = "node(s) didn't match PersistentVolume's node affinity";
pub const REASON_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
pub const REASON_NOT_ENOUGH_SPACE: &str = "node(s) did not have enough free storage";

/// What `hasEnoughCapacity` reads from the informers: CSIDrivers and every
/// CSIStorageCapacity in the cluster.
#[derive(Debug, Clone, Default)]
pub struct CapacityView {
    pub drivers: Vec<Arc<CSIDriver>>,
    pub capacities: Vec<Arc<CSIStorageCapacity>>,
}

impl CapacityView {
    /// True when no check applies (no size requested, not a CSI driver, or one
    /// that has not opted in), else when some object of the class that the
    /// node can reach has room: `maximumVolumeSize` if set, else `capacity`.
    fn has_enough(&self, pvc: &PersistentVolumeClaim, sc: &StorageClass, node: &Node) -> bool {
        let Some(request) = pvc
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
        else {
            return true;
        };
        let opted_in = self
            .drivers
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(sc.provisioner.as_str()))
            .is_some_and(|d| d.spec.storage_capacity == Some(true));
        if !opted_in {
            return true;
        }
        let Some(size) = bytes(request) else {
            return false;
        };
        let class = sc.metadata.name.as_deref().unwrap_or("");
        self.capacities.iter().any(|c| {
            let limit = c.maximum_volume_size.as_ref().or(c.capacity.as_ref());
            c.storage_class_name == class
                && limit.and_then(bytes).is_some_and(|l| l >= size)
                && c.node_topology
                    .as_ref()
                    .is_some_and(|t| label_selector_matches(t, node))
        })
    }
}

fn bytes(q: &Quantity) -> Option<u64> {
    parse_quantity_bytes(&q.0).ok()
}

/// The pod's claims, sorted as PreFilter does.
#[derive(Debug, Clone, Default)]
pub struct PodVolumes {
    /// Claims with `spec.volumeName`, and their PVs.
    pub bound: Vec<(PersistentVolumeClaim, PersistentVolume)>,
    /// WaitForFirstConsumer claims to provision, as read at the start of the cycle.
    pub to_provision: Vec<(PersistentVolumeClaim, StorageClass)>,
}

/// Names of the claims a pod mounts.
pub fn claim_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| {
            v.persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.clone())
        })
        .collect()
}

fn selected_node(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.metadata
        .annotations
        .as_ref()?
        .get(ANN_SELECTED_NODE)
        .map(String::as_str)
}

/// PreFilter: an error is the reason the pod is unschedulable now.
pub fn collect<C, V, S>(pod: &Pod, claim: C, volume: V, class: S) -> Result<PodVolumes, String>
where
    C: Fn(&str) -> Option<PersistentVolumeClaim>,
    V: Fn(&str) -> Option<PersistentVolume>,
    S: Fn(&str) -> Option<StorageClass>,
{
    let mut out = PodVolumes::default();
    let mut immediate_unbound = false;
    for name in claim_names(pod) {
        let pvc =
            claim(&name).ok_or_else(|| format!("persistentvolumeclaim \"{name}\" not found"))?;
        if pvc.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
        }
        let volume_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|v| !v.is_empty());
        if let Some(vn) = volume_name {
            let pv = volume(&vn).ok_or_else(|| {
                format!("persistentvolumeclaim \"{name}\" is bound to non-existent persistentvolume \"{vn}\"")
            })?;
            out.bound.push((pvc, pv));
            continue;
        }
        let class_name = claim_class(&pvc)
            .ok_or_else(|| format!("persistentvolumeclaim \"{name}\" has no storage class"))?
            .to_string();
        let sc = class(&class_name)
            .ok_or_else(|| format!("storageclass.storage.k8s.io \"{class_name}\" not found"))?;
        if sc.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer") {
            out.to_provision.push((pvc, sc));
        } else {
            immediate_unbound = true;
        }
    }
    if immediate_unbound {
        return Err("pod has unbound immediate PersistentVolumeClaims".into());
    }
    Ok(out)
}

fn topology_allows(sc: &StorageClass, node: &Node) -> bool {
    let Some(terms) = sc.allowed_topologies.as_ref().filter(|t| !t.is_empty()) else {
        return true;
    };
    let labels = node.metadata.labels.as_ref();
    terms.iter().any(|t| {
        t.match_label_expressions.iter().flatten().all(|e| {
            labels
                .and_then(|l| l.get(&e.key))
                .is_some_and(|v| e.values.contains(v))
        })
    })
}

impl PodVolumes {
    /// Filter: Ok when the pod's volumes allow this node.
    pub fn node_fits(&self, node: &Node, capacity: &CapacityView) -> Result<(), &'static str> {
        let name = node.metadata.name.as_deref().unwrap_or("");
        for (_, pv) in &self.bound {
            let affinity = pv
                .spec
                .as_ref()
                .and_then(|s| s.node_affinity.as_ref())
                .and_then(|a| a.required.as_ref());
            if let Some(sel) = affinity
                && !selector_matches(sel, node)
            {
                return Err(REASON_NODE_CONFLICT);
            }
        }
        // A claim already holding another node's name pins the pod there.
        if self
            .to_provision
            .iter()
            .any(|(pvc, _)| selected_node(pvc).is_some_and(|s| s != name))
        {
            return Err(REASON_BIND_CONFLICT);
        }
        for (pvc, sc) in &self.to_provision {
            if sc.provisioner.is_empty() || sc.provisioner == "kubernetes.io/no-provisioner" {
                return Err(REASON_BIND_CONFLICT);
            }
            if !topology_allows(sc, node) {
                return Err(REASON_BIND_CONFLICT);
            }
            if !capacity.has_enough(pvc, sc, node) {
                return Err(REASON_NOT_ENOUGH_SPACE);
            }
        }
        Ok(())
    }

    /// Reserve (AssumePodVolumes): copies carrying `selected-node`, keeping the
    /// resourceVersion read at the start of the cycle.
    pub fn assume(&self, node: &str) -> Vec<PersistentVolumeClaim> {
        self.to_provision
            .iter()
            .map(|(pvc, _)| {
                let mut c = pvc.clone();
                c.metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(ANN_SELECTED_NODE.to_string(), node.to_string());
                c
            })
            .collect()
    }
}

/// What `checkBindings` concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingCheck {
    Done,
    Waiting,
    /// PreBind fails; `reschedule` when the provisioner dropped or changed
    /// `selected-node`, the signal to pick another node.
    Failed {
        reason: String,
        reschedule: bool,
    },
}

fn rv_number(pvc: &PersistentVolumeClaim) -> Option<u64> {
    pvc.metadata.resource_version.as_deref()?.parse().ok()
}

/// `checkBindings` for the claims PreBind wrote (`written` = the objects the API
/// server returned), looked up in the watch caches.
pub fn check_bindings<C, V>(
    written: &[PersistentVolumeClaim],
    node: &Node,
    claim: C,
    volume: V,
) -> BindingCheck
where
    C: Fn(&str, &str) -> Option<PersistentVolumeClaim>,
    V: Fn(&str) -> Option<PersistentVolume>,
{
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    let mut waiting = false;
    for w in written {
        let ns = w.metadata.namespace.as_deref().unwrap_or("default");
        let name = w.metadata.name.as_deref().unwrap_or("");
        let Some(live) = claim(ns, name) else {
            return BindingCheck::Failed {
                reason: format!("failed to get PVC \"{ns}/{name}\" from the cache"),
                reschedule: false,
            };
        };
        // The cache may still hold the version from before our own write.
        if let (Some(cached), Some(ours)) = (rv_number(&live), rv_number(w))
            && cached < ours
        {
            waiting = true;
            continue;
        }
        match selected_node(&live) {
            None => {
                return BindingCheck::Failed {
                    reason: format!("selectedNode annotation reset for PVC \"{name}\""),
                    reschedule: true,
                };
            }
            Some(s) if s != node_name => {
                return BindingCheck::Failed {
                    reason: format!(
                        "provisioning failed for PVC \"{name}\": selected node {s:?} is not the scheduled node {node_name:?}"
                    ),
                    reschedule: true,
                };
            }
            Some(_) => {}
        }
        let volume_name = live
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .unwrap_or("");
        let completed = live
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ANN_BIND_COMPLETED));
        if volume_name.is_empty() || !completed {
            waiting = true;
            continue;
        }
        let Some(pv) = volume(volume_name) else {
            waiting = true;
            continue;
        };
        let affinity = pv
            .spec
            .as_ref()
            .and_then(|s| s.node_affinity.as_ref())
            .and_then(|a| a.required.as_ref());
        if let Some(sel) = affinity
            && !selector_matches(sel, node)
        {
            return BindingCheck::Failed {
                reason: format!(
                    "pv \"{volume_name}\" node affinity does not match node \"{node_name}\""
                ),
                reschedule: false,
            };
        }
    }
    if waiting {
        BindingCheck::Waiting
    } else {
        BindingCheck::Done
    }
}

#[cfg(test)]
mod tests;
