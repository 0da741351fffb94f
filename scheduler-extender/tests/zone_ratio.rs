//! Zone ratios through the filter: a StatefulSet annotated 2:2:1 over zones
//! a, b and c, two nodes per zone, and its pods filtered one after another.

use std::time::{Duration, Instant};

use lvmpin_api::names::{ANN_ZONE_GROUP, ANN_ZONE_POLICY, ANN_ZONE_WEIGHTS};
use lvmpin_scheduler_extender::engine::{FilterOutcome, Settings, State, ZoneNote, filter};
use lvmpin_scheduler_extender::facts::{PodFacts, PvFacts, pod_facts};
use lvmpin_scheduler_extender::placement::Mode;
use lvmpin_scheduler_extender::testutil::{
    IntoFacts as _, claim_named, class, lvm_node, stateful_set, sts_pod, zoned_node,
};

const GI: u64 = 1 << 30;
const NODES: [&str; 6] = ["a1", "a2", "b1", "b2", "c1", "c2"];
const WEIGHTS: (&str, &str) = (ANN_ZONE_WEIGHTS, "zone-a=2,zone-b=2,zone-c=1");

/// Six nodes with 50Gi free each (`full` ones with none), zones by first letter.
fn cluster(full: &[&str]) -> State {
    let mut s = State::default();
    s.index.upsert_class(class("fast", Some("vg1")));
    for n in NODES {
        let free = if full.contains(&n) { 0 } else { 50 * GI };
        s.index
            .upsert_lvm(lvm_node(n, "vg1", 100 * GI, free, 4 << 20));
        s.index
            .upsert_node(zoned_node(n, &format!("zone-{}", &n[..1])));
    }
    s
}

/// Adds pod `<set>-<i>` and its 1Gi claim, unbound, as the watches would.
fn add_pod(s: &mut State, set: &str, i: u32) -> PodFacts {
    let pod = sts_pod(set, i);
    s.index
        .upsert_claim(claim_named(&pod.claims[0]).size("1Gi").facts());
    s.index.upsert_pod(pod.clone());
    pod
}

/// Binds pod `<set>-<i>` to `node`.
fn bind(s: &mut State, set: &str, i: u32, node: &str) {
    let mut pod = sts_pod(set, i);
    pod.node = Some(node.into());
    s.index.upsert_pod(pod);
}

fn passed(out: &FilterOutcome) -> Vec<&'static str> {
    out.pass.iter().map(|i| NODES[*i]).collect()
}

fn zone_of(node: &str) -> char {
    node.as_bytes()[0] as char
}

fn decisive() -> Settings {
    Settings::default()
}

/// Filters pods `from..to` of `set` back to back in decisive mode, none of
/// them bound in between; returns the zones chosen.
fn place(s: &mut State, set: &str, range: std::ops::Range<u32>, now: Instant) -> String {
    range
        .map(|i| {
            let pod = add_pod(s, set, i);
            let out = filter(s, &decisive(), &pod, &NODES, now);
            assert_eq!(out.pass.len(), 1, "{set}-{i}: {out:?}");
            zone_of(NODES[out.pass[0]])
        })
        .collect()
}

#[test]
fn back_to_back_pods_follow_the_ratio_and_scale_up_continues_it() {
    let mut s = cluster(&[]);
    let now = Instant::now();
    s.index.upsert_sts(stateful_set("mq", 5, &[WEIGHTS], &[]));
    assert_eq!(place(&mut s, "mq", 0..5, now), "abcab");
    // Binding lands them where they were placed; the records may expire.
    for (i, node) in ["a1", "b1", "c1", "a2", "b2"].into_iter().enumerate() {
        bind(&mut s, "mq", i as u32, node);
    }
    let later = now + Duration::from_secs(3600);
    s.index.prune_zone_picks(later);
    assert!(s.index.zone_picks.is_empty());
    s.index.upsert_sts(stateful_set("mq", 10, &[WEIGHTS], &[]));
    assert_eq!(place(&mut s, "mq", 5..10, later), "abcab");
}

#[test]
fn advisory_keeps_only_the_zone_and_reports_the_counts() {
    let mut s = cluster(&[]);
    s.index.upsert_sts(stateful_set("mq", 5, &[WEIGHTS], &[]));
    bind(&mut s, "mq", 0, "a1");
    let pod = add_pod(&mut s, "mq", 1);
    let settings = Settings {
        mode: Mode::Advisory,
        ..Default::default()
    };
    let out = filter(&mut s, &settings, &pod, &NODES, Instant::now());
    assert_eq!(passed(&out), vec!["b1", "b2"]);
    // The others fit but lose to the ratio; kube-scheduler drops them.
    assert!(out.unresolvable.is_empty(), "{out:?}");
    assert_eq!(out.not_chosen, 4);
    match out.zone {
        Some(ZoneNote::Counted {
            zone,
            counts,
            targets,
            ..
        }) => {
            assert_eq!(zone.as_deref(), Some("zone-b"));
            assert_eq!(
                counts,
                vec![("zone-a".to_string(), 1), ("zone-b".to_string(), 1)]
            );
            assert_eq!(
                targets,
                vec![
                    ("zone-a".to_string(), 2),
                    ("zone-b".to_string(), 2),
                    ("zone-c".to_string(), 1)
                ]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn capacity_shortage_in_the_next_zone() {
    let now = Instant::now();
    for (policy, want) in [("Preferred", Some('c')), ("Required", None)] {
        let mut s = cluster(&["b1", "b2"]);
        s.index.upsert_sts(stateful_set(
            "mq",
            5,
            &[WEIGHTS, (ANN_ZONE_POLICY, policy)],
            &[],
        ));
        bind(&mut s, "mq", 0, "a1");
        let pod = add_pod(&mut s, "mq", 1);
        let out = filter(&mut s, &decisive(), &pod, &NODES, now);
        match want {
            Some(zone) => assert_eq!(
                passed(&out).iter().map(|n| zone_of(n)).collect::<Vec<_>>(),
                vec![zone]
            ),
            None => {
                assert!(out.pass.is_empty(), "{policy}: {out:?}");
                assert_eq!(out.unresolvable.len(), NODES.len(), "{policy}");
                for (i, reason) in &out.unresolvable {
                    assert!(
                        reason.contains(
                            "(Required): zone zone-b is next and none of its nodes can take the pod"
                        ),
                        "{}: {reason}",
                        NODES[*i]
                    );
                }
                assert!(
                    out.unresolvable[2]
                        .1
                        .contains("this node: volume group vg1: needs")
                );
                assert!(
                    out.unresolvable[0]
                        .1
                        .contains("this node is in zone zone-a")
                );
                assert!(s.reservations.is_empty(), "a waiting pod holds nothing");
                assert!(s.index.zone_picks.is_empty(), "nor a zone");
            }
        }
    }
}

#[test]
fn a_zone_without_nodes_is_skipped_even_when_required() {
    let now = Instant::now();
    let mut s = State::default();
    s.index.upsert_class(class("fast", Some("vg1")));
    for n in ["a1", "c1"] {
        s.index
            .upsert_lvm(lvm_node(n, "vg1", 100 * GI, 50 * GI, 4 << 20));
        s.index
            .upsert_node(zoned_node(n, &format!("zone-{}", &n[..1])));
    }
    s.index.upsert_sts(stateful_set(
        "mq",
        5,
        &[WEIGHTS, (ANN_ZONE_POLICY, "Required")],
        &[],
    ));
    bind(&mut s, "mq", 0, "a1");
    let pod = add_pod(&mut s, "mq", 1);
    let out = filter(&mut s, &decisive(), &pod, &["a1", "c1"], now);
    assert_eq!(out.pass, vec![1], "{out:?}");
}

#[test]
fn a_recreated_pod_ignores_its_own_slot_and_leaving_ordinals() {
    let now = Instant::now();
    let mut s = cluster(&[]);
    s.index.upsert_sts(stateful_set("mq", 4, &[WEIGHTS], &[]));
    bind(&mut s, "mq", 1, "a1");
    bind(&mut s, "mq", 2, "b1");
    // mq-0 is placed (zone-c, recorded for slot 0), then deleted.
    assert_eq!(place(&mut s, "mq", 0..1, now), "c");
    // Ordinal 4 is above replicas (scale-down in progress).
    bind(&mut s, "mq", 4, "a2");
    // mq-0 is recreated with a new UID. Its own slot's record is ignored:
    // counted, it would make zone-a next.
    s.index.remove_pod("pod-mq-0");
    let mut again = sts_pod("mq", 0);
    again.uid = "pod-mq-0-again".into();
    s.index.upsert_pod(again.clone());
    let out = filter(&mut s, &decisive(), &again, &NODES, now);
    assert_eq!(zone_of(NODES[out.pass[0]]), 'c', "{out:?}");
    // mq-3 sees mq-0 in zone-c (its slot's record), mq-1 in a, mq-2 in b,
    // and not mq-4: counted, zone-a would have two and zone-b would be next.
    assert_eq!(place(&mut s, "mq", 3..4, now), "a");
}

#[test]
fn a_slot_counts_where_its_volume_lives_while_its_pod_is_gone() {
    let now = Instant::now();
    let mut s = cluster(&[]);
    s.index.upsert_sts(stateful_set("mq", 5, &[WEIGHTS], &[]));
    // No pod for slots 0 and 1: their claims still pin them to zone-a.
    s.index.upsert_pv(PvFacts {
        name: "pv-0".into(),
        node: Some("a1".into()),
    });
    s.index
        .upsert_claim(claim_named("data-mq-0").size("1Gi").volume("pv-0").facts());
    s.index.upsert_claim(
        claim_named("data-mq-1")
            .size("1Gi")
            .selected_node("a2")
            .facts(),
    );
    assert_eq!(place(&mut s, "mq", 2..3, now), "b");
    // A bound claim pins its pod whatever the ratio says.
    let pod = sts_pod("mq", 0);
    s.index.upsert_pod(pod.clone());
    let out = filter(&mut s, &decisive(), &pod, &NODES, now);
    assert_eq!(passed(&out), vec!["a1"]);
    assert_eq!(out.zone, None);
}

#[test]
fn statefulsets_of_one_group_share_the_count() {
    let now = Instant::now();
    let group = [
        (ANN_ZONE_WEIGHTS, "zone-a=1,zone-b=1"),
        (ANN_ZONE_GROUP, "app.kubernetes.io/part-of"),
    ];
    let part_of = [("app.kubernetes.io/part-of", "mq")];
    let mut s = cluster(&[]);
    s.index
        .upsert_sts(stateful_set("mq-x", 2, &group, &part_of));
    s.index
        .upsert_sts(stateful_set("mq-y", 2, &group, &part_of));
    // Same label key, another value: a separate count.
    s.index.upsert_sts(stateful_set(
        "other",
        1,
        &group,
        &[("app.kubernetes.io/part-of", "db")],
    ));
    bind(&mut s, "other", 0, "a1");
    assert_eq!(place(&mut s, "mq-x", 0..1, now), "a");
    assert_eq!(place(&mut s, "mq-y", 0..1, now), "b");
    assert_eq!(place(&mut s, "mq-y", 1..2, now), "a");
    assert_eq!(place(&mut s, "mq-x", 1..2, now), "b");
}

#[test]
fn ties_break_on_fewer_pods_then_name() {
    let now = Instant::now();
    let mut s = cluster(&[]);
    s.index.upsert_sts(stateful_set(
        "mq",
        6,
        &[(ANN_ZONE_WEIGHTS, "zone-c=1,zone-b=1,zone-a=1")],
        &[],
    ));
    assert_eq!(place(&mut s, "mq", 0..6, now), "abcabc");
}

#[test]
fn malformed_or_unknown_statefulsets_leave_the_pod_unconstrained() {
    let now = Instant::now();
    for (annotations, reason) in [
        (vec![(ANN_ZONE_WEIGHTS, "zone-a=two")], Some("weights")),
        (vec![WEIGHTS, (ANN_ZONE_POLICY, "Always")], Some("policy")),
        (vec![WEIGHTS, (ANN_ZONE_GROUP, "missing")], Some("group")),
        (vec![], None),
    ] {
        let mut s = cluster(&[]);
        s.index.upsert_sts(stateful_set("mq", 5, &annotations, &[]));
        bind(&mut s, "mq", 0, "a1");
        bind(&mut s, "mq", 1, "a2");
        let pod = add_pod(&mut s, "mq", 2);
        let out = filter(&mut s, &decisive(), &pod, &NODES, now);
        // Without a ratio, replicas spread over zones: b1 (name order).
        assert_eq!(passed(&out), vec!["b1"], "{annotations:?}");
        match (out.zone, reason) {
            (
                Some(ZoneNote::Malformed {
                    statefulset,
                    reason: got,
                    message,
                }),
                Some(want),
            ) => {
                assert_eq!((statefulset.as_str(), got), ("ns/mq", want));
                assert!(message.contains("lvmpin.io/zone-"), "{message}");
            }
            (None, None) => {}
            (got, want) => panic!("{annotations:?}: {got:?} vs {want:?}"),
        }
    }
    // A StatefulSet not (yet) in the cache: placed as without a ratio.
    let mut s = cluster(&[]);
    let pod = add_pod(&mut s, "mq", 0);
    let out = filter(&mut s, &decisive(), &pod, &NODES, now);
    assert_eq!(out.pass.len(), 1);
    assert_eq!(out.zone, None);
}

#[test]
fn pod_facts_read_the_ordinal_of_statefulset_pods_only() {
    let pod = |name: &str, kind: &str| {
        serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "uid": "u",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": kind, "name": "mq", "uid": "sts", "controller": true}]}
        }))
        .expect("pod")
    };
    let cases = [
        ("mq-0", "StatefulSet", Some(0)),
        ("mq-12", "StatefulSet", Some(12)),
        ("mq-x-1", "StatefulSet", None),
        ("mq-", "StatefulSet", None),
        ("mq-+1", "StatefulSet", None),
        ("mq-99999999999", "StatefulSet", None),
        ("mq-1", "ReplicaSet", None),
    ];
    for (name, kind, want) in cases {
        let f = pod_facts(&pod(name, kind));
        assert_eq!(f.ordinal, want, "{name} of {kind}");
        assert_eq!(f.owner.as_deref(), Some("sts"));
    }
}

#[test]
fn statefulset_facts_default_replicas_and_name_templates() {
    let s = stateful_set("mq", 3, &[WEIGHTS], &[]);
    assert_eq!(
        (s.replicas, s.claim_templates.clone(), s.key()),
        (3, vec!["data".to_string()], "ns/mq".to_string())
    );
    assert!(matches!(s.ratio, Some(Ok(_))));
    let negative = stateful_set("mq", -1, &[], &[]);
    assert_eq!((negative.replicas, negative.ratio), (0, None));
}

#[test]
fn scale_up_after_a_drifting_scale_down_fills_the_zones_furthest_below() {
    let now = Instant::now();
    let mut s = cluster(&[]);
    // 5 replicas had landed a, c, c, a, b (zone-b was full for a while);
    // scaling to 3 removed mq-3 (a) and mq-4 (b) with their claims.
    s.index.upsert_sts(stateful_set("mq", 3, &[WEIGHTS], &[]));
    for (i, node) in ["a1", "c1", "c2"].into_iter().enumerate() {
        bind(&mut s, "mq", i as u32, node);
    }
    // Back to 5: zone-b (0 of 2) first, then zone-a (1 of 2).
    s.index.upsert_sts(stateful_set("mq", 5, &[WEIGHTS], &[]));
    assert_eq!(place(&mut s, "mq", 3..5, now), "ba");
    // And to 6: zone-b again (2/3 against zone-a's 2/5 and zone-c's 1/5).
    s.index.upsert_sts(stateful_set("mq", 6, &[WEIGHTS], &[]));
    assert_eq!(place(&mut s, "mq", 5..6, now), "b");
}
