//! Rows for each command, from what the API server and the extender
//! answered. Plain data in, plain data out; `now` is passed in.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::jiff::Timestamp;
use lvmpin_api::LvmNode;
use lvmpin_api::debug_view::{ClaimView, NodeVerdict, NodesView, Outcome, WhyView};
use lvmpin_api::names::DRIVER_NAME;
use lvmpin_api::volume::pinned_node;
use lvmpin_api::{VolumeId, parse_quantity_bytes};
use serde::Serialize;

/// Without the extender, a report older than this is called stale: the
/// extender's default `--agent-silence`.
pub const DEFAULT_SILENCE_SECONDS: i64 = 300;

/// One volume group of one node.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    pub node: String,
    /// None: the node has no report (a Node the extender knows without an LvmNode).
    pub volume_group: Option<String>,
    pub size_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
    /// None when the extender was not asked.
    pub reserved_bytes: Option<u64>,
    pub volumes: Option<u32>,
    pub thin_pools: Vec<ThinPoolRow>,
    pub healthy: Option<bool>,
    pub last_report: Option<String>,
    pub report_age_seconds: Option<i64>,
    /// The extender marks the node silent (or, without the extender, the
    /// report is older than the default silence limit).
    pub stale: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThinPoolRow {
    pub name: String,
    pub size_bytes: u64,
    pub data_percent: f64,
}

fn age(time: Option<&str>, now: Timestamp) -> Option<i64> {
    let t: Timestamp = time?.parse().ok()?;
    Some(now.as_second() - t.as_second())
}

/// Rows by node then VG: every LvmNode, plus nodes only the extender knows.
pub fn node_rows(lvm: &[LvmNode], extender: Option<&NodesView>, now: Timestamp) -> Vec<NodeRow> {
    let ext: BTreeMap<&str, _> = extender
        .map(|v| v.nodes.iter().map(|n| (n.name.as_str(), n)).collect())
        .unwrap_or_default();
    let mut rows = Vec::new();
    let mut seen = BTreeSet::new();
    for n in lvm {
        let name = n.spec.node_name.clone();
        seen.insert(name.clone());
        let status = n.status.clone().unwrap_or_default();
        let last = status.last_scan_time.clone();
        let age = age(last.as_deref(), now);
        let view = ext.get(name.as_str());
        let stale = match (extender, view) {
            (Some(_), Some(v)) => v.silent_since.is_some(),
            _ => age.is_none_or(|a| a > DEFAULT_SILENCE_SECONDS),
        };
        let base = NodeRow {
            node: name.clone(),
            last_report: last.clone(),
            report_age_seconds: age,
            stale,
            ..Default::default()
        };
        if status.volume_groups.is_empty() {
            rows.push(base);
            continue;
        }
        for vg in &status.volume_groups {
            let reserved = extender.map(|_| {
                view.and_then(|v| v.volume_groups.iter().find(|x| x.name == vg.name))
                    .map_or(0, |x| x.reserved_bytes)
            });
            rows.push(NodeRow {
                volume_group: Some(vg.name.clone()),
                size_bytes: Some(vg.size_bytes),
                free_bytes: Some(vg.free_bytes),
                reserved_bytes: reserved,
                volumes: Some(u32::try_from(vg.volumes.len()).unwrap_or(u32::MAX)),
                thin_pools: vg
                    .thin_pools
                    .iter()
                    .map(|t| ThinPoolRow {
                        name: t.name.clone(),
                        size_bytes: t.size_bytes,
                        data_percent: t.data_percent,
                    })
                    .collect(),
                healthy: Some(vg.healthy),
                ..base.clone()
            });
        }
    }
    for v in ext.values().filter(|v| v.known && !seen.contains(&v.name)) {
        rows.push(NodeRow {
            node: v.name.clone(),
            reserved_bytes: Some(0),
            stale: true,
            ..Default::default()
        });
    }
    rows.sort_by(|a, b| (&a.node, &a.volume_group).cmp(&(&b.node, &b.volume_group)));
    rows
}

/// `kubectl lvmpin why`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WhyReport {
    pub namespace: String,
    pub pod: String,
    pub phase: String,
    pub bound_node: Option<String>,
    pub reserved_on: Option<String>,
    pub outcome: Outcome,
    pub message: Option<String>,
    pub claims: Vec<ClaimView>,
    pub nodes: Vec<NodeVerdict>,
    pub events: Vec<EventRow>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    pub last_seen: Option<String>,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub source: String,
    pub count: i32,
    pub message: String,
}

/// How many of the pod's Events are shown, newest last.
pub const EVENTS_SHOWN: usize = 10;

fn event_time(e: &Event) -> Option<Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

pub fn event_rows(events: &[Event]) -> Vec<EventRow> {
    let mut evs: Vec<&Event> = events.iter().collect();
    evs.sort_by_key(|e| event_time(e));
    let skip = evs.len().saturating_sub(EVENTS_SHOWN);
    evs.into_iter()
        .skip(skip)
        .map(|e| EventRow {
            last_seen: event_time(e).map(|t| t.to_string()),
            type_: e.type_.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            source: e
                .reporting_component
                .clone()
                .filter(|s| !s.is_empty())
                .or_else(|| e.source.as_ref().and_then(|s| s.component.clone()))
                .unwrap_or_default(),
            count: e.count.unwrap_or(1),
            message: e.message.clone().unwrap_or_default(),
        })
        .collect()
}

pub fn why_report(pod: &Pod, view: WhyView, events: &[Event]) -> WhyReport {
    WhyReport {
        namespace: view.namespace,
        pod: view.pod,
        phase: pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default(),
        bound_node: view.bound_node,
        reserved_on: view.reserved_on,
        outcome: view.outcome,
        message: view.message,
        claims: view.claims,
        nodes: view.nodes,
        events: event_rows(events),
    }
}

/// `kubectl lvmpin volumes`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumesReport {
    pub volumes: Vec<VolumeRow>,
    /// LVs the agents report that no PV references.
    pub orphans: Vec<OrphanRow>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRow {
    pub namespace: Option<String>,
    pub claim: Option<String>,
    pub persistent_volume: Option<String>,
    pub volume_group: Option<String>,
    pub logical_volume: Option<String>,
    pub node: Option<String>,
    pub size_bytes: Option<u64>,
    pub phase: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrphanRow {
    pub node: String,
    pub volume_group: String,
    pub logical_volume: String,
}

fn lvmpin_pv(pv: &PersistentVolume) -> Option<VolumeId> {
    let csi = pv.spec.as_ref()?.csi.as_ref()?;
    (csi.driver == DRIVER_NAME).then(|| csi.volume_handle.parse().ok())?
}

/// Claims of lvmpin's StorageClasses and lvmpin's PVs, joined; `namespace`
/// and `node` narrow both tables.
pub fn volume_report(
    claims: &[PersistentVolumeClaim],
    pvs: &[PersistentVolume],
    classes: &[StorageClass],
    lvm: &[LvmNode],
    namespace: Option<&str>,
    node: Option<&str>,
) -> VolumesReport {
    let ours: BTreeSet<&str> = classes
        .iter()
        .filter(|c| c.provisioner == DRIVER_NAME)
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    let claim_key = |c: &PersistentVolumeClaim| {
        (
            c.metadata.namespace.clone().unwrap_or_default(),
            c.metadata.name.clone().unwrap_or_default(),
        )
    };
    let by_key: BTreeMap<(String, String), &PersistentVolumeClaim> =
        claims.iter().map(|c| (claim_key(c), c)).collect();
    let mut rows = Vec::new();
    let mut referenced: BTreeSet<(String, VolumeId)> = BTreeSet::new();
    let mut covered: BTreeSet<(String, String)> = BTreeSet::new();
    for pv in pvs {
        let Some(id) = lvmpin_pv(pv) else { continue };
        let on = pinned_node(pv).map(str::to_string);
        if let Some(n) = &on {
            referenced.insert((n.clone(), id.clone()));
        }
        let cref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        let key = cref.map(|r| {
            (
                r.namespace.clone().unwrap_or_default(),
                r.name.clone().unwrap_or_default(),
            )
        });
        if let Some(k) = &key {
            covered.insert(k.clone());
        }
        rows.push(VolumeRow {
            namespace: key.as_ref().map(|k| k.0.clone()),
            claim: key.as_ref().map(|k| k.1.clone()),
            persistent_volume: pv.metadata.name.clone(),
            volume_group: Some(id.vg.clone()),
            logical_volume: Some(id.lv.clone()),
            node: on,
            size_bytes: pv
                .spec
                .as_ref()
                .and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get("storage"))
                .and_then(|q| parse_quantity_bytes(&q.0).ok()),
            phase: pv
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default(),
        });
    }
    for (key, c) in &by_key {
        let class = c
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref());
        if covered.contains(key) || !class.is_some_and(|cl| ours.contains(cl)) {
            continue;
        }
        rows.push(VolumeRow {
            namespace: Some(key.0.clone()),
            claim: Some(key.1.clone()),
            node: c
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(lvmpin_api::names::ANN_SELECTED_NODE).cloned()),
            size_bytes: c
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .and_then(|q| parse_quantity_bytes(&q.0).ok()),
            phase: c
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default(),
            ..Default::default()
        });
    }
    rows.retain(|r| {
        namespace.is_none_or(|ns| r.namespace.as_deref() == Some(ns))
            && node.is_none_or(|n| r.node.as_deref() == Some(n))
    });
    rows.sort_by(|a, b| {
        (&a.namespace, &a.claim, &a.persistent_volume).cmp(&(
            &b.namespace,
            &b.claim,
            &b.persistent_volume,
        ))
    });
    let mut orphans = Vec::new();
    for n in lvm {
        let name = &n.spec.node_name;
        if node.is_some_and(|want| want != name) {
            continue;
        }
        for vg in n.status.iter().flat_map(|s| &s.volume_groups) {
            for lv in &vg.volumes {
                let id = VolumeId::new(vg.name.clone(), lv.clone());
                if !referenced.contains(&(name.clone(), id)) {
                    orphans.push(OrphanRow {
                        node: name.clone(),
                        volume_group: vg.name.clone(),
                        logical_volume: lv.clone(),
                    });
                }
            }
        }
    }
    orphans.sort_by(|a, b| {
        (&a.node, &a.volume_group, &a.logical_volume).cmp(&(
            &b.node,
            &b.volume_group,
            &b.logical_volume,
        ))
    });
    VolumesReport {
        volumes: rows,
        orphans,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        CSIPersistentVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
        ObjectReference, PersistentVolumeClaimSpec, PersistentVolumeSpec, VolumeNodeAffinity,
        VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use lvmpin_api::debug_view::{NodeView, VgView};
    use lvmpin_api::names::TOPOLOGY_KEY;
    use lvmpin_api::{LvmNodeSpec, LvmNodeStatus, ThinPoolStatus, VolumeGroupStatus};

    const MI: u64 = 1 << 20;

    fn now() -> Timestamp {
        "2026-01-01T00:10:00Z".parse().unwrap()
    }

    fn lvm(node: &str, scanned: &str, volumes: &[&str]) -> LvmNode {
        let mut n = LvmNode::new(
            node,
            LvmNodeSpec {
                node_name: node.into(),
            },
        );
        n.status = Some(LvmNodeStatus {
            volume_groups: vec![VolumeGroupStatus {
                name: "vg".into(),
                size_bytes: 1024 * MI,
                free_bytes: 512 * MI,
                extent_size_bytes: 4 * MI,
                lv_count: volumes.len() as u32,
                volumes: volumes.iter().map(|v| v.to_string()).collect(),
                thin_pools: vec![ThinPoolStatus {
                    name: "tp".into(),
                    size_bytes: 100 * MI,
                    data_percent: 50.0,
                    metadata_percent: 1.0,
                    promised_bytes: None,
                }],
                healthy: true,
                message: None,
            }],
            conditions: vec![],
            summary: None,
            last_scan_time: Some(scanned.into()),
        });
        n
    }

    fn ext(nodes: &[(&str, Option<&str>, u64)]) -> NodesView {
        NodesView {
            nodes: nodes
                .iter()
                .map(|(n, silent, reserved)| NodeView {
                    name: n.to_string(),
                    known: true,
                    up: true,
                    silent_since: silent.map(str::to_string),
                    volume_groups: vec![VgView {
                        name: "vg".into(),
                        reserved_bytes: *reserved,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn node_rows_table() {
        let lvms = vec![
            lvm("b", "2026-01-01T00:09:50Z", &["pvc-1"]),
            lvm("a", "2026-01-01T00:00:00Z", &[]),
        ];
        // (node, reserved, age, stale)
        type Want = Vec<(&'static str, Option<u64>, Option<i64>, bool)>;
        let cases: Vec<(&str, Option<NodesView>, Want)> = vec![
            (
                "no extender: age decides staleness",
                None,
                vec![("a", None, Some(600), true), ("b", None, Some(10), false)],
            ),
            (
                "extender: its silence mark decides, reserved shown",
                Some(ext(&[
                    ("a", None, 0),
                    ("b", Some("2026-01-01T00:00:00Z"), 64 * MI),
                ])),
                vec![
                    ("a", Some(0), Some(600), false),
                    ("b", Some(64 * MI), Some(10), true),
                ],
            ),
            (
                "a Node without report shows up stale",
                Some(ext(&[("a", None, 0), ("b", None, 0), ("c", None, 0)])),
                vec![
                    ("a", Some(0), Some(600), false),
                    ("b", Some(0), Some(10), false),
                    ("c", Some(0), None, true),
                ],
            ),
        ];
        for (name, view, want) in cases {
            let rows = node_rows(&lvms, view.as_ref(), now());
            let got: Want = rows
                .iter()
                .map(|r| {
                    (
                        match r.node.as_str() {
                            "a" => "a",
                            "b" => "b",
                            _ => "c",
                        },
                        r.reserved_bytes,
                        r.report_age_seconds,
                        r.stale,
                    )
                })
                .collect();
            assert_eq!(got, want, "{name}");
        }
        let rows = node_rows(&lvms, None, now());
        assert_eq!(rows[1].volumes, Some(1));
        assert_eq!(rows[1].thin_pools[0].size_bytes, 100 * MI);
        assert_eq!(rows[1].free_bytes, Some(512 * MI));
    }

    fn pv(name: &str, claim: Option<(&str, &str)>, handle: &str, node: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                capacity: Some([("storage".to_string(), Quantity("64Mi".into()))].into()),
                claim_ref: claim.map(|(ns, n)| ObjectReference {
                    namespace: Some(ns.into()),
                    name: Some(n.into()),
                    ..Default::default()
                }),
                csi: Some(CSIPersistentVolumeSource {
                    driver: DRIVER_NAME.into(),
                    volume_handle: handle.into(),
                    ..Default::default()
                }),
                node_affinity: Some(VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: TOPOLOGY_KEY.into(),
                                operator: "In".into(),
                                values: Some(vec![node.into()]),
                            }]),
                            ..Default::default()
                        }],
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn claim(ns: &str, name: &str, class: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some(class.into()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_string(), Quantity("1Gi".into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn class(name: &str, provisioner: &str) -> StorageClass {
        StorageClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            provisioner: provisioner.into(),
            ..Default::default()
        }
    }

    #[test]
    fn volume_report_table() {
        let claims = vec![
            claim("default", "bound", "lvmpin"),
            claim("default", "waiting", "lvmpin"),
            claim("other", "foreign", "nfs"),
        ];
        let pvs = vec![
            pv("pvc-1", Some(("default", "bound")), "vg/pvc-1", "n1"),
            pv("pvc-old", None, "vg/pvc-old", "n2"),
        ];
        let classes = vec![class("lvmpin", DRIVER_NAME), class("nfs", "nfs.example")];
        let lvms = vec![
            lvm("n1", "2026-01-01T00:00:00Z", &["pvc-1", "pvc-lost"]),
            lvm("n2", "2026-01-01T00:00:00Z", &["pvc-old"]),
        ];
        type Row = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<u64>,
        );
        let s = |x: &str| Some(x.to_string());
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Vec<Row>,
            Vec<(&'a str, &'a str)>,
        );
        let cases: Vec<Case> = vec![
            (
                None,
                None,
                vec![
                    (None, None, s("pvc-old"), s("n2"), Some(64 * MI)),
                    (s("default"), s("bound"), s("pvc-1"), s("n1"), Some(64 * MI)),
                    (s("default"), s("waiting"), None, None, Some(1024 * MI)),
                ],
                vec![("n1", "pvc-lost")],
            ),
            (
                None,
                Some("n1"),
                vec![(s("default"), s("bound"), s("pvc-1"), s("n1"), Some(64 * MI))],
                vec![("n1", "pvc-lost")],
            ),
            (
                None,
                Some("n2"),
                vec![(None, None, s("pvc-old"), s("n2"), Some(64 * MI))],
                vec![],
            ),
            (Some("other"), None, vec![], vec![("n1", "pvc-lost")]),
        ];
        for (ns, node, want_rows, want_orphans) in cases {
            let r = volume_report(&claims, &pvs, &classes, &lvms, ns, node);
            let got: Vec<Row> = r
                .volumes
                .iter()
                .map(|v| {
                    (
                        v.namespace.clone(),
                        v.claim.clone(),
                        v.persistent_volume.clone(),
                        v.node.clone(),
                        v.size_bytes,
                    )
                })
                .collect();
            assert_eq!(got, want_rows, "{ns:?} {node:?}");
            let orphans: Vec<(&str, &str)> = r
                .orphans
                .iter()
                .map(|o| (o.node.as_str(), o.logical_volume.as_str()))
                .collect();
            assert_eq!(orphans, want_orphans, "{ns:?} {node:?}");
        }
    }

    #[test]
    fn an_lv_of_the_same_name_on_another_node_is_an_orphan() {
        let pvs = vec![pv("pvc-1", None, "vg/pvc-1", "n1")];
        let lvms = vec![lvm("n2", "2026-01-01T00:00:00Z", &["pvc-1"])];
        let r = volume_report(&[], &pvs, &[], &lvms, None, None);
        assert_eq!(r.orphans.len(), 1);
    }

    #[test]
    fn events_newest_last_and_bounded() {
        let ev = |i: i64| Event {
            metadata: ObjectMeta::default(),
            last_timestamp: Some(Time(Timestamp::from_second(1_700_000_000 + i).unwrap())),
            reason: Some(format!("r{i}")),
            ..Default::default()
        };
        let evs: Vec<Event> = (0..15).rev().map(ev).collect();
        let rows = event_rows(&evs);
        assert_eq!(rows.len(), EVENTS_SHOWN);
        assert_eq!(rows.first().unwrap().reason, "r5");
        assert_eq!(rows.last().unwrap().reason, "r14");
        assert_eq!(rows[0].count, 1);
    }
}
