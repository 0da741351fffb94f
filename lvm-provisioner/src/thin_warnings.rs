//! When to warn that a thin pool is nearly full. Pure: the new status, the
//! classes and the pools already over a threshold in, the warnings out.
//!
//! A pool's warning thresholds are the lowest data and metadata limits among
//! the lvmpin StorageClasses naming it (`lvmpin.io/thin-*-percent-limit`),
//! or the defaults (90%) when none does: the point at which placement stops
//! adding volumes to it is the point an operator needs to act. A warning is
//! given on crossing only, not on every scan while the pool stays over.

use std::collections::BTreeSet;

use k8s_openapi::api::storage::v1::StorageClass;
use lvmpin_api::LvmNodeStatus;
use lvmpin_api::names::{PARAM_THIN_POOL, PARAM_VOLUME_GROUP};
use lvmpin_api::thin::{PoolUsage, ThinLimits, limit_reached};

use crate::claim_plan::{class_param, is_our_class, thin_limits};

/// Event reason of the warning on the LvmNode.
pub const REASON: &str = "ThinPoolNearlyFull";

/// `vg/pool` and which use ("data" or "metadata") is over its threshold.
pub type Over = BTreeSet<(String, &'static str)>;

/// The lowest limits of our classes on `vg/pool`; the defaults if none.
pub fn thresholds(classes: &[&StorageClass], vg: &str, pool: &str) -> ThinLimits {
    classes
        .iter()
        .filter(|c| is_our_class(c))
        .filter(|c| class_param(c, PARAM_VOLUME_GROUP) == Some(vg))
        .filter(|c| class_param(c, PARAM_THIN_POOL) == Some(pool))
        .filter_map(|c| thin_limits(c).ok().flatten())
        .reduce(ThinLimits::strictest)
        .unwrap_or_default()
}

/// The pools over a threshold now, and one message per pool use that was
/// not over before.
pub fn crossings(
    status: &LvmNodeStatus,
    classes: &[&StorageClass],
    before: &Over,
) -> (Over, Vec<String>) {
    let mut now = Over::new();
    let mut messages = Vec::new();
    for vg in &status.volume_groups {
        for pool in &vg.thin_pools {
            let key = format!("{}/{}", vg.name, pool.name);
            let limits = thresholds(classes, &vg.name, &pool.name);
            let usage = PoolUsage {
                size_bytes: pool.size_bytes,
                data_percent: pool.data_percent,
                metadata_percent: pool.metadata_percent,
                promised_bytes: pool.promised_bytes.unwrap_or(0),
            };
            // Data and metadata are judged apart: one over must not hide the other.
            let only = |data: bool| ThinLimits {
                data_percent: if data { limits.data_percent } else { 101 },
                metadata_percent: if data { 101 } else { limits.metadata_percent },
                ..limits
            };
            for (kind, l) in [("data", only(true)), ("metadata", only(false))] {
                let Some(hit) = limit_reached(&usage, &l) else {
                    continue;
                };
                let entry = (key.clone(), kind);
                if !before.contains(&entry) {
                    messages.push(format!(
                        "thin pool {key}: {hit}; no new thin volume is placed or created in it until it is grown or emptied"
                    ));
                }
                now.insert(entry);
            }
        }
    }
    (now, messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvmpin_api::names::{DRIVER_NAME, PARAM_THIN_DATA_LIMIT};
    use lvmpin_api::{ThinPoolStatus, VolumeGroupStatus};

    fn status(data: f64, meta: f64) -> LvmNodeStatus {
        LvmNodeStatus {
            volume_groups: vec![VolumeGroupStatus {
                name: "vg0".into(),
                healthy: true,
                thin_pools: vec![ThinPoolStatus {
                    name: "pool".into(),
                    size_bytes: 100,
                    data_percent: data,
                    metadata_percent: meta,
                    promised_bytes: Some(0),
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn warns_on_crossing_only_at_the_lowest_class_limit() {
        let strict = lvmpin_testkit::class(
            "strict",
            DRIVER_NAME,
            &[
                (PARAM_VOLUME_GROUP, "vg0"),
                (PARAM_THIN_POOL, "pool"),
                (PARAM_THIN_DATA_LIMIT, "70"),
            ],
        );
        let loose = lvmpin_testkit::class(
            "loose",
            DRIVER_NAME,
            &[(PARAM_VOLUME_GROUP, "vg0"), (PARAM_THIN_POOL, "pool")],
        );
        let other_pool = lvmpin_testkit::class(
            "other",
            DRIVER_NAME,
            &[
                (PARAM_VOLUME_GROUP, "vg0"),
                (PARAM_THIN_POOL, "elsewhere"),
                (PARAM_THIN_DATA_LIMIT, "10"),
            ],
        );
        let all = [&strict, &loose, &other_pool];
        // name, classes, data%, metadata%, over before, want messages, want over after
        type Case<'a> = (
            &'a str,
            &'a [&'a StorageClass],
            f64,
            f64,
            bool,
            usize,
            usize,
        );
        let cases: Vec<Case> = vec![
            ("under every limit", &all, 60.0, 1.0, false, 0, 0),
            (
                "crosses the lowest class limit",
                &all,
                75.0,
                1.0,
                false,
                1,
                1,
            ),
            ("stays over: no new warning", &all, 80.0, 1.0, true, 0, 1),
            ("default limit without classes", &[], 75.0, 1.0, false, 0, 0),
            ("default limit crossed", &[], 95.0, 1.0, false, 1, 1),
            ("data and metadata both", &all, 75.0, 95.0, false, 2, 2),
            ("back under clears", &all, 10.0, 1.0, true, 0, 0),
        ];
        for (name, classes, data, meta, was_over, want_msgs, want_over) in cases {
            let before: Over = if was_over {
                [("vg0/pool".to_string(), "data")].into()
            } else {
                Over::new()
            };
            let (over, msgs) = crossings(&status(data, meta), classes, &before);
            assert_eq!(msgs.len(), want_msgs, "{name}: {msgs:?}");
            assert_eq!(over.len(), want_over, "{name}: {over:?}");
            for m in &msgs {
                assert!(m.starts_with("thin pool vg0/pool: "), "{name}: {m}");
            }
        }
    }
}
