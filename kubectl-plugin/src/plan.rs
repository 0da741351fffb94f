//! What each command requests, decided before any call: inputs are checked
//! here so that nothing hostile reaches a URL.

use lvmpin_api::debug_view::{NameKind, PREFIX, invalid_name};

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Nodes,
    Why {
        namespace: String,
        pod: String,
    },
    Volumes {
        /// None: every namespace.
        namespace: Option<String>,
        node: Option<String>,
    },
}

/// One call to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    LvmNodes,
    Claims {
        namespace: Option<String>,
    },
    PersistentVolumes,
    StorageClasses,
    Pod {
        namespace: String,
        name: String,
    },
    PodEvents {
        namespace: String,
        name: String,
    },
    /// A path of the extender's debug endpoints.
    Extender(String),
}

fn check(what: &'static str, kind: NameKind, value: &str) -> Result<()> {
    match invalid_name(kind, value) {
        None => Ok(()),
        Some(why) => Err(Error::InvalidName {
            what,
            value: lvmpin_api::text::cut(value, 80),
            why,
        }),
    }
}

/// The calls `cmd` needs; `extender`: whether an extender URL is known
/// (`nodes` then adds the reserved bytes; `why` cannot do without it).
pub fn plan(cmd: &Command, extender: bool) -> Result<Vec<Request>> {
    match cmd {
        Command::Nodes => {
            let mut out = vec![Request::LvmNodes];
            if extender {
                out.push(Request::Extender(format!("{PREFIX}/nodes")));
            }
            Ok(out)
        }
        Command::Why { namespace, pod } => {
            check("namespace", NameKind::Label, namespace)?;
            check("pod name", NameKind::Subdomain, pod)?;
            if !extender {
                return Err(Error::NoExtender);
            }
            Ok(vec![
                Request::Pod {
                    namespace: namespace.clone(),
                    name: pod.clone(),
                },
                Request::Extender(format!("{PREFIX}/why/{namespace}/{pod}")),
                Request::PodEvents {
                    namespace: namespace.clone(),
                    name: pod.clone(),
                },
            ])
        }
        Command::Volumes { namespace, node } => {
            if let Some(ns) = namespace {
                check("namespace", NameKind::Label, ns)?;
            }
            if let Some(n) = node {
                check("node name", NameKind::Subdomain, n)?;
            }
            Ok(vec![
                Request::Claims {
                    namespace: namespace.clone(),
                },
                Request::PersistentVolumes,
                Request::StorageClasses,
                Request::LvmNodes,
            ])
        }
    }
}

/// The extender's base URL, without a trailing slash. Only plain HTTP: the
/// documented way in is a `kubectl port-forward` to loopback.
pub fn extender_base(url: &str) -> Result<String> {
    let bad = |why: &str| Error::ExtenderUrl {
        url: lvmpin_api::text::cut(url, 200),
        why: why.to_string(),
    };
    let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(bad(
                "https is not supported; port-forward the Service and use http://127.0.0.1:<port>",
            ));
        }
        _ => return Err(bad("must start with http://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if uri.query().is_some() {
        return Err(bad("must not have a query"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(ns: &str, pod: &str) -> Command {
        Command::Why {
            namespace: ns.into(),
            pod: pod.into(),
        }
    }

    #[test]
    fn plan_table() {
        let ev = |ns: &str, p: &str| Request::PodEvents {
            namespace: ns.into(),
            name: p.into(),
        };
        let pod = |ns: &str, p: &str| Request::Pod {
            namespace: ns.into(),
            name: p.into(),
        };
        let ok: Vec<(Command, bool, Vec<Request>)> = vec![
            (Command::Nodes, false, vec![Request::LvmNodes]),
            (
                Command::Nodes,
                true,
                vec![
                    Request::LvmNodes,
                    Request::Extender("/debug/v1/nodes".into()),
                ],
            ),
            (
                why("default", "web-0"),
                true,
                vec![
                    pod("default", "web-0"),
                    Request::Extender("/debug/v1/why/default/web-0".into()),
                    ev("default", "web-0"),
                ],
            ),
            (
                Command::Volumes {
                    namespace: None,
                    node: Some("node-1".into()),
                },
                false,
                vec![
                    Request::Claims { namespace: None },
                    Request::PersistentVolumes,
                    Request::StorageClasses,
                    Request::LvmNodes,
                ],
            ),
        ];
        for (cmd, ext, want) in ok {
            assert_eq!(plan(&cmd, ext).unwrap(), want, "{cmd:?}");
        }
        let bad: Vec<(Command, bool, &str)> = vec![
            (why("default", "web-0"), false, "needs the extender"),
            (why("../x", "p"), true, "namespace"),
            (why("ns", "a/b"), true, "pod name"),
            (why("ns", "p?x=1"), true, "pod name"),
            (why("ns", ""), true, "pod name"),
            (why("NS", "p"), true, "namespace"),
            (why(&"n".repeat(64), "p"), true, "namespace"),
            (
                Command::Volumes {
                    namespace: Some("a b".into()),
                    node: None,
                },
                true,
                "namespace",
            ),
            (
                Command::Volumes {
                    namespace: None,
                    node: Some("n/../x".into()),
                },
                true,
                "node name",
            ),
        ];
        for (cmd, ext, want) in bad {
            let e = plan(&cmd, ext).unwrap_err().to_string();
            assert!(e.contains(want), "{cmd:?}: {e}");
        }
    }

    #[test]
    fn long_bad_names_are_cut_in_errors() {
        let e = plan(&why("ns", &"X".repeat(10_000)), true)
            .unwrap_err()
            .to_string();
        assert!(e.len() < 400, "{}", e.len());
    }

    #[test]
    fn extender_url_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("http://127.0.0.1:8080", Some("http://127.0.0.1:8080")),
            ("http://127.0.0.1:8080/", Some("http://127.0.0.1:8080")),
            (
                "http://ext.lvmpin-system.svc:8080",
                Some("http://ext.lvmpin-system.svc:8080"),
            ),
            ("https://127.0.0.1:8080", None),
            ("127.0.0.1:8080", None),
            ("ftp://x", None),
            ("http://x/?a=b", None),
            ("", None),
            ("http://", None),
        ];
        for (url, want) in cases {
            assert_eq!(extender_base(url).ok().as_deref(), *want, "{url}");
        }
    }
}
