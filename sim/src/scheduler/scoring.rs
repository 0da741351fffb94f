//! Combining extender priorities and choosing the host, as kube-scheduler's
//! `prioritizeNodes` and `selectHost` do, minus the in-tree score plugins.
//! That gap matters without an extender: kube-scheduler 1.37 spreads pods by
//! NodeResourcesFit (each pod counted at its non-zero default request) and
//! VolumeBinding's capacity score, and breaks ties at random, while this
//! driver then takes nodes in name order and so piles a burst onto the first
//! nodes. Its no-extender bursts therefore need many more reschedules than
//! upstream's (see docs/configuration.md for upstream's numbers).

use std::collections::BTreeMap;

/// framework.MaxNodeScore / extenderv1.MaxExtenderPriority: extender scores
/// (0–10) are scaled to the 0–100 range of score plugins.
pub const EXTENDER_SCALE: i64 = 100 / 10;

/// Add one extender's `HostPriorityList`, weighted, to the totals of candidate nodes.
pub fn add_extender_scores(
    totals: &mut BTreeMap<String, i64>,
    scores: &[(String, i64)],
    weight: i64,
) {
    for (host, score) in scores {
        if let Some(t) = totals.get_mut(host) {
            *t = t.saturating_add(score.saturating_mul(weight).saturating_mul(EXTENDER_SCALE));
        }
    }
}

/// The highest total wins. kube-scheduler breaks ties at random; the simulator
/// breaks them by node name so that runs are repeatable.
pub fn pick_best(totals: &BTreeMap<String, i64>) -> Option<String> {
    // BTreeMap iterates by name, and max_by_key keeps the last maximum, so
    // iterate in reverse to keep the first name among equals.
    totals
        .iter()
        .rev()
        .max_by_key(|(_, score)| **score)
        .map(|(name, _)| name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_and_tie_broken_by_name() {
        let mut t: BTreeMap<String, i64> =
            ["a", "b", "c"].iter().map(|n| (n.to_string(), 0)).collect();
        assert_eq!(pick_best(&t).as_deref(), Some("a"));
        add_extender_scores(
            &mut t,
            &[("b".into(), 5), ("c".into(), 5), ("zz".into(), 10)],
            2,
        );
        assert_eq!(t["b"], 100);
        assert!(!t.contains_key("zz"), "unknown hosts are ignored");
        assert_eq!(pick_best(&t).as_deref(), Some("b"));
        add_extender_scores(&mut t, &[("c".into(), 1)], 1);
        assert_eq!(pick_best(&t).as_deref(), Some("c"));
        assert_eq!(pick_best(&BTreeMap::new()), None);
    }
}
