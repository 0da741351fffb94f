//! What a filter reads of each asked node, resolved once and kept in the
//! order kube-scheduler asks.
//!
//! kube-scheduler asks about the same node list, in the same order, request
//! after request. Looking every name up in the index again costs a hash and
//! several scattered reads per node, more than parsing the request. The view
//! keeps, per asked position, the few numbers the verdict needs, and follows
//! the index's log of changed nodes so a report that changed refreshes only
//! its own row. Nodes it cannot judge by numbers alone (no report, silent
//! agent, missing or unhealthy VG) are marked, and the filter judges them the
//! slow way, with their reasons.

use crate::index::{FastMap, Index, NodeEntry, entry_label};
use crate::thin::{reservation_key, room};

/// Per demanded VG of a ready node: what `placement::evaluate` reads.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cap {
    pub free: u64,
    pub size: u64,
    pub extent: u64,
}

/// No zone or label value.
pub const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    /// A report, an agent that is not silent, and every demanded VG present
    /// and healthy: capacity alone decides.
    pub ready: bool,
    /// Index into `zones`, or NONE.
    pub zone: u32,
    /// Index into `labels` (values of the label key asked for), or NONE.
    pub label: u32,
}

#[derive(Clone, Debug, Default)]
pub struct NodeView {
    /// The asked names, back to back, and where each ends.
    names: String,
    ends: Vec<usize>,
    /// The demanded VGs: the columns of `caps`.
    vgs: Vec<String>,
    /// The label key whose values `labels` holds.
    label_key: Option<String>,
    /// `Index::node_version` the rows reflect.
    version: u64,
    /// First asked position per name.
    pub positions: FastMap<String, u32>,
    /// No name is asked twice. Otherwise the view is not used.
    pub unique: bool,
    pub rows: Vec<Row>,
    /// `rows.len() × vgs.len()`, row-major.
    pub caps: Vec<Cap>,
    /// Zone values seen, in order of discovery (stale ones may stay).
    pub zones: Vec<String>,
    pub labels: Vec<String>,
}

impl NodeView {
    /// Brings the view up to date for `asked`, demanded `vgs` and label key
    /// `label`, rebuilding only what changed.
    pub fn refresh(&mut self, ix: &Index, asked: &[&str], vgs: &[&str], label: Option<&str>) {
        let same_shape = self.is_for(asked)
            && self.vgs.iter().map(String::as_str).eq(vgs.iter().copied())
            // Label values kept for another key do no harm when none is asked.
            && (label.is_none() || self.label_key.as_deref() == label);
        // Rows of a name asked twice are refreshed by position, so such a
        // list is always built afresh.
        if !same_shape || !self.unique {
            self.rebuild(ix, asked, vgs, label);
            return;
        }
        if self.version == ix.node_version() {
            return;
        }
        let Some(changed) = ix.nodes_changed_since(self.version) else {
            self.rebuild(ix, asked, vgs, label);
            return;
        };
        for name in changed {
            if let Some(&pos) = self.positions.get(name.as_str()) {
                self.fill(pos as usize, ix.nodes.get(name.as_str()));
            }
        }
        self.version = ix.node_version();
    }

    /// Whether the view was built for exactly this list of names.
    fn is_for(&self, asked: &[&str]) -> bool {
        if asked.len() != self.ends.len() {
            return false;
        }
        let mut start = 0;
        asked.iter().zip(&self.ends).all(|(name, &end)| {
            let same = self.names.as_bytes().get(start..end) == Some(name.as_bytes());
            start = end;
            same
        })
    }

    fn rebuild(&mut self, ix: &Index, asked: &[&str], vgs: &[&str], label: Option<&str>) {
        self.names.clear();
        self.ends.clear();
        for name in asked {
            self.names.push_str(name);
            self.ends.push(self.names.len());
        }
        self.vgs = vgs.iter().map(|v| v.to_string()).collect();
        self.label_key = label.map(str::to_string);
        self.positions.clear();
        self.unique = true;
        for (i, name) in asked.iter().enumerate() {
            if self.positions.contains_key(*name) {
                self.unique = false;
            } else {
                self.positions.insert(name.to_string(), i as u32);
            }
        }
        self.rows = vec![
            Row {
                ready: false,
                zone: NONE,
                label: NONE,
            };
            asked.len()
        ];
        self.caps = vec![Cap::default(); asked.len() * vgs.len()];
        self.zones.clear();
        self.labels.clear();
        for (i, name) in asked.iter().enumerate() {
            self.fill(i, ix.nodes.get(*name));
        }
        self.version = ix.node_version();
    }

    /// Recomputes row `pos` from the node's entry.
    fn fill(&mut self, pos: usize, entry: Option<&NodeEntry>) {
        let k = self.vgs.len();
        let mut ready = entry.is_some_and(|e| e.lvm.is_some() && e.silent_since.is_none());
        if let Some(lvm) = entry.and_then(|e| e.lvm.as_ref()) {
            // A column is a VG or a thin pool under a class's limits.
            for (j, key) in self.vgs.iter().enumerate() {
                match room(lvm, key) {
                    Ok(r) => {
                        self.caps[pos * k + j] = Cap {
                            free: r.free,
                            size: r.size,
                            extent: r.extent,
                        }
                    }
                    Err(_) => ready = false,
                }
            }
        }
        let zone = entry
            .and_then(|e| e.zone.as_deref())
            .map_or(NONE, |z| intern(&mut self.zones, z));
        let label = match (&self.label_key, entry) {
            (Some(key), Some(e)) => {
                entry_label(e, key).map_or(NONE, |v| intern(&mut self.labels, v))
            }
            _ => NONE,
        };
        self.rows[pos] = Row { ready, zone, label };
    }

    /// Demanded VGs: capacities per row.
    pub fn width(&self) -> usize {
        self.vgs.len()
    }

    /// The capacities of row `pos`, one per demanded VG.
    pub fn caps_of(&self, pos: usize) -> &[Cap] {
        let k = self.vgs.len();
        &self.caps[pos * k..pos * k + k]
    }

    /// The column reservations under `key` (a VG or a thin pool,
    /// `thin::reservation_key`) count against, if demanded.
    pub fn column(&self, key: &str) -> Option<usize> {
        self.vgs.iter().position(|v| reservation_key(v) == key)
    }
}

/// The index of `value` in `values`, added if new. Zones and label values
/// are few, so a scan beats a map.
fn intern(values: &mut Vec<String>, value: &str) -> u32 {
    match values.iter().position(|v| v == value) {
        Some(i) => i as u32,
        None => {
            values.push(value.to_string());
            (values.len() - 1) as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{LvmFacts, NodeFacts};
    use crate::testutil::{lvm_node, zoned_node};

    const GI: u64 = 1 << 30;

    fn index() -> Index {
        let mut ix = Index::default();
        for (n, free) in [("n1", 10), ("n2", 30), ("n3", 20)] {
            ix.upsert_lvm(lvm_node(n, "vg1", 100 * GI, free * GI, 4 << 20));
        }
        ix.upsert_node(zoned_node("n1", "z1"));
        ix.upsert_node(zoned_node("n2", "z2"));
        ix
    }

    /// What a fresh view of `asked` says: per node, ready, free bytes of
    /// vg1 when ready, zone name.
    fn fresh(ix: &Index, asked: &[&str]) -> Vec<(bool, u64, Option<String>)> {
        let mut v = NodeView::default();
        v.refresh(ix, asked, &["vg1"], None);
        read(&v)
    }

    fn read(v: &NodeView) -> Vec<(bool, u64, Option<String>)> {
        v.rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let free = if r.ready { v.caps_of(i)[0].free } else { 0 };
                let zone = (r.zone != NONE).then(|| v.zones[r.zone as usize].clone());
                (r.ready, free, zone)
            })
            .collect()
    }

    /// After each change, the view refreshed in place reads the same as one
    /// built from scratch.
    #[test]
    fn refreshed_view_matches_a_fresh_one_after_each_change() {
        type Change = (&'static str, fn(&mut Index));
        let changes: Vec<Change> = vec![
            ("report with less free", |ix| {
                ix.upsert_lvm(lvm_node("n2", "vg1", 100 * GI, 5 * GI, 4 << 20))
            }),
            ("report of an asked node that was unknown", |ix| {
                ix.upsert_lvm(lvm_node("n4", "vg1", 100 * GI, 50 * GI, 4 << 20))
            }),
            ("report gone", |ix| ix.remove_lvm("n1")),
            ("unhealthy VG", |ix| {
                let mut l = lvm_node("n3", "vg1", 100 * GI, 20 * GI, 4 << 20);
                if let Some(lvm) = l.lvm.as_mut() {
                    lvm.vgs[0].healthy = false;
                }
                ix.upsert_lvm(l)
            }),
            ("other VG only", |ix| {
                ix.upsert_lvm(lvm_node("n2", "vg2", 100 * GI, 50 * GI, 4 << 20))
            }),
            ("zone moves", |ix| ix.upsert_node(zoned_node("n1", "z9"))),
            ("node deleted", |ix| ix.remove_node("n2")),
            ("agent silent", |ix| {
                let far = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
                ix.mark_silent(far, std::time::Duration::from_secs(60));
            }),
            ("node without zone", |ix| {
                ix.upsert_node(NodeFacts {
                    name: "n3".into(),
                    up: true,
                    ..Default::default()
                })
            }),
        ];
        let asked = ["n1", "n2", "n3", "n4"];
        for (name, change) in changes {
            let mut ix = index();
            let mut view = NodeView::default();
            view.refresh(&ix, &asked, &["vg1"], None);
            change(&mut ix);
            view.refresh(&ix, &asked, &["vg1"], None);
            assert_eq!(read(&view), fresh(&ix, &asked), "{name}");
        }
    }

    #[test]
    fn shape_changes_rebuild_and_repeats_disable_the_view() {
        let ix = index();
        let mut v = NodeView::default();
        v.refresh(&ix, &["n1", "n2"], &["vg1"], None);
        v.refresh(&ix, &["n2", "n1"], &["vg1"], None);
        assert_eq!(read(&v), fresh(&ix, &["n2", "n1"]));
        v.refresh(&ix, &["n2", "n1"], &["vg9"], None);
        assert!(!v.rows[0].ready, "a VG the node lacks");
        v.refresh(&ix, &["n1", "n1"], &["vg1"], None);
        assert!(!v.unique);
        // Names that only concatenate alike are different lists.
        v.refresh(&ix, &["n1n", "2"], &["vg1"], None);
        assert!(!v.is_for(&["n1", "n2"]));
        v.refresh(
            &ix,
            &["n1", "n2"],
            &["vg1"],
            Some(lvmpin_api::names::ZONE_LABEL),
        );
        assert_eq!(v.labels, vec!["z1".to_string(), "z2".to_string()]);
    }

    #[test]
    fn a_log_that_no_longer_reaches_back_rebuilds() {
        let mut ix = index();
        let asked = ["n1", "n2", "n3"];
        let mut v = NodeView::default();
        v.refresh(&ix, &asked, &["vg1"], None);
        for i in 0..5000u64 {
            ix.upsert_lvm(LvmFacts {
                node: format!("other-{i}"),
                lvm: None,
            });
        }
        ix.upsert_lvm(lvm_node("n1", "vg1", 100 * GI, 99 * GI, 4 << 20));
        assert!(ix.nodes_changed_since(0).is_none());
        v.refresh(&ix, &asked, &["vg1"], None);
        assert_eq!(read(&v), fresh(&ix, &asked));
        assert_eq!(read(&v)[0].1, 99 * GI);
    }
}
