//! The extender's own test objects (facts), shared by unit tests,
//! integration tests and the benchmark; compiled only for them (feature
//! `testutil`, which the crate's dev-dependency on itself turns on).

use lvmpin_testkit::ClaimBuilder;

use crate::facts::{ClaimFacts, ClassFacts, LvmFacts, NodeLvm, PodFacts, VgState, claim_facts};

/// A ReadWriteOnce claim in namespace `ns` of class `fast`, uid `uid-<name>`,
/// built with the one claim builder of lvmpin-testkit.
pub fn claim_named(name: &str) -> ClaimBuilder {
    ClaimBuilder::new("ns", name, &format!("uid-{name}")).class("fast")
}

/// What the extender keeps of a built claim.
pub trait IntoFacts {
    fn facts(self) -> ClaimFacts;
}

impl IntoFacts for ClaimBuilder {
    fn facts(self) -> ClaimFacts {
        match claim_facts(&self.build()) {
            Some(c) => c,
            None => unreachable!("the builder always sets namespace and name"),
        }
    }
}

pub fn class(name: &str, vg: Option<&str>) -> ClassFacts {
    ClassFacts::new(name.into(), true, vg.map(Into::into), None, Ok(None))
}

/// A thin class of ours on `vg/pool` with these limits.
pub fn thin_class(
    name: &str,
    vg: &str,
    pool: &str,
    limits: lvmpin_api::thin::ThinLimits,
) -> ClassFacts {
    ClassFacts::new(
        name.into(),
        true,
        Some(vg.into()),
        Some(pool.into()),
        Ok(Some(limits)),
    )
}

/// A pod `p` (uid `pod-uid`) in namespace `ns` mounting the named claims.
pub fn pod_with(claims: &[&str]) -> PodFacts {
    PodFacts {
        uid: "pod-uid".into(),
        namespace: "ns".into(),
        name: "p".into(),
        node: None,
        owner: None,
        ordinal: None,
        claims: claims.iter().map(|c| c.to_string()).collect(),
    }
}

/// A node report with one healthy VG.
pub fn lvm_node(node: &str, vg: &str, size: u64, free: u64, extent: u64) -> LvmFacts {
    LvmFacts {
        node: node.into(),
        lvm: Some(NodeLvm {
            vgs: vec![VgState {
                name: vg.into(),
                size,
                free,
                extent,
                healthy: true,
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

/// A node report whose VG `vg` is filled by one thin pool `pool` of
/// `pool_size` bytes (no VG free space), with these use and promises.
pub fn thin_node(
    node: &str,
    vg: &str,
    pool: &str,
    pool_size: u64,
    data_percent: f64,
    promised: u64,
) -> LvmFacts {
    let mut l = lvm_node(node, vg, pool_size, 0, 4 << 20);
    if let Some(lvm) = l.lvm.as_mut() {
        lvm.vgs[0].thin_pools = vec![crate::facts::PoolState {
            name: pool.into(),
            usage: Some(lvmpin_api::thin::PoolUsage {
                size_bytes: pool_size,
                data_percent,
                metadata_percent: 1.0,
                promised_bytes: promised,
            }),
        }];
    }
    l
}

/// A Ready, uncordoned node labelled with `zone` under the standard key.
pub fn zoned_node(name: &str, zone: &str) -> crate::facts::NodeFacts {
    crate::facts::NodeFacts {
        name: name.into(),
        zone: Some(zone.into()),
        labels: [(lvmpin_api::names::ZONE_LABEL.to_string(), zone.to_string())].into(),
        up: true,
    }
}

/// StatefulSet `name` (uid `uid-<name>`) in namespace `ns` with claim
/// template `data`, read through the same code as a watched object.
pub fn stateful_set(
    name: &str,
    replicas: i32,
    annotations: &[(&str, &str)],
    labels: &[(&str, &str)],
) -> crate::facts::StsFacts {
    let to_map = |pairs: &[(&str, &str)]| -> serde_json::Map<String, serde_json::Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect()
    };
    let obj = serde_json::json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
            "annotations": to_map(annotations), "labels": to_map(labels)},
        "spec": {"replicas": replicas, "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": []}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}}]}
    });
    match serde_json::from_value(obj)
        .ok()
        .as_ref()
        .and_then(crate::facts::sts_facts)
    {
        Some(s) => s,
        None => unreachable!("the object above is a valid StatefulSet"),
    }
}

/// Pod `<set>-<ordinal>` of StatefulSet `set` (uid `pod-<set>-<ordinal>`),
/// unbound, mounting claim `data-<set>-<ordinal>`.
pub fn sts_pod(set: &str, ordinal: u32) -> PodFacts {
    PodFacts {
        uid: format!("pod-{set}-{ordinal}"),
        namespace: "ns".into(),
        name: format!("{set}-{ordinal}"),
        node: None,
        owner: Some(format!("uid-{set}")),
        ordinal: Some(ordinal),
        claims: vec![format!("data-{set}-{ordinal}")],
    }
}
