//! The extender's view of the cluster, kept up to date from watch events.
//!
//! Updates are incremental and keep the lookups a request needs ready (claims
//! not yet bound, pods per owner per node, claim users), so that a filter
//! request is one pass over the nodes it was asked about.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// Maps looked up once per asked node per request use a fast hasher; node
/// names come from our own caches and the scheduler, not from attackers
/// choosing collisions.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
/// The per-claim tables too: at 100,000 claims SipHash was a fifth of a
/// filter's cost. Their keys are user-chosen names, but the hasher is
/// seeded per process, so collisions cannot be prepared in advance.
pub type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

use crate::facts::{
    ClaimFacts, ClaimKey, ClassFacts, LvmFacts, NodeFacts, NodeLvm, PodFacts, PvFacts, StsFacts,
};
use crate::node_view::NodeView;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeEntry {
    /// A Node object exists for this name.
    pub known: bool,
    pub zone: Option<String>,
    /// The Node's labels (zone ratios name their own zone key).
    pub labels: BTreeMap<String, String>,
    /// Ready and not cordoned.
    pub up: bool,
    /// Shared, so a claim relist can read every report without the state
    /// lock (`Reports`).
    pub lvm: Option<Arc<NodeLvm>>,
    /// The agent's last report, when that is older than the silence limit
    /// (see `mark_silent`): the node then takes no new claims.
    pub silent_since: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Index {
    pub nodes: FastMap<String, NodeEntry>,
    pub claims: FastMap<ClaimKey, ClaimFacts>,
    /// Claims whose bytes may be missing from their node's report: unbound
    /// ones, and bound ones whose LV the report does not list yet. Binding and
    /// the agent's report reach us on separate watches, so a claim can be
    /// bound before the report that accounts for its LV arrives; dropping it at
    /// binding would briefly promise those bytes twice.
    pub unsettled: FastSet<ClaimKey>,
    /// Claim per LV name (`pvc-<uid>`), to settle claims when a report lists them.
    by_lv: FastMap<Arc<str>, ClaimKey>,
    pub classes: HashMap<String, ClassFacts>,
    pub pvs: FastMap<String, PvFacts>,
    pub pods: HashMap<String, PodFacts>,
    /// Pod UIDs per claim: lets a restart count claims of already bound pods.
    pub claim_users: HashMap<ClaimKey, HashSet<String>>,
    /// Bound pods per owner UID per node, for spreading replicas.
    pub owners: HashMap<String, FastMap<String, u32>>,
    /// StatefulSets by UID.
    pub stateful_sets: HashMap<String, StsFacts>,
    /// Pod UID per StatefulSet UID per ordinal.
    pub slots: HashMap<String, BTreeMap<u32, String>>,
    /// The zone the extender chose for a StatefulSet slot (per StatefulSet
    /// UID per ordinal), until the pod's node or claims show where it went.
    /// Binding is asynchronous: without this, two replicas filtered back to
    /// back would both see the same counts.
    pub zone_picks: HashMap<String, BTreeMap<u32, ZonePick>>,
    /// Counts every change a reservation total can depend on (claims,
    /// classes, PVs, pods, node reports), so totals can be kept between
    /// requests while it stays the same. Change the index only through its
    /// methods, or cached answers go stale.
    generation: u64,
    /// Names of node entries changed since `node_log_start` changes, so a
    /// request can refresh what it cached per node without a pass over all.
    node_log: Vec<String>,
    node_log_start: u64,
    /// What the last filter resolved per asked node (see `node_view`).
    pub(crate) view: Option<Box<NodeView>>,
    /// VolumeSnapshots and their contents, for restores (no reservation
    /// total depends on them, so they bump no generation).
    pub snapshots: crate::sources::Snapshots,
}

/// A relisted set of claims keyed for lookups. Building it hashes and moves
/// every claim, which at 100,000 claims took long enough to stall filters
/// if done under the state lock, so the watch builds it before taking it.
#[derive(Debug, Default)]
pub struct ClaimTable {
    claims: FastMap<ClaimKey, ClaimFacts>,
    by_lv: FastMap<Arc<str>, ClaimKey>,
    settled: Option<Settled>,
}

/// Which claims of a table earlier reports settle (see `ClaimTable::settle`).
#[derive(Debug, Default)]
struct Settled {
    reports: Reports,
    unsettled: FastSet<ClaimKey>,
    /// Bound claims without `selected-node`: only their PV names their
    /// node, and PVs are not in `reports`.
    via_pv: Vec<ClaimKey>,
}

/// Every node's report at one moment. Taking it copies a name and a pointer
/// per node, so a claim relist can check 100,000 claims against it without
/// the state lock.
#[derive(Debug, Default)]
pub struct Reports(FastMap<String, Arc<NodeLvm>>);

impl ClaimTable {
    /// The later of two claims with the same key wins, as in a sequence of
    /// upserts.
    pub fn new(all: Vec<ClaimFacts>) -> Self {
        let mut t = ClaimTable {
            claims: FastMap::with_capacity_and_hasher(all.len(), Default::default()),
            by_lv: FastMap::with_capacity_and_hasher(all.len(), Default::default()),
            settled: None,
        };
        for c in all {
            t.by_lv.insert(c.lv_name.clone(), c.key.clone());
            t.claims.insert(c.key.clone(), c);
        }
        t
    }

    /// Works out which claims `reports` settle, before the state lock is
    /// taken: under it this was a lookup per claim (about 40 ms at 100,000
    /// claims), during which every filter waited. `Index::install_claims`
    /// then looks again only at what this could not know.
    pub fn settle(mut self, reports: Reports) -> Self {
        let mut unsettled = FastSet::default();
        let mut via_pv = Vec::new();
        for c in self.claims.values() {
            match c.selected_node.as_deref() {
                _ if !c.is_bound() => {
                    unsettled.insert(c.key.clone());
                }
                None => via_pv.push(c.key.clone()),
                Some(node) => {
                    if !reports.0.get(node).is_some_and(|l| lists(l, &c.lv_name)) {
                        unsettled.insert(c.key.clone());
                    }
                }
            }
        }
        self.settled = Some(Settled {
            reports,
            unsettled,
            via_pv,
        });
        self
    }
}

fn lists(lvm: &NodeLvm, lv_name: &str) -> bool {
    lvm.vgs.iter().any(|vg| vg.volumes.contains(lv_name))
}

/// Two reports list the same VGs, so they settle the same claims.
fn same_vgs(a: Option<&NodeLvm>, b: Option<&NodeLvm>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => std::ptr::eq(a, b) || a.vgs == b.vgs,
        (None, None) => true,
        _ => false,
    }
}

fn volumes(lvm: Option<&NodeLvm>) -> impl Iterator<Item = &String> {
    lvm.into_iter()
        .flat_map(|l| l.vgs.iter().flat_map(|vg| vg.volumes.iter()))
}

/// PVs by name, for `Index::install_pvs`.
pub fn pv_table(all: Vec<PvFacts>) -> FastMap<String, PvFacts> {
    all.into_iter().map(|p| (p.name.clone(), p)).collect()
}

/// Node changes kept in the log; a cache older than that rebuilds in full.
const NODE_LOG_LIMIT: usize = 4096;

#[derive(Clone, Debug, PartialEq)]
pub struct ZonePick {
    pub zone: String,
    pub expires: Instant,
}

impl Index {
    /// Changes so far of what reservation totals read; see the field.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Changes so far to node entries.
    pub fn node_version(&self) -> u64 {
        self.node_log_start + self.node_log.len() as u64
    }

    /// Names of node entries changed since `version` (with repeats), or None
    /// when the log no longer reaches back that far.
    pub fn nodes_changed_since(&self, version: u64) -> Option<&[String]> {
        let skip = usize::try_from(version.checked_sub(self.node_log_start)?).ok()?;
        self.node_log.get(skip..)
    }

    fn bump(&mut self) {
        self.generation += 1;
    }

    fn touch_node(&mut self, name: &str) {
        self.bump();
        if self.node_log.len() >= NODE_LOG_LIMIT {
            self.node_log_start += self.node_log.len() as u64;
            self.node_log.clear();
        }
        self.node_log.push(name.to_string());
    }

    pub fn upsert_claim(&mut self, c: ClaimFacts) {
        self.bump();
        if self.settled(&c) {
            self.unsettled.remove(&c.key);
        } else {
            self.unsettled.insert(c.key.clone());
        }
        self.by_lv.insert(c.lv_name.clone(), c.key.clone());
        self.claims.insert(c.key.clone(), c);
    }

    pub fn remove_claim(&mut self, key: &ClaimKey) {
        self.bump();
        self.unsettled.remove(key);
        if let Some(old) = self.claims.remove(key) {
            self.by_lv.remove(&old.lv_name);
        }
    }

    pub fn replace_claims(&mut self, all: Vec<ClaimFacts>) {
        self.install_claims(ClaimTable::new(all));
    }

    /// Replaces every claim with `table` (built without the state lock) and
    /// returns the claims it replaced, to be freed without the lock too.
    /// Which claims are settled was worked out by `ClaimTable::settle` when
    /// the table had that done; only what changed since is looked at here.
    pub fn install_claims(&mut self, table: ClaimTable) -> ClaimTable {
        self.bump();
        let ClaimTable {
            claims,
            by_lv,
            settled,
        } = table;
        let mut old = ClaimTable {
            claims: std::mem::replace(&mut self.claims, claims),
            by_lv: std::mem::replace(&mut self.by_lv, by_lv),
            settled: None,
        };
        self.unsettled = match settled {
            Some(mut s) => {
                self.bring_up_to_date(&mut s);
                let unsettled = std::mem::take(&mut s.unsettled);
                // Its reports go with the old claims, freed after the lock.
                old.settled = Some(s);
                unsettled
            }
            None => self
                .claims
                .values()
                .filter(|c| !self.settled(c))
                .map(|c| c.key.clone())
                .collect(),
        };
        old
    }

    /// Corrects a settle worked out against earlier reports: the claims
    /// whose PV names their node, and the claims of every LV a changed
    /// report lists or listed (a claim on a node whose report did not
    /// change has the verdict it had then).
    fn bring_up_to_date(&self, s: &mut Settled) {
        let then = &s.reports.0;
        let mut again: Vec<ClaimKey> = std::mem::take(&mut s.via_pv);
        let changed = self
            .nodes
            .iter()
            .map(|(name, e)| (then.get(name).map(|l| &**l), e.lvm.as_deref()))
            .chain(
                then.iter()
                    .filter(|(name, _)| !self.nodes.contains_key(*name))
                    .map(|(_, l)| (Some(&**l), None)),
            )
            // A rewritten report with the same VGs (an agent's every-minute
            // rewrite, a relist of reports) settles the same.
            .filter(|(before, now)| !same_vgs(*before, *now));
        for (before, now) in changed {
            for lv in volumes(before).chain(volumes(now)) {
                again.extend(self.by_lv.get(lv.as_str()).cloned());
            }
        }
        for key in again {
            match self.claims.get(&key) {
                Some(c) if self.settled(c) => {
                    s.unsettled.remove(&key);
                }
                Some(_) => {
                    s.unsettled.insert(key);
                }
                None => {}
            }
        }
    }

    /// Bound, and its node's report lists its LV.
    fn settled(&self, c: &ClaimFacts) -> bool {
        c.is_bound()
            && self
                .claim_node(c)
                .is_some_and(|node| self.lv_reported(node, &c.lv_name))
    }

    pub fn upsert_class(&mut self, c: ClassFacts) {
        self.bump();
        self.classes.insert(c.name.clone(), c);
    }

    pub fn remove_class(&mut self, name: &str) {
        self.bump();
        self.classes.remove(name);
    }

    pub fn replace_classes(&mut self, all: Vec<ClassFacts>) {
        self.bump();
        self.classes = all.into_iter().map(|c| (c.name.clone(), c)).collect();
    }

    pub fn upsert_pv(&mut self, p: PvFacts) {
        self.bump();
        let name = p.name.clone();
        self.pvs.insert(name.clone(), p);
        // A claim bound before its PV was seen, with no selected-node (a
        // static or migrated PV), learns its node only now. Our PVs are named
        // like their LV, so `by_lv` finds the claim without a scan.
        if let Some(key) = self.by_lv.get(name.as_str()).cloned()
            && self.unsettled.contains(&key)
            && self
                .claims
                .get(&key)
                .is_some_and(|c| c.volume_name.as_deref() == Some(name.as_str()) && self.settled(c))
        {
            self.unsettled.remove(&key);
        }
    }

    pub fn remove_pv(&mut self, name: &str) {
        self.bump();
        self.pvs.remove(name);
    }

    pub fn replace_pvs(&mut self, all: Vec<PvFacts>) {
        self.install_pvs(pv_table(all));
    }

    /// Replaces every PV with `table` (built by `pv_table` without the state
    /// lock); returns the old ones, to be freed without the lock too.
    pub fn install_pvs(&mut self, table: FastMap<String, PvFacts>) -> FastMap<String, PvFacts> {
        self.bump();
        let old = std::mem::replace(&mut self.pvs, table);
        // As in `upsert_pv`; only the unsettled few are looked at.
        let unsettled = std::mem::take(&mut self.unsettled);
        self.unsettled = unsettled
            .into_iter()
            .filter(|key| !self.claims.get(key).is_some_and(|c| self.settled(c)))
            .collect();
        old
    }

    pub fn upsert_pod(&mut self, p: PodFacts) {
        self.bump();
        self.remove_pod(&p.uid.clone());
        for key in p.claim_keys() {
            self.claim_users
                .entry(key)
                .or_default()
                .insert(p.uid.clone());
        }
        if let (Some(owner), Some(ordinal)) = (&p.owner, p.ordinal) {
            self.slots
                .entry(owner.clone())
                .or_default()
                .insert(ordinal, p.uid.clone());
        }
        if let (Some(owner), Some(node)) = (&p.owner, &p.node) {
            *self
                .owners
                .entry(owner.clone())
                .or_default()
                .entry(node.clone())
                .or_default() += 1;
        }
        self.pods.insert(p.uid.clone(), p);
    }

    pub fn remove_pod(&mut self, uid: &str) {
        let Some(old) = self.pods.remove(uid) else {
            return;
        };
        self.bump();
        for key in old.claim_keys() {
            if let Some(users) = self.claim_users.get_mut(&key) {
                users.remove(uid);
                if users.is_empty() {
                    self.claim_users.remove(&key);
                }
            }
        }
        if let (Some(owner), Some(ordinal)) = (&old.owner, old.ordinal)
            && let Some(per_slot) = self.slots.get_mut(owner)
        {
            if per_slot.get(&ordinal).map(String::as_str) == Some(uid) {
                per_slot.remove(&ordinal);
            }
            if per_slot.is_empty() {
                self.slots.remove(owner);
            }
        }
        if let (Some(owner), Some(node)) = (&old.owner, &old.node)
            && let Some(per_node) = self.owners.get_mut(owner)
        {
            if let Some(n) = per_node.get_mut(node) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_node.remove(node);
                }
            }
            if per_node.is_empty() {
                self.owners.remove(owner);
            }
        }
    }

    pub fn replace_pods(&mut self, all: Vec<PodFacts>) {
        self.bump();
        self.pods.clear();
        self.claim_users.clear();
        self.owners.clear();
        self.slots.clear();
        for p in all {
            self.upsert_pod(p);
        }
    }

    pub fn upsert_node(&mut self, n: NodeFacts) {
        let same = self
            .nodes
            .get(&n.name)
            .is_some_and(|e| e.known && e.zone == n.zone && e.labels == n.labels && e.up == n.up);
        if same {
            return;
        }
        self.touch_node(&n.name);
        let e = self.nodes.entry(n.name).or_default();
        e.known = true;
        e.zone = n.zone;
        e.labels = n.labels;
        e.up = n.up;
    }

    pub fn remove_node(&mut self, name: &str) {
        if self.nodes.contains_key(name) {
            self.touch_node(name);
        }
        if let Some(e) = self.nodes.get_mut(name) {
            e.known = false;
            e.zone = None;
            e.labels.clear();
            e.up = false;
            if e.lvm.is_none() {
                self.nodes.remove(name);
            }
        }
    }

    pub fn replace_nodes(&mut self, all: Vec<NodeFacts>) {
        for k in self.node_names_except(all.iter().map(|n| n.name.as_str())) {
            self.remove_node(&k);
        }
        for n in all {
            self.upsert_node(n);
        }
    }

    pub fn upsert_lvm(&mut self, l: LvmFacts) {
        // Agents rewrite their report every minute; one that only moved its
        // scan time changes no verdict, so cached ones stay.
        let entry = self.nodes.get(&l.node);
        let volumes_same = entry.is_some_and(|e| same_vgs(e.lvm.as_deref(), l.lvm.as_ref()));
        if !(volumes_same && entry.is_some_and(|e| e.silent_since.is_none())) {
            self.touch_node(&l.node);
        }
        // Claims are settled against a report when either changes, so the
        // same LVs settle nothing new; skipping them keeps a relist of every
        // report (100,000 LVs) off the state lock's hold time.
        if let Some(lvm) = l.lvm.as_ref().filter(|_| !volumes_same) {
            for lv in lvm.vgs.iter().flat_map(|vg| vg.volumes.iter()) {
                let Some(key) = self.by_lv.get(lv.as_str()) else {
                    continue;
                };
                let settled = self
                    .claims
                    .get(key)
                    .is_some_and(|c| c.is_bound() && self.claim_node(c) == Some(l.node.as_str()));
                if settled && self.unsettled.remove(key) {
                    self.generation += 1;
                }
            }
        }
        let entry = self.nodes.entry(l.node).or_default();
        // A report that changed is proof of life; the next `mark_silent`
        // judges its time.
        entry.silent_since = None;
        entry.lvm = l.lvm.map(Arc::new);
    }

    /// Marks nodes whose agent's last report is older than `after` at `now`
    /// (or unreadable); returns how many are silent. lvmpin-controller hands
    /// claims waiting on such a node back to the scheduler after the same
    /// time, so offering the node again would only repeat that.
    pub fn mark_silent(&mut self, now: std::time::SystemTime, after: std::time::Duration) -> usize {
        let mut silent = 0;
        let mut changed = Vec::new();
        for (name, entry) in self.nodes.iter_mut() {
            let since = entry.lvm.as_ref().and_then(|l| {
                let old = l
                    .reported_at
                    .is_none_or(|t| now.duration_since(t).is_ok_and(|d| d > after));
                old.then(|| l.last_report.clone().unwrap_or_else(|| "never".into()))
            });
            if entry.silent_since != since {
                entry.silent_since = since;
                changed.push(name.clone());
            }
            silent += usize::from(entry.silent_since.is_some());
        }
        for name in changed {
            self.touch_node(&name);
        }
        silent
    }

    /// The node a claim's volume lives on or is headed to: its selected node,
    /// else the node its PV is pinned to.
    pub fn claim_node<'a>(&'a self, c: &'a ClaimFacts) -> Option<&'a str> {
        c.selected_node.as_deref().or_else(|| {
            c.volume_name
                .as_ref()
                .and_then(|pv| self.pvs.get(&**pv))
                .and_then(|pv| pv.node.as_deref())
        })
    }

    /// The node's last report lists this LV, so its free bytes account for it.
    pub fn lv_reported(&self, node: &str, lv_name: &str) -> bool {
        self.nodes
            .get(node)
            .and_then(|n| n.lvm.as_ref())
            .is_some_and(|l| lists(l, lv_name))
    }

    /// Every node's report, for `ClaimTable::settle`.
    pub fn reports(&self) -> Reports {
        Reports(
            self.nodes
                .iter()
                .filter_map(|(name, e)| Some((name.clone(), e.lvm.clone()?)))
                .collect(),
        )
    }

    pub fn remove_lvm(&mut self, node: &str) {
        if self.nodes.contains_key(node) {
            self.touch_node(node);
        }
        if let Some(e) = self.nodes.get_mut(node) {
            e.lvm = None;
            if !e.known {
                self.nodes.remove(node);
            }
        }
    }

    pub fn replace_lvm(&mut self, all: Vec<LvmFacts>) {
        for k in self.node_names_except(all.iter().map(|l| l.node.as_str())) {
            self.remove_lvm(&k);
        }
        for l in all {
            self.upsert_lvm(l);
        }
    }

    /// Known node names missing from a fresh list: what a relist must forget.
    fn node_names_except<'a>(&self, keep: impl Iterator<Item = &'a str>) -> Vec<String> {
        let keep: HashSet<&str> = keep.collect();
        self.nodes
            .keys()
            .filter(|k| !keep.contains(k.as_str()))
            .cloned()
            .collect()
    }

    pub fn upsert_sts(&mut self, s: StsFacts) {
        self.stateful_sets.insert(s.uid.clone(), s);
    }

    pub fn remove_sts(&mut self, uid: &str) {
        self.stateful_sets.remove(uid);
        self.zone_picks.remove(uid);
    }

    pub fn replace_sts(&mut self, all: Vec<StsFacts>) {
        self.stateful_sets = all.into_iter().map(|s| (s.uid.clone(), s)).collect();
        let sets = &self.stateful_sets;
        self.zone_picks.retain(|uid, _| sets.contains_key(uid));
    }

    /// The value of label `key` on `node`.
    pub fn node_label(&self, node: &str, key: &str) -> Option<&str> {
        self.nodes.get(node).and_then(|e| entry_label(e, key))
    }

    /// Remembers the zone chosen for slot `ordinal` of StatefulSet `sts`.
    pub fn record_zone_pick(&mut self, sts: &str, ordinal: u32, pick: ZonePick) {
        self.zone_picks
            .entry(sts.to_string())
            .or_default()
            .insert(ordinal, pick);
    }

    /// The zone recorded for a slot, while it lasts.
    pub fn zone_pick(&self, sts: &str, ordinal: u32, now: Instant) -> Option<&str> {
        let pick = self.zone_picks.get(sts)?.get(&ordinal)?;
        (now < pick.expires).then_some(pick.zone.as_str())
    }

    /// Drops expired zone picks; returns how many went.
    pub fn prune_zone_picks(&mut self, now: Instant) -> usize {
        let mut gone = 0;
        self.zone_picks.retain(|_, per_slot| {
            let before = per_slot.len();
            per_slot.retain(|_, p| now < p.expires);
            gone += before - per_slot.len();
            !per_slot.is_empty()
        });
        gone
    }

    /// The node a pod using this claim is bound to, if any.
    pub fn bound_user_node(&self, key: &ClaimKey) -> Option<&str> {
        self.claim_users
            .get(key)?
            .iter()
            .filter_map(|uid| self.pods.get(uid)?.node.as_deref())
            .min()
    }
}

/// A label of a node entry; the standard zone label is kept apart already.
pub fn entry_label<'a>(e: &'a NodeEntry, key: &str) -> Option<&'a str> {
    if key == lvmpin_api::names::ZONE_LABEL {
        e.zone.as_deref()
    } else {
        e.labels.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn silence_is_judged_by_the_last_report_and_ended_by_a_new_one() {
        use crate::facts::{LvmFacts, NodeLvm};
        use std::time::{Duration, SystemTime};
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let report = |node: &str, at: Option<SystemTime>| LvmFacts {
            node: node.into(),
            lvm: Some(NodeLvm {
                last_report: at.map(|_| "then".into()),
                reported_at: at,
                ..Default::default()
            }),
        };
        let mut ix = Index::default();
        ix.upsert_lvm(report("fresh", Some(t0)));
        ix.upsert_lvm(report("old", Some(t0 - Duration::from_secs(301))));
        ix.upsert_lvm(report("unreadable", None));
        let five_min = Duration::from_secs(300);
        assert_eq!(ix.mark_silent(t0, five_min), 2);
        assert_eq!(ix.nodes["fresh"].silent_since, None);
        assert_eq!(ix.nodes["old"].silent_since.as_deref(), Some("then"));
        assert_eq!(
            ix.nodes["unreadable"].silent_since.as_deref(),
            Some("never")
        );
        ix.upsert_lvm(report("old", Some(t0)));
        assert_eq!(
            ix.nodes["old"].silent_since, None,
            "a new report ends it at once"
        );
        assert_eq!(ix.mark_silent(t0, five_min), 1);
    }

    use super::*;

    fn pod(uid: &str, owner: &str, node: Option<&str>) -> PodFacts {
        PodFacts {
            uid: uid.into(),
            namespace: "ns".into(),
            name: uid.into(),
            node: node.map(Into::into),
            owner: Some(owner.into()),
            ordinal: None,
            claims: vec![format!("data-{uid}")],
        }
    }

    #[test]
    fn owner_counts_follow_pod_updates_and_deletes() {
        let mut ix = Index::default();
        ix.upsert_pod(pod("a", "sts", None));
        assert!(ix.owners.is_empty());
        ix.upsert_pod(pod("a", "sts", Some("n1")));
        ix.upsert_pod(pod("b", "sts", Some("n1")));
        assert_eq!(ix.owners["sts"]["n1"], 2);
        ix.upsert_pod(pod("b", "sts", Some("n2")));
        assert_eq!(ix.owners["sts"]["n1"], 1);
        assert_eq!(ix.owners["sts"]["n2"], 1);
        assert_eq!(
            ix.bound_user_node(&ClaimKey::new("ns", "data-b")),
            Some("n2")
        );
        ix.remove_pod("a");
        ix.remove_pod("b");
        assert!(ix.owners.is_empty());
        assert!(ix.claim_users.is_empty());
    }

    #[test]
    fn slots_follow_pods_and_a_late_delete_of_the_old_pod_keeps_the_new_one() {
        let mut ix = Index::default();
        let slot = |uid: &str| PodFacts {
            ordinal: Some(0),
            ..pod(uid, "sts", None)
        };
        ix.upsert_pod(slot("old"));
        ix.upsert_pod(slot("new"));
        ix.remove_pod("old");
        assert_eq!(ix.slots["sts"][&0], "new");
        ix.remove_pod("new");
        assert!(ix.slots.is_empty());

        let now = Instant::now();
        let pick = |secs| ZonePick {
            zone: "z".into(),
            expires: now + std::time::Duration::from_secs(secs),
        };
        ix.record_zone_pick("sts", 0, pick(1));
        ix.record_zone_pick("sts", 1, pick(10));
        assert_eq!(ix.zone_pick("sts", 0, now), Some("z"));
        let later = now + std::time::Duration::from_secs(5);
        assert_eq!(
            ix.zone_pick("sts", 0, later),
            None,
            "expired, even unpruned"
        );
        assert_eq!(ix.prune_zone_picks(later), 1);
        ix.replace_sts(vec![]);
        assert!(
            ix.zone_picks.is_empty(),
            "a gone StatefulSet takes its picks along"
        );
    }

    #[test]
    fn a_claim_bound_before_its_pv_is_seen_settles_when_the_pv_arrives() {
        use crate::testutil::{IntoFacts as _, claim_named, lvm_node};
        // (how the PV arrives, PV name, settled after it): our PVs are named
        // like their LV; another name only settles on a relist.
        let cases = [
            ("watch event", "pvc-uid-late", true),
            ("relist", "pvc-uid-late", true),
            ("watch event, other name", "static-pv", false),
            ("relist, other name", "static-pv", true),
        ];
        for (how, pv, settled) in cases {
            let mut ix = Index::default();
            let mut report = lvm_node("n1", "vg1", 100, 90, 1);
            if let Some(lvm) = report.lvm.as_mut() {
                lvm.vgs[0].volumes = ["pvc-uid-late".to_string()].into();
            }
            ix.upsert_lvm(report);
            // Bound without selected-node: its node comes from the PV only.
            ix.upsert_claim(claim_named("late").size("1Gi").volume(pv).facts());
            let key = ClaimKey::new("ns", "late");
            assert!(ix.unsettled.contains(&key), "{how}: no PV yet");
            let facts = PvFacts {
                name: pv.into(),
                node: Some("n1".into()),
            };
            if how.starts_with("relist") {
                ix.install_pvs(pv_table(vec![facts]));
            } else {
                ix.upsert_pv(facts);
            }
            assert_eq!(!ix.unsettled.contains(&key), settled, "{how}");
        }
    }

    #[test]
    fn a_relisted_claim_table_settles_what_the_reports_list() {
        use crate::testutil::{IntoFacts as _, claim_named, lvm_node};
        let mut ix = Index::default();
        let mut report = lvm_node("n1", "vg1", 100, 100, 1);
        if let Some(lvm) = report.lvm.as_mut() {
            lvm.vgs[0].volumes = ["pvc-uid-reported".to_string()].into();
        }
        ix.upsert_lvm(report);
        ix.upsert_claim(claim_named("before").facts());
        // (claim, bound to n1, settled after the relist)
        let cases = [
            ("reported", true, true),
            ("bound-not-reported", true, false),
            ("unbound", false, false),
        ];
        let all = cases
            .iter()
            .map(|(name, bound, _)| {
                let c = claim_named(name).size("1Gi");
                if *bound {
                    c.volume("pv").selected_node("n1").facts()
                } else {
                    c.facts()
                }
            })
            .collect();
        let generation = ix.generation();
        let old = ix.install_claims(ClaimTable::new(all));
        assert!(ix.generation() > generation);
        assert_eq!(old.claims.len(), 1, "the replaced claims come back");
        assert!(!ix.claims.contains_key(&ClaimKey::new("ns", "before")));
        for (name, _, settled) in cases {
            let key = ClaimKey::new("ns", name);
            assert!(ix.claims.contains_key(&key), "{name}");
            assert_eq!(!ix.unsettled.contains(&key), settled, "{name}");
        }
        assert!(!ix.unsettled.contains(&ClaimKey::new("ns", "before")));
        // The LV index is the new table's: a report settles a claim listed
        // after the relist.
        let mut report = lvm_node("n1", "vg1", 100, 90, 1);
        if let Some(lvm) = report.lvm.as_mut() {
            lvm.vgs[0].volumes = ["pvc-uid-reported", "pvc-uid-bound-not-reported"]
                .map(String::from)
                .into();
        }
        ix.upsert_lvm(report);
        assert!(
            !ix.unsettled
                .contains(&ClaimKey::new("ns", "bound-not-reported"))
        );
    }

    /// A claim relist settled against reports taken before the state lock
    /// ends with the same unsettled claims as one worked out under it,
    /// whatever reports changed in between.
    #[test]
    fn a_table_settled_before_the_lock_matches_one_settled_under_it() {
        use crate::testutil::{IntoFacts as _, claim_named, lvm_node};
        fn report(node: &str, lvs: &[&str]) -> LvmFacts {
            let mut r = lvm_node(node, "vg1", 100, 50, 1);
            if let Some(l) = r.lvm.as_mut() {
                l.vgs[0].volumes = lvs.iter().map(|lv| format!("pvc-uid-{lv}")).collect();
            }
            r
        }
        type Change = fn(&mut Index);
        let cases: [(&str, Change); 6] = [
            ("nothing changes", |_| {}),
            ("a report lists a claim's LV", |ix| {
                ix.upsert_lvm(report("n1", &["a", "late"]))
            }),
            ("a report drops an LV", |ix| {
                ix.upsert_lvm(report("n2", &[]))
            }),
            ("a report is deleted", |ix| ix.remove_lvm("n3")),
            ("a new node reports", |ix| {
                ix.upsert_lvm(report("n4", &["d"]))
            }),
            ("the same report again", |ix| {
                ix.upsert_lvm(report("n2", &["b"]))
            }),
        ];
        let before = |ix: &mut Index| {
            ix.upsert_lvm(report("n1", &["a"]));
            ix.upsert_lvm(report("n2", &["b"]));
            ix.upsert_lvm(report("n3", &["c", "pv-only"]));
            for pv in ["pv-of-pv-only", "pv-of-unreported"] {
                ix.upsert_pv(PvFacts {
                    name: pv.into(),
                    node: Some("n3".into()),
                });
            }
        };
        let claims = || -> Vec<ClaimFacts> {
            let on = |name: &str, node: &str| {
                claim_named(name)
                    .size("1Gi")
                    .volume("pv")
                    .selected_node(node)
                    .facts()
            };
            vec![
                on("a", "n1"),
                on("late", "n1"),
                on("b", "n2"),
                on("c", "n3"),
                on("d", "n4"),
                claim_named("pending")
                    .size("1Gi")
                    .selected_node("n1")
                    .facts(),
                claim_named("pv-only")
                    .size("1Gi")
                    .volume("pv-of-pv-only")
                    .facts(),
                claim_named("unreported")
                    .size("1Gi")
                    .volume("pv-of-unreported")
                    .facts(),
            ]
        };
        for (name, change) in cases {
            let mut early = Index::default();
            before(&mut early);
            let table = ClaimTable::new(claims()).settle(early.reports());
            change(&mut early);
            early.install_claims(table);

            let mut under_lock = Index::default();
            before(&mut under_lock);
            change(&mut under_lock);
            under_lock.install_claims(ClaimTable::new(claims()));

            let sorted = |ix: &Index| {
                ix.unsettled
                    .iter()
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>()
            };
            assert_eq!(sorted(&early), sorted(&under_lock), "{name}");
            for unsettled in ["pending", "unreported"] {
                assert!(
                    sorted(&early).contains(&ClaimKey::new("ns", unsettled)),
                    "{name}: {unsettled}"
                );
            }
        }
    }

    #[test]
    fn node_and_lvm_halves_live_independently() {
        let mut ix = Index::default();
        ix.upsert_lvm(LvmFacts {
            node: "n1".into(),
            lvm: Some(NodeLvm::default()),
        });
        ix.upsert_node(NodeFacts {
            name: "n1".into(),
            zone: Some("z".into()),
            ..Default::default()
        });
        ix.remove_node("n1");
        assert!(ix.nodes["n1"].lvm.is_some());
        ix.replace_lvm(vec![]);
        assert!(!ix.nodes.contains_key("n1"));
    }
}
