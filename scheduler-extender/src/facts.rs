//! The few facts placement needs, cut out of Kubernetes objects.
//!
//! The caches keep these instead of whole objects: 50,000 claims as full
//! `PersistentVolumeClaim`s would not fit the memory budget, and the pure core
//! should not depend on the shape of API objects.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use lvmpin_api::names::{
    ANN_BETA_STORAGE_CLASS, ANN_SELECTED_NODE, DRIVER_NAME, PARAM_THIN_POOL, PARAM_VOLUME_GROUP,
    ZONE_LABEL,
};
use lvmpin_api::thin::{PoolUsage, ThinLimits, limits_from_params};
use lvmpin_api::{LvmNode, claim_size_bytes, names::volume_name_for_claim};

use crate::zone_ratio::{RatioError, ZoneRatio};

/// Namespace and name of a claim. The index keeps each claim's key in
/// three tables (claims, the LV lookup, unsettled claims); shared strings
/// make those copies a pointer each (at 100,000 claims, owned copies were
/// about 17 MB).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClaimKey {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl ClaimKey {
    pub fn new(namespace: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ClaimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClaimFacts {
    pub key: ClaimKey,
    /// `pvc-<uid>`: the LV (and PV) name the agent will create. Shared
    /// with `volume_name` (which is the same for the agent's PVs) and the
    /// index's LV lookup: at 100,000 claims each copy was 7 MB.
    pub lv_name: Arc<str>,
    pub class: Option<String>,
    /// Bytes the claim needs, or why the agent will refuse it (its size, access
    /// modes or data source): such a claim is neither placed nor reserved.
    pub size: Result<u64, String>,
    /// `spec.volumeName`: set once the claim is bound.
    pub volume_name: Option<Arc<str>>,
    pub selected_node: Option<String>,
    /// What the claim restores or clones (see `sources.rs`).
    pub source: Option<lvmpin_api::ClaimSource>,
}

impl ClaimFacts {
    pub fn is_bound(&self) -> bool {
        self.volume_name.is_some()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClassFacts {
    pub name: String,
    /// The class's provisioner is ours.
    pub ours: bool,
    pub volume_group: Option<String>,
    pub thin_pool: Option<String>,
    /// The class's thin limits (None for a linear class), or why its thin
    /// parameters are bad (its claims are then refused, as by the agent).
    pub thin_limits: Result<Option<ThinLimits>, String>,
    /// The key the class's claims are reserved under: the VG, or for a thin
    /// class `<vg>/<pool>` (`thin::reservation_key`). None without a VG.
    pub reservation_key: Option<String>,
}

impl ClassFacts {
    pub fn new(
        name: String,
        ours: bool,
        volume_group: Option<String>,
        thin_pool: Option<String>,
        thin_limits: Result<Option<ThinLimits>, String>,
    ) -> Self {
        let reservation_key = volume_group.as_ref().map(|vg| match &thin_pool {
            Some(pool) => format!("{vg}/{pool}"),
            None => vg.clone(),
        });
        Self {
            name,
            ours,
            volume_group,
            thin_pool,
            thin_limits,
            reservation_key,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PvFacts {
    pub name: String,
    /// The node named by our topology key in the PV's node affinity.
    pub node: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct PodFacts {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// `spec.nodeName`: set once the pod is bound.
    pub node: Option<String>,
    /// UID of the controlling owner (StatefulSet, ReplicaSet, …), for spreading.
    pub owner: Option<String>,
    /// The `<n>` of `<statefulset>-<n>`: set only when the controlling owner
    /// is a StatefulSet and the name has that shape.
    pub ordinal: Option<u32>,
    /// Names of the claims the pod mounts, in the pod's namespace.
    pub claims: Vec<String>,
}

impl PodFacts {
    pub fn claim_keys(&self) -> impl Iterator<Item = ClaimKey> + '_ {
        self.claims
            .iter()
            .map(|c| ClaimKey::new(self.namespace.clone(), c.clone()))
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct VgState {
    pub name: String,
    pub size: u64,
    pub free: u64,
    pub extent: u64,
    pub healthy: bool,
    pub message: Option<String>,
    /// lvmpin-owned LV names present in the VG.
    pub volumes: HashSet<String>,
    pub thin_pools: Vec<PoolState>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct PoolState {
    pub name: String,
    /// None when the agent reports no promised bytes.
    pub usage: Option<PoolUsage>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct NodeLvm {
    pub vgs: Vec<VgState>,
    /// `status.lastScanTime` as written, and parsed (None if unreadable).
    /// The agent rewrites it at least every minute.
    pub last_report: Option<String>,
    pub reported_at: Option<std::time::SystemTime>,
}

impl NodeLvm {
    pub fn vg(&self, name: &str) -> Option<&VgState> {
        self.vgs.iter().find(|v| v.name == name)
    }
}

/// The Node object's part: its zone, and for zone ratios its labels (the
/// zone key is chosen per StatefulSet) and whether it takes new pods.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct NodeFacts {
    pub name: String,
    pub zone: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Ready and not cordoned.
    pub up: bool,
}

/// The StatefulSet's part: what counting its replicas per zone needs.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct StsFacts {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// `spec.replicas` (default 1): ordinals at or above it are leaving.
    pub replicas: u32,
    /// `volumeClaimTemplates` names: slot `i` owns claims `<template>-<name>-<i>`
    /// even while its pod is gone.
    pub claim_templates: Vec<String>,
    /// None without `lvmpin.io/zone-weights`.
    pub ratio: Option<Result<ZoneRatio, RatioError>>,
}

impl StsFacts {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The LvmNode's part.
#[derive(Clone, Debug, PartialEq)]
pub struct LvmFacts {
    pub node: String,
    /// None until the agent has written a status.
    pub lvm: Option<NodeLvm>,
}

pub fn claim_facts(pvc: &PersistentVolumeClaim) -> Option<ClaimFacts> {
    let namespace = pvc.metadata.namespace.clone()?;
    let name = pvc.metadata.name.clone()?;
    let lv_name: Arc<str> =
        volume_name_for_claim(pvc.metadata.uid.as_deref().unwrap_or_default()).into();
    let annotations = pvc.metadata.annotations.as_ref();
    let spec = pvc.spec.as_ref();
    // The beta annotation still wins over the field, as in the PV controller.
    let class = annotations
        .and_then(|a| a.get(ANN_BETA_STORAGE_CLASS).cloned())
        .or_else(|| spec.and_then(|s| s.storage_class_name.clone()))
        .filter(|c| !c.is_empty());
    Some(ClaimFacts {
        key: ClaimKey::new(namespace, name),
        class,
        size: match lvmpin_api::unsupported(pvc) {
            Some(u) => Err(u.to_string()),
            None => claim_size_bytes(pvc).map_err(|e| e.to_string()),
        },
        volume_name: spec
            .and_then(|s| s.volume_name.as_deref())
            .filter(|v| !v.is_empty())
            .map(|v| {
                if *v == *lv_name {
                    lv_name.clone()
                } else {
                    v.into()
                }
            }),
        lv_name,
        selected_node: annotations
            .and_then(|a| a.get(ANN_SELECTED_NODE).cloned())
            .filter(|n| !n.is_empty()),
        source: lvmpin_api::claim_source(pvc).ok().flatten(),
    })
}

pub fn class_facts(sc: &StorageClass) -> Option<ClassFacts> {
    let params = sc.parameters.as_ref();
    let name = sc.metadata.name.clone()?;
    let thin_limits = limits_from_params(params)
        .map_err(|e| format!("StorageClass {name} has a bad thin parameter: {e}"));
    Some(ClassFacts::new(
        name,
        sc.provisioner == DRIVER_NAME,
        params.and_then(|p| p.get(PARAM_VOLUME_GROUP).cloned()),
        params
            .and_then(|p| p.get(PARAM_THIN_POOL).cloned())
            .filter(|p| !p.is_empty()),
        thin_limits,
    ))
}

pub fn pv_facts(pv: &PersistentVolume) -> Option<PvFacts> {
    let node = lvmpin_api::volume::pinned_node(pv).map(str::to_string);
    Some(PvFacts {
        name: pv.metadata.name.clone()?,
        node,
    })
}

/// Claims a pod mounts: plain claim references and generic ephemeral volumes,
/// whose claim is named `<pod>-<volume>`.
pub fn pod_facts(pod: &Pod) -> PodFacts {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut claims = Vec::new();
    if let Some(spec) = &pod.spec {
        for v in spec.volumes.iter().flatten() {
            if let Some(c) = &v.persistent_volume_claim {
                claims.push(c.claim_name.clone());
            } else if v.ephemeral.is_some() {
                claims.push(format!("{name}-{}", v.name));
            }
        }
    }
    let controller = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    PodFacts {
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        node: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        owner: controller.map(|o| o.uid.clone()),
        ordinal: controller
            .filter(|o| o.kind == "StatefulSet")
            .and_then(|o| ordinal(&name, &o.name)),
        name,
        claims,
    }
}

/// `<set>-<n>` → n, as the StatefulSet controller names its pods.
fn ordinal(pod: &str, set: &str) -> Option<u32> {
    let n = pod.strip_prefix(set)?.strip_prefix('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

pub fn sts_facts(sts: &StatefulSet) -> Option<StsFacts> {
    let md = &sts.metadata;
    let namespace = md.namespace.clone()?;
    let empty = BTreeMap::new();
    let spec = sts.spec.as_ref();
    let ratio = crate::zone_ratio::parse(
        &namespace,
        md.annotations.as_ref().unwrap_or(&empty),
        md.labels.as_ref().unwrap_or(&empty),
    );
    Some(StsFacts {
        uid: md.uid.clone().unwrap_or_default(),
        name: md.name.clone()?,
        namespace,
        replicas: spec
            .and_then(|s| s.replicas)
            .map_or(1, |r| u32::try_from(r).unwrap_or(0)),
        claim_templates: spec
            .and_then(|s| s.volume_claim_templates.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|t| t.metadata.name.clone())
            .collect(),
        ratio,
    })
}

/// Pods that finished hold no node any more (their volumes stay, but they do
/// not count as replicas occupying a node).
pub fn pod_is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

pub fn node_facts(node: &Node) -> Option<NodeFacts> {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    Some(NodeFacts {
        name: node.metadata.name.clone()?,
        zone: labels.get(ZONE_LABEL).cloned(),
        labels,
        up: lvmpin_api::node::is_schedulable(node),
    })
}

pub fn lvm_facts(ln: &LvmNode) -> Option<LvmFacts> {
    let node = if ln.spec.node_name.is_empty() {
        ln.metadata.name.clone()?
    } else {
        ln.spec.node_name.clone()
    };
    let lvm = ln.status.as_ref().map(|s| NodeLvm {
        last_report: s.last_scan_time.clone(),
        reported_at: s
            .last_scan_time
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok()),
        vgs: s
            .volume_groups
            .iter()
            .map(|vg| VgState {
                name: vg.name.clone(),
                size: vg.size_bytes,
                free: vg.free_bytes,
                extent: vg.extent_size_bytes,
                healthy: vg.healthy,
                message: vg.message.clone(),
                volumes: vg.volumes.iter().cloned().collect(),
                thin_pools: vg
                    .thin_pools
                    .iter()
                    .map(|p| PoolState {
                        name: p.name.clone(),
                        usage: p.usage(),
                    })
                    .collect(),
            })
            .collect(),
    });
    Some(LvmFacts { node, lvm })
}
