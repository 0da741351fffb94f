//! Label and field selectors as the API server parses them from `?labelSelector=`
//! and `?fieldSelector=`: pure parsing and matching over JSON objects.

use std::collections::BTreeSet;

use serde_json::Value;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

/// All requirements must hold (the API's comma means AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<LabelRequirement>);

/// `path op value` over a dotted field path such as `spec.nodeName`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub path: String,
    pub value: String,
    pub equal: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

/// Splits on commas that are not inside `( )`, so `a in (x,y),b` gives two parts.
fn split_top_level(s: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unbalanced ')' in selector {s:?}"));
                }
            }
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced '(' in selector {s:?}"));
    }
    parts.push(&s[start..]);
    Ok(parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect())
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 316
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_set(rest: &str, whole: &str) -> Result<BTreeSet<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised value set in {whole:?}"))?;
    let mut set = BTreeSet::new();
    for v in inner.split(',').map(str::trim) {
        if !valid_value(v) {
            return Err(format!("invalid label value {v:?} in {whole:?}"));
        }
        set.insert(v.to_string());
    }
    Ok(set)
}

fn parse_label_requirement(part: &str) -> Result<LabelRequirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        return if valid_key(key) {
            Ok(LabelRequirement::DoesNotExist(key.to_string()))
        } else {
            Err(format!("invalid label key {key:?}"))
        };
    }
    for (op, neg) in [(" notin ", true), (" in ", false)] {
        if let Some(pos) = part.find(op) {
            let key = part[..pos].trim();
            if !valid_key(key) {
                return Err(format!("invalid label key {key:?}"));
            }
            let set = parse_set(&part[pos + op.len()..], part)?;
            return Ok(if neg {
                LabelRequirement::NotIn(key.to_string(), set)
            } else {
                LabelRequirement::In(key.to_string(), set)
            });
        }
    }
    let (key, value, equal) = if let Some((k, v)) = part.split_once("!=") {
        (k, v, false)
    } else if let Some((k, v)) = part.split_once("==") {
        (k, v, true)
    } else if let Some((k, v)) = part.split_once('=') {
        (k, v, true)
    } else {
        let key = part.trim();
        return if valid_key(key) {
            Ok(LabelRequirement::Exists(key.to_string()))
        } else {
            Err(format!("invalid label selector requirement {part:?}"))
        };
    };
    let (key, value) = (key.trim(), value.trim());
    if !valid_key(key) {
        return Err(format!("invalid label key {key:?}"));
    }
    if !valid_value(value) {
        return Err(format!("invalid label value {value:?}"));
    }
    Ok(if equal {
        LabelRequirement::Equals(key.to_string(), value.to_string())
    } else {
        LabelRequirement::NotEquals(key.to_string(), value.to_string())
    })
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        split_top_level(s)?
            .into_iter()
            .map(parse_label_requirement)
            .collect::<Result<Vec<_>, _>>()
            .map(LabelSelector)
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            LabelRequirement::Equals(k, v) => get(k) == Some(v.as_str()),
            LabelRequirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            LabelRequirement::In(k, set) => get(k).is_some_and(|x| set.contains(x)),
            LabelRequirement::NotIn(k, set) => !get(k).is_some_and(|x| set.contains(x)),
            LabelRequirement::Exists(k) => get(k).is_some(),
            LabelRequirement::DoesNotExist(k) => get(k).is_none(),
        })
    }
}

/// The string a field selector compares against: absent fields read as "",
/// which is how `spec.nodeName=` selects unscheduled pods.
fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (path, value, equal) = if let Some((k, v)) = part.split_once("!=") {
                (k, v, false)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, v, true)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, v, true)
            } else {
                return Err(format!(
                    "invalid field selector {part:?}: expected field=value, field==value or field!=value"
                ));
            };
            let path = path.trim();
            if path.is_empty() || !path.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
                return Err(format!("invalid field path {path:?} in field selector"));
            }
            reqs.push(FieldRequirement {
                path: path.to_string(),
                value: value.trim().to_string(),
                equal,
            });
        }
        Ok(FieldSelector(reqs))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0
            .iter()
            .all(|r| (field_value(obj, &r.path) == r.value) == r.equal)
    }
}

/// Which objects a list or watch returns: namespace (None = all) and selectors.
#[derive(Debug, Clone, Default)]
pub struct ObjectFilter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl ObjectFilter {
    /// Label or field selectors are set (the namespace aside).
    pub fn has_selectors(&self) -> bool {
        !self.labels.0.is_empty() || !self.fields.0.is_empty()
    }

    /// `matches` for an object already known to be in the namespace asked
    /// for: only the selectors are checked, and none is cheap.
    pub fn selects(&self, obj: &Value) -> bool {
        !self.has_selectors() || (self.labels.matches(obj) && self.fields.matches(obj))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let ns_ok = self.namespace.as_deref().is_none_or(|ns| {
            obj.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                == ns
        });
        ns_ok && self.labels.matches(obj) && self.fields.matches(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "p1", "namespace": "ns", "labels": labels},
               "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_selector_table() {
        let o = obj(json!({"app": "db", "tier": "back"}));
        let cases = [
            ("app=db", true),
            ("app==db", true),
            ("app=web", false),
            ("app!=web", true),
            ("app!=db", false),
            ("missing!=x", true),
            ("app in (db,web)", true),
            ("app in (web)", false),
            ("app notin (web,cache)", true),
            ("app notin (db)", false),
            ("missing notin (db)", true),
            ("missing in (db)", false),
            ("tier", true),
            ("missing", false),
            ("!missing", true),
            ("!tier", false),
            ("app=db,tier in (back, front)", true),
            ("app=db,tier=front", false),
            ("", true),
        ];
        for (sel, want) in cases {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&o), want, "selector {sel:?}");
        }
    }

    #[test]
    fn label_selector_errors() {
        for bad in ["app in db", "app in (db", "a b=c", "app=(x)", "=x"] {
            assert!(
                LabelSelector::parse(bad).is_err(),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn field_selector_table() {
        let o = obj(json!({}));
        let unscheduled = json!({"metadata": {"name": "p2"}});
        let cases = [
            ("metadata.name=p1", &o, true),
            ("metadata.name==p1", &o, true),
            ("metadata.name!=p1", &o, false),
            ("metadata.namespace=ns,spec.nodeName=n1", &o, true),
            ("spec.nodeName=n2", &o, false),
            ("status.phase!=Succeeded,status.phase!=Failed", &o, true),
            ("spec.nodeName=", &unscheduled, true),
            ("spec.nodeName!=", &unscheduled, false),
        ];
        for (sel, o, want) in cases {
            let s = FieldSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(o), want, "selector {sel:?}");
        }
        assert!(FieldSelector::parse("spec.nodeName").is_err());
        assert!(FieldSelector::parse("spec nodeName=x").is_err());
    }
}
