//! Placing one StatefulSet's pods across zones by weights (for example 2:2:1).
//!
//! The weights are annotations on the StatefulSet (see docs/zone-ratio.md).
//! Each replica slot (ordinal below `spec.replicas`, other than the incoming
//! pod's own) counts in one zone, the first of: its pod's node, the node of
//! its claims (selected node or PV node affinity), the zone the extender
//! chose for it a moment ago. The next pod goes to the zone with the largest
//! w/(2n+1), the Webster/Sainte-Laguë divisor rule that Karmada uses
//! (`pkg/util/helper/webstermethod.go` in karmada-io/karmada): placed one at
//! a time from zero, it always reproduces the proportional split. Ties go to
//! the zone with fewer pods, then to the smaller name.
//!
//! Parsing and the choice are pure; `lookup` reads the index.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use lvmpin_api::names::{
    ANN_ZONE_GROUP, ANN_ZONE_KEY, ANN_ZONE_POLICY, ANN_ZONE_WEIGHTS, ZONE_LABEL,
};

use crate::facts::{ClaimKey, PodFacts, StsFacts};
use crate::index::Index;

/// Slots counted per StatefulSet at most: the loop runs per filter, and
/// `spec.replicas` is user input.
pub const MAX_SLOTS: u32 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    /// When the next zone has no node that can take the pod, the best zone
    /// that has one is used instead.
    #[default]
    Preferred,
    /// The pod waits until the next zone has room.
    Required,
}

/// StatefulSets of one namespace whose `zone-group` annotation names the same
/// label, with the same value, share one count.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub namespace: String,
    pub label: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ZoneRatio {
    /// Sorted by zone, each zone once, at least one weight above 0.
    pub weights: Vec<(String, u32)>,
    /// The node label whose values are the zones.
    pub key: String,
    pub policy: Policy,
    pub group: Option<GroupKey>,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RatioError {
    #[error("{ann} {value}: {problem}", ann = ANN_ZONE_WEIGHTS)]
    Weights { value: String, problem: String },
    #[error("{ann} {0}: use Preferred or Required", ann = ANN_ZONE_POLICY)]
    Policy(String),
    #[error("{ann} is empty: name a node label or leave it out", ann = ANN_ZONE_KEY)]
    Key,
    #[error("{ann} names label {0}, which the StatefulSet does not carry", ann = ANN_ZONE_GROUP)]
    Group(String),
}

impl RatioError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            RatioError::Weights { .. } => "weights",
            RatioError::Policy(_) => "policy",
            RatioError::Key => "key",
            RatioError::Group(_) => "group",
        }
    }
}

/// Quoted, and at most 256 bytes of it: annotations are user input.
fn bounded(s: &str) -> String {
    format!("{:?}", lvmpin_api::text::cut(s, 256))
}

/// The StatefulSet's zone ratio: None without the weights annotation.
pub fn parse(
    namespace: &str,
    annotations: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> Option<Result<ZoneRatio, RatioError>> {
    let weights = annotations.get(ANN_ZONE_WEIGHTS)?;
    Some(parse_all(namespace, weights, annotations, labels))
}

fn parse_all(
    namespace: &str,
    weights: &str,
    annotations: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> Result<ZoneRatio, RatioError> {
    let weights = parse_weights(weights).map_err(|problem| RatioError::Weights {
        value: bounded(weights),
        problem,
    })?;
    let policy = match annotations.get(ANN_ZONE_POLICY).map(|p| p.trim()) {
        None | Some("Preferred") => Policy::Preferred,
        Some("Required") => Policy::Required,
        Some(other) => return Err(RatioError::Policy(bounded(other))),
    };
    let key = match annotations.get(ANN_ZONE_KEY).map(|k| k.trim()) {
        None => ZONE_LABEL.to_string(),
        Some("") => return Err(RatioError::Key),
        Some(k) => k.to_string(),
    };
    let group = match annotations.get(ANN_ZONE_GROUP).map(|g| g.trim()) {
        None | Some("") => None,
        Some(label) => match labels.get(label) {
            Some(value) => Some(GroupKey {
                namespace: namespace.to_string(),
                label: label.to_string(),
                value: value.clone(),
            }),
            None => return Err(RatioError::Group(bounded(label))),
        },
    };
    Ok(ZoneRatio {
        weights,
        key,
        policy,
        group,
    })
}

/// `zone-a=2, zone-b=1`: whole numbers ≥ 0, each zone once, not all 0.
fn parse_weights(v: &str) -> Result<Vec<(String, u32)>, String> {
    let mut out: BTreeMap<String, u32> = BTreeMap::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((zone, weight)) = part.split_once('=') else {
            return Err(format!("{} is not zone=weight", bounded(part)));
        };
        let (zone, weight) = (zone.trim(), weight.trim());
        if zone.is_empty() {
            return Err(format!("{} has no zone name", bounded(part)));
        }
        let Ok(w) = weight.parse::<u32>() else {
            return Err(format!(
                "weight {} of zone {} is not a whole number from 0 to {}",
                bounded(weight),
                bounded(zone),
                u32::MAX
            ));
        };
        if out.insert(zone.to_string(), w).is_some() {
            return Err(format!("zone {} is listed twice", bounded(zone)));
        }
    }
    if out.values().all(|w| *w == 0) {
        return Err("no zone has a weight above 0".into());
    }
    Ok(out.into_iter().collect())
}

/// Which of two zones (name, weight, pods) gets the next pod: `Less` means
/// `a`. w_a/(2n_a+1) against w_b/(2n_b+1), cross-multiplied in integers.
fn order(a: (&str, u32, u32), b: (&str, u32, u32)) -> Ordering {
    let (za, wa, na) = a;
    let (zb, wb, nb) = b;
    let pa = u128::from(wa) * (2 * u128::from(nb) + 1);
    let pb = u128::from(wb) * (2 * u128::from(na) + 1);
    pb.cmp(&pa).then(na.cmp(&nb)).then(za.cmp(zb))
}

/// The zone that gets the next pod among those `candidate` accepts.
pub fn next_zone<'a>(
    weights: &'a [(String, u32)],
    counts: &BTreeMap<String, u32>,
    candidate: impl Fn(&str, u32) -> bool,
) -> Option<&'a str> {
    weights
        .iter()
        .filter(|(z, w)| candidate(z, *w))
        .map(|(z, w)| (z.as_str(), *w, counts.get(z).copied().unwrap_or(0)))
        .min_by(|a, b| order(*a, *b))
        .map(|(z, _, _)| z)
}

/// How `seats` pods split over the weighted zones, placed one at a time.
pub fn targets(weights: &[(String, u32)], seats: u32) -> BTreeMap<String, u32> {
    let mut counts: BTreeMap<String, u32> = weights.iter().map(|(z, _)| (z.clone(), 0)).collect();
    for _ in 0..seats.min(MAX_SLOTS) {
        let Some(z) = next_zone(weights, &counts, |_, w| w > 0) else {
            break;
        };
        if let Some(n) = counts.get_mut(z) {
            *n += 1;
        }
    }
    counts
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Only nodes of this zone.
    Zone(String),
    /// Preferred, and no listed zone has a node that can take the pod: the
    /// ratio does not narrow the choice.
    Anywhere,
    /// Required, and the next zone cannot take the pod now: every node fails.
    Wait(String),
}

/// The rule. `feasible`: zones with a node that passes every other check
/// (capacity included); `up`: zones with a Ready, uncordoned node.
pub fn decide(
    ratio: &ZoneRatio,
    counts: &BTreeMap<String, u32>,
    feasible: &BTreeSet<&str>,
    up: &BTreeSet<&str>,
) -> Decision {
    match ratio.policy {
        Policy::Preferred => match next_zone(&ratio.weights, counts, |z, _| feasible.contains(z)) {
            Some(z) => Decision::Zone(z.to_string()),
            None => Decision::Anywhere,
        },
        Policy::Required => {
            match next_zone(&ratio.weights, counts, |z, w| w > 0 && up.contains(z)) {
                None => Decision::Wait(format!(
                    "no zone with a weight above 0 has a Ready, uncordoned node ({})",
                    ratio.key
                )),
                Some(z) if feasible.contains(z) => Decision::Zone(z.to_string()),
                Some(z) => Decision::Wait(format!(
                    "zone {z} is next and none of its nodes can take the pod"
                )),
            }
        }
    }
}

/// What the index says about a pod's zone ratio.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// Not a StatefulSet's pod, no ratio, or the StatefulSet is not cached.
    Unconstrained,
    /// The annotations do not parse: the pod is placed as without them.
    Malformed(&'a StsFacts, &'a RatioError),
    Ratio(Plan<'a>),
}

#[derive(Debug)]
pub struct Plan<'a> {
    pub sts: &'a StsFacts,
    pub ratio: &'a ZoneRatio,
    pub ordinal: u32,
    /// Pods per zone over the StatefulSet's (or group's) other slots.
    pub counts: BTreeMap<String, u32>,
    /// Replicas of the StatefulSet, or of its whole group.
    pub replicas: u32,
}

pub fn lookup<'a>(ix: &'a Index, pod: &PodFacts, now: Instant) -> Lookup<'a> {
    let (Some(owner), Some(ordinal)) = (&pod.owner, pod.ordinal) else {
        return Lookup::Unconstrained;
    };
    let Some(sts) = ix.stateful_sets.get(owner) else {
        return Lookup::Unconstrained;
    };
    let ratio = match &sts.ratio {
        None => return Lookup::Unconstrained,
        Some(Err(e)) => return Lookup::Malformed(sts, e),
        Some(Ok(r)) => r,
    };
    let members: Vec<&StsFacts> = match &ratio.group {
        None => vec![sts],
        Some(g) => ix
            .stateful_sets
            .values()
            .filter(|m| matches!(&m.ratio, Some(Ok(r)) if r.group.as_ref() == Some(g)))
            .collect(),
    };
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    let mut replicas = 0u32;
    for m in members {
        replicas = replicas.saturating_add(m.replicas);
        for i in 0..m.replicas.min(MAX_SLOTS) {
            if m.uid == sts.uid && i == ordinal {
                continue;
            }
            if let Some(z) = slot_zone(ix, m, i, &ratio.key, now) {
                *counts.entry(z.to_string()).or_default() += 1;
            }
        }
    }
    Lookup::Ratio(Plan {
        sts,
        ratio,
        ordinal,
        counts,
        replicas,
    })
}

/// The zone slot `i` of `sts` counts in, if any.
fn slot_zone<'a>(
    ix: &'a Index,
    sts: &StsFacts,
    i: u32,
    key: &str,
    now: Instant,
) -> Option<&'a str> {
    let pod = ix
        .slots
        .get(&sts.uid)
        .and_then(|s| s.get(&i))
        .and_then(|uid| ix.pods.get(uid));
    if let Some(node) = pod.and_then(|p| p.node.as_deref()) {
        return ix.node_label(node, key);
    }
    let templated = sts
        .claim_templates
        .iter()
        .map(|t| ClaimKey::new(sts.namespace.clone(), format!("{t}-{}-{i}", sts.name)));
    let claimed = pod
        .into_iter()
        .flat_map(|p| p.claim_keys())
        .chain(templated)
        .find_map(|k| ix.claims.get(&k).and_then(|c| ix.claim_node(c)));
    if let Some(node) = claimed {
        return ix.node_label(node, key);
    }
    ix.zone_pick(&sts.uid, i, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ratio(weights: &str, policy: Policy) -> ZoneRatio {
        ZoneRatio {
            weights: parse_weights(weights).expect("weights"),
            key: ZONE_LABEL.into(),
            policy,
            group: None,
        }
    }

    fn counts(c: &[(&str, u32)]) -> BTreeMap<String, u32> {
        c.iter().map(|(z, n)| (z.to_string(), *n)).collect()
    }

    fn set(s: &str) -> BTreeSet<&str> {
        s.split(',').filter(|z| !z.is_empty()).collect()
    }

    #[test]
    fn decision_table() {
        use Decision::*;
        use Policy::*;
        type Case = (
            &'static str,
            &'static str,
            Policy,
            &'static [(&'static str, u32)],
            &'static str,
            &'static str,
            Decision,
        );
        // name, weights, policy, counts, feasible, up, expected
        let cases: &[Case] = &[
            ("empty: the heaviest zone", "a=2,b=1", Preferred, &[], "a,b", "a,b", Zone("a".into())),
            ("2:1 after a: b (1 > 2/3)", "a=2,b=1", Preferred, &[("a", 1)], "a,b", "a,b", Zone("b".into())),
            ("3:2:1 with a=c priority: fewer pods", "a=3,b=2,c=1", Preferred, &[("a", 1), ("b", 1)], "a,b,c", "a,b,c", Zone("c".into())),
            ("tie on priority and pods: name", "a=1,b=1,c=1", Preferred, &[("a", 1)], "a,b,c", "a,b,c", Zone("b".into())),
            ("2:2:1 fifth pod", "a=2,b=2,c=1", Preferred, &[("a", 2), ("b", 1), ("c", 1)], "a,b,c", "a,b,c", Zone("b".into())),
            ("capacity short in b: Preferred takes the next", "a=2,b=2,c=1", Preferred, &[("a", 1)], "a,c", "a,b,c", Zone("c".into())),
            ("capacity short in b: Required waits", "a=2,b=2,c=1", Required, &[("a", 1)], "a,c", "a,b,c", Wait("zone b is next and none of its nodes can take the pod".into())),
            ("zone b down: Preferred skips it", "a=2,b=2,c=1", Preferred, &[("a", 1)], "a,c", "a,c", Zone("c".into())),
            ("zone b down: Required skips it too", "a=2,b=2,c=1", Required, &[("a", 1)], "a,c", "a,c", Zone("c".into())),
            ("pods pinned in a down zone still count", "a=1,b=1", Required, &[("a", 2), ("b", 0)], "b", "b", Zone("b".into())),
            ("standby zone unused while others fit", "a=1,s=0", Preferred, &[("a", 5)], "a,s", "a,s", Zone("a".into())),
            ("standby zone takes over under Preferred", "a=1,s=0", Preferred, &[("a", 5)], "s", "a,s", Zone("s".into())),
            ("standby zone never under Required", "a=1,s=0", Required, &[("a", 5)], "s", "a,s", Wait("zone a is next and none of its nodes can take the pod".into())),
            ("Required, every weighted zone down", "a=1,s=0", Required, &[], "s", "s", Wait("no zone with a weight above 0 has a Ready, uncordoned node (topology.kubernetes.io/zone)".into())),
            ("Preferred, no listed zone fits: anywhere", "a=1,b=1", Preferred, &[], "x", "a,b,x", Anywhere),
            ("pods in unlisted zones do not matter", "a=1,b=1", Preferred, &[("x", 3), ("a", 1)], "a,b,x", "a,b,x", Zone("b".into())),
            ("scale-up after scale-down drift: back to the ratio", "a=2,b=2,c=1", Preferred, &[("a", 1), ("b", 2), ("c", 1)], "a,b,c", "a,b,c", Zone("a".into())),
        ];
        for (name, weights, policy, c, feasible, up, want) in cases {
            let got = decide(
                &ratio(weights, *policy),
                &counts(c),
                &set(feasible),
                &set(up),
            );
            assert_eq!(&got, want, "{name}");
        }
    }

    #[test]
    fn sequential_placement_reproduces_the_split() {
        let order_of = |weights: &str, n: usize| {
            let r = ratio(weights, Policy::Preferred);
            let mut c = BTreeMap::new();
            let mut seq = String::new();
            for _ in 0..n {
                let z = next_zone(&r.weights, &c, |_, w| w > 0).expect("zone");
                seq.push_str(z);
                *c.entry(z.to_string()).or_default() += 1;
            }
            seq
        };
        assert_eq!(order_of("a=2,b=1", 6), "abaaba");
        assert_eq!(order_of("a=3,b=2,c=1", 6), "abcaba");
        assert_eq!(order_of("a=2,b=2,c=1", 10), "abcababcab");
        let t = |w: &str, n| targets(&ratio(w, Policy::Preferred).weights, n);
        assert_eq!(t("a=2,b=2,c=1", 5), counts(&[("a", 2), ("b", 2), ("c", 1)]));
        assert_eq!(
            t("a=2,b=2,c=1", 10),
            counts(&[("a", 4), ("b", 4), ("c", 2)])
        );
        assert_eq!(t("a=1,s=0", 3), counts(&[("a", 3), ("s", 0)]));
        // Huge weights compare exactly.
        let big = format!("a={},b={}", u32::MAX, u32::MAX - 1);
        assert_eq!(t(&big, 1), counts(&[("a", 1), ("b", 0)]));
        assert_eq!(t(&big, 2), counts(&[("a", 1), ("b", 1)]));
    }

    #[test]
    fn parse_table() {
        let labels: BTreeMap<String, String> =
            [("app.kubernetes.io/part-of".to_string(), "mq".to_string())].into();
        let ann = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let ok = |pairs: &[(&str, &str)]| {
            parse("ns", &ann(pairs), &labels)
                .expect("present")
                .expect("valid")
        };
        let err = |pairs: &[(&str, &str)]| {
            parse("ns", &ann(pairs), &labels)
                .expect("present")
                .expect_err("invalid")
        };

        assert_eq!(
            parse("ns", &ann(&[(ANN_ZONE_POLICY, "Required")]), &labels),
            None
        );
        let r = ok(&[(ANN_ZONE_WEIGHTS, " zone-b=1, zone-a=2 ,,zone-c=0")]);
        assert_eq!(
            r.weights,
            vec![
                ("zone-a".into(), 2),
                ("zone-b".into(), 1),
                ("zone-c".into(), 0)
            ]
        );
        assert_eq!(
            (r.key.as_str(), r.policy, r.group),
            (ZONE_LABEL, Policy::Preferred, None)
        );
        let r = ok(&[
            (ANN_ZONE_WEIGHTS, "dc1=1"),
            (ANN_ZONE_KEY, "example.com/dc"),
            (ANN_ZONE_POLICY, "Required"),
            (ANN_ZONE_GROUP, "app.kubernetes.io/part-of"),
        ]);
        assert_eq!(
            (r.key.as_str(), r.policy),
            ("example.com/dc", Policy::Required)
        );
        assert_eq!(
            r.group,
            Some(GroupKey {
                namespace: "ns".into(),
                label: "app.kubernetes.io/part-of".into(),
                value: "mq".into()
            })
        );

        /// annotations, metric label, part of the message
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (
                &[(ANN_ZONE_WEIGHTS, "")],
                "weights",
                "no zone has a weight above 0",
            ),
            (
                &[(ANN_ZONE_WEIGHTS, "a=0,b=0")],
                "weights",
                "no zone has a weight above 0",
            ),
            (
                &[(ANN_ZONE_WEIGHTS, "a:2")],
                "weights",
                "\"a:2\" is not zone=weight",
            ),
            (&[(ANN_ZONE_WEIGHTS, "=2")], "weights", "has no zone name"),
            (
                &[(ANN_ZONE_WEIGHTS, "a=-1")],
                "weights",
                "weight \"-1\" of zone \"a\"",
            ),
            (
                &[(ANN_ZONE_WEIGHTS, "a=1.5")],
                "weights",
                "not a whole number",
            ),
            (
                &[(ANN_ZONE_WEIGHTS, "a=99999999999")],
                "weights",
                "not a whole number",
            ),
            (&[(ANN_ZONE_WEIGHTS, "a=1,a=2")], "weights", "listed twice"),
            (
                &[(ANN_ZONE_WEIGHTS, "a=1"), (ANN_ZONE_POLICY, "required")],
                "policy",
                "use Preferred or Required",
            ),
            (
                &[(ANN_ZONE_WEIGHTS, "a=1"), (ANN_ZONE_KEY, " ")],
                "key",
                "is empty",
            ),
            (
                &[(ANN_ZONE_WEIGHTS, "a=1"), (ANN_ZONE_GROUP, "team")],
                "group",
                "label \"team\"",
            ),
        ];
        for (pairs, label, msg) in cases {
            let e = err(pairs);
            assert_eq!(e.metric_label(), *label, "{pairs:?}");
            assert!(e.to_string().contains(msg), "{pairs:?}: {e}");
        }
        let long = format!("a={}", "9".repeat(1000));
        let e = err(&[(ANN_ZONE_WEIGHTS, &long)]).to_string();
        assert!(e.len() < 700 && e.contains("(1002 bytes)"), "{e}");
    }
}
