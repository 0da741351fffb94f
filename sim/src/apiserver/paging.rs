//! `?limit=` / `?continue=` paging of lists. The continue token carries the
//! version of the first page, which every page then reports, so a client that
//! watches from the last page's version replays every change made meanwhile.

use std::sync::Arc;

use serde_json::Value;

use super::meta;
use super::status::ApiError;
use super::store::Remaining;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinueToken {
    pub rv: u64,
    pub namespace: String,
    pub name: String,
}

impl ContinueToken {
    pub fn encode(&self) -> String {
        format!("{}/{}/{}", self.rv, self.namespace, self.name)
    }

    pub fn decode(s: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::bad_request(format!("invalid continue token {s:?}"));
        let mut parts = s.splitn(3, '/');
        let rv = parts.next().and_then(|r| r.parse().ok()).ok_or_else(bad)?;
        let namespace = parts.next().ok_or_else(bad)?.to_string();
        let name = parts
            .next()
            .filter(|n| !n.is_empty())
            .ok_or_else(bad)?
            .to_string();
        Ok(ContinueToken {
            rv,
            namespace,
            name,
        })
    }
}

#[derive(Debug)]
pub struct Page {
    pub rv: u64,
    pub items: Vec<Arc<Value>>,
    pub next: Option<ContinueToken>,
    /// `remainingItemCount`, when counted.
    pub remaining: Option<usize>,
}

/// The page of a list: `items` are the objects after the continue token (if
/// any) up to the limit, and `more` what follows, as `Store::list_page`
/// returns them. `compacted` is the newest version no
/// longer resumable: older tokens are 410.
pub fn paginate(
    items: Vec<Arc<Value>>,
    more: Remaining,
    rv: u64,
    cont: Option<&ContinueToken>,
    compacted: u64,
) -> Result<Page, ApiError> {
    let rv = match cont {
        None => rv,
        Some(c) if c.rv < compacted => {
            return Err(ApiError::gone(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ));
        }
        Some(c) => c.rv,
    };
    let next = (more != Remaining::None)
        .then(|| items.last())
        .flatten()
        .map(|o| ContinueToken {
            rv,
            namespace: meta::namespace(o).to_string(),
            name: meta::name(o).to_string(),
        });
    Ok(Page {
        rv,
        items,
        next,
        remaining: match more {
            Remaining::Counted(n) => Some(n),
            Remaining::None | Remaining::Some => None,
        },
    })
}

impl ContinueToken {
    /// The store key the next page starts after.
    pub fn key(&self) -> (String, String) {
        (self.namespace.clone(), self.name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::selector::ObjectFilter;
    use crate::apiserver::store::Store;
    use serde_json::json;

    fn names(p: &Page) -> Vec<&str> {
        p.items.iter().map(|o| meta::name(o)).collect()
    }

    #[test]
    fn pages_walk_the_list_once() {
        let mut s = Store::new(100);
        let pods = s.registry().get("", "v1", "pods").cloned().unwrap();
        for n in ["a", "b", "c", "d", "e"] {
            s.create(&pods, Some("ns"), json!({"metadata": {"name": n}}))
                .unwrap();
        }
        let all = ObjectFilter::default();
        let page = |s: &Store, cont: Option<&ContinueToken>, limit| {
            let after = cont.map(ContinueToken::key);
            let (rv, items, more) = s.list_page(&pods, &all, after.as_ref(), limit);
            paginate(items, more, rv, cont, 0).unwrap()
        };
        let p1 = page(&s, None, 2);
        assert_eq!(names(&p1), ["a", "b"]);
        assert_eq!(p1.remaining, Some(3));
        let tok = ContinueToken::decode(&p1.next.unwrap().encode()).unwrap();
        // The list changed meanwhile; the page still reports the first
        // page's version.
        s.create(&pods, Some("ns"), json!({"metadata": {"name": "f"}}))
            .unwrap();
        let p2 = page(&s, Some(&tok), 2);
        assert_eq!(p2.rv, p1.rv);
        assert_eq!(names(&p2), ["c", "d"]);
        assert_eq!(p2.remaining, Some(2));
        let p3 = page(&s, p2.next.as_ref(), 10);
        assert_eq!(names(&p3), ["e", "f"]);
        assert!(p3.next.is_none());
        assert_eq!(page(&s, None, 0).items.len(), 6);
        let old = ContinueToken {
            rv: 3,
            namespace: "ns".into(),
            name: "a".into(),
        };
        assert_eq!(
            paginate(vec![], Remaining::None, 10, Some(&old), 5)
                .unwrap_err()
                .code,
            410
        );
        assert_eq!(ContinueToken::decode("x/y").unwrap_err().code, 400);
    }

    #[test]
    fn pages_of_one_namespace_and_of_a_selector() {
        let mut s = Store::new(100);
        let pods = s.registry().get("", "v1", "pods").cloned().unwrap();
        for (ns, n, app) in [
            ("a", "p1", "x"),
            ("b", "p1", "x"),
            ("b", "p2", "y"),
            ("b", "p3", "x"),
            ("c", "p1", "x"),
        ] {
            let labels = json!({ "app": app });
            s.create(
                &pods,
                Some(ns),
                json!({"metadata": {"name": n, "labels": labels}}),
            )
            .unwrap();
        }
        let in_b = ObjectFilter {
            namespace: Some("b".into()),
            ..Default::default()
        };
        let (_, items, more) = s.list_page(&pods, &in_b, None, 2);
        assert_eq!(items.len(), 2);
        assert_eq!(more, Remaining::Counted(1), "c/p1 is not in b");
        let after = ("b".to_string(), "p2".to_string());
        let (_, items, more) = s.list_page(&pods, &in_b, Some(&after), 2);
        assert_eq!(
            items.iter().map(|o| meta::name(o)).collect::<Vec<_>>(),
            ["p3"]
        );
        assert_eq!(more, Remaining::None);
        // A token from before the namespace starts.
        let before = ("a".to_string(), "p1".to_string());
        let (_, items, _) = s.list_page(&pods, &in_b, Some(&before), 0);
        assert_eq!(items.len(), 3);
        let app_x = ObjectFilter {
            labels: crate::apiserver::selector::LabelSelector::parse("app=x").unwrap(),
            ..Default::default()
        };
        let (_, items, more) = s.list_page(&pods, &app_x, None, 3);
        assert_eq!(items.len(), 3);
        assert_eq!(more, Remaining::Some, "not counted with a selector");
        let page = paginate(items, more, 1, None, 0).unwrap();
        assert!(page.next.is_some());
        assert_eq!(page.remaining, None);
    }
}
