//! Watch streams: newline-delimited `{"type","object"}` events read from the
//! store's history from a resourceVersion on, filtered by namespace and
//! selectors, with periodic bookmarks and a 410 `ERROR` event when the version
//! is older than the history (kube-runtime's watcher re-lists on exactly that).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::convert;
use super::metrics::WatchGuard;
use super::partial;
use super::resources::ResourceType;
use super::selector::ObjectFilter;
use super::shared::Shared;
use super::status::ApiError;
use super::store::{Event, EventType};
use super::table::{self, Column};

/// How often an idle watch that asked for bookmarks gets one.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);
const BATCH: usize = 512;

#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub t: ResourceType,
    pub filter: ObjectFilter,
    /// `None`: start with ADDED events for the current state (no or "0" resourceVersion).
    pub from: Option<u64>,
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: end the initial state with a marked bookmark.
    pub initial_events_end: bool,
    pub timeout: Option<Duration>,
    /// `kubectl get -w`: each object goes out as a one-row Table with these columns.
    pub table: Option<Vec<Column>>,
    /// Metadata-only clients get `PartialObjectMetadata` objects.
    pub metadata_only: bool,
}

/// What a store event looks like through a filtered watch, if it shows at all:
/// an object that starts matching is ADDED, one that stops is DELETED.
pub fn translate(e: &Event, f: &ObjectFilter) -> Option<&'static str> {
    let now = f.matches(&e.object);
    match e.etype {
        EventType::Added => now.then_some("ADDED"),
        EventType::Deleted => e
            .old
            .as_deref()
            .map_or(now, |o| f.matches(o) || now)
            .then_some("DELETED"),
        EventType::Modified => match (e.old.as_deref().is_some_and(|o| f.matches(o)), now) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    }
}

/// An object as served under `t`'s version (custom resources may be stored under another).
pub fn present(obj: &Value, t: &ResourceType) -> Option<Value> {
    if convert::is_events_v1(t) {
        return Some(convert::event_from_core(obj));
    }
    let av = t.api_version();
    (obj.get("apiVersion").and_then(Value::as_str) != Some(av.as_str())).then(|| {
        let mut o = obj.clone();
        o["apiVersion"] = json!(av);
        o
    })
}

fn event_line(kind: &str, obj: &Value, req: &WatchRequest) -> Bytes {
    match &req.table {
        Some(cols) => {
            let rv = obj
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let t = table::render(cols, &[obj], rv, chrono::Utc::now());
            line(kind, &t, &req.t)
        }
        None if req.metadata_only => raw_line(kind, &partial::metadata_only(obj)),
        None => line(kind, obj, &req.t),
    }
}

fn line(kind: &str, obj: &Value, t: &ResourceType) -> Bytes {
    if obj.get("kind").and_then(Value::as_str) == Some("Table") {
        return raw_line(kind, obj);
    }
    let fixed = present(obj, t);
    raw_line(kind, fixed.as_ref().unwrap_or(obj))
}

fn raw_line(kind: &str, obj: &Value) -> Bytes {
    let mut out = format!("{{\"type\":\"{kind}\",\"object\":").into_bytes();
    if serde_json::to_writer(&mut out, obj).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

fn bookmark(t: &ResourceType, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let obj = json!({"kind": t.kind, "apiVersion": t.api_version(), "metadata": meta});
    line("BOOKMARK", &obj, t)
}

/// Starts streaming and returns the chunked response at once.
pub fn serve(shared: Arc<Shared>, req: WatchRequest) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    // Counted before the response goes out, so /metrics never lags an open stream.
    let open = WatchGuard::new(&shared.metrics.watches);
    tokio::spawn(async move {
        let _open = open;
        run(shared, req, tx).await;
    });
    let mut resp = (StatusCode::OK, Body::from_stream(ReceiverStream::new(rx))).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn run(shared: Arc<Shared>, req: WatchRequest, tx: mpsc::Sender<Result<Bytes, Infallible>>) {
    let deadline = req.timeout.map(|d| Instant::now() + d);
    let mut changed = shared.subscribe(&req.t.key());
    changed.borrow_and_update();
    let key = req.t.key();
    let (mut pos, initial) = match req.from {
        Some(rv) => (rv, Vec::new()),
        None => shared.lock().list(&req.t, &req.filter),
    };
    for o in initial {
        if tx.send(Ok(event_line("ADDED", &o, &req))).await.is_err() {
            return;
        }
    }
    if req.initial_events_end && tx.send(Ok(bookmark(&req.t, pos, true))).await.is_err() {
        return;
    }
    let mut next_bookmark = Instant::now() + BOOKMARK_INTERVAL;
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        let (batch, now_rv) = {
            let store = shared.lock();
            (
                store.events_after(&key, pos, BATCH),
                store.resource_version(),
            )
        };
        match batch {
            Err(expired) => {
                let e = ApiError::gone(format!(
                    "too old resource version: {pos} ({})",
                    expired.oldest_kept
                ));
                let _ = tx.send(Ok(line("ERROR", &e.to_status(), &req.t))).await;
                return;
            }
            Ok(events) => {
                let full = events.len() == BATCH;
                for e in events {
                    pos = e.rv;
                    if e.key != key {
                        continue;
                    }
                    if let Some(kind) = translate(&e, &req.filter)
                        && tx
                            .send(Ok(event_line(kind, &e.object, &req)))
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
                if full {
                    continue;
                }
                // Every event of this type up to the current version is out.
                pos = pos.max(now_rv);
            }
        }
        let far = Instant::now() + Duration::from_secs(3600);
        let wake = match (deadline, req.bookmarks) {
            (Some(d), true) => d.min(next_bookmark),
            (Some(d), false) => d,
            (None, true) => next_bookmark,
            (None, false) => far,
        };
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            _ = tokio::time::sleep_until(wake) => {
                if req.bookmarks && Instant::now() >= next_bookmark {
                    if tx.send(Ok(bookmark(&req.t, pos, false))).await.is_err() {
                        return;
                    }
                    next_bookmark = Instant::now() + BOOKMARK_INTERVAL;
                }
            }
            _ = shared.shutdown.cancelled() => return,
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::selector::LabelSelector;

    fn ev(etype: EventType, old: Option<Value>, new: Value) -> Event {
        Event {
            rv: 1,
            key: "/pods".into(),
            etype,
            object: Arc::new(new),
            old: old.map(Arc::new),
        }
    }

    fn labelled(v: &str) -> Value {
        json!({"metadata": {"name": "p", "labels": {"app": v}}})
    }

    #[test]
    fn selector_transitions() {
        let f = ObjectFilter {
            labels: LabelSelector::parse("app=a").unwrap(),
            ..Default::default()
        };
        let (a, b) = (labelled("a"), labelled("b"));
        let cases = [
            (EventType::Added, None, a.clone(), Some("ADDED")),
            (EventType::Added, None, b.clone(), None),
            (
                EventType::Modified,
                Some(a.clone()),
                a.clone(),
                Some("MODIFIED"),
            ),
            (
                EventType::Modified,
                Some(b.clone()),
                a.clone(),
                Some("ADDED"),
            ),
            (
                EventType::Modified,
                Some(a.clone()),
                b.clone(),
                Some("DELETED"),
            ),
            (EventType::Modified, Some(b.clone()), b.clone(), None),
            (
                EventType::Deleted,
                Some(a.clone()),
                a.clone(),
                Some("DELETED"),
            ),
            (EventType::Deleted, Some(b.clone()), b.clone(), None),
        ];
        for (et, old, new, want) in cases {
            assert_eq!(
                translate(&ev(et, old.clone(), new.clone()), &f),
                want,
                "{et:?} {old:?} -> {new}"
            );
        }
    }
}
