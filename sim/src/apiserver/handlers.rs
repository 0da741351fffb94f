//! The REST verbs on resource paths: get, list, watch, create, update, patch,
//! delete, deletecollection and `pods/binding`. They translate HTTP to store
//! calls and back; the rules live in `store`, `meta` and `gc`.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use serde_json::Value;

use super::convert;
use super::meta::UpdateScope;
use super::paging::{ContinueToken, Page, paginate};
use super::partial;
use super::patch::{self, patch_kind};
use super::query::{Query, filter, flag};
use super::resources::ResourceType;
use super::route::ResourcePath;
use super::selector::ObjectFilter;
use super::shared::Shared;
use super::status::{ApiError, json_response, success};
use super::store::{CRD_KEY, DeleteOptions};
use super::table;
use super::watch::{self, WatchRequest, present};

/// A create/update/binding body: JSON, or YAML when the client says so (as
/// the real server accepts). Protobuf and CBOR are not spoken here.
fn decode_body(headers: &HeaderMap, body: &[u8], what: &str) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "" | "application/json" | "*/*" => parse_json(body, what),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the {what} is not valid YAML: {e}"))),
        other => Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format ({other:?}) - accepted media types include: application/json, application/yaml"
        ))),
    }
}

fn parse_json(body: &[u8], what: &str) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the {what} is not valid JSON: {e}")))
}

fn object_response(code: u16, obj: &Value, t: &ResourceType) -> Response {
    match present(obj, t) {
        Some(fixed) => json_response(code, &fixed),
        None => json_response(code, obj),
    }
}

fn list_response(t: &ResourceType, page: &Page, metadata_only: bool) -> Response {
    let items = &page.items;
    let mut out = Vec::with_capacity(256 + items.len() * 1024);
    let mut list_meta = serde_json::json!({"resourceVersion": page.rv.to_string()});
    if let Some(next) = &page.next {
        list_meta["continue"] = next.encode().into();
        if let Some(n) = page.remaining {
            list_meta["remainingItemCount"] = n.into();
        }
    }
    let (kind, api_version) = if metadata_only {
        (
            "PartialObjectMetadata".to_string(),
            "meta.k8s.io/v1".to_string(),
        )
    } else {
        (t.kind.clone(), t.api_version())
    };
    let _ = write!(
        out,
        r#"{{"kind":"{kind}List","apiVersion":"{api_version}","metadata":{list_meta},"items":["#,
    );
    for (i, o) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let fixed = if metadata_only {
            Some(partial::metadata_only(o))
        } else {
            present(o, t)
        };
        let _ = serde_json::to_writer(&mut out, fixed.as_ref().unwrap_or(o));
    }
    out.extend_from_slice(b"]}");
    let mut resp = Response::new(axum::body::Body::from(out));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// `kubectl get` output: the CRD's printer columns, or the built-in ones.
fn table_response(shared: &Shared, t: &ResourceType, items: &[&Value], rv: u64) -> Response {
    let cols = table_columns(shared, t);
    json_response(200, &table::render(&cols, items, rv, chrono::Utc::now()))
}

fn table_columns(shared: &Shared, t: &ResourceType) -> Vec<table::Column> {
    let crd_name = ("".to_string(), format!("{}.{}", t.plural, t.group));
    let crd = shared.lock().objects_get(CRD_KEY, &crd_name);
    crd.and_then(|c| table::crd_columns(&c, &t.version))
        .unwrap_or_else(|| table::builtin_columns(t))
}

fn watch_request(
    t: ResourceType,
    q: &Query,
    filter: ObjectFilter,
) -> Result<WatchRequest, ApiError> {
    let initial_events = flag(q, "sendInitialEvents");
    let from = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(_) if initial_events => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid resourceVersion {v:?}: expected a number"))
        })?),
    };
    // 0 means "the server's default", which here is no limit.
    let timeout = match q.get("timeoutSeconds").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(s) => Some(Duration::from_secs(s.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid timeoutSeconds {s:?}"))
        })?)),
    };
    Ok(WatchRequest {
        t,
        filter,
        from,
        bookmarks: flag(q, "allowWatchBookmarks"),
        initial_events_end: initial_events,
        timeout,
        table: None,
        metadata_only: false,
    })
}

fn delete_options(q: &Query, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions::default();
    let mut policy = q.get("propagationPolicy").cloned();
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v = parse_json(body, "DeleteOptions body")?;
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
        opts.precondition_uid = s("/preconditions/uid");
        opts.precondition_rv = s("/preconditions/resourceVersion");
        if let Some(p) = s("/propagationPolicy") {
            policy = Some(p);
        }
        if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            policy = Some("Orphan".into());
        }
    }
    match policy.as_deref() {
        None | Some("Background") | Some("Foreground") => {}
        Some("Orphan") => opts.orphan = true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid propagationPolicy {other:?}: expected Orphan, Background or Foreground"
            )));
        }
    }
    Ok(opts)
}

/// GET on a collection: a watch stream, a Table for kubectl, or a (paged) list.
fn list_or_watch(
    shared: Arc<Shared>,
    t: ResourceType,
    st: &ResourceType,
    ns: Option<&str>,
    q: &Query,
    accept: &str,
) -> Result<Response, ApiError> {
    let f = filter(q, ns, &t)?;
    if flag(q, "watch") {
        let mut req = watch_request(t, q, f)?;
        if table::wants_table(accept) {
            req.table = Some(table_columns(&shared, &req.t));
        }
        req.metadata_only = partial::wants_metadata(accept);
        return Ok(watch::serve(shared, req));
    }
    let limit = match q.get("limit").map(String::as_str) {
        None | Some("") => 0,
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
    };
    let cont = match q.get("continue").map(String::as_str) {
        None | Some("") => None,
        Some(c) => Some(ContinueToken::decode(c)?),
    };
    let after = cont.as_ref().map(ContinueToken::key);
    let (rv, items, more, compacted) = {
        let store = shared.lock();
        let (rv, items, more) = store.list_page(st, &f, after.as_ref(), limit);
        (rv, items, more, store.compacted(&st.key()))
    };
    let page = paginate(items, more, rv, cont.as_ref(), compacted)?;
    if table::wants_table(accept) {
        let refs: Vec<&Value> = page.items.iter().map(|o| o.as_ref()).collect();
        return Ok(table_response(&shared, &t, &refs, page.rv));
    }
    Ok(list_response(&t, &page, partial::wants_metadata(accept)))
}

pub fn resource(
    shared: Arc<Shared>,
    method: Method,
    p: ResourcePath,
    q: Query,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let t = shared
        .lock()
        .registry()
        .get(&p.group, &p.version, &p.plural)
        .cloned()
        .ok_or_else(|| {
            ApiError::no_such_path(&format!("{}/{}/{}", p.group, p.version, p.plural))
        })?;
    if q.get("dryRun").is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::bad_request(
            "dryRun is not supported by the lvmpin simulator",
        ));
    }
    // Where objects of `t` are stored and how request bodies map onto that.
    let (st, events_v1) = if convert::is_events_v1(&t) {
        let core = shared
            .lock()
            .registry()
            .get("", "v1", "events")
            .cloned()
            .ok_or_else(|| ApiError::no_such_path("/api/v1/events"))?;
        (core, true)
    } else {
        (t.clone(), false)
    };
    let to_store = |v: Value| {
        if events_v1 {
            convert::event_to_core(v)
        } else {
            v
        }
    };
    let ns = p.namespace.as_deref();
    let sub = p.subresource.as_deref();
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match sub {
        None => {}
        Some("status") if t.has_status => {}
        Some(s) if t.extra_subresources.iter().any(|x| x == s) => {}
        Some(s) => {
            return Err(ApiError::no_such_path(&format!("{}/{s}", t.plural)));
        }
    }
    let scope = if sub == Some("status") {
        UpdateScope::Status
    } else {
        UpdateScope::Main
    };
    match (method, p.name.as_deref()) {
        (Method::GET, None) => list_or_watch(shared, t, &st, ns, &q, accept),
        (Method::GET, Some(name)) if sub != Some("binding") => {
            let (o, rv) = {
                let store = shared.lock();
                (store.get(&st, ns, name)?, store.resource_version())
            };
            if table::wants_table(accept) {
                return Ok(table_response(&shared, &t, &[o.as_ref()], rv));
            }
            if partial::wants_metadata(accept) {
                return Ok(json_response(200, &partial::metadata_only(&o)));
            }
            Ok(object_response(200, &o, &t))
        }
        (Method::POST, None) => {
            let v = to_store(decode_body(headers, &body, "request body")?);
            if let Some(answer) = super::review::answer(&t, &v) {
                return Ok(json_response(201, &answer?));
            }
            let o = shared.write(|s| s.create(&st, ns, v))?;
            Ok(object_response(201, &o, &t))
        }
        (Method::POST, Some(name)) if sub == Some("binding") => {
            let v = decode_body(headers, &body, "Binding")?;
            shared.write(|s| s.bind(&t, ns.unwrap_or(""), name, &v))?;
            Ok(json_response(201, &success(201)))
        }
        (Method::PUT, Some(name)) if sub != Some("binding") => {
            let v = to_store(decode_body(headers, &body, "request body")?);
            let o = shared.write(|s| s.update(&st, ns, name, v, scope))?;
            Ok(object_response(200, &o, &t))
        }
        (Method::PATCH, Some(name)) if sub != Some("binding") => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let kind = patch_kind(ct)?;
            let o = if events_v1 {
                // The patch is written against the events.k8s.io shape.
                shared.write(|s| {
                    let existing = s.get(&st, ns, name)?;
                    let patched = patch::apply(kind, &convert::event_from_core(&existing), &body)?;
                    s.update(&st, ns, name, convert::event_to_core(patched), scope)
                })?
            } else {
                shared.write(|s| s.patch(&st, ns, name, kind, &body, scope))?
            };
            Ok(object_response(200, &o, &t))
        }
        (Method::DELETE, Some(name)) if sub.is_none() => {
            let opts = delete_options(&q, &body)?;
            let o = shared.write(|s| s.delete(&st, ns, name, &opts))?;
            Ok(object_response(200, &o, &t))
        }
        (Method::DELETE, None) => {
            let f = filter(&q, ns, &t)?;
            let opts = delete_options(&q, &body)?;
            let (rv, done) = shared.write(|s| {
                let (_, items) = s.list(&st, &f);
                let done: Vec<Arc<Value>> = items
                    .iter()
                    .filter_map(|o| {
                        let ons = super::meta::namespace(o).to_string();
                        let ons = (!ons.is_empty()).then_some(ons);
                        s.delete(&st, ons.as_deref(), super::meta::name(o), &opts)
                            .ok()
                    })
                    .collect();
                (s.resource_version(), done)
            });
            let page = Page {
                rv,
                items: done,
                next: None,
                remaining: None,
            };
            Ok(list_response(&t, &page, false))
        }
        (m, _) => Err(ApiError::method_not_allowed(format!(
            "{m} is not supported on this path of {}",
            t.plural
        ))),
    }
}
