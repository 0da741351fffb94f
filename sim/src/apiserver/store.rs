//! The object store: every object of every type, one global resourceVersion
//! counter (like an etcd revision: each write gets the next number and exactly
//! one event), and the bounded event history that watches resume from.
//!
//! The history is kept per resource type, like the real server's watch cache:
//! a burst of writes to one type does not expire watches on another.
//!
//! Synchronous and free of I/O; the HTTP layer holds it behind one mutex.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};

use super::meta::{self, UpdateScope};
use super::patch::{self, PatchKind};
use super::resources::{Registry, ResourceType};
use super::selector::ObjectFilter;
use super::status::ApiError;

/// (namespace, name); the namespace is "" for cluster-scoped objects.
pub type ObjKey = (String, String);

/// What follows a page of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remaining {
    None,
    /// More objects match; how many was not counted.
    Some,
    Counted(usize),
}

/// Storage key of CustomResourceDefinitions: writes to them change the registry.
pub const CRD_KEY: &str = "apiextensions.k8s.io/customresourcedefinitions";
const NAMESPACES_KEY: &str = "/namespaces";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    /// Storage key of the object's type.
    pub key: String,
    pub etype: EventType,
    pub object: Arc<Value>,
    /// The state before this write, so watches with selectors can tell
    /// "stopped matching" from "changed".
    pub old: Option<Arc<Value>>,
}

/// What a delete asks for beyond the name.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    /// `propagationPolicy: Orphan`: dependents lose the owner reference instead of being deleted.
    pub orphan: bool,
}

/// A watch asked to resume from a version the history no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    pub oldest_kept: u64,
}

#[derive(Default)]
struct KeyHistory {
    events: VecDeque<Arc<Event>>,
    /// Newest version dropped from this history; watches from before it get 410.
    compacted: u64,
}

pub struct Store {
    pub(super) registry: Registry,
    rv: u64,
    pub(super) objects: HashMap<String, BTreeMap<ObjKey, Arc<Value>>>,
    /// uid → where the object lives; tells the garbage collector which owners exist.
    pub(super) uids: HashMap<String, (String, ObjKey)>,
    /// owner uid → objects naming it in ownerReferences.
    pub(super) dependents: HashMap<String, BTreeSet<(String, ObjKey)>>,
    /// Per storage key, the newest events of that type.
    history: HashMap<String, KeyHistory>,
    history_cap: usize,
    /// Keys written since the HTTP layer last asked, to wake just their watches.
    dirty: BTreeSet<String>,
    rng: u64,
    clock: Box<dyn Fn() -> String + Send>,
}

fn rfc3339_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn obj_key(t: &ResourceType, ns: Option<&str>, name: &str) -> ObjKey {
    let ns = if t.namespaced { ns.unwrap_or("") } else { "" };
    (ns.to_string(), name.to_string())
}

impl Store {
    pub fn new(history_cap: usize) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        Store {
            registry: Registry::with_builtins(),
            rv: 0,
            objects: HashMap::new(),
            uids: HashMap::new(),
            dependents: HashMap::new(),
            history: HashMap::new(),
            history_cap: history_cap.max(1),
            dirty: BTreeSet::new(),
            rng: seed | 1,
            clock: Box::new(rfc3339_now),
        }
    }

    /// Replaces the wall clock (tests pin timestamps with it).
    pub fn set_clock(&mut self, clock: impl Fn() -> String + Send + 'static) {
        self.clock = Box::new(clock);
    }

    pub(super) fn now(&self) -> String {
        (self.clock)()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: names and uids only need to be unique, not secret.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn new_uid(&mut self) -> String {
        let (a, b) = (self.next_random(), self.next_random());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    fn random_suffix(&mut self) -> String {
        // The alphabet kube uses for generateName: no vowels, no look-alikes.
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..5)
            .map(|_| ALPHABET[(self.next_random() % ALPHABET.len() as u64) as usize] as char)
            .collect()
    }

    pub fn get(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        self.objects
            .get(&t.key())
            .and_then(|m| m.get(&obj_key(t, ns, name)))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&t.group, &t.plural, name))
    }

    pub(super) fn objects_get(&self, key: &str, ok: &ObjKey) -> Option<Arc<Value>> {
        self.objects.get(key).and_then(|m| m.get(ok)).cloned()
    }

    /// One page of matching objects, ordered by namespace and name: those
    /// after `after` (a continue token's last key), at most `limit` (0: all);
    /// then whether more match, and how many when that is cheap to know (no
    /// selectors; the real API server also leaves `remainingItemCount` out
    /// for selector lists). Walks the ordered map from `after`, within the
    /// namespace asked for, rather than filtering everything per page: a
    /// paged list of n objects would otherwise cost O(n²/limit), minutes
    /// for 100,000 claims.
    pub fn list_page(
        &self,
        t: &ResourceType,
        filter: &ObjectFilter,
        after: Option<&ObjKey>,
        limit: usize,
    ) -> (u64, Vec<Arc<Value>>, Remaining) {
        use std::ops::Bound;
        let Some(m) = self.objects.get(&t.key()) else {
            return (self.rv, Vec::new(), Remaining::None);
        };
        // Stored keys carry the namespace objects are listed by ("" for
        // cluster-scoped ones).
        let ns = filter.namespace.as_deref();
        // Keys sort by namespace first: a namespace's objects are one range.
        let ns_start = ns.map(|n| (n.to_string(), String::new()));
        let from = match (after, &ns_start) {
            (Some(a), Some(s)) if s > a => Bound::Included(s),
            (Some(a), _) => Bound::Excluded(a),
            (None, Some(s)) => Bound::Included(s),
            (None, None) => Bound::Unbounded,
        };
        let mut matching = m
            .range::<ObjKey, _>((from, Bound::Unbounded))
            .take_while(|(k, _)| ns.is_none_or(|n| k.0 == n))
            .map(|(_, o)| o)
            .filter(|o| filter.selects(o));
        let items: Vec<Arc<Value>> = if limit == 0 {
            matching.by_ref().cloned().collect()
        } else {
            matching.by_ref().take(limit).cloned().collect()
        };
        let rest = if filter.has_selectors() {
            if matching.next().is_some() {
                Remaining::Some
            } else {
                Remaining::None
            }
        } else {
            match matching.count() {
                0 => Remaining::None,
                n => Remaining::Counted(n),
            }
        };
        (self.rv, items, rest)
    }

    /// The current version and the matching objects, ordered by namespace and name.
    pub fn list(&self, t: &ResourceType, filter: &ObjectFilter) -> (u64, Vec<Arc<Value>>) {
        let items = self
            .objects
            .get(&t.key())
            .map(|m| m.values().filter(|o| filter.matches(o)).cloned().collect())
            .unwrap_or_default();
        (self.rv, items)
    }

    pub fn create(
        &mut self,
        t: &ResourceType,
        ns: Option<&str>,
        body: Value,
    ) -> Result<Arc<Value>, ApiError> {
        let key = t.key();
        let name = match meta::requested_name(&body)? {
            Ok(n) => n,
            Err(prefix) => {
                let mut n = format!("{prefix}{}", self.random_suffix());
                while self.get(t, ns, &n).is_ok() {
                    n = format!("{prefix}{}", self.random_suffix());
                }
                n
            }
        };
        let uid = self.new_uid();
        let now = self.now();
        let mut obj = meta::prepare_create(t, ns, body, &name, &uid, &now)?;
        let ok = obj_key(t, ns, &name);
        if self.objects.get(&key).is_some_and(|m| m.contains_key(&ok)) {
            return Err(ApiError::already_exists(&t.group, &t.plural, &name));
        }
        if key == CRD_KEY {
            self.accept_crd(&mut obj)?;
        }
        Ok(self.write(&key, obj, None))
    }

    pub fn update(
        &mut self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        body: Value,
        scope: UpdateScope,
    ) -> Result<Arc<Value>, ApiError> {
        let existing = self.get(t, ns, name)?;
        let new = meta::prepare_update(t, &existing, body, scope)?;
        self.commit_update(t, existing, new)
    }

    pub fn patch(
        &mut self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        kind: PatchKind,
        body: &[u8],
        scope: UpdateScope,
    ) -> Result<Arc<Value>, ApiError> {
        let existing = self.get(t, ns, name)?;
        let patched = patch::apply(kind, &existing, body)?;
        let new = meta::prepare_update(t, &existing, patched, scope)?;
        self.commit_update(t, existing, new)
    }

    fn commit_update(
        &mut self,
        t: &ResourceType,
        existing: Arc<Value>,
        mut new: Value,
    ) -> Result<Arc<Value>, ApiError> {
        let key = t.key();
        if meta::is_deleting(&new) && meta::finalizers(&new).is_empty() {
            let ok = (
                meta::namespace(&new).to_string(),
                meta::name(&new).to_string(),
            );
            return self
                .remove(&key, &ok, Some(new), false)
                .ok_or_else(|| ApiError::not_found(&t.group, &t.plural, &ok.1));
        }
        if meta::same_content(&existing, &new) {
            return Ok(existing);
        }
        if key == CRD_KEY {
            self.accept_crd(&mut new)?;
        }
        Ok(self.write(&key, new, Some(existing)))
    }

    pub fn delete(
        &mut self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let existing = self.get(t, ns, name)?;
        if let Some(u) = &opts.precondition_uid
            && u != meta::uid(&existing)
        {
            return Err(ApiError::conflict(
                &t.group,
                &t.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {u}, UID in object meta: {}",
                    meta::uid(&existing)
                ),
            ));
        }
        if let Some(rv) = &opts.precondition_rv
            && rv != meta::resource_version(&existing)
        {
            return Err(ApiError::conflict(
                &t.group,
                &t.plural,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta::resource_version(&existing)
                ),
            ));
        }
        let ok = obj_key(t, ns, name);
        self.delete_object(&t.key(), &ok, opts.orphan)
            .ok_or_else(|| ApiError::not_found(&t.group, &t.plural, name))
    }

    /// Marks an object with finalizers as deleting, or removes it.
    pub(super) fn delete_object(
        &mut self,
        key: &str,
        ok: &ObjKey,
        orphan: bool,
    ) -> Option<Arc<Value>> {
        let cur = self.objects.get(key)?.get(ok)?.clone();
        if meta::finalizers(&cur).is_empty() {
            return self.remove(key, ok, None, orphan);
        }
        if meta::is_deleting(&cur) {
            return Some(cur);
        }
        let mut new = (*cur).clone();
        let now = self.now();
        meta::set_meta(&mut new, "deletionTimestamp", json!(now));
        meta::set_meta(&mut new, "deletionGracePeriodSeconds", json!(0));
        Some(self.write(key, new, Some(cur)))
    }

    /// Stores `obj` under the next resourceVersion and records the event.
    pub(super) fn write(
        &mut self,
        key: &str,
        mut obj: Value,
        old: Option<Arc<Value>>,
    ) -> Arc<Value> {
        self.rv += 1;
        meta::set_meta(&mut obj, "resourceVersion", json!(self.rv.to_string()));
        let ok = (
            meta::namespace(&obj).to_string(),
            meta::name(&obj).to_string(),
        );
        if let Some(o) = &old {
            self.unindex(key, &ok, o);
        }
        self.index(key, &ok, &obj);
        let obj = Arc::new(obj);
        self.objects
            .entry(key.to_string())
            .or_default()
            .insert(ok, obj.clone());
        let etype = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(key, etype, obj.clone(), old);
        obj
    }

    /// Removes an object for good (its final state may be given), then lets the
    /// garbage collector and CRD bookkeeping follow.
    pub(super) fn remove(
        &mut self,
        key: &str,
        ok: &ObjKey,
        last: Option<Value>,
        orphan: bool,
    ) -> Option<Arc<Value>> {
        let old = self.objects.get_mut(key)?.remove(ok)?;
        self.rv += 1;
        let mut obj = last.unwrap_or_else(|| (*old).clone());
        meta::set_meta(&mut obj, "resourceVersion", json!(self.rv.to_string()));
        self.unindex(key, ok, &old);
        let obj = Arc::new(obj);
        self.record(key, EventType::Deleted, obj.clone(), Some(old));
        if key == CRD_KEY {
            self.drop_crd_types(&obj);
        }
        if key == NAMESPACES_KEY {
            self.empty_namespace(meta::name(&obj));
        }
        self.collect_dependents(meta::uid(&obj).to_string(), orphan);
        Some(obj)
    }

    /// Versions up to this one are no longer in the history of `key`.
    pub fn compacted(&self, key: &str) -> u64 {
        self.history.get(key).map_or(0, |h| h.compacted)
    }

    fn index(&mut self, key: &str, ok: &ObjKey, obj: &Value) {
        self.uids
            .insert(meta::uid(obj).to_string(), (key.to_string(), ok.clone()));
        for owner in meta::owner_uids(obj) {
            self.dependents
                .entry(owner)
                .or_default()
                .insert((key.to_string(), ok.clone()));
        }
    }

    fn unindex(&mut self, key: &str, ok: &ObjKey, obj: &Value) {
        self.uids.remove(meta::uid(obj));
        for owner in meta::owner_uids(obj) {
            if let Some(set) = self.dependents.get_mut(&owner) {
                set.remove(&(key.to_string(), ok.clone()));
                if set.is_empty() {
                    self.dependents.remove(&owner);
                }
            }
        }
    }

    fn record(&mut self, key: &str, etype: EventType, object: Arc<Value>, old: Option<Arc<Value>>) {
        let h = self.history.entry(key.to_string()).or_default();
        h.events.push_back(Arc::new(Event {
            rv: self.rv,
            key: key.to_string(),
            etype,
            object,
            old,
        }));
        while h.events.len() > self.history_cap {
            if let Some(e) = h.events.pop_front() {
                h.compacted = e.rv;
            }
        }
        self.dirty.insert(key.to_string());
    }

    /// Drops every type's watch history, as an etcd compaction does: every
    /// open watch and continue token ends with 410 Gone and its client must
    /// list again. The version moves on, so a fresh list can watch from it.
    pub fn expire_history(&mut self) {
        self.rv += 1;
        for (key, h) in &mut self.history {
            h.events.clear();
            h.compacted = self.rv;
            self.dirty.insert(key.clone());
        }
    }

    /// The storage keys written since the last call.
    pub fn take_dirty(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.dirty)
    }

    /// Up to `max` events of `key` newer than `after`, or `Expired` when
    /// some of them were already dropped from the history.
    pub fn events_after(
        &self,
        key: &str,
        after: u64,
        max: usize,
    ) -> Result<Vec<Arc<Event>>, Expired> {
        let Some(h) = self.history.get(key) else {
            return Ok(Vec::new());
        };
        if after < h.compacted {
            return Err(Expired {
                oldest_kept: h.compacted + 1,
            });
        }
        let start = h.events.partition_point(|e| e.rv <= after);
        Ok(h.events.range(start..).take(max).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::selector::LabelSelector;

    fn t(store: &Store, plural: &str) -> ResourceType {
        store.registry().get("", "v1", plural).cloned().unwrap()
    }

    fn pod(name: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {}})
    }

    #[test]
    fn versions_count_up_and_history_expires() {
        let mut s = Store::new(3);
        let pods = t(&s, "pods");
        for i in 0..5 {
            s.create(&pods, Some("ns"), pod(&format!("p{i}"))).unwrap();
        }
        assert_eq!(s.resource_version(), 5);
        assert_eq!(
            s.events_after(&pods.key(), 1, 10).unwrap_err(),
            Expired { oldest_kept: 3 }
        );
        let evs = s.events_after(&pods.key(), 2, 10).unwrap();
        assert_eq!(evs.iter().map(|e| e.rv).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert!(s.events_after(&pods.key(), 5, 10).unwrap().is_empty());
        // Another type's history is separate.
        let cms = t(&s, "configmaps");
        s.create(&cms, Some("ns"), pod("c")).unwrap();
        assert!(s.events_after(&pods.key(), 2, 10).is_ok());
        assert_eq!(
            s.take_dirty().into_iter().collect::<Vec<_>>(),
            ["/configmaps", "/pods"]
        );
    }

    #[test]
    fn expiring_the_history_ends_every_watch_but_not_a_fresh_one() {
        let mut s = Store::new(100);
        let pods = t(&s, "pods");
        for i in 0..3 {
            s.create(&pods, Some("ns"), pod(&format!("p{i}"))).unwrap();
        }
        s.take_dirty();
        s.expire_history();
        assert_eq!(s.resource_version(), 4);
        // Even a watch that had seen every event must list again.
        assert!(s.events_after(&pods.key(), 3, 10).is_err());
        assert_eq!(s.take_dirty().into_iter().collect::<Vec<_>>(), ["/pods"]);
        // A list now returns version 4; watching from it works.
        assert!(s.events_after(&pods.key(), 4, 10).unwrap().is_empty());
        s.create(&pods, Some("ns"), pod("p3")).unwrap();
        let evs = s.events_after(&pods.key(), 4, 10).unwrap();
        assert_eq!(evs.iter().map(|e| e.rv).collect::<Vec<_>>(), vec![5]);
    }

    #[test]
    fn generate_name_and_already_exists() {
        let mut s = Store::new(100);
        let pods = t(&s, "pods");
        let a = s
            .create(
                &pods,
                Some("ns"),
                json!({"metadata": {"generateName": "web-"}}),
            )
            .unwrap();
        assert!(meta::name(&a).starts_with("web-") && meta::name(&a).len() == 9);
        s.create(&pods, Some("ns"), pod("x")).unwrap();
        assert_eq!(s.create(&pods, Some("ns"), pod("x")).unwrap_err().code, 409);
        // Same name in another namespace is a different object.
        s.create(&pods, Some("other"), pod("x")).unwrap();
    }

    #[test]
    fn finalizers_hold_deletion_until_removed() {
        let mut s = Store::new(100);
        let pvcs = t(&s, "persistentvolumeclaims");
        s.create(
            &pvcs,
            Some("ns"),
            json!({"metadata": {"name": "c", "finalizers": ["f"]}}),
        )
        .unwrap();
        let d = s
            .delete(&pvcs, Some("ns"), "c", &DeleteOptions::default())
            .unwrap();
        assert!(meta::is_deleting(&d));
        assert!(s.get(&pvcs, Some("ns"), "c").is_ok());
        s.patch(
            &pvcs,
            Some("ns"),
            "c",
            PatchKind::Merge,
            br#"{"metadata":{"finalizers":null}}"#,
            UpdateScope::Main,
        )
        .unwrap();
        assert_eq!(s.get(&pvcs, Some("ns"), "c").unwrap_err().code, 404);
        let last = s
            .events_after(&pvcs.key(), s.resource_version() - 1, 1)
            .unwrap();
        assert_eq!(last[0].etype, EventType::Deleted);
    }

    #[test]
    fn no_op_update_keeps_version() {
        let mut s = Store::new(100);
        let pods = t(&s, "pods");
        let p = s.create(&pods, Some("ns"), pod("p")).unwrap();
        let again = s
            .update(&pods, Some("ns"), "p", (*p).clone(), UpdateScope::Main)
            .unwrap();
        assert_eq!(meta::resource_version(&again), meta::resource_version(&p));
        assert_eq!(s.resource_version(), 1);
    }

    #[test]
    fn list_filters_by_namespace_and_labels() {
        let mut s = Store::new(100);
        let pods = t(&s, "pods");
        s.create(
            &pods,
            Some("a"),
            json!({"metadata": {"name": "p1", "labels": {"app": "x"}}}),
        )
        .unwrap();
        s.create(
            &pods,
            Some("b"),
            json!({"metadata": {"name": "p2", "labels": {"app": "x"}}}),
        )
        .unwrap();
        s.create(&pods, Some("a"), json!({"metadata": {"name": "p3"}}))
            .unwrap();
        let f = ObjectFilter {
            namespace: Some("a".into()),
            labels: LabelSelector::parse("app=x").unwrap(),
            ..Default::default()
        };
        let (rv, items) = s.list(&pods, &f);
        assert_eq!(rv, 3);
        assert_eq!(items.len(), 1);
        assert_eq!(meta::name(&items[0]), "p1");
    }
}
