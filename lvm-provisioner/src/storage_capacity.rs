//! This node's CSIStorageCapacity objects (storage.k8s.io/v1): one per lvmpin
//! StorageClass whose VG (or thin pool) exists here, in the agent's namespace,
//! owned by the node's LvmNode.
//!
//! kube-scheduler reads them in two ways (kubernetes
//! `pkg/scheduler/framework/plugins/volumebinding/binder.go`,
//! `hasEnoughCapacity`): where the CSIDriver sets `storageCapacity: true`, a
//! node without an object whose `maximumVolumeSize` (else `capacity`) covers
//! the claim is filtered out; and every add or update is a cluster event that
//! moves pods parked as unschedulable back to the queue, which is how a pod
//! that found no room is retried as soon as room appears. The objects follow
//! external-provisioner's `pkg/capacity` (labels `csi.storage.k8s.io/drivername`
//! and `csi.storage.k8s.io/managed-by`, `nodeTopology` on the node label).
//! docs/protocols.md, "CSIStorageCapacity", lists these facts with their sources.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::storage::v1::{CSIStorageCapacity, StorageClass};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use lvmpin_api::LvmNodeStatus;
use lvmpin_api::names::{DRIVER_NAME, PARAM_THIN_POOL, PARAM_VOLUME_GROUP, TOPOLOGY_KEY};
#[cfg(test)]
use lvmpin_api::names::{PARAM_THIN_DATA_LIMIT, PARAM_THIN_OVERPROVISION_RATIO};
use serde_json::json;
use tracing::{debug, warn};

use crate::api_util::{is_conflict, is_not_found};
use crate::claim_plan::{class_param, is_our_class, thin_limits};
use crate::context::Context;
use crate::error::Result;
use lvmpin_api::thin::{ThinLimits, virtual_free};

pub const LABEL_DRIVER: &str = "csi.storage.k8s.io/drivername";
pub const LABEL_MANAGED_BY: &str = "csi.storage.k8s.io/managed-by";
pub const MANAGED_BY: &str = "lvmpin-agent";

/// Several LV changes within this window become one round of writes.
pub const COALESCE: Duration = Duration::from_millis(300);

/// What one class can still get on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassCapacity {
    pub class: String,
    /// Bytes still allocatable, after the spare.
    pub capacity: u64,
    /// The largest single volume that can be created now.
    pub maximum: u64,
}

/// The object name: the class and the node, both DNS subdomains, joined into
/// one. `None` when that would exceed the 253 characters of a name.
pub fn object_name(class: &str, node: &str) -> Option<String> {
    let name = format!("lvmpin.{class}.{node}");
    (name.len() <= 253).then_some(name)
}

fn round_down(bytes: u64, extent: u64) -> u64 {
    bytes.checked_div(extent).map_or(bytes, |n| n * extent)
}

/// Pure: bytes still allocatable in one VG after the spare, or in one thin
/// pool of it under a class's limits (`lvmpin_api::thin::virtual_free`, the
/// number the extender places by; the spare is VG space and does not apply),
/// in whole extents; 0 when the VG is unhealthy or the pool at a limit,
/// `None` when the VG or pool is not on this node. CSI GetCapacity answers
/// with the same number.
pub fn available(
    status: &LvmNodeStatus,
    vg: &str,
    pool: Option<(&str, &ThinLimits)>,
    spare: u64,
) -> Option<u64> {
    let vg = status.volume_group(vg)?;
    let free = match pool {
        None => vg.free_bytes.saturating_sub(spare),
        Some((pool, limits)) => {
            let p = vg.thin_pools.iter().find(|p| p.name == pool)?;
            p.usage()
                .and_then(|u| virtual_free(&u, limits).ok())
                .unwrap_or(0)
        }
    };
    Some(if vg.healthy {
        round_down(free, vg.extent_size_bytes)
    } else {
        0
    })
}

/// Pure: the capacity of every lvmpin class on this node. Classes whose VG or
/// pool is not here get no entry (the scheduler then rules the node out for
/// them); an unhealthy VG offers nothing.
pub fn plan(status: &LvmNodeStatus, classes: &[&StorageClass], spare: u64) -> Vec<ClassCapacity> {
    let mut out: Vec<ClassCapacity> = classes
        .iter()
        .filter(|c| is_our_class(c))
        .filter_map(|class| {
            let name = class.metadata.name.clone()?;
            // A class with bad thin parameters gets no object: the agent
            // refuses its claims anyway.
            let limits = thin_limits(class).ok()?;
            let pool = class_param(class, PARAM_THIN_POOL).zip(limits.as_ref());
            let capacity = available(status, class_param(class, PARAM_VOLUME_GROUP)?, pool, spare)?;
            Some(ClassCapacity {
                class: name,
                capacity,
                maximum: capacity,
            })
        })
        .collect();
    out.sort_by(|a, b| a.class.cmp(&b.class));
    out
}

/// The object for one class, as the API server should hold it.
pub fn build(
    c: &ClassCapacity,
    node: &str,
    namespace: &str,
    owner: &OwnerReference,
) -> Option<CSIStorageCapacity> {
    Some(CSIStorageCapacity {
        metadata: ObjectMeta {
            name: Some(object_name(&c.class, node)?),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (LABEL_DRIVER.to_string(), DRIVER_NAME.to_string()),
                (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
            ])),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        storage_class_name: c.class.clone(),
        node_topology: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                TOPOLOGY_KEY.to_string(),
                node.to_string(),
            )])),
            ..Default::default()
        }),
        capacity: Some(Quantity(c.capacity.to_string())),
        maximum_volume_size: Some(Quantity(c.maximum.to_string())),
    })
}

/// Whether an object found on the server was made by this node's agent.
pub fn is_this_nodes(obj: &CSIStorageCapacity, node: &str) -> bool {
    let labels = obj.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    label(LABEL_DRIVER) == Some(DRIVER_NAME)
        && label(LABEL_MANAGED_BY) == Some(MANAGED_BY)
        && obj
            .node_topology
            .as_ref()
            .and_then(|t| t.match_labels.as_ref())
            .and_then(|m| m.get(TOPOLOGY_KEY))
            .map(String::as_str)
            == Some(node)
}

/// Brings the objects in line with the last written LvmNode status. Writes
/// only what changed since the last call; the first call (and any call after
/// a failed one) lists the namespace to adopt what a previous run left and
/// delete objects of classes that are gone.
pub async fn sync<B>(ctx: &Context<B>) -> Result<()> {
    let Some(namespace) = ctx.config.namespace.as_deref() else {
        return Ok(());
    };
    let Some(owner) = ctx.lvm_node_owner() else {
        debug!("LvmNode not known yet; CSIStorageCapacity waits for it");
        return Ok(());
    };
    let Some(status) = ctx
        .last_status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
    else {
        return Ok(());
    };
    let node = ctx.config.node_name.as_str();
    let classes = ctx.caches.classes.state();
    let class_refs: Vec<&StorageClass> = classes.iter().map(|c| c.as_ref()).collect();
    let want: BTreeMap<String, ClassCapacity> = plan(&status, &class_refs, ctx.config.spare_bytes)
        .into_iter()
        .filter_map(|c| Some((object_name(&c.class, node)?, c)))
        .collect();
    let api: Api<CSIStorageCapacity> = Api::namespaced(ctx.client.clone(), namespace);
    let mut written = ctx.capacity_written.lock().await;
    let known = match written.take() {
        Some(k) => k,
        None => {
            let selector = format!("{LABEL_DRIVER}={DRIVER_NAME},{LABEL_MANAGED_BY}={MANAGED_BY}");
            let list = api.list(&ListParams::default().labels(&selector)).await?;
            list.items
                .iter()
                .filter(|o| is_this_nodes(o, node))
                .filter_map(|o| {
                    let name = o.metadata.name.clone()?;
                    let cap = o.capacity.as_ref().map(|q| q.0.clone()).unwrap_or_default();
                    let max = o
                        .maximum_volume_size
                        .as_ref()
                        .map(|q| q.0.clone())
                        .unwrap_or_default();
                    Some((name, (cap, max)))
                })
                .collect()
        }
    };
    let mut now: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut failed = None;
    for (name, c) in &want {
        let values = (c.capacity.to_string(), c.maximum.to_string());
        if known.get(name) != Some(&values) {
            let r = match known.contains_key(name) {
                true => update(&api, name, c).await,
                false => create(&api, c, node, namespace, &owner).await,
            };
            if let Err(e) = r {
                failed = Some(e);
                continue;
            }
            ctx.metrics.operation("capacity", "success");
        }
        now.insert(name.clone(), values);
    }
    for stale in known.keys().filter(|n| !want.contains_key(*n)) {
        match api.delete(stale, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => failed = Some(e.into()),
        }
    }
    match failed {
        // Forget what we knew, so the next round lists and retries.
        Some(e) => {
            ctx.metrics.operation("capacity", "kube");
            Err(e)
        }
        None => {
            *written = Some(now);
            Ok(())
        }
    }
}

async fn update(api: &Api<CSIStorageCapacity>, name: &str, c: &ClassCapacity) -> Result<()> {
    let patch = json!({
        "capacity": c.capacity.to_string(),
        "maximumVolumeSize": c.maximum.to_string(),
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn create(
    api: &Api<CSIStorageCapacity>,
    c: &ClassCapacity,
    node: &str,
    namespace: &str,
    owner: &OwnerReference,
) -> Result<()> {
    let Some(obj) = build(c, node, namespace, owner) else {
        return Ok(());
    };
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        // Made by an earlier run we did not list: bring its numbers up to date.
        Err(e) if is_conflict(&e) => {
            update(api, obj.metadata.name.as_deref().unwrap_or(""), c).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs until `shutdown`: after each capacity report, waits a moment for
/// more changes, then syncs once; retries a failed sync on the next report.
pub async fn run<B>(
    ctx: std::sync::Arc<Context<B>>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    if ctx.config.namespace.is_none() {
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ctx.capacity_dirty.notified() => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(COALESCE) => {}
        }
        if let Err(e) = sync(&ctx).await {
            warn!(error = %e, "could not update CSIStorageCapacity objects");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvmpin_api::{ThinPoolStatus, VolumeGroupStatus};

    const MI: u64 = 1 << 20;

    fn class(name: &str, params: &[(&str, &str)]) -> StorageClass {
        lvmpin_testkit::class(name, DRIVER_NAME, params)
    }

    fn status(healthy: bool) -> LvmNodeStatus {
        LvmNodeStatus {
            volume_groups: vec![VolumeGroupStatus {
                name: "vg0".into(),
                size_bytes: 1024 * MI,
                free_bytes: 402 * MI,
                extent_size_bytes: 4 * MI,
                healthy,
                thin_pools: vec![ThinPoolStatus {
                    name: "pool".into(),
                    size_bytes: 200 * MI,
                    data_percent: 25.0,
                    metadata_percent: 1.0,
                    promised_bytes: Some(52 * MI),
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn capacity_per_class() {
        let linear = class("fast", &[(PARAM_VOLUME_GROUP, "vg0")]);
        let thin = class(
            "thin",
            &[(PARAM_VOLUME_GROUP, "vg0"), (PARAM_THIN_POOL, "pool")],
        );
        let thin2 = class(
            "thin2",
            &[
                (PARAM_VOLUME_GROUP, "vg0"),
                (PARAM_THIN_POOL, "pool"),
                (PARAM_THIN_OVERPROVISION_RATIO, "2"),
            ],
        );
        let strict = class(
            "strict",
            &[
                (PARAM_VOLUME_GROUP, "vg0"),
                (PARAM_THIN_POOL, "pool"),
                (PARAM_THIN_DATA_LIMIT, "25"),
            ],
        );
        let elsewhere = class("other-vg", &[(PARAM_VOLUME_GROUP, "vg9")]);
        let no_pool = class(
            "no-pool",
            &[(PARAM_VOLUME_GROUP, "vg0"), (PARAM_THIN_POOL, "nope")],
        );
        let mut foreign = class("foreign", &[(PARAM_VOLUME_GROUP, "vg0")]);
        foreign.provisioner = "other.csi.io".into();
        let classes = [
            &linear, &thin, &thin2, &strict, &elsewhere, &no_pool, &foreign,
        ];
        let cap = |c: &str, capacity: u64| ClassCapacity {
            class: c.into(),
            capacity,
            maximum: capacity,
        };
        // The pool: 200 MiB, 52 MiB promised, 25% data. Thin classes get
        // floor(200 MiB × ratio) − 52 MiB, nothing at their data limit, and
        // the VG's spare does not apply to them.
        let thin_caps = |fast| {
            vec![
                cap("fast", fast),
                cap("strict", 0),
                cap("thin", 148 * MI),
                cap("thin2", 348 * MI),
            ]
        };
        // name, status, spare, want
        let cases = [
            // 402 MiB free, rounded down to 4 MiB extents.
            ("healthy", status(true), 0, thin_caps(400 * MI)),
            ("spare", status(true), 100 * MI, thin_caps(300 * MI)),
            ("spare above free", status(true), 500 * MI, thin_caps(0)),
            (
                "unhealthy",
                status(false),
                0,
                vec![
                    cap("fast", 0),
                    cap("strict", 0),
                    cap("thin", 0),
                    cap("thin2", 0),
                ],
            ),
            ("no VGs", LvmNodeStatus::default(), 0, vec![]),
        ];
        for (name, st, spare, want) in cases {
            assert_eq!(plan(&st, &classes, spare), want, "{name}");
        }
    }

    #[test]
    fn object_shape_and_ownership() {
        let owner = OwnerReference {
            api_version: "lvmpin.io/v1alpha1".into(),
            kind: "LvmNode".into(),
            name: "n1".into(),
            uid: "u1".into(),
            ..Default::default()
        };
        let c = ClassCapacity {
            class: "fast".into(),
            capacity: 5,
            maximum: 4,
        };
        let obj = build(&c, "n1", "lvmpin-system", &owner).unwrap();
        assert_eq!(
            serde_json::to_value(&obj).unwrap(),
            json!({
                "apiVersion": "storage.k8s.io/v1",
                "kind": "CSIStorageCapacity",
                "metadata": {
                    "name": "lvmpin.fast.n1",
                    "namespace": "lvmpin-system",
                    "labels": {
                        "csi.storage.k8s.io/drivername": "lvm.lvmpin.io",
                        "csi.storage.k8s.io/managed-by": "lvmpin-agent"
                    },
                    "ownerReferences": [{"apiVersion": "lvmpin.io/v1alpha1", "kind": "LvmNode",
                                         "name": "n1", "uid": "u1"}]
                },
                "storageClassName": "fast",
                "nodeTopology": {"matchLabels": {"topology.lvm.lvmpin.io/node": "n1"}},
                "capacity": "5",
                "maximumVolumeSize": "4"
            })
        );
        assert!(is_this_nodes(&obj, "n1"));
        assert!(!is_this_nodes(&obj, "n2"));
        let long = "n".repeat(250);
        assert_eq!(object_name("fast", &long), None);
        assert!(build(&c, &long, "ns", &owner).is_none());
    }
}
