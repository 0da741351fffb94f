//! `?limit=` / `?continue=` paging of lists. The continue token carries the
//! version of the first page, which every page then reports, so a client that
//! watches from the last page's version replays every change made meanwhile.

use std::sync::Arc;

use serde_json::Value;

use super::meta;
use super::status::ApiError;

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
    pub remaining: usize,
}

/// One page of `items` (sorted by namespace and name, as the store lists them).
/// `compacted` is the newest version no longer resumable: older tokens are 410.
pub fn paginate(
    items: Vec<Arc<Value>>,
    rv: u64,
    limit: usize,
    cont: Option<ContinueToken>,
    compacted: u64,
) -> Result<Page, ApiError> {
    let (rv, mut items) = match cont {
        None => (rv, items),
        Some(c) => {
            if c.rv < compacted {
                return Err(ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            let after = (c.namespace.as_str(), c.name.as_str());
            let rest = items
                .into_iter()
                .filter(|o| (meta::namespace(o), meta::name(o)) > after)
                .collect();
            (c.rv, rest)
        }
    };
    if limit == 0 || items.len() <= limit {
        return Ok(Page {
            rv,
            items,
            next: None,
            remaining: 0,
        });
    }
    let remaining = items.len() - limit;
    items.truncate(limit);
    let next = items.last().map(|o| ContinueToken {
        rv,
        namespace: meta::namespace(o).to_string(),
        name: meta::name(o).to_string(),
    });
    Ok(Page {
        rv,
        items,
        next,
        remaining,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn objs(names: &[&str]) -> Vec<Arc<Value>> {
        names
            .iter()
            .map(|n| Arc::new(json!({"metadata": {"namespace": "ns", "name": n}})))
            .collect()
    }

    #[test]
    fn pages_walk_the_list_once() {
        let all = objs(&["a", "b", "c", "d", "e"]);
        let p1 = paginate(all.clone(), 10, 2, None, 0).unwrap();
        assert_eq!(p1.items.len(), 2);
        assert_eq!(p1.remaining, 3);
        let tok = ContinueToken::decode(&p1.next.unwrap().encode()).unwrap();
        // The list changed meanwhile (rv 12); the page still reports rv 10.
        let p2 = paginate(objs(&["a", "b", "c", "d", "e", "f"]), 12, 2, Some(tok), 0).unwrap();
        assert_eq!(p2.rv, 10);
        assert_eq!(meta::name(&p2.items[0]), "c");
        let p3 = paginate(all.clone(), 12, 10, p2.next, 0).unwrap();
        assert_eq!(p3.items.len(), 1);
        assert!(p3.next.is_none());
        assert_eq!(
            paginate(all.clone(), 10, 0, None, 0).unwrap().items.len(),
            5
        );
        let old = ContinueToken {
            rv: 3,
            namespace: "ns".into(),
            name: "a".into(),
        };
        assert_eq!(paginate(all, 10, 2, Some(old), 5).unwrap_err().code, 410);
        assert_eq!(ContinueToken::decode("x/y").unwrap_err().code, 400);
    }
}
