//! Capacity promised but not yet visible in the agents' reports.
//!
//! A claim counts as reserved on one node, decided per claim so nothing is
//! counted twice:
//! 1. its `volume.kubernetes.io/selected-node` (written by kube-scheduler in
//!    PreBind, so it survives our restarts), else
//! 2. the node the extender chose for the pod using it (an in-memory hold,
//!    keyed by pod so a retried pod replaces its own), else
//! 3. the node a pod using it is already bound to (rebuild after a restart).
//!
//! The reservation ends once the claim is deleted or its LV
//! (`pvc-<claim uid>`) appears in that node's report, since the reported free
//! bytes then include it. Binding alone does not end it: the bound claim and
//! the report that lists its LV arrive on different watches, in either order. Holds also end when their pod is deleted or bound to
//! another node, when its claim loses `selected-node` (the agent's reschedule
//! signal), or after the TTL.

use std::collections::HashMap;
use std::time::Instant;

use crate::capacity::round_to_extent;
use crate::facts::{ClaimFacts, ClaimKey};
use crate::index::{FastMap, Index};

#[derive(Clone, Debug, PartialEq)]
pub struct Hold {
    pub pod_uid: String,
    pub owner: Option<String>,
    pub node: String,
    pub claims: Vec<ClaimKey>,
    pub expires: Instant,
}

#[derive(Clone, Debug, Default)]
pub struct Reservations {
    by_pod: HashMap<String, Hold>,
    by_claim: HashMap<ClaimKey, String>,
    /// Counts changes to which pod holds which claims where; a retry that
    /// holds the same again only moves its expiry and counts nothing.
    generation: u64,
    /// The totals of all claims as of `Cached::at`, kept between requests.
    totals: Option<Cached<Reserved>>,
    /// When `prune` last found nothing left to drop.
    pruned: Option<Cached<()>>,
}

/// A result of (index, reservations, time) that holds while neither changes
/// and no hold expires: up to `until`, the earliest expiry when made
/// (expiries only move later while the generation stays).
#[derive(Clone, Debug)]
struct Cached<T> {
    at: (u64, u64),
    until: Option<Instant>,
    value: T,
}

impl<T> Cached<T> {
    fn holds(&self, at: (u64, u64), now: Instant) -> bool {
        self.at == at && self.until.is_none_or(|u| now < u)
    }
}

/// Reserved bytes per node, then per VG.
pub type Reserved = FastMap<String, HashMap<String, u64>>;

impl Reservations {
    /// Records the pod's hold, replacing any earlier one of the same pod.
    pub fn record(&mut self, hold: Hold) {
        if let Some(old) = self.by_pod.get_mut(&hold.pod_uid)
            && old.node == hold.node
            && old.claims == hold.claims
            && old.owner == hold.owner
            && old
                .claims
                .iter()
                .all(|c| self.by_claim.get(c) == Some(&hold.pod_uid))
        {
            old.expires = hold.expires;
            return;
        }
        self.release_pod(&hold.pod_uid.clone());
        self.generation += 1;
        for c in &hold.claims {
            self.by_claim.insert(c.clone(), hold.pod_uid.clone());
        }
        self.by_pod.insert(hold.pod_uid.clone(), hold);
    }

    pub fn release_pod(&mut self, pod_uid: &str) {
        if let Some(old) = self.by_pod.remove(pod_uid) {
            self.generation += 1;
            for c in &old.claims {
                if self.by_claim.get(c).map(String::as_str) == Some(pod_uid) {
                    self.by_claim.remove(c);
                }
            }
        }
    }

    /// Drops the hold of whichever pod holds this claim.
    pub fn release_claim(&mut self, claim: &ClaimKey) {
        if let Some(pod) = self.by_claim.get(claim).cloned() {
            self.release_pod(&pod);
        }
    }

    pub fn len(&self) -> usize {
        self.by_pod.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_pod.is_empty()
    }

    pub fn get(&self, pod_uid: &str) -> Option<&Hold> {
        self.by_pod.get(pod_uid)
    }

    pub fn holds(&self) -> impl Iterator<Item = &Hold> {
        self.by_pod.values()
    }

    /// The live hold covering this claim, if any.
    fn hold_for(&self, ix: &Index, claim: &ClaimKey, now: Instant) -> Option<&Hold> {
        let hold = self.by_pod.get(self.by_claim.get(claim)?)?;
        hold_is_live(ix, hold, now).then_some(hold)
    }

    /// The earliest expiry of any hold: until then, only changes to the
    /// index or the holds change what they count. An expired hold not yet
    /// pruned puts it in the past, so nothing is kept until it goes.
    fn horizon(&self) -> Option<Instant> {
        self.by_pod.values().map(|h| h.expires).min()
    }

    /// `reserved_totals(ix, self, now, &[])`, computed again only when the
    /// index or the holds changed or a hold expired since last time.
    pub fn totals(&mut self, ix: &Index, now: Instant) -> &Reserved {
        let at = (ix.generation(), self.generation);
        if !self.totals.as_ref().is_some_and(|c| c.holds(at, now)) {
            self.totals = Some(Cached {
                at,
                until: self.horizon(),
                value: reserved_totals(ix, self, now, &[]),
            });
        }
        match &self.totals {
            Some(c) => &c.value,
            None => unreachable!("filled above"),
        }
    }

    /// Drops holds that no longer stand for anything. Returns how many went.
    /// Skips the pass when nothing changed since one that dropped nothing.
    pub fn prune(&mut self, ix: &Index, now: Instant) -> usize {
        let at = (ix.generation(), self.generation);
        if self.pruned.as_ref().is_some_and(|c| c.holds(at, now)) {
            return 0;
        }
        let gone = self.prune_all(ix, now);
        self.pruned = Some(Cached {
            at: (ix.generation(), self.generation),
            until: self.horizon(),
            value: (),
        });
        gone
    }

    fn prune_all(&mut self, ix: &Index, now: Instant) -> usize {
        let dead: Vec<String> = self
            .by_pod
            .values()
            .filter(|h| {
                !hold_is_live(ix, h, now)
                    || h.claims.iter().all(|c| {
                        ix.claims
                            .get(c)
                            .is_none_or(|cf| ix.lv_reported(&h.node, &cf.lv_name))
                    })
            })
            .map(|h| h.pod_uid.clone())
            .collect();
        for uid in &dead {
            self.release_pod(uid);
        }
        dead.len()
    }
}

fn hold_is_live(ix: &Index, hold: &Hold, now: Instant) -> bool {
    if now >= hold.expires {
        return false;
    }
    match ix.pods.get(&hold.pod_uid).and_then(|p| p.node.as_deref()) {
        Some(bound_to) => bound_to == hold.node,
        None => true,
    }
}

/// The node a pending claim is reserved on, if any (rules in the module docs).
pub fn reserved_node<'a>(
    ix: &'a Index,
    res: &'a Reservations,
    claim: &'a ClaimFacts,
    now: Instant,
) -> Option<&'a str> {
    let node = if claim.is_bound() {
        ix.claim_node(claim)?
    } else {
        claim
            .selected_node
            .as_deref()
            .or_else(|| res.hold_for(ix, &claim.key, now).map(|h| h.node.as_str()))
            .or_else(|| ix.bound_user_node(&claim.key))?
    };
    (!ix.lv_reported(node, &claim.lv_name)).then_some(node)
}

/// Sums reservations per node and VG over all unsettled claims of our classes,
/// leaving out `skip` (the claims of the pod being placed, which must not
/// compete with themselves).
pub fn reserved_totals(
    ix: &Index,
    res: &Reservations,
    now: Instant,
    skip: &[&ClaimKey],
) -> Reserved {
    let mut out: Reserved = FastMap::default();
    for key in &ix.unsettled {
        if skip.contains(&key) {
            continue;
        }
        let Some((node, vg, bytes)) = contribution(ix, res, now, key) else {
            continue;
        };
        // Look up before inserting: most claims land on a node already
        // counted, and an entry needs owned keys.
        let per_vg = match out.get_mut(node) {
            Some(v) => v,
            None => out.entry(node.to_string()).or_default(),
        };
        match per_vg.get_mut(vg) {
            Some(b) => *b += bytes,
            None => {
                per_vg.insert(vg.to_string(), bytes);
            }
        }
    }
    out
}

/// What one claim adds to `reserved_totals`: its node, VG and bytes rounded
/// to that VG's extents, if it counts at all.
pub fn contribution<'a>(
    ix: &'a Index,
    res: &'a Reservations,
    now: Instant,
    key: &ClaimKey,
) -> Option<(&'a str, &'a str, u64)> {
    if !ix.unsettled.contains(key) {
        return None;
    }
    let claim = ix.claims.get(key)?;
    let bytes = *claim.size.as_ref().ok()?;
    // The VG, or for a thin class its pool: thin claims are reserved
    // against the pool's virtual room, never the VG's free space.
    let vg = claim
        .class
        .as_ref()
        .and_then(|c| ix.classes.get(c))
        .filter(|c| c.ours)
        .and_then(|c| c.reservation_key.as_ref())?;
    let node = reserved_node(ix, res, claim, now)?;
    let extent = ix
        .nodes
        .get(node)
        .and_then(|n| n.lvm.as_ref())
        .and_then(|l| l.vg(crate::thin::vg_of(vg)))
        .map_or(0, |v| v.extent);
    Some((node, vg, round_to_extent(bytes, extent)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{LvmFacts, NodeLvm, PodFacts, VgState};
    use crate::testutil::{IntoFacts as _, claim_named, class};
    use std::time::Duration;

    fn index() -> Index {
        let mut ix = Index::default();
        ix.upsert_class(class("fast", Some("vg1")));
        for n in ["n1", "n2"] {
            ix.upsert_lvm(LvmFacts {
                node: n.into(),
                lvm: Some(NodeLvm {
                    vgs: vec![VgState {
                        name: "vg1".into(),
                        size: 1000,
                        free: 1000,
                        extent: 4,
                        healthy: true,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            });
        }
        ix
    }

    fn hold(pod: &str, node: &str, claims: &[&str], expires: Instant) -> Hold {
        Hold {
            pod_uid: pod.into(),
            owner: None,
            node: node.into(),
            claims: claims.iter().map(|c| ClaimKey::new("ns", *c)).collect(),
            expires,
        }
    }

    fn total(r: &Reserved, node: &str) -> u64 {
        r.get(node).and_then(|v| v.get("vg1")).copied().unwrap_or(0)
    }

    #[test]
    fn lifecycle_table() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let ttl_gone = now + Duration::from_secs(600);
        type Case = (
            &'static str,
            fn(&mut Index, &mut Reservations),
            Instant,
            u64,
            u64,
        );
        let cases: Vec<Case> = vec![
            ("hold counts, rounded to extents", |_, _| {}, now, 12, 0),
            (
                "retried pod replaces its own hold",
                |_, r| {
                    r.record(hold(
                        "p1",
                        "n2",
                        &["a"],
                        Instant::now() + Duration::from_secs(300),
                    ));
                },
                now,
                0,
                12,
            ),
            (
                "selected-node wins over the hold",
                |ix, _| {
                    ix.upsert_claim(claim_named("a").size_bytes(10).selected_node("n2").facts());
                },
                now,
                0,
                12,
            ),
            (
                "LV visible in report drops it",
                |ix, _| {
                    if let Some(l) = ix
                        .nodes
                        .get_mut("n1")
                        .and_then(|n| n.lvm.as_mut().map(std::sync::Arc::make_mut))
                    {
                        l.vgs[0].volumes.insert("pvc-uid-a".into());
                    }
                },
                now,
                0,
                0,
            ),
            (
                "bound claim without a known node drops it",
                |ix, _| {
                    ix.upsert_claim(claim_named("a").size_bytes(10).volume("pv").facts());
                },
                now,
                0,
                0,
            ),
            (
                "bound claim counts until its LV is reported",
                |ix, _| {
                    ix.upsert_claim(
                        claim_named("a")
                            .size_bytes(10)
                            .selected_node("n1")
                            .volume("pv")
                            .facts(),
                    );
                },
                now,
                12,
                0,
            ),
            (
                "bound claim with its LV reported drops it",
                |ix, _| {
                    ix.upsert_claim(
                        claim_named("a")
                            .size_bytes(10)
                            .selected_node("n1")
                            .volume("pv")
                            .facts(),
                    );
                    report_lv(ix, "n1", "pvc-uid-a");
                },
                now,
                0,
                0,
            ),
            (
                "deleted claim drops it",
                |ix, _| ix.remove_claim(&ClaimKey::new("ns", "a")),
                now,
                0,
                0,
            ),
            (
                "pod deleted drops it",
                |_, r| r.release_pod("p1"),
                now,
                0,
                0,
            ),
            (
                "pod bound elsewhere drops it",
                |ix, _| {
                    ix.upsert_pod(PodFacts {
                        uid: "p1".into(),
                        namespace: "ns".into(),
                        name: "p1".into(),
                        node: Some("n2".into()),
                        owner: None,
                        ordinal: None,
                        claims: vec!["b".into()],
                    });
                },
                now,
                0,
                0,
            ),
            ("TTL drops it", |_, _| {}, ttl_gone, 0, 0),
            (
                "restart: bound pod with unbound claim counts",
                |ix, r| {
                    r.release_pod("p1");
                    ix.upsert_pod(PodFacts {
                        uid: "p9".into(),
                        namespace: "ns".into(),
                        name: "p9".into(),
                        node: Some("n2".into()),
                        owner: None,
                        ordinal: None,
                        claims: vec!["a".into()],
                    });
                },
                later,
                0,
                12,
            ),
        ];
        for (name, mutate, at, want_n1, want_n2) in cases {
            let mut ix = index();
            ix.upsert_claim(claim_named("a").size_bytes(10).facts());
            let mut res = Reservations::default();
            res.record(hold("p1", "n1", &["a"], now + Duration::from_secs(300)));
            mutate(&mut ix, &mut res);
            let r = reserved_totals(&ix, &res, at, &[]);
            assert_eq!(total(&r, "n1"), want_n1, "{name}: n1");
            assert_eq!(total(&r, "n2"), want_n2, "{name}: n2");
        }
    }

    #[test]
    fn own_claims_are_skipped_and_prune_drops_settled_holds() {
        let now = Instant::now();
        let mut ix = index();
        ix.upsert_claim(claim_named("a").size_bytes(10).facts());
        let mut res = Reservations::default();
        res.record(hold("p1", "n1", &["a"], now + Duration::from_secs(300)));
        let key = ClaimKey::new("ns", "a");
        assert!(reserved_totals(&ix, &res, now, &[&key]).is_empty());
        assert_eq!(res.prune(&ix, now), 0);
        ix.upsert_claim(claim_named("a").size_bytes(10).volume("pv").facts());
        assert_eq!(res.prune(&ix, now), 0, "bound but not yet reported");
        report_lv(&mut ix, "n1", "pvc-uid-a");
        assert_eq!(res.prune(&ix, now), 1);
        assert!(res.is_empty());
    }

    /// A claim the agent refuses for good keeps `selected-node` (placing it
    /// elsewhere would be refused just the same), so it must not hold space.
    #[test]
    fn claims_the_agent_refuses_reserve_nothing() {
        let now = Instant::now();
        let res = Reservations::default();
        for (name, claim) in [
            (
                "ReadWriteMany",
                claim_named("a")
                    .size_bytes(10)
                    .selected_node("n1")
                    .access_modes(&["ReadWriteMany"]),
            ),
            (
                "data source",
                claim_named("a")
                    .size_bytes(10)
                    .selected_node("n1")
                    .data_source("VolumeSnapshot", "s"),
            ),
            (
                "bad size",
                claim_named("a").size("lots").selected_node("n1"),
            ),
        ] {
            let mut ix = index();
            ix.upsert_claim(claim_named("a").size_bytes(10).selected_node("n1").facts());
            assert!(
                total(&reserved_totals(&ix, &res, now, &[]), "n1") >= 10,
                "control"
            );
            ix.upsert_claim(claim.facts());
            assert!(reserved_totals(&ix, &res, now, &[]).is_empty(), "{name}");
        }
    }

    /// Replays the agent's report through the index, as the watch does.
    fn report_lv(ix: &mut Index, node: &str, lv: &str) {
        let mut lvm = ix.nodes[node].lvm.as_deref().cloned().unwrap_or_default();
        lvm.vgs[0].volumes.insert(lv.into());
        ix.upsert_lvm(LvmFacts {
            node: node.into(),
            lvm: Some(lvm),
        });
    }

    #[test]
    fn claims_settle_only_when_bound_and_reported_in_either_order() {
        let key = ClaimKey::new("ns", "a");
        let bound = || {
            claim_named("a")
                .size_bytes(10)
                .selected_node("n1")
                .volume("pv")
                .facts()
        };

        let mut ix = index();
        ix.upsert_claim(bound());
        assert!(
            ix.unsettled.contains(&key),
            "bound first: waits for the report"
        );
        report_lv(&mut ix, "n1", "pvc-uid-a");
        assert!(!ix.unsettled.contains(&key));

        let mut ix = index();
        ix.upsert_claim(claim_named("a").size_bytes(10).selected_node("n1").facts());
        report_lv(&mut ix, "n1", "pvc-uid-a");
        assert!(ix.unsettled.contains(&key), "reported but unbound");
        ix.upsert_claim(bound());
        assert!(!ix.unsettled.contains(&key));

        let mut ix = index();
        ix.upsert_claim(bound());
        report_lv(&mut ix, "n2", "pvc-uid-a");
        assert!(
            ix.unsettled.contains(&key),
            "another node's report settles nothing"
        );
    }
}
