//! `Query`: a request's query string, and the parameters read from it that
//! several verbs share (boolean flags and the selectors).

use std::collections::HashMap;

use axum::http::Uri;

use super::convert;
use super::resources::ResourceType;
use super::selector::{FieldSelector, LabelSelector, ObjectFilter};
use super::status::ApiError;

/// A request's query parameters, by name.
pub type Query = HashMap<String, String>;

/// The query string of `uri`; a malformed one is the client's error.
pub fn parse(uri: &Uri) -> Result<Query, ApiError> {
    match axum::extract::Query::try_from_uri(uri) {
        Ok(axum::extract::Query(q)) => Ok(q),
        Err(e) => Err(ApiError::bad_request(format!("invalid query string: {e}"))),
    }
}

/// A boolean parameter: `true` or `1`.
pub fn flag(q: &Query, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "true" || v == "1")
}

/// The label, field and namespace filter a list, watch or deletecollection asks for.
pub fn filter(q: &Query, ns: Option<&str>, t: &ResourceType) -> Result<ObjectFilter, ApiError> {
    let labels = match q.get("labelSelector") {
        Some(s) => LabelSelector::parse(s)
            .map_err(|e| ApiError::bad_request(format!("unable to parse labelSelector: {e}")))?,
        None => LabelSelector::default(),
    };
    let mut fields = match q.get("fieldSelector") {
        Some(s) => FieldSelector::parse(s)
            .map_err(|e| ApiError::bad_request(format!("unable to parse fieldSelector: {e}")))?,
        None => FieldSelector::default(),
    };
    if convert::is_events_v1(t) {
        for r in &mut fields.0 {
            r.path = convert::event_field_to_core(&r.path);
        }
    }
    Ok(ObjectFilter {
        namespace: ns.map(str::to_string),
        labels,
        fields,
    })
}
