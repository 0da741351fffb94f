//! Filter and prioritize over the index and the reservations: the decisions
//! the HTTP verbs return, with time passed in.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::capacity::{available_of, left_share, need_with_extent};
use crate::claims::{Demand, pod_demand};
use crate::facts::{ClaimFacts, PodFacts};
use crate::index::{FastMap, Index, ZonePick, entry_label};
use crate::node_view::NodeView;
use crate::placement::{Best, Candidate, Mode, Strategy, Verdict, evaluate, pin_reason, score};
use crate::reservations::{Hold, Reservations, Reserved, contribution, reserved_totals};
use crate::thin::spare_for;
use crate::zone_ratio::{self, Decision, Lookup, Plan, Policy};

#[derive(Clone, Debug)]
pub struct Settings {
    pub mode: Mode,
    pub strategy: Strategy,
    /// Bytes kept free in every VG.
    pub spare: u64,
    pub reservation_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mode: Mode::Decisive,
            strategy: Strategy::Spread,
            spare: 0,
            reservation_ttl: Duration::from_secs(300),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct State {
    pub index: Index,
    pub reservations: Reservations,
}

/// Locks the state. The lock is never held across an await, and a panic
/// while holding it cannot leave the maps half-updated in a way worse than a
/// missed event, so a poisoned lock is used as is.
pub fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    /// Applies a claim update. A claim losing `selected-node` is the agent's
    /// reschedule signal (its node could not create the LV): the hold that
    /// placed it there is dropped too, so the pod is placed afresh.
    pub fn apply_claim(&mut self, claim: ClaimFacts) {
        let lost_node = self
            .index
            .claims
            .get(&claim.key)
            .is_some_and(|old| old.selected_node.is_some() && claim.selected_node.is_none());
        if lost_node {
            self.reservations.release_claim(&claim.key);
        }
        self.index.upsert_claim(claim);
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FilterOutcome {
    /// Indexes into the asked nodes that pass, in the asked order.
    pub pass: Vec<usize>,
    /// Nodes left out for reasons preemption cannot fix.
    pub unresolvable: Vec<(usize, String)>,
    /// How many nodes fit but lost to the decisive choice or to a
    /// StatefulSet's zone ratio. They are not
    /// reported as failed: they do fit, and kube-scheduler simply drops nodes
    /// missing from the answer. Listing thousands of them would cost more than
    /// the decision itself.
    pub not_chosen: usize,
    /// Non-empty: kube-scheduler should retry the pod later.
    pub error: Option<String>,
    /// The pod has no claims of ours: everything passed untouched.
    pub untouched: bool,
    /// What the pod's zone ratio did, for logs and metrics.
    pub zone: Option<ZoneNote>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ZoneNote {
    /// The StatefulSet's zone annotations do not parse; the pod was placed
    /// as without them.
    Malformed {
        statefulset: String,
        reason: &'static str,
        message: String,
    },
    /// The ratio applied: pods per zone including this one when a zone was
    /// chosen, and the split its replicas should reach.
    Counted {
        statefulset: String,
        ordinal: u32,
        /// The zone whose nodes pass; None: every fitting node passes
        /// (`Preferred` with no listed zone able to take the pod) or, with
        /// `wait`, none does.
        zone: Option<String>,
        /// The zone the rule names when every zone could take the pod; it
        /// differs from `zone` when `Preferred` fell back.
        ideal: Option<String>,
        /// Why the pod waits (`Required`).
        wait: Option<String>,
        counts: Vec<(String, u32)>,
        targets: Vec<(String, u32)>,
    },
}

/// Decides which of `nodes` can take `pod`, and records its reservation.
pub fn filter(
    state: &mut State,
    settings: &Settings,
    pod: &PodFacts,
    nodes: &[&str],
    now: Instant,
) -> FilterOutcome {
    let State {
        index: ix,
        reservations: res,
    } = state;
    let demand = match pod_demand(
        pod,
        &ix.claims,
        &ix.classes,
        &ix.pvs,
        &ix.snapshots,
        &ix.nodes,
    ) {
        Ok(d) => d,
        Err(e) => {
            return FilterOutcome {
                error: Some(e),
                ..Default::default()
            };
        }
    };
    let (wants, per_vg, pins) = match &demand {
        Demand::Nothing => {
            return FilterOutcome {
                pass: (0..nodes.len()).collect(),
                untouched: true,
                ..Default::default()
            };
        }
        Demand::Refused(reason) => {
            res.release_pod(&pod.uid);
            return FilterOutcome {
                unresolvable: (0..nodes.len()).map(|i| (i, reason.clone())).collect(),
                ..Default::default()
            };
        }
        Demand::Needs {
            wants,
            per_vg,
            pins,
        } => (wants, per_vg, pins),
    };
    res.prune(ix, now);
    // Owner loads and the pod's own claims read the holds before the cached
    // totals borrow them.
    let loads = OwnerLoads::new(ix, res, pod, now);
    let own = own_contributions(ix, res, now, &demand);
    let mut out = FilterOutcome::default();
    // Out of the index while the ratio's plan borrows it; back before return.
    let mut view = ix.view.take().unwrap_or_default();
    // Claims already bound pin the pod to their node whatever the ratio.
    let lookup = if pins.is_empty() {
        zone_ratio::lookup(ix, pod, now)
    } else {
        Lookup::Unconstrained
    };
    let plan = match lookup {
        Lookup::Unconstrained => None,
        Lookup::Malformed(sts, e) => {
            out.zone = Some(ZoneNote::Malformed {
                statefulset: sts.key(),
                reason: e.metric_label(),
                message: e.to_string(),
            });
            None
        }
        Lookup::Ratio(plan) => Some(plan),
    };
    let ratio = plan.as_ref().map(|p| p.ratio);
    let reserved = res.totals(ix, now);

    let vgs: Vec<&str> = per_vg.iter().map(|(vg, _)| vg.as_str()).collect();
    view.refresh(ix, nodes, &vgs, ratio.map(|r| r.key.as_str()));
    let sparse = Sparse::new(&view, nodes, reserved, &own, &loads);
    let zone_loads: Vec<u32> = view.zones.iter().map(|z| loads.zone(Some(z))).collect();
    // With a ratio: per label value, the index of that zone in the ratio's
    // weights (None: a zone not listed). Integers, so that the narrowing
    // below costs no string work per node.
    let label_weights: Vec<Option<usize>> = match ratio {
        Some(r) => view
            .labels
            .iter()
            .map(|l| r.weights.iter().position(|(w, _)| w == l))
            .collect(),
        None => Vec::new(),
    };
    let pin_reasons: Vec<String> = pins.iter().map(pin_reason).collect();

    // Without a ratio, fitting nodes are ranked as they are judged and only
    // their indexes kept (Advisory); with one, they are kept for the ratio to
    // narrow first.
    let mut best = Best::new(settings.strategy);
    let mut fit_count = 0usize;
    let mut fits: Vec<(usize, Candidate<'_>)> = Vec::new();
    // With a ratio: per fitting node, the index of its zone in the weights.
    let mut fit_zones: Vec<Option<usize>> = Vec::new();
    let k = per_vg.len();
    let mut needs: Vec<(u64, u64)> = per_vg
        .iter()
        .map(|(_, sizes)| (0, need_with_extent(0, sizes)))
        .collect();
    // The spare is VG space: thin pool columns keep none (`thin::spare_for`).
    let spares: Vec<u64> = per_vg
        .iter()
        .map(|(key, _)| spare_for(key, settings.spare))
        .collect();
    for (i, name) in nodes.iter().enumerate() {
        if let Some(p) = pins.iter().position(|p| p.node != *name) {
            out.unresolvable.push((i, pin_reasons[p].clone()));
            continue;
        }
        let row = view.rows[i];
        // Nodes capacity alone decides are judged from the view; the rest,
        // and every node that does not fit, by `evaluate` for its reason.
        let quick = if per_vg.is_empty() {
            Some(1.0)
        } else if row.ready {
            headroom(
                view.caps_of(i),
                per_vg,
                &sparse.held[i * k..i * k + k],
                &spares,
                &mut needs,
            )
        } else {
            None
        };
        let verdict = match quick {
            Some(headroom) => Verdict::Fits { headroom },
            None => evaluate(
                name,
                ix.nodes.get(*name),
                per_vg,
                pins,
                reserved_for(reserved, &own, name).as_deref(),
                settings.spare,
            ),
        };
        match verdict {
            Verdict::Fits { headroom } => {
                let candidate = Candidate {
                    name,
                    zone_load: zone_loads.get(row.zone as usize).copied().unwrap_or(0),
                    node_load: sparse.node_load[i],
                    headroom,
                };
                if ratio.is_some() {
                    fits.push((i, candidate));
                    fit_zones.push(label_weights.get(row.label as usize).copied().flatten());
                } else {
                    best.offer(i, &candidate);
                    fit_count += 1;
                    if settings.mode == Mode::Advisory {
                        out.pass.push(i);
                    }
                }
            }
            Verdict::Unfit(reason) => out.unresolvable.push((i, reason)),
        }
    }

    let mut pick = None;
    if let Some(plan) = &plan {
        pick = apply_ratio(plan, ix, nodes, &mut fits, &fit_zones, &mut out);
        for (i, c) in &fits {
            best.offer(*i, c);
        }
        fit_count = fits.len();
        if settings.mode == Mode::Advisory {
            out.pass = fits.iter().map(|(i, _)| *i).collect();
        }
    }
    drop(plan);
    ix.view = Some(view);

    let Some(chosen) = best.index() else {
        res.release_pod(&pod.uid);
        return out;
    };
    // Advisory: kube-scheduler picks among all that fit, already in `pass`;
    // holding the likeliest node is the best we can do until PreBind writes
    // selected-node, which then wins.
    if settings.mode == Mode::Decisive {
        out.pass = vec![chosen];
        out.not_chosen += fit_count - 1;
    }
    // Every node left is in the chosen zone, whichever kube-scheduler binds.
    if let Some((sts, ordinal, zone)) = pick {
        ix.record_zone_pick(
            &sts,
            ordinal,
            ZonePick {
                zone,
                expires: now + settings.reservation_ttl,
            },
        );
    }
    if wants.is_empty() {
        res.release_pod(&pod.uid);
    } else {
        res.record(Hold {
            pod_uid: pod.uid.clone(),
            owner: pod.owner.clone(),
            node: nodes[chosen].to_string(),
            claims: wants.iter().map(|w| w.claim.clone()).collect(),
            expires: now + settings.reservation_ttl,
        });
    }
    out
}

/// The claims of the pod being placed as the cached totals count them (node,
/// VG, bytes), each once: they must not compete with themselves, so they are
/// taken off again.
fn own_contributions(
    ix: &Index,
    res: &Reservations,
    now: Instant,
    demand: &Demand,
) -> Vec<(String, String, u64)> {
    let mut keys = demand.claim_keys();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| contribution(ix, res, now, key))
        .map(|(node, vg, bytes)| (node.to_string(), vg.to_string(), bytes))
        .collect()
}

/// What `reserved_totals` would give for `node` leaving out the pod's own
/// claims: the cached totals, less `own`.
fn reserved_for<'r>(
    reserved: &'r Reserved,
    own: &[(String, String, u64)],
    node: &str,
) -> Option<Cow<'r, HashMap<String, u64>>> {
    let base = reserved.get(node);
    if !own.iter().any(|(n, _, _)| n == node) {
        return base.map(Cow::Borrowed);
    }
    let mut per_vg = base.cloned().unwrap_or_default();
    for (_, vg, bytes) in own.iter().filter(|(n, _, _)| n == node) {
        if let Some(held) = per_vg.get_mut(vg) {
            *held = held.saturating_sub(*bytes);
        }
    }
    Some(Cow::Owned(per_vg))
}

/// `evaluate`'s headroom for a ready node from its row of the view; None
/// when some VG lacks room (`evaluate` then says why). `needs` keeps the
/// last (extent, bytes) per VG: nodes mostly share an extent size, and
/// rounding to it divides.
fn headroom(
    caps: &[crate::node_view::Cap],
    per_vg: &[(String, Vec<u64>)],
    held: &[u64],
    spares: &[u64],
    needs: &mut [(u64, u64)],
) -> Option<f64> {
    let mut headroom = 1.0f64;
    for ((((cap, (_, sizes)), held), last), spare) in
        caps.iter().zip(per_vg).zip(held).zip(needs).zip(spares)
    {
        if last.0 != cap.extent {
            *last = (cap.extent, need_with_extent(cap.extent, sizes));
        }
        let need = last.1;
        let avail = available_of(cap.free, *held, *spare);
        headroom = headroom.min(left_share(cap.size, avail, need)?);
    }
    Some(headroom)
}

/// Per asked position, what only a few nodes have: bytes reserved per
/// demanded VG (row-major like the view's capacities) and pods of the same
/// owner. Filled from the few nodes that have any, not by a lookup per node.
struct Sparse {
    held: Vec<u64>,
    node_load: Vec<u32>,
}

impl Sparse {
    fn new(
        view: &NodeView,
        nodes: &[&str],
        reserved: &Reserved,
        own: &[(String, String, u64)],
        loads: &OwnerLoads,
    ) -> Self {
        let k = view.width();
        let mut held = vec![0u64; nodes.len() * k];
        let mut node_load = vec![0u32; nodes.len()];
        if view.unique {
            for (node, per_vg) in reserved {
                let Some(&pos) = view.positions.get(node.as_str()) else {
                    continue;
                };
                for (vg, bytes) in per_vg {
                    if let Some(j) = view.column(vg) {
                        held[pos as usize * k + j] = *bytes;
                    }
                }
            }
            for (node, vg, bytes) in own {
                if let (Some(&pos), Some(j)) = (view.positions.get(node.as_str()), view.column(vg))
                {
                    let h = &mut held[pos as usize * k + j];
                    *h = h.saturating_sub(*bytes);
                }
            }
            for (node, count) in &loads.nodes {
                if let Some(&pos) = view.positions.get(node.as_str()) {
                    node_load[pos as usize] = *count;
                }
            }
        } else {
            // A name asked twice: look each position up.
            for (i, name) in nodes.iter().enumerate() {
                if let Some(per_vg) = reserved_for(reserved, own, name) {
                    for (vg, bytes) in per_vg.iter() {
                        if let Some(j) = view.column(vg) {
                            held[i * k + j] = *bytes;
                        }
                    }
                }
                node_load[i] = loads.node(name);
            }
        }
        Self { held, node_load }
    }
}

/// Narrows `fits` (with `fit_zones`, the index of their zones in the
/// ratio's weights) to the zone the StatefulSet's ratio picks, or fails every
/// node when the pod must wait; notes what it did in `out`. Returns the
/// StatefulSet UID, ordinal and zone to remember for the pod's slot.
///
/// Fitting nodes of other zones are not listed as failed, like nodes that
/// lose to the decisive choice: some node passes, so kube-scheduler never
/// shows their reasons, and listing thousands would cost more than the
/// decision. When the pod must wait, every node gets a reason.
fn apply_ratio(
    plan: &Plan<'_>,
    ix: &Index,
    nodes: &[&str],
    fits: &mut Vec<(usize, Candidate<'_>)>,
    fit_zones: &[Option<usize>],
    out: &mut FilterOutcome,
) -> Option<(String, u32, String)> {
    let key = plan.ratio.key.as_str();
    let weights = &plan.ratio.weights;
    let mut has_fit = vec![false; weights.len()];
    for z in fit_zones.iter().flatten() {
        has_fit[*z] = true;
    }
    let feasible: BTreeSet<&str> = weights
        .iter()
        .zip(&has_fit)
        .filter(|(_, fit)| **fit)
        .map(|((z, _), _)| z.as_str())
        .collect();
    let up: BTreeSet<&str> = match plan.ratio.policy {
        Policy::Required => ix
            .nodes
            .values()
            .filter(|e| e.known && e.up)
            .filter_map(|e| entry_label(e, key))
            .collect(),
        Policy::Preferred => BTreeSet::new(),
    };
    let decision = zone_ratio::decide(plan.ratio, &plan.counts, &feasible, &up);
    let ideal = zone_ratio::next_zone(weights, &plan.counts, |_, w| w > 0).map(str::to_string);
    let statefulset = plan.sts.key();
    let mut counts = plan.counts.clone();
    match &decision {
        Decision::Zone(z) => {
            *counts.entry(z.clone()).or_default() += 1;
            let chosen = weights.iter().position(|(w, _)| w == z);
            let before = fits.len();
            let mut zones = fit_zones.iter();
            fits.retain(|_| zones.next().is_some_and(|fz| *fz == chosen));
            // They fit, but lose to the ratio.
            out.not_chosen += before - fits.len();
        }
        Decision::Anywhere => {}
        Decision::Wait(why) => {
            let why = format!("zone ratio of StatefulSet {statefulset} (Required): {why}");
            for (_, reason) in &mut out.unresolvable {
                *reason = format!("{why}; this node: {reason}");
            }
            for (i, _) in fits.iter() {
                out.unresolvable.push((
                    *i,
                    format!("{why}; this node is in {}", zone_name(ix, nodes[*i], key)),
                ));
            }
            fits.clear();
        }
    }
    out.unresolvable.sort_by_key(|(i, _)| *i);
    let (zone, wait) = match decision {
        Decision::Zone(z) => (Some(z), None),
        Decision::Anywhere => (None, None),
        Decision::Wait(why) => (None, Some(why)),
    };
    out.zone = Some(ZoneNote::Counted {
        statefulset,
        ordinal: plan.ordinal,
        zone: zone.clone(),
        ideal,
        wait,
        counts: counts.into_iter().collect(),
        targets: zone_ratio::targets(&plan.ratio.weights, plan.replicas)
            .into_iter()
            .collect(),
    });
    zone.map(|z| (plan.sts.uid.clone(), plan.ordinal, z))
}

/// A node's zone for messages.
fn zone_name(ix: &Index, node: &str, key: &str) -> String {
    match ix.node_label(node, key) {
        Some(z) => format!("zone {z}"),
        None => format!("no zone (no label {key})"),
    }
}

/// Scores 0..=10 for `nodes`, in order.
pub fn prioritize(
    state: &State,
    settings: &Settings,
    pod: &PodFacts,
    nodes: &[&str],
    now: Instant,
) -> Vec<i64> {
    let ix = &state.index;
    let res = &state.reservations;
    let Ok(demand) = pod_demand(
        pod,
        &ix.claims,
        &ix.classes,
        &ix.pvs,
        &ix.snapshots,
        &ix.nodes,
    ) else {
        return vec![0; nodes.len()];
    };
    let Demand::Needs { per_vg, pins, .. } = &demand else {
        return vec![0; nodes.len()];
    };
    if settings.mode == Mode::Decisive
        && let Some(hold) = res.get(&pod.uid)
    {
        return nodes
            .iter()
            .map(|n| if *n == hold.node { 10 } else { 0 })
            .collect();
    }
    let own = demand.claim_keys();
    let reserved = reserved_totals(ix, res, now, &own);
    nodes
        .iter()
        .map(|name| {
            match evaluate(
                name,
                ix.nodes.get(*name),
                per_vg,
                pins,
                reserved.get(*name),
                settings.spare,
            ) {
                Verdict::Fits { headroom } => score(headroom, settings.strategy),
                Verdict::Unfit(_) => 0,
            }
        })
        .collect()
}

/// How many pods of the same owner sit on each node and zone, counting both
/// bound pods and pods the extender has placed but that are not bound yet.
struct OwnerLoads {
    nodes: FastMap<String, u32>,
    zones: FastMap<String, u32>,
}

impl OwnerLoads {
    fn new(ix: &Index, res: &Reservations, pod: &PodFacts, now: Instant) -> Self {
        let mut nodes: FastMap<String, u32> = FastMap::default();
        if let Some(owner) = &pod.owner {
            if let Some(per_node) = ix.owners.get(owner) {
                nodes.clone_from(per_node);
            }
            for h in res.holds() {
                let bound = ix.pods.get(&h.pod_uid).is_some_and(|p| p.node.is_some());
                if h.owner.as_ref() == Some(owner)
                    && h.pod_uid != pod.uid
                    && !bound
                    && now < h.expires
                {
                    *nodes.entry(h.node.clone()).or_default() += 1;
                }
            }
        }
        // Many nodes, few zones: a zone's name is copied once, not per node.
        let mut zones: FastMap<String, u32> = FastMap::default();
        for (n, count) in &nodes {
            let Some(zone) = ix.nodes.get(n).and_then(|e| e.zone.as_deref()) else {
                continue;
            };
            match zones.get_mut(zone) {
                Some(total) => *total += count,
                None => {
                    zones.insert(zone.to_string(), *count);
                }
            }
        }
        Self { nodes, zones }
    }

    fn node(&self, name: &str) -> u32 {
        if self.nodes.is_empty() {
            return 0;
        }
        self.nodes.get(name).copied().unwrap_or(0)
    }

    /// Nodes without a zone label form no zone: only node counts apply.
    fn zone(&self, zone: Option<&str>) -> u32 {
        match zone {
            Some(_) if self.zones.is_empty() => 0,
            Some(z) => self.zones.get(z).copied().unwrap_or(0),
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::NodeFacts;
    use crate::testutil::{IntoFacts as _, claim_named, class, lvm_node, pod_with};
    use std::collections::HashMap;

    const GI: u64 = 1 << 30;

    /// n1 has 10Gi free, n2 30Gi, n3 20Gi; all 100Gi VGs `vg1`.
    fn state() -> State {
        let mut s = State::default();
        s.index.upsert_class(class("fast", Some("vg1")));
        for (n, free) in [("n1", 10), ("n2", 30), ("n3", 20)] {
            s.index
                .upsert_lvm(lvm_node(n, "vg1", 100 * GI, free * GI, 4 << 20));
        }
        s
    }

    fn names<'a>(nodes: &[&'a str], idx: &[usize]) -> Vec<&'a str> {
        idx.iter().map(|i| nodes[*i]).collect()
    }

    const NODES: [&str; 4] = ["n1", "n2", "n3", "n4"];

    #[test]
    fn filter_table() {
        use Mode::*;
        use Strategy::*;
        let now = Instant::now();
        type Case = (
            &'static str,
            Mode,
            Strategy,
            u64,
            Vec<ClaimFacts>,
            Vec<&'static str>,
            Vec<&'static str>,
        );
        use crate::facts::ClaimFacts;
        let cases: Vec<Case> = vec![
            (
                "one claim, spread",
                Decisive,
                Spread,
                0,
                vec![claim_named("a").size("5Gi").facts()],
                vec!["n2"],
                vec!["n4"],
            ),
            (
                "one claim, binpack",
                Decisive,
                Binpack,
                0,
                vec![claim_named("a").size("5Gi").facts()],
                vec!["n1"],
                vec!["n4"],
            ),
            (
                "advisory returns all that fit",
                Advisory,
                Spread,
                0,
                vec![claim_named("a").size("5Gi").facts()],
                vec!["n1", "n2", "n3"],
                vec!["n4"],
            ),
            (
                "several claims sum",
                Advisory,
                Spread,
                0,
                vec![
                    claim_named("a").size("15Gi").facts(),
                    claim_named("b").size("5Gi").facts(),
                ],
                vec!["n2", "n3"],
                vec!["n1", "n4"],
            ),
            (
                "spare",
                Advisory,
                Spread,
                11 * GI,
                vec![claim_named("a").size("9Gi").facts()],
                vec!["n2", "n3"],
                vec!["n1", "n4"],
            ),
            (
                "bound claim pins",
                Advisory,
                Spread,
                0,
                vec![
                    claim_named("a")
                        .size("5Gi")
                        .volume("pv")
                        .selected_node("n3")
                        .facts(),
                ],
                vec!["n3"],
                vec!["n1", "n2", "n4"],
            ),
            (
                "annotation declares size",
                Advisory,
                Spread,
                0,
                vec![claim_named("a").size("1Gi").local_disk_size("25Gi").facts()],
                vec!["n2"],
                vec!["n1", "n3", "n4"],
            ),
            (
                "bad annotation refuses everywhere",
                Advisory,
                Spread,
                0,
                vec![claim_named("a").size("1Gi").local_disk_size("x").facts()],
                vec![],
                vec!["n1", "n2", "n3", "n4"],
            ),
        ];
        for (name, mode, strategy, spare, claims, want_pass, want_unresolvable) in cases {
            let mut s = state();
            let pod = pod_with(&claims.iter().map(|c| &*c.key.name).collect::<Vec<_>>());
            for c in claims {
                s.index.upsert_claim(c);
            }
            let settings = Settings {
                mode,
                strategy,
                spare,
                ..Default::default()
            };
            let out = filter(&mut s, &settings, &pod, &NODES, now);
            assert_eq!(out.error, None, "{name}");
            assert_eq!(names(&NODES, &out.pass), want_pass, "{name}: pass");
            let unres: Vec<usize> = out.unresolvable.iter().map(|(i, _)| *i).collect();
            assert_eq!(
                names(&NODES, &unres),
                want_unresolvable,
                "{name}: unresolvable"
            );
            for (_, reason) in &out.unresolvable {
                assert!(!reason.is_empty(), "{name}");
            }
        }
    }

    #[test]
    fn losing_selected_node_drops_the_hold_of_that_claim() {
        let mut s = state();
        let now = Instant::now();
        s.index.upsert_claim(claim_named("a").size("8Gi").facts());
        let out = filter(&mut s, &Settings::default(), &pod_with(&["a"]), &NODES, now);
        assert_eq!(names(&NODES, &out.pass), vec!["n2"]);
        s.apply_claim(claim_named("a").size("8Gi").selected_node("n2").facts());
        assert_eq!(s.reservations.len(), 1);
        s.apply_claim(claim_named("a").size("8Gi").facts());
        assert!(s.reservations.is_empty());
    }

    #[test]
    fn pod_without_our_claims_passes_untouched() {
        let mut s = state();
        s.index
            .upsert_claim(claim_named("x").size("1Gi").no_class().facts());
        let out = filter(
            &mut s,
            &Settings::default(),
            &pod_with(&["x"]),
            &NODES,
            Instant::now(),
        );
        assert!(out.untouched);
        assert_eq!(out.pass, vec![0, 1, 2, 3]);
        assert!(s.reservations.is_empty());
    }

    #[test]
    fn missing_claim_is_an_error_not_a_verdict() {
        let mut s = state();
        let out = filter(
            &mut s,
            &Settings::default(),
            &pod_with(&["nope"]),
            &NODES,
            Instant::now(),
        );
        assert!(out.error.is_some_and(|e| e.contains("ns/nope")));
        assert!(out.pass.is_empty());
    }

    #[test]
    fn decisive_reserves_and_retry_replaces() {
        let mut s = state();
        let now = Instant::now();
        s.index.upsert_claim(claim_named("a").size("8Gi").facts());
        let pod = pod_with(&["a"]);
        let settings = Settings::default();
        for _ in 0..3 {
            let out = filter(&mut s, &settings, &pod, &NODES, now);
            assert_eq!(names(&NODES, &out.pass), vec!["n2"]);
        }
        assert_eq!(s.reservations.len(), 1);
        assert_eq!(
            prioritize(&s, &settings, &pod, &NODES, now),
            vec![0, 10, 0, 0]
        );
        // Another pod sees the hold: n2 has 22Gi left, n3 20Gi.
        s.index.upsert_claim(claim_named("b").size("8Gi").facts());
        let mut other = pod_with(&["b"]);
        other.uid = "other".into();
        let out = filter(&mut s, &settings, &other, &NODES, now);
        assert_eq!(names(&NODES, &out.pass), vec!["n2"]);
        let out = filter(&mut s, &settings, &other, &["n1", "n2"], now);
        assert_eq!(names(&["n1", "n2"], &out.pass), vec!["n2"]);
    }

    #[test]
    fn replicas_spread_over_zones_then_nodes_before_capacity() {
        let mut s = state();
        let now = Instant::now();
        for (n, z) in [("n1", "z1"), ("n2", "z1"), ("n3", "z2")] {
            s.index.upsert_node(NodeFacts {
                name: n.into(),
                zone: Some(z.into()),
                ..Default::default()
            });
        }
        let settings = Settings::default();
        let mut chosen = Vec::new();
        for i in 0..3 {
            let claim = format!("data-{i}");
            s.index
                .upsert_claim(claim_named(&claim).size("1Gi").facts());
            let mut pod = pod_with(&[&claim]);
            pod.uid = format!("pod-{i}");
            pod.owner = Some("sts".into());
            let out = filter(&mut s, &settings, &pod, &["n1", "n2", "n3"], now);
            chosen.push(["n1", "n2", "n3"][out.pass[0]]);
        }
        // n2 has most room, but the second replica goes to the other zone and
        // the third to the untouched node of zone z1.
        assert_eq!(chosen, vec!["n2", "n3", "n1"]);
    }

    #[test]
    fn two_hundred_pods_back_to_back_never_overcommit() {
        let mut s = State::default();
        s.index.upsert_class(class("fast", Some("vg1")));
        let nodes: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
        for (i, n) in nodes.iter().enumerate() {
            // 3..12 claims of 1Gi fit, extents of 4Mi; room for 75 in total.
            s.index
                .upsert_lvm(lvm_node(n, "vg1", 20 * GI, (3 + i as u64) * GI, 4 << 20));
        }
        let asked: Vec<&str> = nodes.iter().map(String::as_str).collect();
        let now = Instant::now();
        let mut placed: HashMap<String, u64> = HashMap::new();
        for i in 0..200 {
            let claim = format!("c{i}");
            s.index
                .upsert_claim(claim_named(&claim).size("1Gi").facts());
            let mut pod = pod_with(&[&claim]);
            pod.uid = format!("p{i}");
            let out = filter(&mut s, &Settings::default(), &pod, &asked, now);
            assert!(out.pass.len() <= 1);
            if let Some(i) = out.pass.first() {
                *placed.entry(asked[*i].to_string()).or_default() += GI;
            }
        }
        for (i, n) in nodes.iter().enumerate() {
            let free = (3 + i as u64) * GI;
            assert_eq!(
                placed.get(n).copied().unwrap_or(0),
                free,
                "{n} filled exactly"
            );
        }
        assert_eq!(placed.values().sum::<u64>(), 75 * GI);
    }

    /// Thin claims are charged against each pool's virtual room
    /// (floor(size × ratio) − promised − reserved), never the VG's free
    /// space, and back-to-back pods never overcommit a pool.
    #[test]
    fn thin_claims_fill_each_pool_exactly_to_its_ratio() {
        use crate::testutil::{thin_class, thin_node};
        use lvmpin_api::thin::ThinLimits;
        let mut s = State::default();
        let limits = ThinLimits {
            ratio_milli: 1500,
            ..Default::default()
        };
        s.index
            .upsert_class(thin_class("thin", "vg1", "pool0", limits));
        s.index.upsert_class(class("fast", Some("vg1")));
        // Pools of 10Gi: virtual 15Gi; n1 has 10Gi promised (5 claims
        // left), n2 none (15), n3 is past its data limit (0).
        s.index
            .upsert_lvm(thin_node("n1", "vg1", "pool0", 10 * GI, 20.0, 10 * GI));
        s.index
            .upsert_lvm(thin_node("n2", "vg1", "pool0", 10 * GI, 0.0, 0));
        s.index
            .upsert_lvm(thin_node("n3", "vg1", "pool0", 10 * GI, 90.0, 0));
        let asked = ["n1", "n2", "n3"];
        let now = Instant::now();
        let mut placed: HashMap<&str, u64> = HashMap::new();
        let mut last_reasons = Vec::new();
        for i in 0..30 {
            let claim = format!("t{i}");
            s.index
                .upsert_claim(claim_named(&claim).size("1Gi").class("thin").facts());
            let mut pod = pod_with(&[&claim]);
            pod.uid = format!("p{i}");
            let out = filter(&mut s, &Settings::default(), &pod, &asked, now);
            assert_eq!(out.error, None);
            match out.pass.first() {
                Some(i) => *placed.entry(asked[*i]).or_default() += GI,
                None => last_reasons = out.unresolvable.clone(),
            }
        }
        assert_eq!(placed.get("n1").copied(), Some(5 * GI));
        assert_eq!(placed.get("n2").copied(), Some(15 * GI));
        assert_eq!(placed.get("n3"), None);
        let reason = |n: usize| {
            last_reasons
                .iter()
                .find(|(i, _)| *i == n)
                .map(|(_, r)| r.clone())
                .unwrap_or_default()
        };
        assert!(
            reason(0).contains("thin pool vg1/pool0: needs 1.0GiB")
                && reason(0).contains("overprovision ratio 1.5")
                && reason(0).contains("reserved 5.0GiB"),
            "{}",
            reason(0)
        );
        assert!(
            reason(2)
                .contains("thin pool vg1/pool0: data use 90.0% is at or over the limit of 90%"),
            "{}",
            reason(2)
        );
        // A linear claim in the same VG finds no VG free space.
        s.index.upsert_claim(claim_named("lin").size("1Gi").facts());
        let mut pod = pod_with(&["lin"]);
        pod.uid = "lin".into();
        let out = filter(&mut s, &Settings::default(), &pod, &asked, now);
        assert!(out.pass.is_empty());
        assert!(out.unresolvable[0].1.contains("volume group vg1: needs"));
    }

    /// The reservation of a thin claim ends when its LV is reported; the
    /// report's promised bytes then count it instead, so room stays equal.
    #[test]
    fn thin_reservation_hands_over_to_the_reported_promise() {
        use crate::testutil::{thin_class, thin_node};
        let mut s = State::default();
        s.index
            .upsert_class(thin_class("thin", "vg1", "pool0", Default::default()));
        s.index
            .upsert_lvm(thin_node("n1", "vg1", "pool0", 10 * GI, 0.0, 0));
        let now = Instant::now();
        s.index
            .upsert_claim(claim_named("a").size("4Gi").class("thin").facts());
        let out = filter(
            &mut s,
            &Settings::default(),
            &pod_with(&["a"]),
            &["n1"],
            now,
        );
        assert_eq!(out.pass, vec![0]);
        let held = |s: &mut State| {
            let State {
                index,
                reservations,
            } = s;
            reservations
                .totals(index, now)
                .get("n1")
                .and_then(|v| v.get("vg1/pool0"))
                .copied()
                .unwrap_or(0)
        };
        assert_eq!(held(&mut s), 4 * GI);
        let mut reported = thin_node("n1", "vg1", "pool0", 10 * GI, 1.0, 4 * GI);
        if let Some(l) = reported.lvm.as_mut() {
            l.vgs[0].volumes.insert("pvc-uid-a".into());
        }
        s.index.upsert_lvm(reported);
        assert_eq!(held(&mut s), 0);
        // 6Gi left either way: 7Gi does not fit, 6Gi does.
        for (name, size, fits) in [("b", "7Gi", false), ("c", "6Gi", true)] {
            s.index
                .upsert_claim(claim_named(name).size(size).class("thin").facts());
            let mut pod = pod_with(&[name]);
            pod.uid = name.into();
            let out = filter(&mut s, &Settings::default(), &pod, &["n1"], now);
            assert_eq!(!out.pass.is_empty(), fits, "{name}: {out:?}");
        }
    }
}
