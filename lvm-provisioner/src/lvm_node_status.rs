//! Turns one volume-manager scan into the LvmNode status the extender reads.
//! Pure: the scan, the configured VGs, the previous status and the time in.

use lvmpin_api::lvm_node::condition::{SCAN_SUCCEEDED, VOLUME_GROUPS_HEALTHY};
use lvmpin_api::{LvmNodeStatus, LvmNodeSummary, NodeCondition, ThinPoolStatus, VolumeGroupStatus};

use crate::backend::Scan;

fn vg_status(report: &Scan, name: &str) -> VolumeGroupStatus {
    let Some(vg) = report.volume_group(name) else {
        return VolumeGroupStatus {
            name: name.to_string(),
            healthy: false,
            message: Some(format!(
                "volume group {name} is configured but not found on this node"
            )),
            ..Default::default()
        };
    };
    let mut volumes: Vec<String> = report
        .volumes
        .iter()
        // Claim volumes only: the extender drops reservations by this list,
        // and a snapshot is no claim's volume.
        .filter(|v| v.vg == name && v.owner.is_some() && !v.is_snapshot())
        .map(|v| v.name.clone())
        .collect();
    volumes.sort();
    let thin_pools = report
        .thin_pools
        .iter()
        .filter(|p| p.vg == name)
        .map(|p| ThinPoolStatus {
            name: p.name.clone(),
            size_bytes: p.size_bytes,
            data_percent: p.data_percent,
            metadata_percent: p.metadata_percent,
        })
        .collect();
    let missing = vg.missing_pv_count;
    VolumeGroupStatus {
        name: name.to_string(),
        size_bytes: vg.size_bytes,
        free_bytes: vg.free_bytes,
        extent_size_bytes: vg.extent_size_bytes,
        lv_count: vg.lv_count,
        volumes,
        thin_pools,
        healthy: missing == 0,
        message: (missing > 0).then(|| {
            format!(
                "{missing} of {} physical volumes of {name} are missing",
                vg.pv_count
            )
        }),
    }
}

/// Keeps the previous transition time when a condition's status is unchanged.
fn condition(
    previous: Option<&LvmNodeStatus>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    now: &str,
) -> NodeCondition {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    NodeCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        last_transition_time: Some(since),
    }
}

/// `host_problem`: a reason no VG of this node may be used (see `lvm_mode`);
/// every VG is then reported unhealthy with it, so no scheduler picks them.
pub fn build_status(
    report: &Scan,
    configured: &[String],
    host_problem: Option<&str>,
    previous: Option<&LvmNodeStatus>,
    now: &str,
) -> LvmNodeStatus {
    let volume_groups: Vec<VolumeGroupStatus> = configured
        .iter()
        .map(|name| {
            let mut vg = vg_status(report, name);
            if let Some(problem) = host_problem {
                vg.healthy = false;
                vg.message = Some(match vg.message.take() {
                    Some(m) => format!("{m}; {problem}"),
                    None => problem.to_string(),
                });
            }
            vg
        })
        .collect();
    let problems: Vec<String> = volume_groups
        .iter()
        .filter_map(|vg| vg.message.clone())
        .collect();
    let healthy = condition(
        previous,
        VOLUME_GROUPS_HEALTHY,
        problems.is_empty(),
        if problems.is_empty() {
            "AllPresent"
        } else {
            "VolumeGroupProblem"
        },
        problems.join("; "),
        now,
    );
    let scanned = condition(
        previous,
        SCAN_SUCCEEDED,
        true,
        "Scanned",
        String::new(),
        now,
    );
    LvmNodeStatus {
        summary: Some(LvmNodeSummary::of(&volume_groups)),
        volume_groups,
        conditions: vec![healthy, scanned],
        last_scan_time: Some(now.to_string()),
    }
}

/// A failed scan keeps the last known volume groups (placement keeps working
/// on slightly stale numbers) and says so in a condition.
pub fn scan_failed_status(
    previous: Option<&LvmNodeStatus>,
    error: &str,
    now: &str,
) -> LvmNodeStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let failed = condition(
        previous,
        SCAN_SUCCEEDED,
        false,
        "ScanFailed",
        error.to_string(),
        now,
    );
    status.conditions.retain(|c| c.type_ != SCAN_SUCCEEDED);
    status.conditions.push(failed);
    status.summary = Some(LvmNodeSummary::of(&status.volume_groups));
    status
}

/// Whether `new` says anything `old` does not, ignoring the scan time.
/// Whether to write `new`: it differs from the last written status, or that
/// write is `heartbeat` old (`None`: never written). The heartbeat lets
/// `lastScanTime` tell a live agent from a dead one (lvmpin-controller hands
/// claims waiting on a silent node back to the scheduler; see
/// docs/operations.md, "Node loss").
pub fn needs_write(
    old: Option<&LvmNodeStatus>,
    new: &LvmNodeStatus,
    since_last_write: Option<std::time::Duration>,
    heartbeat: std::time::Duration,
) -> bool {
    differs(old, new) || since_last_write.is_none_or(|d| d >= heartbeat)
}

pub fn differs(old: Option<&LvmNodeStatus>, new: &LvmNodeStatus) -> bool {
    let Some(old) = old else {
        return true;
    };
    let strip = |s: &LvmNodeStatus| LvmNodeStatus {
        last_scan_time: None,
        ..s.clone()
    };
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Owner, ThinPool, Volume, VolumeGroup};

    #[test]
    fn unchanged_reports_are_rewritten_as_a_heartbeat() {
        let a = LvmNodeStatus {
            last_scan_time: Some("t1".into()),
            ..Default::default()
        };
        let same_later = LvmNodeStatus {
            last_scan_time: Some("t2".into()),
            ..a.clone()
        };
        let changed = LvmNodeStatus {
            volume_groups: vec![lvmpin_api::VolumeGroupStatus {
                name: "vg0".into(),
                ..Default::default()
            }],
            ..same_later.clone()
        };
        let s = std::time::Duration::from_secs;
        let beat = s(60);
        assert!(!needs_write(Some(&a), &same_later, Some(s(10)), beat));
        assert!(needs_write(Some(&a), &same_later, Some(s(60)), beat));
        assert!(needs_write(Some(&a), &changed, Some(s(1)), beat));
        assert!(needs_write(None, &a, None, beat));
        assert!(needs_write(Some(&a), &same_later, None, beat));
    }

    fn report() -> Scan {
        Scan {
            volume_groups: vec![VolumeGroup {
                name: "vg0".into(),
                size_bytes: 10 << 30,
                free_bytes: 8 << 30,
                extent_size_bytes: 4 << 20,
                pv_count: 2,
                missing_pv_count: 0,
                lv_count: 3,
            }],
            volumes: vec![
                Volume {
                    vg: "vg0".into(),
                    name: "pvc-b".into(),
                    owner: Some(Owner::default()),
                    ..Default::default()
                },
                Volume {
                    vg: "vg0".into(),
                    name: "root".into(),
                    owner: None,
                    ..Default::default()
                },
                Volume {
                    vg: "vg0".into(),
                    name: "pvc-a".into(),
                    owner: Some(Owner::default()),
                    ..Default::default()
                },
                Volume {
                    vg: "vg0".into(),
                    name: "snap-1".into(),
                    owner: Some(Owner::default()),
                    snapshot_owner: Some(Default::default()),
                    ..Default::default()
                },
            ],
            thin_pools: vec![ThinPool {
                vg: "vg0".into(),
                name: "pool".into(),
                size_bytes: 1 << 30,
                data_percent: 12.5,
                metadata_percent: 3.0,
            }],
        }
    }

    #[test]
    fn healthy_vg() {
        let s = build_status(&report(), &["vg0".into()], None, None, "t1");
        let vg = s.volume_group("vg0").unwrap();
        assert_eq!(
            (vg.size_bytes, vg.free_bytes, vg.lv_count),
            (10 << 30, 8 << 30, 3)
        );
        assert_eq!(vg.volumes, vec!["pvc-a", "pvc-b"]);
        assert_eq!(vg.thin_pools[0].data_percent, 12.5);
        assert!(vg.healthy);
        assert_eq!(s.conditions[0].status, "True");
        assert_eq!(s.last_scan_time.as_deref(), Some("t1"));
        let sum = s.summary.as_ref().unwrap();
        assert_eq!(
            (
                sum.volume_groups.as_str(),
                sum.size.as_str(),
                sum.free.as_str()
            ),
            ("vg0", "10.0GiB", "8.0GiB")
        );
        assert_eq!((sum.volumes, sum.healthy), (2, true));
    }

    #[test]
    fn summary_counts_every_configured_vg_and_survives_a_failed_scan() {
        let s = build_status(&report(), &["vg0".into(), "gone".into()], None, None, "t1");
        let sum = s.summary.clone().unwrap();
        assert_eq!(sum.volume_groups, "vg0,gone");
        assert_eq!((sum.size_bytes, sum.healthy), (10 << 30, false));
        let failed = scan_failed_status(Some(&s), "lvm timed out", "t2");
        assert_eq!(failed.summary, Some(sum));
        let never_scanned = scan_failed_status(None, "lvm timed out", "t2");
        assert!(!never_scanned.summary.unwrap().healthy);
    }

    #[test]
    fn missing_vg_and_missing_pv() {
        let mut r = report();
        r.volume_groups[0].missing_pv_count = 1;
        let s = build_status(&r, &["vg0".into(), "gone".into()], None, None, "t1");
        assert!(!s.volume_groups[0].healthy);
        assert!(
            s.volume_groups[0]
                .message
                .as_deref()
                .unwrap()
                .contains("1 of 2")
        );
        assert!(!s.volume_groups[1].healthy);
        let c = &s.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str()),
            (VOLUME_GROUPS_HEALTHY, "False")
        );
        assert!(
            c.message.contains("gone is configured but not found"),
            "{}",
            c.message
        );
    }

    #[test]
    fn a_host_problem_makes_every_vg_unhealthy() {
        let problem = "device-mapper is not available";
        let mut r = report();
        r.volume_groups[0].missing_pv_count = 1;
        let s = build_status(&r, &["vg0".into()], Some(problem), None, "t1");
        let vg = s.volume_group("vg0").unwrap();
        assert!(!vg.healthy);
        let message = vg.message.as_deref().unwrap();
        assert!(
            message.contains("1 of 2") && message.contains(problem),
            "{message}"
        );
        let s = build_status(&report(), &["vg0".into()], Some(problem), None, "t1");
        assert!(!s.volume_groups[0].healthy);
        assert_eq!(s.volume_groups[0].message.as_deref(), Some(problem));
        let c = &s.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str()),
            (VOLUME_GROUPS_HEALTHY, "False")
        );
        assert!(c.message.contains(problem), "{}", c.message);
    }

    #[test]
    fn change_detection_ignores_scan_time_and_keeps_transition_time() {
        let a = build_status(&report(), &["vg0".into()], None, None, "t1");
        let b = build_status(&report(), &["vg0".into()], None, Some(&a), "t2");
        assert!(!differs(Some(&a), &b));
        assert_eq!(b.conditions[0].last_transition_time.as_deref(), Some("t1"));
        let mut grown = report();
        grown.volume_groups[0].size_bytes += 1 << 30;
        let c = build_status(&grown, &["vg0".into()], None, Some(&b), "t3");
        assert!(differs(Some(&b), &c));
        assert!(differs(None, &c));
        let failed = scan_failed_status(Some(&c), "lvm timed out", "t4");
        assert!(differs(Some(&c), &failed));
        assert_eq!(failed.volume_groups, c.volume_groups);
    }
}
