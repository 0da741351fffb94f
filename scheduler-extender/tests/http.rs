//! The verbs over a real socket, with kube-scheduler-shaped bodies.

mod common;

use std::collections::HashMap;

use common::*;
use hyper::StatusCode;
use lvmpin_scheduler_extender::engine::Settings;
use lvmpin_scheduler_extender::placement::Mode;
use serde_json::{Value, json};

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("NodeNames must be a list, got {v}"))
        .iter()
        .map(|n| n.as_str().unwrap_or_default().to_string())
        .collect()
}

/// kube-scheduler's decoding rules for a filter answer: 200, a NodeNames list
/// (in cache mode) naming only asked nodes, maps for the failures.
fn check_filter_answer(status: StatusCode, v: &Value, asked: &[&str]) {
    assert_eq!(status, StatusCode::OK, "{v}");
    for n in names(&v["NodeNames"]) {
        assert!(
            asked.contains(&n.as_str()),
            "answered node {n} that was not asked"
        );
    }
    assert!(v["FailedNodes"].is_object(), "{v}");
    assert!(v["FailedAndUnresolvableNodes"].is_object(), "{v}");
    assert!(v["Error"].is_string(), "{v}");
}

#[tokio::test]
async fn cache_mode_decisive_returns_one_fitting_node_with_reasons() {
    let addr = serve(app(cluster(3, 10, 1, "5Gi"), Settings::default(), None), "").await;
    let mut st = cluster(0, 0, 0, "1Gi");
    st.index
        .upsert_lvm(lvmpin_scheduler_extender::testutil::lvm_node(
            "tight",
            "vg1",
            100 * GI,
            GI,
            4 << 20,
        ));
    let asked = ["n0", "n1", "n2", "nolvm"];
    let body = json!({"Pod": pod_json("db-0", "p0", &["c0"]), "Nodes": null, "NodeNames": asked, "Unknown": [1, 2]});
    let (status, v) = post(addr, "/filter", &body).await;
    check_filter_answer(status, &v, &asked);
    assert_eq!(names(&v["NodeNames"]), vec!["n0"], "{v}");
    assert!(v["Nodes"].is_null());
    let unres = v["FailedAndUnresolvableNodes"].as_object().expect("map");
    assert!(
        unres["nolvm"]
            .as_str()
            .unwrap_or_default()
            .contains("no LvmNode report")
    );
    assert_eq!(v["FailedNodes"], json!({}), "{v}");
    assert_eq!(v["Error"], "");

    // prioritize agrees with the decision
    let (status, v) = post(addr, "/prioritize", &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v,
        json!([{"Host": "n0", "Score": 10}, {"Host": "n1", "Score": 0}, {"Host": "n2", "Score": 0}, {"Host": "nolvm", "Score": 0}])
    );
}

#[tokio::test]
async fn null_and_empty_lists_answer_an_empty_list_never_null() {
    let addr = serve(app(cluster(3, 10, 1, "5Gi"), Settings::default(), None), "").await;
    for body in [
        json!({"Pod": pod_json("db-0", "p0", &["c0"]), "Nodes": null, "NodeNames": null}),
        json!({"Pod": pod_json("db-0", "p0", &["c0"]), "Nodes": null, "NodeNames": []}),
        json!({"Pod": pod_json("db-0", "p0", &[]), "Nodes": null, "NodeNames": []}),
        json!({"Pod": pod_json("db-0", "p0", &[]), "NodeNames": null}),
        json!({"Pod": pod_json("db-0", "p0", &["c0"]), "Nodes": {"items": null}, "NodeNames": null}),
    ] {
        let (status, v) = post(addr, "/filter", &body).await;
        check_filter_answer(status, &v, &[]);
        assert_eq!(v["NodeNames"], json!([]), "{v}");
        let (status, v) = post(addr, "/prioritize", &body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v, json!([]));
    }
}

#[tokio::test]
async fn advisory_mode_returns_all_that_fit_and_scores_them() {
    let settings = Settings {
        mode: Mode::Advisory,
        ..Default::default()
    };
    let mut st = cluster(2, 10, 1, "5Gi");
    st.index
        .upsert_lvm(lvmpin_scheduler_extender::testutil::lvm_node(
            "big",
            "vg1",
            100 * GI,
            80 * GI,
            4 << 20,
        ));
    st.index
        .upsert_lvm(lvmpin_scheduler_extender::testutil::lvm_node(
            "small",
            "vg1",
            100 * GI,
            GI,
            4 << 20,
        ));
    let addr = serve(app(st, settings, None), "/lvmpin").await;
    let asked = ["n0", "n1", "big", "small"];
    let body = json!({"Pod": pod_json("db-0", "p0", &["c0"]), "Nodes": null, "NodeNames": asked});
    let (status, v) = post(addr, "/lvmpin/filter", &body).await;
    check_filter_answer(status, &v, &asked);
    assert_eq!(names(&v["NodeNames"]), vec!["n0", "n1", "big"]);
    assert!(
        v["FailedAndUnresolvableNodes"]["small"]
            .as_str()
            .unwrap_or_default()
            .contains("needs 5.0GiB")
    );
    let (_, v) = post(addr, "/lvmpin/prioritize", &body).await;
    assert_eq!(
        v,
        json!([{"Host": "n0", "Score": 1}, {"Host": "n1", "Score": 1}, {"Host": "big", "Score": 8}, {"Host": "small", "Score": 0}])
    );
    // no route without the prefix
    let (status, _) = request(addr, "POST", "/filter", b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn malformed_bodies_get_400_naming_the_problem() {
    let addr = serve(app(cluster(1, 10, 1, "5Gi"), Settings::default(), None), "").await;
    let cases: Vec<(&str, &[u8], &str)> = vec![
        ("/filter", b"{\"Pod\": {", "malformed ExtenderArgs JSON"),
        ("/filter", b"not json", "malformed ExtenderArgs JSON"),
        ("/filter", b"{\"NodeNames\": []}", "missing field `Pod`"),
        ("/filter", b"{\"Pod\": {}, \"NodeNames\": 7}", "NodeNames"),
        ("/prioritize", b"[]", "malformed ExtenderArgs JSON"),
        (
            "/filter",
            b"{\"Pod\": {}, \"Nodes\": {\"items\": [{\"metadata\": {}}]}}",
            "no metadata.name",
        ),
        ("/bind", b"{\"PodName\": \"p\"}", "PodNamespace is empty"),
    ];
    for (path, body, want) in cases {
        let (status, text) = request(addr, "POST", path, body.to_vec()).await;
        let text = String::from_utf8_lossy(&text);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {text}");
        assert!(text.contains(want), "{path}: {text:?} should name {want:?}");
    }
}

#[tokio::test]
async fn full_node_mode_returns_passing_nodes_byte_for_byte_in_a_20mb_body() {
    let addr = serve(
        app(cluster(5000, 10, 1, "5Gi"), Settings::default(), None),
        "",
    )
    .await;
    let nodes: Vec<Value> = (0..5000)
        .map(|i| node_json(&format!("n{i}"), "z1", 4000))
        .collect();
    for (claims, want) in [(vec![], 5000usize), (vec!["c0"], 1)] {
        let body = json!({"Pod": pod_json("db-0", "p0", &claims), "Nodes": {"metadata": {}, "items": nodes}, "NodeNames": null});
        let bytes = serde_json::to_vec(&body).expect("json");
        assert!(bytes.len() > 20_000_000, "body is {} bytes", bytes.len());
        let (status, raw) = request(addr, "POST", "/filter", bytes).await;
        assert_eq!(status, StatusCode::OK);
        let v: Value = serde_json::from_slice(&raw).expect("json answer");
        let items = v["Nodes"]["items"].as_array().expect("Nodes.items");
        assert_eq!(items.len(), want);
        assert_eq!(names(&v["NodeNames"]).len(), want);
        let by_name: HashMap<&str, &Value> = nodes
            .iter()
            .map(|n| (n["metadata"]["name"].as_str().unwrap_or_default(), n))
            .collect();
        for item in items {
            let name = item["metadata"]["name"].as_str().unwrap_or_default();
            assert_eq!(
                Some(&item),
                by_name.get(name),
                "node {name} must come back unchanged"
            );
        }
    }
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let app = app(cluster(1, 10, 1, "5Gi"), Settings::default(), None);
    let addr = serve(app, "").await;
    let (status, _) = request(addr, "GET", "/healthz", vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = request(addr, "GET", "/readyz", vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let body = json!({"Pod": pod_json("db-0", "p0", &["c0"]), "NodeNames": ["n0"]});
    post(addr, "/filter", &body).await;
    let (status, text) = request(addr, "GET", "/metrics", vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8_lossy(&text);
    for m in [
        "lvmpin_extender_request_duration_seconds_bucket",
        "lvmpin_extender_filter_verdicts_total{verdict=\"pass\"} 1",
        "lvmpin_extender_reservations 1",
    ] {
        assert!(text.contains(m), "missing {m} in\n{text}");
    }
}

#[tokio::test]
async fn readyz_waits_for_every_cache() {
    use lvmpin_scheduler_extender::context::{App, Readiness};
    use lvmpin_scheduler_extender::leader::Leadership;
    use std::sync::Arc;
    let app = Arc::new(App::new(
        Default::default(),
        Settings::default(),
        Readiness::new(&["Pod", "LvmNode"]),
        Arc::new(Leadership::single()),
        None,
    ));
    let addr = serve(app.clone(), "").await;
    let (status, text) = request(addr, "GET", "/readyz", vec![]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&text).contains("Pod, LvmNode"));
    // Until then, pods with claims are asked to retry; others pass.
    let with_claims = json!({"Pod": pod_json("db-0", "p0", &["c0"]), "NodeNames": ["n0"]});
    let (_, v) = post(addr, "/filter", &with_claims).await;
    assert!(
        v["Error"]
            .as_str()
            .unwrap_or_default()
            .contains("waiting for watch caches"),
        "{v}"
    );
    let plain = json!({"Pod": pod_json("web", "w", &[]), "NodeNames": ["n0"]});
    let (_, v) = post(addr, "/filter", &plain).await;
    assert_eq!(v["NodeNames"], json!(["n0"]));
    app.readiness.mark_synced("Pod");
    app.readiness.mark_synced("LvmNode");
    let (status, _) = request(addr, "GET", "/readyz", vec![]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn two_hundred_concurrent_pods_never_overcommit() {
    // 20 nodes with 1.5 to 11 GiB free and claims of 1.5Gi: room for 1 to 7
    // claims per node, 77 in all, so most of the 200 pods must be refused.
    let mut st = cluster(0, 0, 200, "1536Mi");
    let frees: Vec<u64> = (0..20).map(|i| (3 + i) * GI / 2).collect();
    for (i, f) in frees.iter().enumerate() {
        st.index
            .upsert_lvm(lvmpin_scheduler_extender::testutil::lvm_node(
                &format!("n{i}"),
                "vg1",
                100 * GI,
                *f,
                4 << 20,
            ));
    }
    let addr = serve(app(st, Settings::default(), None), "").await;
    let asked: Vec<String> = (0..20).map(|i| format!("n{i}")).collect();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let asked = asked.clone();
        tasks.push(tokio::spawn(async move {
            let c = format!("c{i}");
            let body = json!({"Pod": pod_json(&format!("db-{i}"), &format!("p{i}"), &[&c]), "Nodes": null, "NodeNames": asked});
            let (status, v) = post(addr, "/filter", &body).await;
            assert_eq!(status, StatusCode::OK);
            names(&v["NodeNames"])
        }));
    }
    let mut used: HashMap<String, u64> = HashMap::new();
    let mut placed = 0;
    for t in tasks {
        let got = t.await.expect("task");
        assert!(got.len() <= 1, "decisive mode returns at most one node");
        if let Some(n) = got.first() {
            *used.entry(n.clone()).or_default() += 1536 << 20;
            placed += 1;
        }
    }
    for (i, f) in frees.iter().enumerate() {
        let u = used.get(&format!("n{i}")).copied().unwrap_or(0);
        assert!(u <= *f, "n{i}: promised {u} bytes of {f}");
    }
    let capacity: u64 = frees.iter().map(|f| f / (1536 << 20)).sum();
    assert_eq!(
        placed,
        capacity.min(200),
        "every claim that fits somewhere is placed"
    );
}

/// A claim kube-scheduler already sees but our cache does not: every asked
/// node fails resolvably (so kube-scheduler retries on its next event), and
/// `Error` stays empty, since an ignorable extender's error would have the
/// pod placed without a reservation.
#[tokio::test]
async fn a_claim_missing_from_the_cache_fails_every_node_without_an_error() {
    let addr = serve(app(cluster(2, 10, 1, "5Gi"), Settings::default(), None), "").await;
    let asked = ["n0", "n1"];
    let body = json!({"Pod": pod_json("db-9", "p9", &["not-yet"]), "NodeNames": asked});
    let (status, v) = post(addr, "/filter", &body).await;
    check_filter_answer(status, &v, &asked);
    assert_eq!(v["Error"], "", "{v}");
    assert_eq!(names(&v["NodeNames"]), Vec::<String>::new(), "{v}");
    let failed = v["FailedNodes"].as_object().expect("map");
    for n in asked {
        let reason = failed[n].as_str().unwrap_or_default();
        assert!(
            reason.contains("not-yet") && reason.contains("retrying"),
            "{v}"
        );
    }
}

/// A zone-ratio pod updates the per-zone gauges; a malformed StatefulSet
/// counts an error by reason and is placed anyway.
#[tokio::test]
async fn zone_ratio_gauges_and_errors() {
    use lvmpin_api::names::ANN_ZONE_WEIGHTS;
    use lvmpin_scheduler_extender::testutil::{stateful_set, zoned_node};
    let mut state = cluster(2, 10, 2, "1Gi");
    state.index.upsert_node(zoned_node("n0", "zone-a"));
    state.index.upsert_node(zoned_node("n1", "zone-b"));
    let mut sts = stateful_set("db", 3, &[(ANN_ZONE_WEIGHTS, "zone-a=2,zone-b=1")], &[]);
    sts.uid = "sts-uid".into();
    state.index.upsert_sts(sts);
    let app = app(state, Settings::default(), None);
    let addr = serve(app.clone(), "").await;
    let body = json!({"Pod": pod_json("db-0", "p0", &["c0"]), "NodeNames": ["n0", "n1"]});
    let (_, v) = post(addr, "/filter", &body).await;
    assert_eq!(v["NodeNames"], json!(["n0"]));
    let (_, text) = request(addr, "GET", "/metrics", vec![]).await;
    let text = String::from_utf8_lossy(&text);
    for m in [
        "lvmpin_extender_zone_pods{statefulset=\"ns/db\",zone=\"zone-a\"} 1",
        "lvmpin_extender_zone_target{statefulset=\"ns/db\",zone=\"zone-a\"} 2",
        "lvmpin_extender_zone_target{statefulset=\"ns/db\",zone=\"zone-b\"} 1",
    ] {
        assert!(text.contains(m), "missing {m} in\n{text}");
    }

    let mut bad = stateful_set("db", 3, &[(ANN_ZONE_WEIGHTS, "zone-a")], &[]);
    bad.uid = "sts-uid".into();
    app.lock().index.upsert_sts(bad);
    let body = json!({"Pod": pod_json("db-1", "p1", &["c1"]), "NodeNames": ["n0", "n1"]});
    let (_, v) = post(addr, "/filter", &body).await;
    assert_eq!(v["NodeNames"].as_array().map(Vec::len), Some(1));
    let (_, text) = request(addr, "GET", "/metrics", vec![]).await;
    let text = String::from_utf8_lossy(&text);
    let m = "lvmpin_extender_zone_ratio_errors_total{reason=\"weights\"} 1";
    assert!(text.contains(m), "missing {m} in\n{text}");
}
