//! A kube `Client` whose every request must match the next expected call
//! (method, path and query, content type, body) and is answered with a
//! canned response. A missing call times out; an extra call hangs the code
//! under test, which the caller's deadline turns into a failure.

use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::Handle;

type Check = Box<dyn FnOnce(&Value) + Send>;

pub struct Call {
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    check: Option<Check>,
    status: u16,
    response: Value,
}

impl Call {
    pub fn new(method: Method, path: &str) -> Self {
        Self {
            method,
            path: path.to_string(),
            content_type: None,
            check: None,
            status: 200,
            response: json!({}),
        }
    }
    pub fn get(path: &str) -> Self {
        Self::new(Method::GET, path)
    }
    pub fn post(path: &str) -> Self {
        Self::new(Method::POST, path)
    }
    pub fn patch(path: &str) -> Self {
        Self::new(Method::PATCH, path)
    }
    pub fn delete(path: &str) -> Self {
        Self::new(Method::DELETE, path)
    }
    /// The request body must equal `want` exactly.
    pub fn body(mut self, want: Value) -> Self {
        self.check = Some(Box::new(move |got| assert_eq!(got, &want, "request body")));
        self
    }
    pub fn check(mut self, f: impl FnOnce(&Value) + Send + 'static) -> Self {
        self.check = Some(Box::new(f));
        self
    }
    pub fn content_type(mut self, ct: &'static str) -> Self {
        self.content_type = Some(ct);
        self
    }
    pub fn respond(mut self, status: u16, body: Value) -> Self {
        self.status = status;
        self.response = body;
        self
    }
    /// An Event through the events.k8s.io API with this type and reason.
    pub fn event(namespace: &str, type_: &'static str, reason: &'static str) -> Self {
        Self::post(&format!(
            "/apis/events.k8s.io/v1/namespaces/{namespace}/events"
        ))
        .check(move |b| {
            assert_eq!(b["type"], type_, "event type in {b}");
            assert_eq!(b["reason"], reason, "event reason in {b}");
        })
        .respond(201, json!({}))
    }
    pub fn not_found(self) -> Self {
        self.respond(
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
        )
    }
    pub fn conflict(self) -> Self {
        self.respond(
            409,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409, "message": "exists"}),
        )
    }
}

fn normalize(pq: &str) -> &str {
    pq.strip_suffix('?').unwrap_or(pq)
}

pub async fn verify(mut handle: Handle<Request<Body>, Response<Body>>, calls: Vec<Call>) {
    for (i, call) in calls.into_iter().enumerate() {
        let next = tokio::time::timeout(Duration::from_secs(5), handle.next_request()).await;
        let Ok(Some((req, send))) = next else {
            panic!(
                "expected call #{i} {} {} did not arrive",
                call.method, call.path
            );
        };
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        assert_eq!(
            (req.method().clone(), normalize(&pq).to_string()),
            (call.method.clone(), call.path.clone()),
            "call #{i}"
        );
        if let Some(ct) = call.content_type {
            let got = req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            assert_eq!(got, Some(ct), "content type of call #{i}");
        }
        let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
        if let Some(check) = call.check {
            let body: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("call #{i} body is not JSON ({e}): {bytes:?}"));
            check(&body);
        }
        let resp = Response::builder()
            .status(call.status)
            .body(Body::from(serde_json::to_vec(&call.response).unwrap()))
            .unwrap();
        send.send_response(resp);
    }
}
