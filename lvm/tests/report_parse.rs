//! The pure report parser, against output captured from real lvm2 and against
//! arbitrary input.

use lvmpin_lvm::{Error, Owner, parse_lvs, parse_report};
use proptest::prelude::*;

/// Captured on this machine with `Lvm::report`'s exact arguments (metadata-only,
/// so no LV is active and there is no thin pool).
const REAL: &str = include_str!("fixtures/fullreport-metadata-only.json");
/// Also real output: a thin pool and a thin LV written into a loop-backed VG with
/// `vgcfgrestore --force` (lvcreate cannot make pools without device-mapper), so
/// lvm knows no usage figures for them.
const THIN_REAL: &str = include_str!("fixtures/fullreport-thin-metadata-only.json");
/// Hand-written in the same shape, because thin pools cannot be created without
/// device-mapper: an active pool, a thin LV, an inactive pool, a VG with a missing
/// PV, an empty VG and an orphan-PV entry.
const THIN: &str = include_str!("fixtures/fullreport-thin-handwritten.json");

#[test]
fn parses_real_fullreport() {
    let r = parse_report(REAL).unwrap();
    assert_eq!(r.volume_groups.len(), 1);
    let vg = &r.volume_groups[0];
    assert_eq!(vg.name, "fixturevg");
    assert_eq!(vg.size_bytes, 100_663_296);
    assert_eq!(vg.free_bytes, 83_886_080);
    assert_eq!(vg.extent_size_bytes, 4 << 20);
    assert_eq!((vg.pv_count, vg.missing_pv_count, vg.lv_count), (1, 0, 2));
    assert!(vg.tags.is_empty());

    assert_eq!(r.logical_volumes.len(), 2);
    let owned = r
        .find_lv("fixturevg", "pvc-6f1c0b8e-2f3a-4c55-9a43-1d2e3f405060")
        .unwrap();
    assert_eq!(owned.size_bytes, 12 << 20);
    assert_eq!(owned.attr, "-wi-XX----");
    assert!(!owned.active);
    assert_eq!(owned.pool, None);
    assert_eq!(owned.tags.len(), 4);
    assert_eq!(
        owned.owner,
        Some(Owner {
            claim_uid: "6f1c0b8e-2f3a-4c55-9a43-1d2e3f405060".into(),
            claim_namespace: "db".into(),
            claim_name: "data-mysql-0".into(),
            pv_name: "pvc-6f1c0b8e-2f3a-4c55-9a43-1d2e3f405060".into(),
        })
    );
    let scratch = r.find_lv("fixturevg", "scratch").unwrap();
    assert_eq!(scratch.owner, None);
    assert!(r.thin_pools.is_empty());
}

#[test]
fn parses_real_thin_pool_rows() {
    let r = parse_report(THIN_REAL).unwrap();
    let vg = r.volume_group("fixturevg").unwrap();
    assert_eq!(vg.lv_count, 4);
    // Hidden sub-LVs (_tdata, _tmeta, pmspare) are not listed.
    let names: Vec<_> = r.lvs_in("fixturevg").map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "pool0",
            "pvc-0a1b2c3d-0000-4000-8000-000000000001",
            "pvc-6f1c0b8e-2f3a-4c55-9a43-1d2e3f405060",
            "scratch"
        ]
    );
    assert_eq!(r.thin_pools.len(), 1);
    let pool = &r.thin_pools[0];
    assert_eq!((pool.name.as_str(), pool.size_bytes), ("pool0", 32 << 20));
    assert_eq!((pool.data_percent, pool.metadata_percent), (0.0, 0.0));
    let thin = r
        .find_lv("fixturevg", "pvc-0a1b2c3d-0000-4000-8000-000000000001")
        .unwrap();
    assert_eq!(thin.pool.as_deref(), Some("pool0"));
    assert_eq!(thin.size_bytes, 20 << 20);
    assert!(!thin.is_thin_pool());
    assert_eq!(thin.owner.as_ref().unwrap().claim_name, "data-kafka-0");
}

#[test]
fn parses_thin_pools_and_several_vgs() {
    let r = parse_report(THIN).unwrap();
    let names: Vec<_> = r.volume_groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["vg-ssd", "vg-empty"]);
    let ssd = r.volume_group("vg-ssd").unwrap();
    assert_eq!(ssd.missing_pv_count, 1);
    assert_eq!(ssd.tags, ["rack1", "ssd"]);
    assert_eq!(r.lvs_in("vg-ssd").count(), 3);
    assert_eq!(r.lvs_in("vg-empty").count(), 0);

    assert_eq!(r.thin_pools.len(), 2);
    let pool = &r.thin_pools[0];
    assert_eq!((pool.vg.as_str(), pool.name.as_str()), ("vg-ssd", "pool0"));
    assert_eq!(pool.size_bytes, 8 << 30);
    assert_eq!(pool.data_percent, 12.5);
    assert_eq!(pool.metadata_percent, 1.07);
    assert_eq!(pool.free_bytes(), 7 << 30);
    let idle = &r.thin_pools[1];
    assert_eq!((idle.data_percent, idle.metadata_percent), (0.0, 0.0));

    let thin = r
        .find_lv("vg-ssd", "pvc-0a1b2c3d-0000-4000-8000-000000000001")
        .unwrap();
    assert_eq!(thin.pool.as_deref(), Some("pool0"));
    assert!(thin.active);
    assert_eq!(thin.owner.as_ref().unwrap().claim_namespace, "stream");
    assert!(r.find_lv("vg-ssd", "pool0").unwrap().is_thin_pool());
}

#[test]
fn parses_lvs_output() {
    let json = r#"{"report":[{"lv":[{"vg_name":"vg0","lv_name":"a","lv_uuid":"u","lv_size":"4194304",
        "lv_attr":"-wi-a-----","lv_tags":"x,y","pool_lv":"","lv_active":"active","lv_layout":"linear",
        "data_percent":"","metadata_percent":""}]}]}"#;
    let lvs = parse_lvs(json).unwrap();
    assert_eq!(lvs.len(), 1);
    assert_eq!((lvs[0].vg.as_str(), lvs[0].name.as_str()), ("vg0", "a"));
    assert!(lvs[0].active);
    assert_eq!(lvs[0].tags, ["x", "y"]);
    assert_eq!(lvs[0].path(), std::path::Path::new("/dev/vg0/a"));
    assert!(parse_lvs(r#"{"report":[{"lv":[]}]}"#).unwrap().is_empty());
}

#[test]
fn odd_output_is_a_parse_error_naming_the_problem() {
    let cases: &[(&str, &str)] = &[
        ("", "EOF"),
        ("not json", "expected"),
        ("{}", "missing field `report`"),
        (r#"{"report":{}}"#, "invalid type"),
        (
            &REAL.replace("\"vg_free\":\"83886080\"", "\"vg_free\":\"80.00m\""),
            "vg_free is \"80.00m\"",
        ),
        (
            &REAL.replace("\"lv_size\":\"4194304\"", "\"lv_size\":\"\""),
            "lv_size is \"\"",
        ),
        (
            &REAL.replace("\"vg_uuid\"", "\"vg_uuuid\""),
            "missing field `vg_uuid`",
        ),
        (&REAL[..REAL.len() / 2], "EOF"),
        (
            &THIN.replace("\"12.50\"", "\"lots\""),
            "data_percent is \"lots\"",
        ),
        (
            &THIN.replace("\"12.50\"", "\"-1\""),
            "expected a percentage",
        ),
        (
            r#"{"report":[{"lv":[{"lv_name":"a","lv_uuid":"u","lv_size":"1","lv_attr":"","lv_tags":"","pool_lv":"","lv_layout":"","data_percent":"","metadata_percent":""}]}]}"#,
            "no volume group",
        ),
        (
            r#"{"report":[{"vg":[{"vg_name":"a"},{"vg_name":"b"}]}]}"#,
            "vg_uuid",
        ),
    ];
    for (input, want) in cases {
        match parse_report(input) {
            Err(e @ Error::Parse { .. }) => {
                assert!(e.to_string().contains(want), "want {want:?} in: {e}");
                assert_eq!(e.metric_label(), "parse");
            }
            other => panic!("{want}: expected a parse error, got {other:?}"),
        }
    }
    let no_vg_column = r#"{"report":[{"lv":[{"lv_name":"a","lv_uuid":"u","lv_size":"1","lv_attr":"",
        "lv_tags":"","pool_lv":"","lv_layout":"","data_percent":"","metadata_percent":""}]}]}"#;
    assert!(matches!(parse_lvs(no_vg_column), Err(Error::Parse { .. })));
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        // Strings that look like report values now and then.
        prop_oneof![
            ".*",
            "[0-9]{0,25}",
            "[0-9]{1,3}\\.[0-9]{2}",
            "[-a-zA-Z]{0,10}"
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        let keys = prop_oneof![
            Just("report".to_string()),
            Just("vg".to_string()),
            Just("lv".to_string()),
            Just("vg_name".to_string()),
            Just("lv_name".to_string()),
            Just("lv_size".to_string()),
            Just("data_percent".to_string()),
            ".{0,12}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(keys, inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_json(v in arb_json()) {
        let text = v.to_string();
        let _ = parse_report(&text);
        let _ = parse_lvs(&text);
    }

    #[test]
    fn never_panics_on_arbitrary_text(s in "\\PC*") {
        let _ = parse_report(&s);
        let _ = parse_lvs(&s);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..512)) {
        let s = String::from_utf8_lossy(&b);
        let _ = parse_report(&s);
    }

    /// Mutating single values of a real report never panics either.
    #[test]
    fn never_panics_on_mutated_real_report(pos in 0usize..REAL.len(), byte in any::<u8>()) {
        let mut b = REAL.as_bytes().to_vec();
        b[pos] = byte;
        let s = String::from_utf8_lossy(&b);
        let _ = parse_report(&s);
    }
}
