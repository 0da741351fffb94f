//! Per-node verdicts, 0–10 scores and the decisive choice.
//!
//! Decisive mode replaces kube-scheduler's own scoring for our pods, so the
//! choice first spreads replicas of one workload (fewest siblings in the zone,
//! then on the node) and only then applies the capacity strategy: `spread`
//! keeps the most room free per node (fewer reschedules when volumes grow,
//! failures hit fewer replicas), `binpack` fills nodes up (keeps whole nodes
//! free for large claims). Ties end on the node name, so equal inputs give
//! equal answers on every replica.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::str::FromStr;

use crate::capacity::{available_of, left_share, need_with_extent};
use crate::claims::Pin;
use crate::index::NodeEntry;
use crate::thin::{reservation_key, room, shortfall, spare_for};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Prefer the node that keeps the largest share of its VG free.
    #[default]
    Spread,
    /// Prefer the node that keeps the smallest share free.
    Binpack,
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "spread" => Ok(Self::Spread),
            "binpack" => Ok(Self::Binpack),
            other => Err(format!("unknown strategy {other:?}: use spread or binpack")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Return only the chosen node; the reservation is exact.
    #[default]
    Decisive,
    /// Return every node that fits and score them.
    Advisory,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "decisive" => Ok(Self::Decisive),
            "advisory" => Ok(Self::Advisory),
            other => Err(format!("unknown mode {other:?}: use decisive or advisory")),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// `headroom`: the smallest share of a demanded VG left free after placing
    /// the pod, in 0..=1 (1 when nothing is demanded).
    Fits {
        headroom: f64,
    },
    Unfit(String),
}

/// Whether the pod's demand fits on `node`.
pub fn evaluate(
    node: &str,
    entry: Option<&NodeEntry>,
    per_vg: &[(String, Vec<u64>)],
    pins: &[Pin],
    reserved: Option<&HashMap<String, u64>>,
    spare: u64,
) -> Verdict {
    if let Some(pin) = pins.iter().find(|p| p.node != node) {
        return Verdict::Unfit(pin_reason(pin));
    }
    if per_vg.is_empty() {
        return Verdict::Fits { headroom: 1.0 };
    }
    let Some(lvm) = entry.and_then(|e| e.lvm.as_ref()) else {
        return Verdict::Unfit(
            "node has no LvmNode report (is the lvmpin agent running on it?)".to_string(),
        );
    };
    if let Some(since) = entry.and_then(|e| e.silent_since.as_deref()) {
        return Verdict::Unfit(format!(
            "the lvmpin agent on this node has not reported since {since}"
        ));
    }
    let mut headroom = 1.0f64;
    // Keys are VG names, or thin pools with their class's limits (`thin`).
    for (key, sizes) in per_vg {
        let room = match room(lvm, key) {
            Ok(r) => r,
            Err(why) => return Verdict::Unfit(why.to_string()),
        };
        let spare = spare_for(key, spare);
        let need = need_with_extent(room.extent, sizes);
        let held = reserved
            .and_then(|r| r.get(reservation_key(key)))
            .copied()
            .unwrap_or(0);
        let avail = available_of(room.free, held, spare);
        let Some(left) = left_share(room.size, avail, need) else {
            return Verdict::Unfit(shortfall(key, &room, need, avail, held, spare));
        };
        headroom = headroom.min(left);
    }
    Verdict::Fits { headroom }
}

/// Why a node other than the one holding `pin`'s volume cannot take the pod.
pub fn pin_reason(pin: &Pin) -> String {
    match &pin.source {
        Some(source) => format!(
            "claim {} is made from {source}, which is on node {}: a thin restore or clone stays on its source's node",
            pin.claim, pin.node
        ),
        None => format!(
            "claim {} is bound to a volume on node {}",
            pin.claim, pin.node
        ),
    }
}

/// kube-scheduler's extender scores run 0..=10.
pub fn score(headroom: f64, strategy: Strategy) -> i64 {
    let spread = (headroom.clamp(0.0, 1.0) * 10.0).round() as i64;
    match strategy {
        Strategy::Spread => spread,
        Strategy::Binpack => 10 - spread,
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Candidate<'a> {
    pub name: &'a str,
    /// Pods of the same owner already in this node's zone.
    pub zone_load: u32,
    /// Pods of the same owner already on this node.
    pub node_load: u32,
    pub headroom: f64,
}

// Lazily: the filter ranks every fitting node, and names only break ties.
fn rank(a: &Candidate<'_>, b: &Candidate<'_>, strategy: Strategy) -> Ordering {
    a.zone_load
        .cmp(&b.zone_load)
        .then_with(|| a.node_load.cmp(&b.node_load))
        .then_with(|| match strategy {
            Strategy::Spread => b.headroom.total_cmp(&a.headroom),
            Strategy::Binpack => a.headroom.total_cmp(&b.headroom),
        })
        .then_with(|| a.name.cmp(b.name))
}

/// Index of the best candidate in `cands`; the first of equals.
pub fn choose(cands: &[Candidate<'_>], strategy: Strategy) -> Option<usize> {
    let mut best = Best::new(strategy);
    for (i, c) in cands.iter().enumerate() {
        best.offer(i, c);
    }
    best.index()
}

/// The best of candidates offered one at a time, each with its own index;
/// the first of equals wins. The filter offers nodes as it judges them
/// rather than collecting thousands first.
pub struct Best<'n> {
    strategy: Strategy,
    best: Option<(usize, Candidate<'n>)>,
}

impl<'n> Best<'n> {
    pub fn new(strategy: Strategy) -> Self {
        Self {
            strategy,
            best: None,
        }
    }

    pub fn offer(&mut self, i: usize, c: &Candidate<'n>) {
        if self
            .best
            .as_ref()
            .is_none_or(|(_, b)| rank(c, b, self.strategy) == Ordering::Less)
        {
            self.best = Some((i, c.clone()));
        }
    }

    pub fn index(&self) -> Option<usize> {
        self.best.as_ref().map(|(i, _)| *i)
    }
}

/// Bytes for humans, with the exact number for machines.
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{} ({b}B)", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{ClaimKey, NodeLvm, VgState};

    const GI: u64 = 1 << 30;

    fn entry(vgs: &[(&str, u64, u64, bool)]) -> NodeEntry {
        NodeEntry {
            known: true,
            zone: None,
            lvm: Some(std::sync::Arc::new(NodeLvm {
                vgs: vgs
                    .iter()
                    .map(|(n, size, free, healthy)| VgState {
                        name: n.to_string(),
                        size: *size,
                        free: *free,
                        extent: 4 << 20,
                        healthy: *healthy,
                        message: (!healthy).then(|| "PV missing".into()),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })),
            silent_since: None,
            ..Default::default()
        }
    }

    #[test]
    fn verdict_table() {
        let silent = NodeEntry {
            silent_since: Some("2026-01-01T00:00:00Z".into()),
            ..entry(&[("vg1", 100 * GI, 50 * GI, true)])
        };
        let e = entry(&[
            ("vg1", 100 * GI, 50 * GI, true),
            ("vg2", 10 * GI, GI, false),
        ]);
        let pin = |n: &str| Pin {
            claim: ClaimKey::new("ns", "old"),
            node: n.into(),
            source: None,
        };
        let reserved: HashMap<String, u64> = [("vg1".to_string(), 20 * GI)].into();
        type Case<'a> = (
            &'a str,
            Option<&'a NodeEntry>,
            Vec<(String, Vec<u64>)>,
            Vec<Pin>,
            Option<&'a HashMap<String, u64>>,
            u64,
            Result<f64, &'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "fits",
                Some(&e),
                vec![("vg1".into(), vec![10 * GI])],
                vec![],
                None,
                0,
                Ok(0.4),
            ),
            (
                "several claims sum",
                Some(&e),
                vec![("vg1".into(), vec![20 * GI, 30 * GI])],
                vec![],
                None,
                0,
                Ok(0.0),
            ),
            (
                "one byte too many",
                Some(&e),
                vec![("vg1".into(), vec![50 * GI + 1])],
                vec![],
                None,
                0,
                Err("needs 50.0GiB"),
            ),
            (
                "reservation counts",
                Some(&e),
                vec![("vg1".into(), vec![40 * GI])],
                vec![],
                Some(&reserved),
                0,
                Err("reserved 20.0GiB"),
            ),
            (
                "spare counts",
                Some(&e),
                vec![("vg1".into(), vec![45 * GI])],
                vec![],
                None,
                10 * GI,
                Err("spare 10.0GiB"),
            ),
            (
                "silent agent",
                Some(&silent),
                vec![("vg1".into(), vec![GI])],
                vec![],
                None,
                0,
                Err("has not reported since 2026-01-01T00:00:00Z"),
            ),
            (
                "missing node state",
                None,
                vec![("vg1".into(), vec![GI])],
                vec![],
                None,
                0,
                Err("no LvmNode report"),
            ),
            (
                "missing vg",
                Some(&e),
                vec![("vg9".into(), vec![GI])],
                vec![],
                None,
                0,
                Err("vg9 does not exist"),
            ),
            (
                "unhealthy vg",
                Some(&e),
                vec![("vg2".into(), vec![GI])],
                vec![],
                None,
                0,
                Err("unhealthy: PV missing"),
            ),
            (
                "pinned here",
                None,
                vec![],
                vec![pin("n1")],
                None,
                0,
                Ok(1.0),
            ),
            (
                "pinned elsewhere",
                Some(&e),
                vec![],
                vec![pin("n2")],
                None,
                0,
                Err("bound to a volume on node n2"),
            ),
        ];
        for (name, e, per_vg, pins, res, spare, want) in cases {
            let got = evaluate("n1", e, &per_vg, &pins, res, spare);
            match (got, want) {
                (Verdict::Fits { headroom }, Ok(h)) => {
                    assert!((headroom - h).abs() < 1e-9, "{name}: {headroom} != {h}")
                }
                (Verdict::Unfit(r), Err(w)) => assert!(r.contains(w), "{name}: {r}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    fn c(name: &str, zone_load: u32, node_load: u32, headroom: f64) -> Candidate<'_> {
        Candidate {
            name,
            zone_load,
            node_load,
            headroom,
        }
    }

    #[test]
    fn choice_table() {
        use Strategy::*;
        let cases: Vec<(&str, Vec<Candidate>, Strategy, &str)> = vec![
            (
                "spread takes most room",
                vec![c("a", 0, 0, 0.2), c("b", 0, 0, 0.7)],
                Spread,
                "b",
            ),
            (
                "binpack takes least room",
                vec![c("a", 0, 0, 0.2), c("b", 0, 0, 0.7)],
                Binpack,
                "a",
            ),
            (
                "tie breaks on name",
                vec![c("b", 0, 0, 0.5), c("a", 0, 0, 0.5)],
                Spread,
                "a",
            ),
            (
                "tie breaks on name (binpack)",
                vec![c("b", 0, 0, 0.5), c("a", 0, 0, 0.5)],
                Binpack,
                "a",
            ),
            (
                "emptier zone first",
                vec![c("a", 1, 0, 0.9), c("b", 0, 0, 0.1)],
                Spread,
                "b",
            ),
            (
                "then fewer siblings on node",
                vec![c("a", 1, 1, 0.9), c("b", 1, 0, 0.1)],
                Binpack,
                "b",
            ),
        ];
        for (name, cands, strategy, want) in cases {
            let got = choose(&cands, strategy).map(|i| cands[i].name);
            assert_eq!(got, Some(want), "{name}");
        }
        assert_eq!(choose(&[], Spread), None);
    }

    #[test]
    fn scores() {
        assert_eq!(score(0.0, Strategy::Spread), 0);
        assert_eq!(score(1.0, Strategy::Spread), 10);
        assert_eq!(score(0.44, Strategy::Spread), 4);
        assert_eq!(score(0.44, Strategy::Binpack), 6);
        assert_eq!(score(7.0, Strategy::Binpack), 0);
    }
}
