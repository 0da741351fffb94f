//! Events are one collection served under two APIs, as in a real cluster:
//! `core/v1` (what `kubectl get events` reads) and `events.k8s.io/v1` (what
//! kube-runtime's `Recorder` writes). They are stored in the core shape and
//! converted at the edge, with the field renames of the upstream conversion.

use serde_json::{Map, Value, json};

use super::resources::ResourceType;

/// (events.k8s.io/v1 field, core/v1 field) pairs that differ only by name.
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

pub fn is_events_v1(t: &ResourceType) -> bool {
    t.group == "events.k8s.io" && t.plural == "events"
}

fn rename(v: Value, to_core: bool, api_version: &str) -> Value {
    let Value::Object(m) = v else { return v };
    let mut out = Map::with_capacity(m.len());
    for (k, val) in m {
        let renamed = RENAMES.iter().find_map(|(new, core)| {
            if to_core && k == *new {
                Some(*core)
            } else if !to_core && k == *core {
                Some(*new)
            } else {
                None
            }
        });
        out.insert(renamed.map(str::to_string).unwrap_or(k), val);
    }
    out.insert("apiVersion".into(), json!(api_version));
    Value::Object(out)
}

/// An events.k8s.io/v1 Event in the stored core/v1 shape.
pub fn event_to_core(v: Value) -> Value {
    rename(v, true, "v1")
}

/// A stored core/v1 Event as events.k8s.io/v1 shows it.
pub fn event_from_core(v: &Value) -> Value {
    rename(v.clone(), false, "events.k8s.io/v1")
}

/// A field selector path of events.k8s.io/v1 in terms of the stored shape.
pub fn event_field_to_core(path: &str) -> String {
    let (head, tail) = path
        .split_once('.')
        .map_or((path, None), |(h, t)| (h, Some(t)));
    let head = RENAMES
        .iter()
        .find(|(new, _)| *new == head)
        .map_or(head, |(_, core)| *core);
    match tail {
        Some(t) => format!("{head}.{t}"),
        None => head.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let new = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "bad size", "reason": "InvalidSize",
            "reportingController": "lvmpin", "series": {"count": 2}});
        let core = event_to_core(new.clone());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "bad size");
        assert_eq!(core["reportingComponent"], "lvmpin");
        assert_eq!(core["series"]["count"], 2);
        assert_eq!(event_from_core(&core), new);
        assert_eq!(event_field_to_core("regarding.name"), "involvedObject.name");
        assert_eq!(event_field_to_core("reason"), "reason");
    }
}
