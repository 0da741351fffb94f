use super::*;

fn key(name: &str) -> Key {
    Key {
        namespace: "ns".into(),
        name: name.into(),
    }
}

fn claim(name: &str) -> Claim {
    Claim {
        key: key(name),
        uid: format!("uid-{name}"),
        selected_node: None,
        volume: None,
        policy: Ok(Policy::Keep),
        deleting: false,
    }
}

fn selected(name: &str, node: &str) -> Claim {
    Claim {
        selected_node: Some(node.into()),
        ..claim(name)
    }
}

fn bound(name: &str, node: &str, policy: Result<Policy, String>) -> Claim {
    Claim {
        selected_node: Some(node.into()),
        volume: Some(format!("pvc-{name}")),
        policy,
        ..claim(name)
    }
}

fn volume(claim: &str, node: &str) -> Volume {
    Volume {
        name: format!("pvc-{claim}"),
        uid: format!("pv-uid-{claim}"),
        node: Some(node.into()),
        reclaim_delete: true,
        claim: Some((key(claim), format!("uid-{claim}"))),
        deleting: false,
    }
}

fn facts(claims: Vec<Claim>, volumes: Vec<Volume>) -> Facts {
    Facts {
        gone: BTreeSet::from(["gone".to_string()]),
        silent: BTreeMap::from([("quiet".to_string(), "2026-01-01T00:00:00Z".to_string())]),
        claims,
        volumes,
        pods: vec![PodUse {
            key: key("pod-a"),
            uid: "pod-uid-a".into(),
            claims: vec!["a".into(), "other".into()],
        }],
    }
}

#[test]
fn policy_names() {
    assert_eq!(Policy::parse("keep"), Ok(Policy::Keep));
    assert_eq!(Policy::parse("recreate"), Ok(Policy::Recreate));
    let e = Policy::parse("Recreate").unwrap_err();
    assert!(e.contains("\"Recreate\""), "{e}");
}

#[test]
fn table() {
    let reselect = |why| {
        vec![Action::Reselect {
            claim: key("a"),
            node: "gone".into(),
            why,
        }]
    };
    let cases: Vec<(&str, Facts, Vec<Action>)> = vec![
        (
            "selected for a deleted node",
            facts(vec![selected("a", "gone")], vec![]),
            reselect(Why::NodeGone),
        ),
        (
            "selected for a node whose agent is silent",
            facts(vec![selected("a", "quiet")], vec![]),
            vec![Action::Reselect {
                claim: key("a"),
                node: "quiet".into(),
                why: Why::AgentSilent {
                    last_report: "2026-01-01T00:00:00Z".into(),
                },
            }],
        ),
        (
            "selected for a live node",
            facts(vec![selected("a", "up")], vec![]),
            vec![],
        ),
        (
            "being deleted: left alone",
            facts(
                vec![Claim {
                    deleting: true,
                    ..selected("a", "gone")
                }],
                vec![],
            ),
            vec![],
        ),
        (
            "bound on a deleted node, keep",
            facts(
                vec![bound("a", "gone", Ok(Policy::Keep))],
                vec![volume("a", "gone")],
            ),
            vec![Action::Keep {
                claim: key("a"),
                uid: "uid-a".into(),
                volume: "pvc-a".into(),
                node: "gone".into(),
            }],
        ),
        (
            "bound on a deleted node, recreate: the claim and its pods",
            facts(
                vec![bound("a", "gone", Ok(Policy::Recreate))],
                vec![volume("a", "gone")],
            ),
            vec![Action::Recreate {
                claim: key("a"),
                uid: "uid-a".into(),
                volume: "pvc-a".into(),
                node: "gone".into(),
                pods: vec![(key("pod-a"), "pod-uid-a".into())],
            }],
        ),
        (
            "bound on a node whose agent is silent: never recreated",
            facts(
                vec![bound("a", "quiet", Ok(Policy::Recreate))],
                vec![volume("a", "quiet")],
            ),
            vec![],
        ),
        (
            "unknown policy: reported, kept",
            facts(
                vec![bound("a", "gone", Err("bad".into()))],
                vec![volume("a", "gone")],
            ),
            vec![Action::BadPolicy {
                claim: key("a"),
                uid: "uid-a".into(),
                node: "gone".into(),
                message: "bad".into(),
            }],
        ),
        (
            "claim gone: its Delete PV is stranded",
            facts(vec![], vec![volume("a", "gone")]),
            vec![Action::RemoveVolume {
                name: "pvc-a".into(),
                uid: "pv-uid-a".into(),
                node: "gone".into(),
            }],
        ),
        (
            "a claim of the same name but another uid does not hold it",
            facts(
                vec![Claim {
                    uid: "uid-new".into(),
                    ..claim("a")
                }],
                vec![volume("a", "gone")],
            ),
            vec![Action::RemoveVolume {
                name: "pvc-a".into(),
                uid: "pv-uid-a".into(),
                node: "gone".into(),
            }],
        ),
        (
            "claim still being deleted: wait",
            facts(
                vec![Claim {
                    deleting: true,
                    ..bound("a", "gone", Ok(Policy::Recreate))
                }],
                vec![volume("a", "gone")],
            ),
            vec![],
        ),
        (
            "Retain PV: kept",
            facts(
                vec![],
                vec![Volume {
                    reclaim_delete: false,
                    ..volume("a", "gone")
                }],
            ),
            vec![],
        ),
        (
            "PV on a live node: the agent's job",
            facts(vec![], vec![volume("a", "up")]),
            vec![],
        ),
        (
            "PV on a silent node: never removed",
            facts(vec![], vec![volume("a", "quiet")]),
            vec![],
        ),
    ];
    for (name, f, want) in cases {
        assert_eq!(plan(&f), want, "{name}");
    }
}

#[test]
fn absence_needs_the_grace_period_and_resets_when_the_node_returns() {
    let t0 = Instant::now();
    let grace = Duration::from_secs(30);
    let s = Duration::from_secs;
    let mut a = Absence::default();
    let present = BTreeSet::from(["up".to_string()]);
    let none = BTreeSet::new();
    assert!(a.update(&present, ["up", "x"], t0, grace).is_empty());
    assert!(
        a.update(&present, ["up", "x"], t0 + s(29), grace)
            .is_empty()
    );
    assert_eq!(
        a.update(&present, ["up", "x"], t0 + s(30), grace),
        BTreeSet::from(["x".to_string()])
    );
    // x re-registers: its clock starts again when it disappears next time.
    let with_x = BTreeSet::from(["up".to_string(), "x".to_string()]);
    assert!(a.update(&with_x, ["x"], t0 + s(31), grace).is_empty());
    assert!(a.update(&none, ["x"], t0 + s(40), grace).is_empty());
    assert_eq!(a.update(&none, ["x"], t0 + s(70), grace).len(), 1);
    // No longer referenced: forgotten.
    assert!(a.update(&none, [], t0 + s(80), grace).is_empty());
    assert!(a.update(&none, ["x"], t0 + s(81), grace).is_empty());
}
