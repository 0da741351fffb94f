//! From API objects to the plain facts `plan` decides on.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use lvmpin_api::LvmNode;
use lvmpin_api::names::{ANN_BETA_STORAGE_CLASS, ANN_SELECTED_NODE, DRIVER_NAME, NODE_LOSS_POLICY};
use lvmpin_api::volume::{pinned_node, provisioned_by_lvmpin};

use crate::plan::{Claim, Key, PodUse, Policy, Volume};

/// lvmpin's classes and the node-loss policy each names (None: not set).
pub fn class_policies(classes: &[impl AsRef<StorageClass>]) -> HashMap<String, Option<String>> {
    classes
        .iter()
        .map(AsRef::as_ref)
        .filter(|sc| sc.provisioner == DRIVER_NAME)
        .filter_map(|sc| {
            let policy = sc
                .parameters
                .as_ref()
                .and_then(|p| p.get(NODE_LOSS_POLICY).cloned());
            Some((sc.metadata.name.clone()?, policy))
        })
        .collect()
}

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
    Some(Key {
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
    })
}

/// The claim, if it is of one of lvmpin's classes.
pub fn claim(
    pvc: &PersistentVolumeClaim,
    classes: &HashMap<String, Option<String>>,
) -> Option<Claim> {
    let annotations = pvc.metadata.annotations.as_ref();
    let spec = pvc.spec.as_ref();
    // The beta annotation still wins over the field, as in the PV controller.
    let class = annotations
        .and_then(|a| a.get(ANN_BETA_STORAGE_CLASS))
        .or_else(|| spec.and_then(|s| s.storage_class_name.as_ref()))?;
    let class_policy = classes.get(class)?;
    let policy = annotations
        .and_then(|a| a.get(NODE_LOSS_POLICY))
        .or(class_policy.as_ref())
        .map_or(Ok(Policy::Keep), |p| Policy::parse(p));
    Some(Claim {
        key: key(&pvc.metadata)?,
        uid: pvc.metadata.uid.clone()?,
        selected_node: annotations
            .and_then(|a| a.get(ANN_SELECTED_NODE).cloned())
            .filter(|n| !n.is_empty()),
        volume: spec
            .and_then(|s| s.volume_name.clone())
            .filter(|v| !v.is_empty()),
        policy,
        deleting: pvc.metadata.deletion_timestamp.is_some(),
    })
}

/// The PV, if lvmpin provisioned it.
pub fn volume(pv: &PersistentVolume) -> Option<Volume> {
    if !provisioned_by_lvmpin(pv) {
        return None;
    }
    let spec = pv.spec.as_ref();
    let claim = spec.and_then(|s| s.claim_ref.as_ref()).and_then(|r| {
        Some((
            Key {
                namespace: r.namespace.clone()?,
                name: r.name.clone()?,
            },
            r.uid.clone()?,
        ))
    });
    Some(Volume {
        name: pv.metadata.name.clone()?,
        uid: pv.metadata.uid.clone()?,
        node: pinned_node(pv).map(str::to_string),
        reclaim_delete: spec.and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            == Some("Delete"),
        claim,
        deleting: pv.metadata.deletion_timestamp.is_some(),
    })
}

pub fn pod(p: &Pod) -> Option<PodUse> {
    let claims: Vec<String> = p
        .spec
        .as_ref()?
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| Some(v.persistent_volume_claim.as_ref()?.claim_name.clone()))
        .collect();
    if claims.is_empty() {
        return None;
    }
    Some(PodUse {
        key: key(&p.metadata)?,
        uid: p.metadata.uid.clone()?,
        claims,
    })
}

/// Nodes whose agent's last report (`status.lastScanTime`) is older than
/// `silence` at `now`, with that time. A report without a readable time
/// counts as silent from the start.
pub fn silent_nodes(
    reports: &[impl AsRef<LvmNode>],
    now: DateTime<Utc>,
    silence: Duration,
) -> BTreeMap<String, String> {
    let Ok(silence) = chrono::Duration::from_std(silence) else {
        return BTreeMap::new();
    };
    reports
        .iter()
        .map(AsRef::as_ref)
        .filter_map(|n| {
            let name = n.metadata.name.clone()?;
            let at = n.status.as_ref()?.last_scan_time.clone()?;
            let stale = DateTime::parse_from_rfc3339(&at)
                .map_or(true, |t| now.signed_duration_since(t) > silence);
            stale.then_some((name, at))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap as Map;

    fn sc(name: &str, provisioner: &str, policy: Option<&str>) -> StorageClass {
        StorageClass {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            provisioner: provisioner.into(),
            parameters: policy.map(|p| Map::from([(NODE_LOSS_POLICY.to_string(), p.to_string())])),
            ..Default::default()
        }
    }

    fn pvc(class: &str, annotation: Option<&str>) -> PersistentVolumeClaim {
        let mut c = PersistentVolumeClaim::default();
        c.metadata.namespace = Some("ns".into());
        c.metadata.name = Some("c".into());
        c.metadata.uid = Some("u".into());
        c.metadata.annotations =
            annotation.map(|p| Map::from([(NODE_LOSS_POLICY.to_string(), p.to_string())]));
        c.spec = Some(k8s_openapi::api::core::v1::PersistentVolumeClaimSpec {
            storage_class_name: Some(class.into()),
            ..Default::default()
        });
        c
    }

    #[test]
    fn policy_comes_from_the_claim_then_the_class() {
        let classes = class_policies(&[
            Box::new(sc("plain", DRIVER_NAME, None)),
            Box::new(sc("fresh", DRIVER_NAME, Some("recreate"))),
            Box::new(sc("other", "other.io", Some("recreate"))),
        ]);
        let p = |class, ann| claim(&pvc(class, ann), &classes).map(|c| c.policy);
        assert_eq!(p("plain", None), Some(Ok(Policy::Keep)));
        assert_eq!(p("fresh", None), Some(Ok(Policy::Recreate)));
        assert_eq!(p("fresh", Some("keep")), Some(Ok(Policy::Keep)));
        assert_eq!(p("plain", Some("recreate")), Some(Ok(Policy::Recreate)));
        assert!(matches!(p("plain", Some("wipe")), Some(Err(_))));
        assert_eq!(p("other", None), None, "not ours");
        assert_eq!(p("missing", None), None, "class unknown");
    }

    #[test]
    fn silence_is_measured_from_the_last_scan() {
        let report = |name: &str, at: Option<&str>| {
            let mut n = LvmNode::new(name, Default::default());
            n.status = Some(lvmpin_api::LvmNodeStatus {
                last_scan_time: at.map(str::to_string),
                ..Default::default()
            });
            Box::new(n)
        };
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:10:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let got = silent_nodes(
            &[
                report("fresh", Some("2026-01-01T00:09:00Z")),
                report("old", Some("2026-01-01T00:04:00Z")),
                report("garbled", Some("yesterday")),
                report("never", None),
            ],
            now,
            Duration::from_secs(300),
        );
        assert_eq!(
            got.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["garbled", "old"]
        );
    }
}
