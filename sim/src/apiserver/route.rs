//! Parsing of request paths into what they address, without touching the store.

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Version,
    Health,
    CoreVersions,
    Groups,
    Group(String),
    ResourceList {
        group: String,
        version: String,
    },
    Resource(ResourcePath),
    /// OpenAPI v2 and anything else under /openapi: not served.
    OpenApi,
    OpenApiV3Root,
    /// One group/version document, e.g. `api/v1`.
    OpenApiV3(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parses `path`; `is_namespaced(group, version, plural)` tells whether
/// `/namespaces/x/<plural>` is a namespaced collection or a namespace's subresource.
pub fn parse(path: &str, is_namespaced: impl Fn(&str, &str, &str) -> bool) -> Option<Route> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Some(Route::Version),
        ["healthz" | "livez" | "readyz", ..] => return Some(Route::Health),
        ["openapi", "v3"] => return Some(Route::OpenApiV3Root),
        ["openapi", "v3", rest @ ..] => return Some(Route::OpenApiV3(rest.join("/"))),
        ["openapi", ..] | ["swagger.json"] => return Some(Route::OpenApi),
        ["api"] => return Some(Route::CoreVersions),
        ["apis"] => return Some(Route::Groups),
        ["apis", g] => return Some(Route::Group(g.to_string())),
        ["api", v] => {
            return Some(Route::ResourceList {
                group: String::new(),
                version: v.to_string(),
            });
        }
        ["apis", g, v] => {
            return Some(Route::ResourceList {
                group: g.to_string(),
                version: v.to_string(),
            });
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] if is_namespaced(group, version, plural) => (
            Some(ns.to_string()),
            std::iter::once(*plural)
                .chain(tail.iter().copied())
                .collect::<Vec<_>>(),
        ),
        other => (None, other.to_vec()),
    };
    let (plural, name, sub) = match rest.as_slice() {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    Some(Route::Resource(ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        plural: plural.to_string(),
        namespace,
        name,
        subresource: sub,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(_: &str, _: &str, p: &str) -> bool {
        p == "pods" || p == "leases"
    }

    fn res(
        g: &str,
        p: &str,
        ns: Option<&str>,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> Option<Route> {
        Some(Route::Resource(ResourcePath {
            group: g.into(),
            version: "v1".into(),
            plural: p.into(),
            namespace: ns.map(Into::into),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        }))
    }

    #[test]
    fn paths() {
        assert_eq!(parse("/api/v1/pods", ns), res("", "pods", None, None, None));
        assert_eq!(
            parse("/api/v1/namespaces/a/pods", ns),
            res("", "pods", Some("a"), None, None)
        );
        assert_eq!(
            parse("/api/v1/namespaces/a/pods/p/binding", ns),
            res("", "pods", Some("a"), Some("p"), Some("binding"))
        );
        assert_eq!(
            parse("/api/v1/namespaces/a", ns),
            res("", "namespaces", None, Some("a"), None)
        );
        assert_eq!(
            parse("/api/v1/namespaces/a/status", ns),
            res("", "namespaces", None, Some("a"), Some("status"))
        );
        assert_eq!(
            parse("/apis/coordination.k8s.io/v1/namespaces/x/leases/l", ns),
            res("coordination.k8s.io", "leases", Some("x"), Some("l"), None)
        );
        assert_eq!(
            parse("/apis/storage.k8s.io/v1", ns),
            Some(Route::ResourceList {
                group: "storage.k8s.io".into(),
                version: "v1".into()
            })
        );
        assert_eq!(parse("/version", ns), Some(Route::Version));
        assert_eq!(parse("/openapi/v2", ns), Some(Route::OpenApi));
        assert_eq!(parse("/openapi/v3", ns), Some(Route::OpenApiV3Root));
        assert_eq!(
            parse("/openapi/v3/apis/lvmpin.io/v1alpha1", ns),
            Some(Route::OpenApiV3("apis/lvmpin.io/v1alpha1".into()))
        );
        assert_eq!(parse("/api/v1/pods/a/b/c", ns), None);
        assert_eq!(parse("/nope", ns), None);
    }
}
