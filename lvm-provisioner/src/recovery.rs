//! Startup reconcile of LVs (by their owner tags) against PVs and claims. Pure.
//!
//! It may recreate a PV, and it may report an orphan; it never removes an LV:
//! data whose release cannot be proven stays on disk for a human to judge.

use std::collections::BTreeSet;

use crate::backend::Volume;

/// What recovery needs to know about a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimView {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub volume_name: Option<String>,
    pub selected_node: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RecoveryAction {
    /// The LV's PV is missing but its claim still wants it here.
    RecreatePv {
        volume: Volume,
        claim_namespace: String,
        claim_name: String,
    },
    /// Owned by lvmpin, yet no PV and no claim wants it.
    Orphan { volume: Volume, reason: String },
}

pub fn plan(
    volumes: &[Volume],
    pv_names: &BTreeSet<String>,
    claims: &[ClaimView],
    node: &str,
) -> Vec<RecoveryAction> {
    let mut actions = Vec::new();
    for volume in volumes {
        // LVs without our tags are someone else's business; snapshots belong
        // to VolumeSnapshotContents, never to a claim (the lvm layer reads
        // no claim owner from an LV with snapshot tags; this holds even if
        // a volume carried both).
        let Some(owner) = volume.owner.as_ref().filter(|_| !volume.is_snapshot()) else {
            continue;
        };
        if pv_names.contains(&owner.pv_name) {
            continue;
        }
        let claim = claims.iter().find(|c| c.uid == owner.claim_uid);
        let wants = claim.is_some_and(|c| {
            c.selected_node.as_deref() == Some(node)
                && c.volume_name
                    .as_deref()
                    .is_none_or(|v| v.is_empty() || v == owner.pv_name)
        });
        match claim {
            Some(c) if wants => actions.push(RecoveryAction::RecreatePv {
                volume: volume.clone(),
                claim_namespace: c.namespace.clone(),
                claim_name: c.name.clone(),
            }),
            Some(c) => actions.push(RecoveryAction::Orphan {
                volume: volume.clone(),
                reason: format!(
                    "claim {}/{} (uid {}) no longer wants it on this node and PV {} does not exist",
                    c.namespace, c.name, c.uid, owner.pv_name
                ),
            }),
            None => actions.push(RecoveryAction::Orphan {
                volume: volume.clone(),
                reason: format!(
                    "claim {}/{} (uid {}) and PV {} are both gone; the LV is kept because its release cannot be proven",
                    owner.claim_namespace, owner.claim_name, owner.claim_uid, owner.pv_name
                ),
            }),
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Owner, SnapshotOwner};

    fn lv(uid: &str) -> Volume {
        Volume {
            vg: "vg0".into(),
            name: format!("pvc-{uid}"),
            size_bytes: 1 << 30,
            pool: None,
            owner: Some(Owner {
                claim_uid: uid.into(),
                claim_namespace: "ns".into(),
                claim_name: format!("c-{uid}"),
                pv_name: format!("pvc-{uid}"),
            }),
            ..Default::default()
        }
    }

    fn claim(uid: &str, node: Option<&str>, volume: Option<&str>) -> ClaimView {
        ClaimView {
            uid: uid.into(),
            namespace: "ns".into(),
            name: format!("c-{uid}"),
            volume_name: volume.map(str::to_string),
            selected_node: node.map(str::to_string),
        }
    }

    fn kinds(actions: &[RecoveryAction]) -> Vec<(String, &'static str)> {
        actions
            .iter()
            .map(|a| match a {
                RecoveryAction::RecreatePv { volume, .. } => (volume.name.clone(), "recreate"),
                RecoveryAction::Orphan { volume, .. } => (volume.name.clone(), "orphan"),
            })
            .collect()
    }

    #[test]
    fn table() {
        let foreign = Volume {
            name: "root".into(),
            ..lv("x")
        };
        let foreign = Volume {
            owner: None,
            ..foreign
        };
        let snapshot = Volume {
            name: "snap-1".into(),
            owner: None,
            snapshot_owner: Some(SnapshotOwner {
                content_uid: "1".into(),
                content_name: "snapcontent-1".into(),
            }),
            origin: Some("pvc-a".into()),
            ..lv("x")
        };
        type Case<'a> = (
            &'a str,
            Vec<Volume>,
            Vec<&'a str>,
            Vec<ClaimView>,
            Vec<(String, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            ("pv present", vec![lv("a")], vec!["pvc-a"], vec![], vec![]),
            ("untagged lv", vec![foreign], vec![], vec![], vec![]),
            (
                "snapshot lv",
                vec![snapshot.clone()],
                vec![],
                vec![],
                vec![],
            ),
            (
                "snapshot lv with claim tags too",
                vec![Volume {
                    owner: lv("s").owner,
                    ..snapshot
                }],
                vec![],
                vec![claim("s", Some("n1"), None)],
                vec![],
            ),
            (
                "crash before pv create",
                vec![lv("a")],
                vec![],
                vec![claim("a", Some("n1"), None)],
                vec![("pvc-a".into(), "recreate")],
            ),
            (
                "bound claim, pv lost",
                vec![lv("a")],
                vec![],
                vec![claim("a", Some("n1"), Some("pvc-a"))],
                vec![("pvc-a".into(), "recreate")],
            ),
            (
                "claim gone",
                vec![lv("a")],
                vec![],
                vec![],
                vec![("pvc-a".into(), "orphan")],
            ),
            (
                "claim moved on",
                vec![lv("a")],
                vec![],
                vec![claim("a", Some("n2"), None)],
                vec![("pvc-a".into(), "orphan")],
            ),
            (
                "claim bound elsewhere",
                vec![lv("a")],
                vec![],
                vec![claim("a", Some("n1"), Some("pv-other"))],
                vec![("pvc-a".into(), "orphan")],
            ),
            (
                "same name, new uid",
                vec![lv("a")],
                vec![],
                vec![claim("b", Some("n1"), None)],
                vec![("pvc-a".into(), "orphan")],
            ),
        ];
        for (name, lvs, pvs, claims, want) in cases {
            let pvs: BTreeSet<String> = pvs.into_iter().map(String::from).collect();
            assert_eq!(kinds(&plan(&lvs, &pvs, &claims, "n1")), want, "{name}");
        }
    }
}
