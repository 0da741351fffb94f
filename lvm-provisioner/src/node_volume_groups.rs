//! Per-node volume groups: a Node annotation (named by
//! `--volume-groups-annotation`) replaces the `--volume-group` list for that
//! node's agent. An annotation rather than a label because label values
//! cannot hold the comma of a list. Read once when the agent starts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use kube::Api;

use crate::error::{Error, Result};

/// More VGs than any node has; bounds the work and the error message.
const MAX_VOLUME_GROUPS: usize = 64;

/// The VGs this node's agent manages: the annotation's comma-separated names
/// when the annotation is set, else `configured`. A set but malformed value is
/// an error rather than a silent fallback: the operator asked for other VGs.
pub fn volume_groups_for_node(
    configured: &[String],
    annotations: &BTreeMap<String, String>,
    key: &str,
) -> Result<Vec<String>> {
    let Some(value) = annotations.get(key) else {
        return Ok(configured.to_vec());
    };
    let bad = |why: String| {
        Error::Startup(format!(
            "node annotation {key}={}: {why}",
            lvmpin_api::text::cut(value, 200)
        ))
    };
    let names: Vec<String> = value.split(',').map(|n| n.trim().to_string()).collect();
    if names.len() > MAX_VOLUME_GROUPS {
        return Err(bad(format!("more than {MAX_VOLUME_GROUPS} volume groups")));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        lvmpin_lvm::validate_vg_name(&name).map_err(|e| bad(e.to_string()))?;
        if out.contains(&name) {
            return Err(bad(format!("volume group {name} is named twice")));
        }
        out.push(name);
    }
    Ok(out)
}

/// Reads this node's annotations and applies [`volume_groups_for_node`].
pub async fn resolve(
    client: kube::Client,
    node_name: &str,
    configured: &[String],
    key: &str,
) -> Result<Vec<String>> {
    let node = Api::<Node>::all(client).get(node_name).await?;
    let annotations = node.metadata.annotations.unwrap_or_default();
    volume_groups_for_node(configured, &annotations, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "lvmpin.io/volume-groups";

    #[test]
    fn the_annotation_replaces_the_flag_when_set() {
        let configured = vec!["lvmpin".to_string()];
        // (annotation value or none, expected VGs or the error's substring)
        let long = "v".repeat(128);
        let many = vec!["v"; 65].join(",");
        type Want = Result<Vec<&'static str>, &'static str>;
        let cases: Vec<(Option<&str>, Want)> = vec![
            (None, Ok(vec!["lvmpin"])),
            (Some("fast"), Ok(vec!["fast"])),
            (Some("fast,slow"), Ok(vec!["fast", "slow"])),
            (Some(" fast , slow "), Ok(vec!["fast", "slow"])),
            (Some(""), Err("empty")),
            (Some("fast,"), Err("empty")),
            (Some("fast,fast"), Err("named twice")),
            (Some("-rf"), Err("volume group")),
            (Some("a/b"), Err("volume group")),
            (Some(&long), Err("volume group")),
            (Some(&many), Err("more than 64")),
        ];
        for (value, want) in cases {
            let annotations: BTreeMap<String, String> = value
                .map(|v| (KEY.to_string(), v.to_string()))
                .into_iter()
                .chain([("other".to_string(), "x".to_string())])
                .collect();
            let got = volume_groups_for_node(&configured, &annotations, KEY);
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{value:?}"),
                (Err(e), Err(part)) => {
                    let text = e.to_string();
                    assert!(text.contains(part), "{value:?}: {text}");
                    assert!(text.contains(KEY), "{text}");
                    assert!(text.len() < 600, "unbounded message: {text}");
                }
                (got, want) => panic!("{value:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
