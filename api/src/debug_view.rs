//! What the extender's read-only debug endpoints answer (`GET /debug/v1/nodes`,
//! `GET /debug/v1/why/{namespace}/{pod}`), shared by the extender that writes
//! them and `kubectl lvmpin` that reads them, so both agree on one shape.
//!
//! Only names, sizes, nodes, times and verdicts: never object contents,
//! tokens or anything else a viewer of LvmNodes could not already read.

use serde::{Deserialize, Serialize};

/// The path prefix of the endpoints.
pub const PREFIX: &str = "/debug/v1";

/// The permission a caller needs, checked with a SubjectAccessReview: the
/// views show what LvmNode objects already tell, plus the extender's promises.
pub const REQUIRED_VERB: &str = "get";
pub const REQUIRED_GROUP: &str = "lvmpin.io";
pub const REQUIRED_RESOURCE: &str = "lvmnodes";

/// `GET /debug/v1/nodes`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodesView {
    pub nodes: Vec<NodeView>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub name: String,
    /// A Node object of this name exists.
    pub known: bool,
    /// Ready and not cordoned.
    pub up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The agent's last report time (RFC 3339) as the extender read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_report: Option<String>,
    /// Set when the last report is older than `--agent-silence`: the node
    /// takes no new claims. The value is that report's time, or "never".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent_since: Option<String>,
    pub volume_groups: Vec<VgView>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VgView {
    pub name: String,
    pub size_bytes: u64,
    pub free_bytes: u64,
    /// Promised to claims whose LVs the report does not list yet.
    pub reserved_bytes: u64,
    pub volumes: u32,
    pub healthy: bool,
}

/// `GET /debug/v1/why/{namespace}/{pod}`: a dry run of the extender's filter.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WhyView {
    pub namespace: String,
    pub pod: String,
    /// The node the pod is bound to, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_node: Option<String>,
    /// The node a live reservation of the extender holds for this pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_on: Option<String>,
    /// What the filter made of the pod as a whole.
    pub outcome: Outcome,
    /// Set with `Outcome::Retry` or `Outcome::Refused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub claims: Vec<ClaimView>,
    /// One per node the dry run asked about (every Node the extender knows).
    pub nodes: Vec<NodeVerdict>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// The pod uses no claim of lvmpin: every node passes.
    #[default]
    Untouched,
    /// Some node passes.
    Placed,
    /// No node passes.
    NoNode,
    /// A claim can never be placed (bad size, class without VG).
    Refused,
    /// The extender's caches lack an object the pod needs; kube-scheduler retries.
    Retry,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimView {
    pub name: String,
    /// The VG it needs room in (unbound claims).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The node its volume already lives on (bound claims).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_to: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeVerdict {
    pub node: String,
    pub verdict: VerdictKind,
    /// The extender's reason, word for word, when the node fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum VerdictKind {
    /// In the filter's answer.
    #[default]
    Pass,
    /// Fits, but lost to the decisive choice or a zone ratio.
    NotChosen,
    /// Fails for a reason preemption cannot fix.
    Unresolvable,
    /// Fails until the extender's caches catch up.
    Retry,
}

/// Why a namespace or pod name from a URL is refused, or None when it is a
/// valid DNS-1123 label (namespaces) or subdomain (pods), as the API server
/// requires (k8s.io/apimachinery, pkg/util/validation/validation.go,
/// IsDNS1123Label and IsDNS1123Subdomain).
pub fn invalid_name(kind: NameKind, s: &str) -> Option<String> {
    let max = match kind {
        NameKind::Label => 63,
        NameKind::Subdomain => 253,
    };
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.len() > max {
        return Some(format!("must be at most {max} characters"));
    }
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !p.starts_with('-')
            && !p.ends_with('-')
    };
    let ok = match kind {
        NameKind::Label => part_ok(s),
        NameKind::Subdomain => s.split('.').all(part_ok),
    };
    (!ok).then(|| {
        let what = match kind {
            NameKind::Label => "a DNS-1123 label",
            NameKind::Subdomain => "a DNS-1123 subdomain",
        };
        format!(
            "must be {what}: lowercase letters, digits and '-'{}, starting and ending with a letter or digit",
            if kind == NameKind::Subdomain {
                ", dot-separated"
            } else {
                ""
            }
        )
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// Namespaces.
    Label,
    /// Pods and most other objects.
    Subdomain,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_table() {
        use NameKind::*;
        let long_label = "a".repeat(64);
        let long_sub = format!("{}.{}", "a".repeat(63), "b".repeat(190));
        let cases: &[(NameKind, &str, bool)] = &[
            (Label, "default", true),
            (Label, "kube-system", true),
            (Label, "a", true),
            (Label, "0abc", true),
            (Label, "", false),
            (Label, "Default", false),
            (Label, "-a", false),
            (Label, "a-", false),
            (Label, "a.b", false),
            (Label, "a_b", false),
            (Label, "../etc", false),
            (Label, "a%2Fb", false),
            (Label, "ä", false),
            (Label, &long_label, false),
            (Label, &long_label[..63], true),
            (Subdomain, "web-0", true),
            (Subdomain, "a.b-c.d", true),
            (Subdomain, "a..b", false),
            (Subdomain, ".a", false),
            (Subdomain, "a.", false),
            (Subdomain, "a/b", false),
            (Subdomain, "a b", false),
            (Subdomain, "a\nb", false),
            (Subdomain, &long_sub, false),
        ];
        for (kind, name, ok) in cases {
            assert_eq!(
                invalid_name(*kind, name).is_none(),
                *ok,
                "{kind:?} {name:?}"
            );
        }
    }

    #[test]
    fn views_round_trip_in_camel_case() {
        let v = WhyView {
            namespace: "ns".into(),
            pod: "p".into(),
            outcome: Outcome::NoNode,
            nodes: vec![NodeVerdict {
                node: "n1".into(),
                verdict: VerdictKind::NotChosen,
                reason: None,
            }],
            ..Default::default()
        };
        let s = serde_json::to_string(&v).unwrap();
        assert!(s.contains("\"outcome\":\"noNode\""), "{s}");
        assert!(s.contains("\"verdict\":\"notChosen\""), "{s}");
        assert_eq!(serde_json::from_str::<WhyView>(&s).unwrap(), v);
    }
}
