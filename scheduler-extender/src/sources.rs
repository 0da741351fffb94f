//! Restores and clones: which node holds a claim's source. A thin volume is
//! made from its source by a snapshot inside the same volume group, so the
//! new claim can only be placed on the node that holds the source.
//!
//! The facts come from watched VolumeSnapshots and VolumeSnapshotContents
//! (when the snapshot CRDs are installed), claims, PVs and Nodes; the rule
//! `source_node` is pure.

use std::collections::HashMap;

use lvmpin_api::ClaimSource;
use lvmpin_api::VolumeId;
use lvmpin_api::names::{DRIVER_NAME, PARAM_THIN_POOL};
use lvmpin_api::snapshot::{LABEL_MANAGED_BY, VolumeSnapshot, VolumeSnapshotContent};

use crate::facts::{ClaimFacts, ClaimKey, ClassFacts, PvFacts};
use crate::index::{FastMap, NodeEntry};

/// What placement needs of a VolumeSnapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapFacts {
    pub key: ClaimKey,
    /// `status.boundVolumeSnapshotContentName`.
    pub content: Option<String>,
}

/// What placement needs of a VolumeSnapshotContent.
#[derive(Clone, Debug, PartialEq)]
pub struct ContentFacts {
    pub name: String,
    pub driver: String,
    pub ready: bool,
    /// The snapshot-controller's `managed-by` label: the source's node.
    pub node: Option<String>,
    /// `spec.source.volumeHandle`, for contents without the label.
    pub volume_handle: Option<String>,
    pub error: Option<String>,
}

pub fn snapshot_facts(s: &VolumeSnapshot) -> Option<SnapFacts> {
    Some(SnapFacts {
        key: ClaimKey::new(s.metadata.namespace.clone()?, s.metadata.name.clone()?),
        content: s
            .status
            .as_ref()
            .and_then(|st| st.bound_volume_snapshot_content_name.clone())
            .filter(|c| !c.is_empty()),
    })
}

pub fn content_facts(c: &VolumeSnapshotContent) -> Option<ContentFacts> {
    Some(ContentFacts {
        name: c.metadata.name.clone()?,
        driver: c.spec.driver.clone(),
        ready: c.is_ready(),
        node: c.managed_by().map(str::to_string),
        volume_handle: c.spec.source.volume_handle.clone(),
        error: c
            .status
            .as_ref()
            .and_then(|s| s.error.as_ref())
            .and_then(|e| e.message.clone()),
    })
}

/// The watched snapshot objects. `installed` stays false while the
/// snapshot CRDs are missing, so that refusals can say why.
#[derive(Clone, Debug, Default)]
pub struct Snapshots {
    pub installed: bool,
    snapshots: HashMap<ClaimKey, SnapFacts>,
    contents: HashMap<String, ContentFacts>,
}

impl Snapshots {
    pub fn upsert_snapshot(&mut self, s: SnapFacts) {
        self.snapshots.insert(s.key.clone(), s);
    }
    pub fn remove_snapshot(&mut self, key: &ClaimKey) {
        self.snapshots.remove(key);
    }
    pub fn replace_snapshots(&mut self, all: Vec<SnapFacts>) {
        self.snapshots = all.into_iter().map(|s| (s.key.clone(), s)).collect();
    }
    pub fn upsert_content(&mut self, c: ContentFacts) {
        self.contents.insert(c.name.clone(), c);
    }
    pub fn remove_content(&mut self, name: &str) {
        self.contents.remove(name);
    }
    pub fn replace_contents(&mut self, all: Vec<ContentFacts>) {
        self.contents = all.into_iter().map(|c| (c.name.clone(), c)).collect();
    }
}

/// Everything `source_node` reads.
#[derive(Clone, Copy)]
pub struct SourceView<'a> {
    pub claims: &'a FastMap<ClaimKey, ClaimFacts>,
    pub pvs: &'a FastMap<String, PvFacts>,
    pub nodes: &'a FastMap<String, NodeEntry>,
    pub snapshots: &'a Snapshots,
}

/// The node that holds `claim`'s source, or why the claim cannot be made
/// from it (the reason names the source).
pub fn source_node(
    claim: &ClaimFacts,
    class: &ClassFacts,
    source: &ClaimSource,
    view: SourceView<'_>,
) -> Result<String, String> {
    let ns = &claim.key.namespace;
    let what = describe(ns, source);
    if class.thin_pool.is_none() {
        return Err(format!(
            "cannot restore or clone {what}: StorageClass {} is linear (no parameter {PARAM_THIN_POOL}); lvmpin makes volumes from a source only in a thin pool",
            class.name
        ));
    }
    let node = match source {
        ClaimSource::Claim(name) => claim_source_node(claim, class, name, view)?,
        ClaimSource::Snapshot(name) => {
            snapshot_node(&ClaimKey::new(ns.clone(), name.clone()), view)?
        }
    };
    if !view.nodes.get(&node).is_some_and(|n| n.known) {
        return Err(format!(
            "{what} is on node {node}, which is gone: a restore or clone can only be made on its source's node"
        ));
    }
    Ok(node)
}

/// `VolumeSnapshot ns/name` or `PersistentVolumeClaim ns/name`.
pub fn describe(namespace: &str, source: &ClaimSource) -> String {
    let kind = match source {
        ClaimSource::Snapshot(_) => "VolumeSnapshot",
        ClaimSource::Claim(_) => "PersistentVolumeClaim",
    };
    format!("{kind} {namespace}/{}", source.name())
}

fn claim_source_node(
    claim: &ClaimFacts,
    class: &ClassFacts,
    name: &str,
    view: SourceView<'_>,
) -> Result<String, String> {
    let key = ClaimKey::new(claim.key.namespace.clone(), name);
    let Some(source) = view.claims.get(&key) else {
        return Err(format!("source claim {key} does not exist"));
    };
    if source.class.as_deref() != Some(class.name.as_str()) {
        return Err(format!(
            "source claim {key} has StorageClass {}; a clone must use the same StorageClass ({})",
            source.class.as_deref().unwrap_or("(none)"),
            class.name
        ));
    }
    let Some(volume) = &source.volume_name else {
        return Err(format!("source claim {key} is not bound yet"));
    };
    view.pvs
        .get(&**volume)
        .and_then(|pv| pv.node.clone())
        .or_else(|| source.selected_node.clone())
        .ok_or_else(|| {
            format!("source claim {key} is bound to PV {volume}, which is not pinned to a node")
        })
}

fn snapshot_node(key: &ClaimKey, view: SourceView<'_>) -> Result<String, String> {
    let snaps = view.snapshots;
    let Some(snap) = snaps.snapshots.get(key) else {
        let why = if snaps.installed {
            ""
        } else {
            " (the snapshot.storage.k8s.io CRDs are not installed)"
        };
        return Err(format!("VolumeSnapshot {key} does not exist{why}"));
    };
    let Some(content_name) = &snap.content else {
        return Err(format!(
            "VolumeSnapshot {key} is not bound to a VolumeSnapshotContent yet"
        ));
    };
    let Some(content) = snaps.contents.get(content_name) else {
        return Err(format!(
            "VolumeSnapshotContent {content_name} of VolumeSnapshot {key} does not exist"
        ));
    };
    if content.driver != DRIVER_NAME {
        return Err(format!(
            "VolumeSnapshot {key} was taken by driver {}, not {DRIVER_NAME}",
            content.driver
        ));
    }
    if !content.ready {
        let error = content
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(format!(
            "VolumeSnapshot {key} is not ready to use yet{error}"
        ));
    }
    // Our PVs are named like their LV, so the handle also finds the PV.
    let by_pv = || {
        let id: VolumeId = content.volume_handle.as_deref()?.parse().ok()?;
        view.pvs.get(&id.lv)?.node.clone()
    };
    content.node.clone().or_else(by_pv).ok_or_else(|| {
        format!(
            "cannot tell which node holds VolumeSnapshot {key}: its content has no label {LABEL_MANAGED_BY} (run the snapshot-controller with --enable-distributed-snapshotting) and its source PV is gone"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{IntoFacts as _, claim_named};
    use lvmpin_api::snapshot::SNAPSHOT_GROUP;

    fn thin(name: &str) -> ClassFacts {
        ClassFacts::new(
            name.into(),
            true,
            Some("vg1".into()),
            Some("pool".into()),
            Ok(None),
        )
    }

    fn content(name: &str, ready: bool, node: Option<&str>) -> ContentFacts {
        ContentFacts {
            name: name.into(),
            driver: DRIVER_NAME.into(),
            ready,
            node: node.map(Into::into),
            volume_handle: Some("vg1/pv-src".into()),
            error: None,
        }
    }

    struct World {
        claims: FastMap<ClaimKey, ClaimFacts>,
        pvs: FastMap<String, PvFacts>,
        nodes: FastMap<String, NodeEntry>,
        snapshots: Snapshots,
    }

    /// Node n1 holds claim `src` (class `thin`, PV `pv-src`); snapshot
    /// `snap` of it is ready, labelled n1; n2 exists too.
    fn world() -> World {
        let mut snapshots = Snapshots {
            installed: true,
            ..Default::default()
        };
        snapshots.upsert_snapshot(SnapFacts {
            key: ClaimKey::new("ns", "snap"),
            content: Some("c1".into()),
        });
        snapshots.upsert_content(content("c1", true, Some("n1")));
        let src = claim_named("src")
            .class("thin")
            .size_bytes(10)
            .volume("pv-src")
            .facts();
        World {
            claims: [(src.key.clone(), src)].into_iter().collect(),
            pvs: [(
                "pv-src".to_string(),
                PvFacts {
                    name: "pv-src".into(),
                    node: Some("n1".into()),
                },
            )]
            .into_iter()
            .collect(),
            nodes: ["n1", "n2"]
                .into_iter()
                .map(|n| {
                    (
                        n.to_string(),
                        NodeEntry {
                            known: true,
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            snapshots,
        }
    }

    fn resolve(w: &World, class: &ClassFacts, source: ClaimSource) -> Result<String, String> {
        let claim = claim_named("new").class(&class.name).size_bytes(10).facts();
        let view = SourceView {
            claims: &w.claims,
            pvs: &w.pvs,
            nodes: &w.nodes,
            snapshots: &w.snapshots,
        };
        source_node(&claim, class, &source, view)
    }

    #[test]
    fn sources_resolve_to_the_node_or_a_reason() {
        let snap = || ClaimSource::Snapshot("snap".into());
        let clone = || ClaimSource::Claim("src".into());
        type Change = fn(&mut World);
        type Case = (
            &'static str,
            Change,
            ClassFacts,
            ClaimSource,
            Result<&'static str, &'static str>,
        );
        let cases: Vec<Case> = vec![
            ("restore", |_| {}, thin("thin"), snap(), Ok("n1")),
            ("clone", |_| {}, thin("thin"), clone(), Ok("n1")),
            (
                "linear class",
                |_| {},
                ClassFacts {
                    thin_pool: None,
                    ..thin("thin")
                },
                snap(),
                Err("StorageClass thin is linear"),
            ),
            (
                "clone of another class",
                |_| {},
                thin("other"),
                clone(),
                Err("a clone must use the same StorageClass (other)"),
            ),
            (
                "missing claim",
                |w| w.claims.clear(),
                thin("thin"),
                clone(),
                Err("source claim ns/src does not exist"),
            ),
            (
                "unbound claim",
                |w| {
                    for c in w.claims.values_mut() {
                        c.volume_name = None;
                    }
                },
                thin("thin"),
                clone(),
                Err("source claim ns/src is not bound yet"),
            ),
            (
                "missing snapshot",
                |w| w.snapshots.remove_snapshot(&ClaimKey::new("ns", "snap")),
                thin("thin"),
                snap(),
                Err("VolumeSnapshot ns/snap does not exist"),
            ),
            (
                "CRDs absent",
                |w| w.snapshots = Snapshots::default(),
                thin("thin"),
                snap(),
                Err("CRDs are not installed"),
            ),
            (
                "snapshot not ready",
                |w| w.snapshots.upsert_content(content("c1", false, Some("n1"))),
                thin("thin"),
                snap(),
                Err("VolumeSnapshot ns/snap is not ready to use yet"),
            ),
            (
                "snapshot of another driver",
                |w| {
                    w.snapshots.upsert_content(ContentFacts {
                        driver: "other.csi.io".into(),
                        ..content("c1", true, Some("n1"))
                    })
                },
                thin("thin"),
                snap(),
                Err("taken by driver other.csi.io, not lvm.lvmpin.io"),
            ),
            (
                "no label: the source PV tells",
                |w| w.snapshots.upsert_content(content("c1", true, None)),
                thin("thin"),
                snap(),
                Ok("n1"),
            ),
            (
                "no label and no PV",
                |w| {
                    w.snapshots.upsert_content(content("c1", true, None));
                    w.pvs.clear();
                },
                thin("thin"),
                snap(),
                Err("--enable-distributed-snapshotting"),
            ),
            (
                "source node gone",
                |w| {
                    w.nodes.remove("n1");
                },
                thin("thin"),
                snap(),
                Err("VolumeSnapshot ns/snap is on node n1, which is gone"),
            ),
            (
                "clone source node gone",
                |w| {
                    w.nodes.remove("n1");
                },
                thin("thin"),
                clone(),
                Err("PersistentVolumeClaim ns/src is on node n1, which is gone"),
            ),
        ];
        for (name, change, class, source, want) in cases {
            let mut w = world();
            change(&mut w);
            match (resolve(&w, &class, source), want) {
                (Ok(node), Ok(want)) => assert_eq!(node, want, "{name}"),
                (Err(reason), Err(want)) => assert!(reason.contains(want), "{name}: {reason}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn facts_from_objects() {
        let c: VolumeSnapshotContent = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "c1", "labels": {LABEL_MANAGED_BY: "n1"}},
            "spec": {"driver": DRIVER_NAME, "deletionPolicy": "Delete",
                "source": {"volumeHandle": "vg1/pvc-1"}, "volumeSnapshotRef": {}},
            "status": {"readyToUse": true}
        }))
        .unwrap();
        let f = content_facts(&c).unwrap();
        assert_eq!(f.node.as_deref(), Some("n1"));
        assert!(f.ready);
        let s: VolumeSnapshot = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s", "namespace": "ns"},
            "spec": {"source": {"persistentVolumeClaimName": "src"}},
            "status": {"boundVolumeSnapshotContentName": "c1"}
        }))
        .unwrap();
        assert_eq!(snapshot_facts(&s).unwrap().content.as_deref(), Some("c1"));
        // A claim restoring a snapshot keeps its size and names its source.
        let claim = claim_named("a")
            .size_bytes(10)
            .data_source_in(SNAPSHOT_GROUP, "VolumeSnapshot", "s")
            .facts();
        assert_eq!(claim.size, Ok(10));
        assert_eq!(claim.source, Some(ClaimSource::Snapshot("s".into())));
    }

    /// Through the whole filter: a restore passes only on the snapshot's
    /// node, every other node fails naming the source, and the source's
    /// node still fails for room.
    #[test]
    fn filter_pins_a_restore_to_its_source() {
        use crate::engine::{Settings, State, filter};
        use crate::testutil::{pod_with, thin_node, zoned_node};
        use std::time::Instant;
        const GI: u64 = 1 << 30;
        let nodes = ["n1", "n2", "n3"];
        // Thin claims are charged against the pool, so room is pool room.
        let run = |pool_n3: u64, claim: ClaimFacts| {
            let mut s = State::default();
            s.index.upsert_class(thin("thin"));
            for n in nodes {
                s.index.upsert_node(zoned_node(n, "z"));
                let pool = if n == "n3" { pool_n3 } else { 50 * GI };
                s.index
                    .upsert_lvm(thin_node(n, "vg1", "pool", pool, 1.0, 0));
            }
            s.index.snapshots.installed = true;
            s.index.snapshots.upsert_snapshot(SnapFacts {
                key: ClaimKey::new("ns", "snap"),
                content: Some("c1".into()),
            });
            s.index
                .snapshots
                .upsert_content(content("c1", true, Some("n3")));
            s.index.upsert_pv(PvFacts {
                name: "pv-src".into(),
                node: Some("n1".into()),
            });
            s.index.upsert_claim(
                claim_named("src")
                    .class("thin")
                    .size("1Gi")
                    .volume("pv-src")
                    .facts(),
            );
            let pod = pod_with(&[&*claim.key.name]);
            s.index.upsert_claim(claim);
            filter(&mut s, &Settings::default(), &pod, &nodes, Instant::now())
        };
        let restore = || {
            claim_named("r")
                .class("thin")
                .size("5Gi")
                .data_source_in(SNAPSHOT_GROUP, "VolumeSnapshot", "snap")
                .facts()
        };
        let out = run(50 * GI, restore());
        assert_eq!(out.error, None);
        assert_eq!(out.pass, vec![2]);
        let failed: Vec<usize> = out.unresolvable.iter().map(|(i, _)| *i).collect();
        assert_eq!(failed, vec![0, 1]);
        for (_, reason) in &out.unresolvable {
            assert!(
                reason.contains("made from VolumeSnapshot ns/snap, which is on node n3"),
                "{reason}"
            );
        }
        let full = run(GI, restore());
        assert!(full.pass.is_empty());
        let why: Vec<&str> = full.unresolvable.iter().map(|(_, r)| r.as_str()).collect();
        assert!(
            why.iter().any(|r| r.contains("thin pool vg1/pool")),
            "{why:?}"
        );
        let clone = claim_named("c")
            .class("thin")
            .size("5Gi")
            .data_source("PersistentVolumeClaim", "src")
            .facts();
        assert_eq!(run(50 * GI, clone).pass, vec![0]);
    }
}
