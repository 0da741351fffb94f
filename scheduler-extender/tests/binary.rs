//! The real binary: flags and env fallbacks, routes, readiness before the API
//! server answers.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::request;
use hyper::StatusCode;

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_serves_prefixed_verbs_and_is_not_ready_without_an_api_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kc");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:9\nusers:\n- name: u\n  user: {}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
    )
    .expect("write kubeconfig");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let _child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_lvmpin-scheduler-extender"))
            .args(["--listen", &addr.to_string(), "--kubeconfig"])
            .arg(&kubeconfig)
            .env("LVMPIN_URL_PREFIX", "/lvmpin")
            .env("LVMPIN_SPARE_BYTES", "1Gi")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn extender"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "extender never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        request(addr, "GET", "/healthz", vec![]).await.0,
        StatusCode::OK
    );
    let (status, text) = request(addr, "GET", "/readyz", vec![]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&text).contains("waiting for watch caches"));
    let body = br#"{"Pod":{"metadata":{"name":"w"}},"Nodes":null,"NodeNames":["a","b"]}"#.to_vec();
    let (status, out) = request(addr, "POST", "/lvmpin/filter", body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["NodeNames"], serde_json::json!(["a", "b"]));
    assert_eq!(
        request(addr, "POST", "/filter", body).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, text) = request(addr, "GET", "/metrics", vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&text).contains("lvmpin_extender_request_duration_seconds"));
}

#[test]
fn bad_flags_fail_with_a_message() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lvmpin-scheduler-extender"))
        .args(["--spare-bytes", "lots", "--kubeconfig", "/nonexistent"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--spare-bytes"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lvmpin-scheduler-extender"))
        .args(["--mode", "bold"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown mode"));
}
