//! The scheduler's extender client over a real socket: kube-scheduler's
//! treatment of non-200 answers, slow extenders and malformed bodies.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use k8s_openapi::api::core::v1::Pod;
use lvmpin_sim::scheduler::{Extender, ExtenderConfig};
use lvmpin_sim::workload;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/prefix/")
}

fn extender(url: &str) -> Extender {
    Extender::new(ExtenderConfig {
        http_timeout: Duration::from_millis(300),
        ..ExtenderConfig::lvmpin(url)
    })
}

#[tokio::test]
async fn errors_name_the_url_and_the_cause() {
    let app = Router::new()
        .route(
            "/prefix/filter",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/prefix/prioritize",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "[]"
            }),
        )
        .route("/prefix/bind", post(|| async { "not json" }));
    let url = serve(app).await;
    let ext = extender(&url);
    let pod = Pod::default();
    let n = workload::node("n1");
    let body = ext.serialize_args(&pod, &[&n]).unwrap();

    let e = ext
        .filter("filter", body.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/prefix/filter") && e.contains("500") && e.contains("boom"),
        "{e}"
    );
    let e = ext
        .prioritize("prioritize", body)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no answer within"), "{e}");
    let args = lvmpin_sim::scheduler::wire::ExtenderBindingArgs {
        pod_name: "p".into(),
        pod_namespace: "ns".into(),
        pod_uid: "u".into(),
        node: "n1".into(),
    };
    let e = ext.bind("bind", &args).await.unwrap_err().to_string();
    assert!(e.contains("invalid JSON"), "{e}");
}

#[tokio::test]
async fn unreachable_extender_is_an_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ext = extender(&format!("http://127.0.0.1:{port}"));
    let n = workload::node("n1");
    let body = ext.serialize_args(&Pod::default(), &[&n]).unwrap();
    assert!(ext.filter("filter", body).await.is_err());
}
