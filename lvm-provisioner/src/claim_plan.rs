//! What the agent should do for a claim that has no volume yet. Pure: the
//! inputs are the claim, its class and this node's name.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use lvmpin_api::names::{
    ANN_BETA_STORAGE_CLASS, ANN_SELECTED_NODE, API_GROUP, DRIVER_NAME, NODE_LOSS_POLICY,
    PARAM_FSTYPE, PARAM_THIN_DATA_LIMIT, PARAM_THIN_METADATA_LIMIT, PARAM_THIN_OVERPROVISION_RATIO,
    PARAM_THIN_POOL, PARAM_VOLUME_GROUP, volume_name_for_claim,
};
use lvmpin_api::thin::{ThinLimits, limits_from_params};

/// Filesystem used when the class does not name one.
pub const DEFAULT_FSTYPE: &str = "ext4";
/// Filesystems the CSI node service can make and grow.
pub const SUPPORTED_FSTYPES: [&str; 2] = ["ext4", "xfs"];
/// Every `lvmpin.io/*` StorageClass parameter (docs/configuration.md).
pub const KNOWN_PARAMS: [&str; 6] = [
    PARAM_VOLUME_GROUP,
    PARAM_THIN_POOL,
    PARAM_THIN_OVERPROVISION_RATIO,
    PARAM_THIN_DATA_LIMIT,
    PARAM_THIN_METADATA_LIMIT,
    NODE_LOSS_POLICY,
];

/// The first parameter of an lvmpin class that the agent cannot honour, as a
/// message naming the key and value: an unknown `lvmpin.io/*` key (a typo
/// would otherwise silently give a default volume) or a filesystem the node
/// service cannot make (which would otherwise fail only at stage). Keys of
/// other prefixes belong to Kubernetes or other tools and are left alone.
pub fn check_class_params(class: &StorageClass) -> Result<(), String> {
    let name = class.metadata.name.as_deref().unwrap_or_default();
    let prefix = format!("{API_GROUP}/");
    for (key, value) in class.parameters.iter().flatten() {
        if key.starts_with(&prefix) && !KNOWN_PARAMS.contains(&key.as_str()) {
            return Err(format!(
                "storage class {name} has unknown parameter {key}={value:?}; known lvmpin parameters: {}",
                KNOWN_PARAMS.join(", ")
            ));
        }
        if key == PARAM_FSTYPE && !value.is_empty() && !SUPPORTED_FSTYPES.contains(&value.as_str())
        {
            return Err(format!(
                "storage class {name} has unsupported {key}={value:?}; supported: {} (empty: {DEFAULT_FSTYPE})",
                SUPPORTED_FSTYPES.join(", ")
            ));
        }
    }
    thin_limits(class).map(|_| ())
}

/// The class's thin limits (None for a linear class), or why they are bad.
pub fn thin_limits(class: &StorageClass) -> Result<Option<ThinLimits>, String> {
    let name = class.metadata.name.as_deref().unwrap_or_default();
    limits_from_params(class.parameters.as_ref())
        .map_err(|e| format!("storage class {name} has a bad thin parameter: {e}"))
}

/// Modes a node-local volume can honour: one node at a time.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionSpec {
    pub vg: String,
    pub thin_pool: Option<String>,
    /// The class's thin limits; Some exactly when `thin_pool` is.
    pub thin_limits: Option<ThinLimits>,
    /// LV name and PV name alike.
    pub volume_name: String,
    pub size_bytes: u64,
    pub fs_type: String,
    pub claim_namespace: String,
    pub claim_name: String,
    pub claim_uid: String,
    /// The snapshot or claim a restore or clone is made from (thin only).
    pub source: Option<lvmpin_api::ClaimSource>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimDecision {
    /// Not ours, not for this node, or not ready for us.
    Ignore(&'static str),
    /// Ours and for this node, but its class is not in the cache yet.
    WaitForClass(String),
    Provision(ProvisionSpec),
    /// Ours but impossible anywhere: tell the user, create nothing, and keep
    /// selected-node (another node would refuse it just the same).
    Refuse {
        reason: &'static str,
        message: String,
    },
}

/// The class a claim names; the beta annotation wins over the field, as in
/// the PV controller.
pub fn claim_class_name(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_BETA_STORAGE_CLASS))
        .map(String::as_str)
        .or_else(|| pvc.spec.as_ref()?.storage_class_name.as_deref())
        .filter(|s| !s.is_empty())
}

/// `pvc/<namespace>/<name>`: the claim in logs and the key of its backoff.
pub fn claim_key(pvc: &PersistentVolumeClaim) -> String {
    format!(
        "pvc/{}/{}",
        pvc.metadata.namespace.as_deref().unwrap_or_default(),
        pvc.metadata.name.as_deref().unwrap_or_default()
    )
}

pub fn selected_node(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.metadata
        .annotations
        .as_ref()?
        .get(ANN_SELECTED_NODE)
        .map(String::as_str)
}

pub fn is_our_class(class: &StorageClass) -> bool {
    class.provisioner == DRIVER_NAME
}

pub fn class_param<'a>(class: &'a StorageClass, key: &str) -> Option<&'a str> {
    class
        .parameters
        .as_ref()?
        .get(key)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

pub fn decide(
    pvc: &PersistentVolumeClaim,
    class: Option<&StorageClass>,
    node: &str,
) -> ClaimDecision {
    let spec = pvc.spec.as_ref();
    if spec
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|v| !v.is_empty())
    {
        return ClaimDecision::Ignore("claim already has a volume");
    }
    if pvc.metadata.deletion_timestamp.is_some() {
        return ClaimDecision::Ignore("claim is being deleted");
    }
    // Before the scheduler's PreBind writes selected-node we must not touch
    // the claim at all (kube-scheduler
    // `volumebinding` PreBind owns that write; see docs/architecture.md).
    if selected_node(pvc) != Some(node) {
        return ClaimDecision::Ignore("claim is not selected for this node");
    }
    let Some(class_name) = claim_class_name(pvc) else {
        return ClaimDecision::Ignore("claim names no storage class");
    };
    let Some(class) = class else {
        return ClaimDecision::WaitForClass(class_name.to_string());
    };
    if !is_our_class(class) {
        return ClaimDecision::Ignore("class belongs to another provisioner");
    }
    let claim = format!(
        "{}/{}",
        pvc.metadata.namespace.as_deref().unwrap_or_default(),
        pvc.metadata.name.as_deref().unwrap_or_default()
    );
    let Some(uid) = pvc.metadata.uid.as_deref().filter(|u| !u.is_empty()) else {
        return ClaimDecision::Ignore("claim has no uid yet");
    };

    if let Some(u) = lvmpin_api::unsupported(pvc) {
        return ClaimDecision::Refuse {
            reason: u.reason(),
            message: format!("claim {claim}: {u}"),
        };
    }
    if let Err(message) = check_class_params(class) {
        return ClaimDecision::Refuse {
            reason: "InvalidStorageClass",
            message,
        };
    }
    // Checked just above with the other parameters.
    let thin_limits = thin_limits(class).ok().flatten();
    let Some(vg) = class_param(class, PARAM_VOLUME_GROUP) else {
        return ClaimDecision::Refuse {
            reason: "InvalidStorageClass",
            message: format!("storage class {class_name} has no {PARAM_VOLUME_GROUP} parameter"),
        };
    };
    let thin_pool = class_param(class, PARAM_THIN_POOL).map(str::to_string);
    // `unsupported` above refused every other kind of source.
    let source = lvmpin_api::claim_source(pvc).ok().flatten();
    if let Some(source) = &source
        && thin_pool.is_none()
    {
        return ClaimDecision::Refuse {
            reason: "UnsupportedDataSource",
            message: format!(
                "claim {claim} is made from {}, but StorageClass {class_name} is linear (no parameter {PARAM_THIN_POOL}); lvmpin restores and clones only thin volumes",
                crate::restore_plan::describe(
                    pvc.metadata.namespace.as_deref().unwrap_or_default(),
                    source
                )
            ),
        };
    }
    let size_bytes = match lvmpin_api::claim_size_bytes(pvc) {
        Ok(s) => s,
        Err(e) => {
            return ClaimDecision::Refuse {
                reason: "InvalidSize",
                message: format!("claim {claim}: {e}"),
            };
        }
    };
    ClaimDecision::Provision(ProvisionSpec {
        vg: vg.to_string(),
        thin_pool,
        thin_limits,
        volume_name: volume_name_for_claim(uid),
        size_bytes,
        fs_type: class_param(class, PARAM_FSTYPE)
            .unwrap_or(DEFAULT_FSTYPE)
            .to_string(),
        claim_namespace: pvc.metadata.namespace.clone().unwrap_or_default(),
        claim_name: pvc.metadata.name.clone().unwrap_or_default(),
        claim_uid: uid.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvmpin_testkit::{ClaimBuilder, class};

    fn provision(vg: &str, size: u64) -> ClaimDecision {
        ClaimDecision::Provision(spec(vg, size))
    }

    fn spec(vg: &str, size: u64) -> ProvisionSpec {
        ProvisionSpec {
            vg: vg.into(),
            thin_pool: None,
            thin_limits: None,
            volume_name: "pvc-u1".into(),
            size_bytes: size,
            fs_type: "ext4".into(),
            claim_namespace: "ns".into(),
            claim_name: "data".into(),
            claim_uid: "u1".into(),
            source: None,
        }
    }

    #[test]
    fn table() {
        let ours = class("fast", DRIVER_NAME, &[(PARAM_VOLUME_GROUP, "vg0")]);
        let foreign = class("other", "ebs.csi.aws.com", &[]);
        let thin = class(
            "fast",
            DRIVER_NAME,
            &[(PARAM_VOLUME_GROUP, "vg0"), (PARAM_THIN_POOL, "pool")],
        );
        let base = || {
            ClaimBuilder::new("ns", "data", "u1")
                .class("fast")
                .size("1Gi")
        };
        let cases: Vec<(
            &str,
            PersistentVolumeClaim,
            Option<&StorageClass>,
            ClaimDecision,
        )> = vec![
            (
                "selected here",
                base().selected_node("n1").build(),
                Some(&ours),
                provision("vg0", 1 << 30),
            ),
            (
                "no selected node",
                base().build(),
                Some(&ours),
                ClaimDecision::Ignore("claim is not selected for this node"),
            ),
            (
                "other node",
                base().selected_node("n2").build(),
                Some(&ours),
                ClaimDecision::Ignore("claim is not selected for this node"),
            ),
            (
                "already bound",
                base().selected_node("n1").volume("pv-x").build(),
                Some(&ours),
                ClaimDecision::Ignore("claim already has a volume"),
            ),
            (
                "foreign class",
                base().selected_node("n1").build(),
                Some(&foreign),
                ClaimDecision::Ignore("class belongs to another provisioner"),
            ),
            (
                "class unknown",
                base().selected_node("n1").build(),
                None,
                ClaimDecision::WaitForClass("fast".into()),
            ),
            (
                "restore in a thin class",
                base()
                    .selected_node("n1")
                    .data_source_in("snapshot.storage.k8s.io", "VolumeSnapshot", "s")
                    .build(),
                Some(&thin),
                ClaimDecision::Provision(ProvisionSpec {
                    thin_pool: Some("pool".into()),
                    thin_limits: Some(lvmpin_api::thin::ThinLimits::default()),
                    source: Some(lvmpin_api::ClaimSource::Snapshot("s".into())),
                    ..spec("vg0", 1 << 30)
                }),
            ),
            (
                "clone in a thin class",
                base()
                    .selected_node("n1")
                    .data_source("PersistentVolumeClaim", "src")
                    .build(),
                Some(&thin),
                ClaimDecision::Provision(ProvisionSpec {
                    thin_pool: Some("pool".into()),
                    thin_limits: Some(lvmpin_api::thin::ThinLimits::default()),
                    source: Some(lvmpin_api::ClaimSource::Claim("src".into())),
                    ..spec("vg0", 1 << 30)
                }),
            ),
            (
                "declared size wins",
                base().selected_node("n1").local_disk_size("2Gi").build(),
                Some(&ours),
                provision("vg0", 2 << 30),
            ),
        ];
        for (name, pvc, class, want) in cases {
            assert_eq!(decide(&pvc, class, "n1"), want, "{name}");
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        let ours = class("fast", DRIVER_NAME, &[(PARAM_VOLUME_GROUP, "vg0")]);
        let no_vg = class("fast", DRIVER_NAME, &[]);
        let base = || {
            ClaimBuilder::new("ns", "data", "u1")
                .class("fast")
                .size("1Gi")
                .selected_node("n1")
        };
        let cases = vec![
            (
                base().access_modes(&["ReadWriteMany"]).build(),
                &ours,
                "UnsupportedAccessMode",
                "ReadWriteMany",
            ),
            (
                base().access_modes(&[]).build(),
                &ours,
                "UnsupportedAccessMode",
                "no access modes",
            ),
            (
                base().local_disk_size("lots").build(),
                &ours,
                "InvalidSize",
                "lvmpin.io/local-disk-size",
            ),
            (
                base().build(),
                &no_vg,
                "InvalidStorageClass",
                PARAM_VOLUME_GROUP,
            ),
            (
                base()
                    .data_source_in("snapshot.storage.k8s.io", "VolumeSnapshot", "s")
                    .build(),
                &ours,
                "UnsupportedDataSource",
                "made from VolumeSnapshot ns/s, but StorageClass fast is linear",
            ),
            (
                base().data_source("Backup", "b").build(),
                &ours,
                "UnsupportedDataSource",
                "data source of kind Backup",
            ),
        ];
        for (pvc, class, want_reason, want_text) in cases {
            match decide(&pvc, Some(class), "n1") {
                ClaimDecision::Refuse { reason, message } => {
                    assert_eq!(reason, want_reason);
                    assert!(message.contains(want_text), "{message}");
                }
                other => panic!("expected refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn class_parameter_table() {
        type Case = (
            &'static str,
            Vec<(&'static str, &'static str)>,
            Option<&'static str>,
        );
        let cases: Vec<Case> = vec![
            ("volume group only", vec![(PARAM_VOLUME_GROUP, "vg0")], None),
            (
                "every known parameter",
                vec![
                    (PARAM_VOLUME_GROUP, "vg0"),
                    (PARAM_THIN_POOL, "pool"),
                    (PARAM_THIN_OVERPROVISION_RATIO, "2.5"),
                    (PARAM_THIN_DATA_LIMIT, "85"),
                    (PARAM_THIN_METADATA_LIMIT, "80"),
                    (NODE_LOSS_POLICY, "recreate"),
                    (PARAM_FSTYPE, "xfs"),
                ],
                None,
            ),
            (
                "bad overprovision ratio",
                vec![
                    (PARAM_VOLUME_GROUP, "vg0"),
                    (PARAM_THIN_POOL, "pool"),
                    (PARAM_THIN_OVERPROVISION_RATIO, "0"),
                ],
                Some("bad thin parameter: lvmpin.io/thin-overprovision-ratio=\"0\""),
            ),
            (
                "thin limit on a linear class",
                vec![(PARAM_VOLUME_GROUP, "vg0"), (PARAM_THIN_DATA_LIMIT, "80")],
                Some("applies only to a thin class"),
            ),
            ("ext4", vec![(PARAM_FSTYPE, "ext4")], None),
            (
                "empty fstype is the default",
                vec![(PARAM_FSTYPE, "")],
                None,
            ),
            (
                "other prefixes are not ours",
                vec![
                    ("csi.storage.k8s.io/provisioner-secret-name", "s"),
                    ("example.com/x", "y"),
                ],
                None,
            ),
            (
                "typo of thin-pool",
                vec![(PARAM_VOLUME_GROUP, "vg0"), ("lvmpin.io/thinpool", "pool")],
                Some("unknown parameter lvmpin.io/thinpool=\"pool\""),
            ),
            (
                "unknown lvmpin key",
                vec![("lvmpin.io/raid", "1")],
                Some("lvmpin.io/raid=\"1\""),
            ),
            (
                "btrfs",
                vec![(PARAM_FSTYPE, "btrfs")],
                Some("unsupported csi.storage.k8s.io/fstype=\"btrfs\""),
            ),
            (
                "fstype is case sensitive",
                vec![(PARAM_FSTYPE, "XFS")],
                Some("fstype=\"XFS\""),
            ),
        ];
        for (name, params, want) in cases {
            let sc = class("fast", DRIVER_NAME, &params);
            match (check_class_params(&sc), want) {
                (Ok(()), None) => {}
                (Err(message), Some(text)) => {
                    assert!(message.contains(text), "{name}: {message}");
                    assert!(message.contains("storage class fast"), "{name}: {message}");
                }
                (got, _) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn bad_class_parameters_refuse_the_claim() {
        let typo = class(
            "fast",
            DRIVER_NAME,
            &[(PARAM_VOLUME_GROUP, "vg0"), ("lvmpin.io/thin-poll", "p")],
        );
        let pvc = ClaimBuilder::new("ns", "data", "u1")
            .class("fast")
            .size("1Gi")
            .selected_node("n1")
            .build();
        let ClaimDecision::Refuse { reason, message } = decide(&pvc, Some(&typo), "n1") else {
            panic!("expected refusal");
        };
        assert_eq!(reason, "InvalidStorageClass");
        assert!(message.contains("lvmpin.io/thin-poll"), "{message}");
    }

    #[test]
    fn class_params_and_beta_annotation() {
        let thin = class(
            "thin",
            DRIVER_NAME,
            &[
                (PARAM_VOLUME_GROUP, "vg1"),
                (PARAM_THIN_POOL, "pool"),
                (PARAM_FSTYPE, "xfs"),
            ],
        );
        let pvc = ClaimBuilder::new("ns", "data", "u1")
            .beta_class("thin")
            .class("ignored")
            .size("1Gi")
            .selected_node("n1")
            .access_modes(&["ReadWriteOncePod"])
            .build();
        assert_eq!(claim_class_name(&pvc), Some("thin"));
        let ClaimDecision::Provision(spec) = decide(&pvc, Some(&thin), "n1") else {
            panic!("expected provision");
        };
        assert_eq!(spec.thin_pool.as_deref(), Some("pool"));
        assert_eq!(spec.fs_type, "xfs");
        assert_eq!(spec.vg, "vg1");
    }
}
