//! What a pod asks of a node's LVM: per volume group, the sizes of its unbound
//! claims of our classes, and the nodes its bound claims pin it to.

use std::collections::{BTreeMap, HashMap};

use lvmpin_api::names::PARAM_VOLUME_GROUP;
use lvmpin_api::thin::ThinLimits;

use crate::facts::{ClaimFacts, ClaimKey, ClassFacts, PodFacts, PvFacts};
use crate::index::{FastMap, NodeEntry};
use crate::sources::{Snapshots, SourceView, describe, source_node};
use crate::thin::demand_key;

/// One unbound claim of ours that the pod needs room for.
#[derive(Clone, Debug, PartialEq)]
pub struct Want {
    pub claim: ClaimKey,
    /// The capacity key it is charged to: its VG, or for a thin class its
    /// pool with the strictest limits of the pod's classes on that pool
    /// (`thin::demand_key`).
    pub vg: String,
    pub bytes: u64,
}

/// A bound claim: its volume lives on `node`, so the pod must go there. Or
/// an unbound claim restoring or cloning a thin volume on `node`.
#[derive(Clone, Debug, PartialEq)]
pub struct Pin {
    pub claim: ClaimKey,
    pub node: String,
    /// The source (`VolumeSnapshot ns/name`, …) of a restore or clone.
    pub source: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Demand {
    /// No claim of ours: every node passes.
    Nothing,
    /// A claim of ours can never be placed (bad size, class without VG): every
    /// node fails with this reason.
    Refused(String),
    Needs {
        wants: Vec<Want>,
        /// Claim sizes per VG, sorted by VG name; each is rounded up to the
        /// extent size of the node it is checked against.
        per_vg: Vec<(String, Vec<u64>)>,
        pins: Vec<Pin>,
    },
}

impl Demand {
    pub fn claim_keys(&self) -> Vec<&ClaimKey> {
        match self {
            Demand::Needs { wants, pins, .. } => wants
                .iter()
                .map(|w| &w.claim)
                .chain(pins.iter().map(|p| &p.claim))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The pod's demand, or an error meaning "the caches are not complete yet, retry".
pub fn pod_demand(
    pod: &PodFacts,
    claims: &FastMap<ClaimKey, ClaimFacts>,
    classes: &HashMap<String, ClassFacts>,
    pvs: &FastMap<String, PvFacts>,
    snapshots: &Snapshots,
    nodes: &FastMap<String, NodeEntry>,
) -> Result<Demand, String> {
    let view = SourceView {
        claims,
        pvs,
        nodes,
        snapshots,
    };
    let mut wants = Vec::new();
    // Per want, its thin pool.
    let mut pools: Vec<Option<&str>> = Vec::new();
    let mut strictest: BTreeMap<(&str, &str), ThinLimits> = BTreeMap::new();
    let mut pins = Vec::new();
    let mut refusals = Vec::new();
    for key in pod.claim_keys() {
        let Some(claim) = claims.get(&key) else {
            return Err(format!(
                "claim {key} used by pod {}/{} is not in the extender's cache yet",
                pod.namespace, pod.name
            ));
        };
        let Some(class_name) = &claim.class else {
            continue;
        };
        let Some(class) = classes.get(class_name) else {
            if claim.is_bound() {
                continue;
            }
            return Err(format!(
                "StorageClass {class_name} of claim {key} is not in the extender's cache"
            ));
        };
        if !class.ours {
            continue;
        }
        if let Some(volume) = &claim.volume_name {
            let node = pvs
                .get(&**volume)
                .and_then(|pv| pv.node.clone())
                .or_else(|| claim.selected_node.clone());
            match node {
                Some(node) => pins.push(Pin {
                    claim: key,
                    node,
                    source: None,
                }),
                None if pvs.contains_key(&**volume) => {}
                None => {
                    return Err(format!(
                        "claim {key} is bound to PV {volume}, which is not in the extender's cache yet"
                    ));
                }
            }
            continue;
        }
        let Some(vg) = &class.volume_group else {
            refusals.push(format!(
                "claim {key}: StorageClass {class_name} has no parameter {PARAM_VOLUME_GROUP}"
            ));
            continue;
        };
        let thin = match &class.thin_limits {
            Err(e) => {
                refusals.push(format!("claim {key}: {e}"));
                continue;
            }
            Ok(limits) => class
                .thin_pool
                .as_ref()
                .map(|pool| (pool.as_str(), limits.unwrap_or_default())),
        };
        if let Some(source) = &claim.source {
            match source_node(claim, class, source, view) {
                Ok(node) => pins.push(Pin {
                    claim: key.clone(),
                    node,
                    source: Some(describe(&key.namespace, source)),
                }),
                Err(e) => {
                    refusals.push(format!("claim {key}: {e}"));
                    continue;
                }
            }
        }
        match &claim.size {
            Ok(bytes) => {
                if let Some((pool, limits)) = thin {
                    strictest
                        .entry((vg.as_str(), pool))
                        .and_modify(|l: &mut ThinLimits| *l = l.strictest(limits))
                        .or_insert(limits);
                }
                wants.push(Want {
                    claim: key,
                    vg: vg.clone(),
                    bytes: *bytes,
                });
                pools.push(thin.map(|(p, _)| p));
            }
            Err(e) => refusals.push(format!("claim {key}: {e}")),
        }
    }
    // Claims of several classes in one pool are checked together, under
    // the strictest of their limits.
    for (w, pool) in wants.iter_mut().zip(&pools) {
        if let Some(pool) = pool
            && let Some(limits) = strictest.get(&(w.vg.as_str(), *pool))
        {
            w.vg = demand_key(&w.vg, pool, limits);
        }
    }
    if !refusals.is_empty() {
        return Ok(Demand::Refused(refusals.join("; ")));
    }
    if wants.is_empty() && pins.is_empty() {
        return Ok(Demand::Nothing);
    }
    let mut per_vg: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for w in &wants {
        per_vg.entry(w.vg.clone()).or_default().push(w.bytes);
    }
    Ok(Demand::Needs {
        wants,
        per_vg: per_vg.into_iter().collect(),
        pins,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{IntoFacts as _, claim_named, class, pod_with};

    fn run(pod: &PodFacts, claims: Vec<ClaimFacts>, pvs: Vec<PvFacts>) -> Result<Demand, String> {
        let claims = claims.into_iter().map(|c| (c.key.clone(), c)).collect();
        let classes = [
            class("fast", Some("vg1")),
            class("slow", Some("vg2")),
            class("novg", None),
            ClassFacts::new("other".into(), false, None, None, Ok(None)),
        ]
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect();
        let pvs = pvs.into_iter().map(|p| (p.name.clone(), p)).collect();
        pod_demand(
            pod,
            &claims,
            &classes,
            &pvs,
            &Snapshots::default(),
            &FastMap::default(),
        )
    }

    fn needs(d: Demand) -> (Vec<(String, Vec<u64>)>, Vec<Pin>) {
        match d {
            Demand::Needs { per_vg, pins, .. } => (per_vg, pins),
            other => panic!("expected Needs, got {other:?}"),
        }
    }

    /// Claims of two classes on one pool form one column under the
    /// strictest limits; a bad thin parameter refuses the claim.
    #[test]
    fn thin_claims_are_keyed_by_pool_with_the_strictest_limits() {
        use crate::testutil::thin_class;
        let lim = |r, d| ThinLimits {
            ratio_milli: r,
            data_percent: d,
            metadata_percent: 90,
        };
        let classes: HashMap<String, ClassFacts> = [
            thin_class("t1", "vg1", "pool0", lim(2000, 95)),
            thin_class("t2", "vg1", "pool0", lim(3000, 80)),
            class("fast", Some("vg1")),
            ClassFacts::new(
                "bad".into(),
                true,
                Some("vg1".into()),
                Some("pool0".into()),
                Err("StorageClass bad has a bad thin parameter: x".into()),
            ),
        ]
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect();
        let claims: FastMap<ClaimKey, ClaimFacts> = [
            claim_named("a").size_bytes(10).class("t1").facts(),
            claim_named("b").size_bytes(20).class("t2").facts(),
            claim_named("c").size_bytes(5).facts(),
            claim_named("d").size_bytes(5).class("bad").facts(),
        ]
        .into_iter()
        .map(|c| (c.key.clone(), c))
        .collect();
        let got = pod_demand(
            &pod_with(&["a", "b", "c"]),
            &claims,
            &classes,
            &FastMap::default(),
            &Snapshots::default(),
            &FastMap::default(),
        );
        let (per_vg, _) = needs(got.unwrap());
        assert_eq!(
            per_vg,
            vec![
                ("vg1".to_string(), vec![5]),
                ("vg1/pool0:2000:80:90".to_string(), vec![10, 20]),
            ]
        );
        let got = pod_demand(
            &pod_with(&["a", "d"]),
            &claims,
            &classes,
            &FastMap::default(),
            &Snapshots::default(),
            &FastMap::default(),
        );
        assert!(
            matches!(&got, Ok(Demand::Refused(r)) if r.contains("bad thin parameter")),
            "{got:?}"
        );
    }

    #[test]
    fn one_claim() {
        let p = pod_with(&["a"]);
        let (per_vg, pins) =
            needs(run(&p, vec![claim_named("a").size_bytes(10).facts()], vec![]).unwrap());
        assert_eq!(per_vg, vec![("vg1".to_string(), vec![10])]);
        assert!(pins.is_empty());
    }

    #[test]
    fn several_claims_and_vgs_are_summed_per_vg() {
        let p = pod_with(&["a", "b", "c"]);
        let claims = vec![
            claim_named("a").size_bytes(10).facts(),
            claim_named("b").size_bytes(20).facts(),
            claim_named("c").size_bytes(5).class("slow").facts(),
        ];
        let (per_vg, _) = needs(run(&p, claims, vec![]).unwrap());
        assert_eq!(
            per_vg,
            vec![
                ("vg1".to_string(), vec![10, 20]),
                ("vg2".to_string(), vec![5])
            ]
        );
    }

    #[test]
    fn other_classes_and_classless_claims_are_ignored() {
        let p = pod_with(&["a", "b"]);
        let claims = vec![
            claim_named("a").size_bytes(10).class("other").facts(),
            claim_named("b").size_bytes(10).no_class().facts(),
        ];
        assert_eq!(run(&p, claims, vec![]).unwrap(), Demand::Nothing);
        assert_eq!(
            run(&pod_with(&[]), vec![], vec![]).unwrap(),
            Demand::Nothing
        );
    }

    #[test]
    fn bound_claim_pins_by_pv_then_by_selected_node() {
        let p = pod_with(&["a", "b"]);
        let claims = vec![
            claim_named("a")
                .size_bytes(10)
                .volume("pv-a")
                .selected_node("n9")
                .facts(),
            claim_named("b")
                .size_bytes(10)
                .volume("pv-b")
                .selected_node("n2")
                .facts(),
        ];
        let pvs = vec![PvFacts {
            name: "pv-a".into(),
            node: Some("n1".into()),
        }];
        let (per_vg, pins) = needs(run(&p, claims, pvs).unwrap());
        assert!(per_vg.is_empty());
        let nodes: Vec<_> = pins.iter().map(|p| p.node.as_str()).collect();
        assert_eq!(nodes, vec!["n1", "n2"]);
    }

    #[test]
    fn bound_claim_with_unknown_pv_and_no_annotation_asks_for_retry() {
        let p = pod_with(&["a"]);
        let claims = vec![claim_named("a").size_bytes(10).volume("pv-a").facts()];
        assert!(run(&p, claims, vec![]).unwrap_err().contains("pv-a"));
    }

    #[test]
    fn refusals_name_the_claim_and_the_problem() {
        let cases: Vec<(ClaimFacts, &str)> = vec![
            (
                claim_named("a").size_bytes(10).class("novg").facts(),
                "no parameter lvmpin.io/volume-group",
            ),
            (
                claim_named("a").size("1Gi").local_disk_size("lots").facts(),
                "annotation lvmpin.io/local-disk-size is invalid",
            ),
            (
                claim_named("a").size("2Gi").local_disk_size("1Gi").facts(),
                "less than the requested",
            ),
            (
                claim_named("a")
                    .size_bytes(10)
                    .access_modes(&["ReadWriteMany"])
                    .facts(),
                "access mode ReadWriteMany",
            ),
            (
                claim_named("a").size_bytes(10).access_modes(&[]).facts(),
                "no access modes",
            ),
            (
                claim_named("a")
                    .size_bytes(10)
                    .data_source("Backup", "src")
                    .facts(),
                "data source of kind Backup",
            ),
        ];
        for (claim, want) in cases {
            match run(&pod_with(&["a"]), vec![claim], vec![]).unwrap() {
                Demand::Refused(r) => {
                    assert!(r.contains(want), "{r}");
                    assert!(r.contains("ns/a"), "{r}");
                }
                other => panic!("expected refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn valid_annotation_declares_the_size() {
        let claim = claim_named("a").size("1Gi").local_disk_size("3Gi").facts();
        let (per_vg, _) = needs(run(&pod_with(&["a"]), vec![claim], vec![]).unwrap());
        assert_eq!(per_vg, vec![("vg1".to_string(), vec![3 << 30])]);
    }

    #[test]
    fn missing_claim_or_class_asks_for_retry() {
        assert!(run(&pod_with(&["a"]), vec![], vec![]).is_err());
        let claim = claim_named("a").size_bytes(1).class("nope").facts();
        assert!(run(&pod_with(&["a"]), vec![claim], vec![]).is_err());
    }
}
