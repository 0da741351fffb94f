//! The one definition of how many bytes a claim asks for, and of the claims
//! lvmpin refuses whatever their size, shared by the extender (which reserves
//! space only for claims the agent will serve) and the agent (which
//! allocates it).

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

/// Access modes a node-local volume can honour.
pub const SUPPORTED_ACCESS_MODES: [&str; 2] = ["ReadWriteOnce", "ReadWriteOncePod"];

/// Why a claim can never be served, on any node.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Unsupported {
    #[error("claim lists no access modes; use ReadWriteOnce or ReadWriteOncePod")]
    NoAccessModes,
    #[error(
        "claim asks for access mode {0}; a node-local LVM volume supports only ReadWriteOnce and ReadWriteOncePod"
    )]
    AccessMode(String),
    #[error(
        "claim has a data source of kind {0}; lvmpin restores only a VolumeSnapshot (apiGroup snapshot.storage.k8s.io) or clones a PersistentVolumeClaim"
    )]
    DataSource(String),
    #[error(
        "claim's dataSourceRef names namespace {0}; lvmpin restores and clones only within the claim's namespace"
    )]
    DataSourceNamespace(String),
}

/// What a claim restores or clones (its `dataSourceRef`, else its
/// `dataSource`; the API server keeps the two equal when both are set).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClaimSource {
    /// A VolumeSnapshot of the claim's namespace.
    Snapshot(String),
    /// A PersistentVolumeClaim of the claim's namespace.
    Claim(String),
}

impl ClaimSource {
    pub fn name(&self) -> &str {
        match self {
            ClaimSource::Snapshot(n) | ClaimSource::Claim(n) => n,
        }
    }
}

impl std::fmt::Display for ClaimSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClaimSource::Snapshot(n) => write!(f, "VolumeSnapshot {n}"),
            ClaimSource::Claim(n) => write!(f, "PersistentVolumeClaim {n}"),
        }
    }
}

/// The claim's source, if it has one; an error for sources lvmpin cannot use.
pub fn claim_source(pvc: &PersistentVolumeClaim) -> Result<Option<ClaimSource>, Unsupported> {
    let Some(spec) = pvc.spec.as_ref() else {
        return Ok(None);
    };
    let (group, kind, name, namespace) = match (&spec.data_source_ref, &spec.data_source) {
        (Some(r), _) => (
            r.api_group.as_deref(),
            r.kind.as_str(),
            r.name.as_str(),
            r.namespace.as_deref(),
        ),
        (None, Some(r)) => (
            r.api_group.as_deref(),
            r.kind.as_str(),
            r.name.as_str(),
            None,
        ),
        (None, None) => return Ok(None),
    };
    if let Some(ns) = namespace.filter(|ns| Some(*ns) != pvc.metadata.namespace.as_deref()) {
        return Err(Unsupported::DataSourceNamespace(ns.to_string()));
    }
    match (group.unwrap_or_default(), kind) {
        (SNAPSHOT_GROUP, SNAPSHOT_KIND) => Ok(Some(ClaimSource::Snapshot(name.to_string()))),
        ("", "PersistentVolumeClaim") => Ok(Some(ClaimSource::Claim(name.to_string()))),
        ("", kind) => Err(Unsupported::DataSource(kind.to_string())),
        (group, kind) => Err(Unsupported::DataSource(format!("{kind}.{group}"))),
    }
}

impl Unsupported {
    /// The Event reason the agent records.
    pub fn reason(&self) -> &'static str {
        match self {
            Unsupported::NoAccessModes | Unsupported::AccessMode(_) => "UnsupportedAccessMode",
            Unsupported::DataSource(_) | Unsupported::DataSourceNamespace(_) => {
                "UnsupportedDataSource"
            }
        }
    }
}

/// The first reason the claim can never be served, if any.
pub fn unsupported(pvc: &PersistentVolumeClaim) -> Option<Unsupported> {
    let spec = pvc.spec.as_ref();
    let modes = spec
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default();
    if modes.is_empty() {
        return Some(Unsupported::NoAccessModes);
    }
    if let Some(bad) = modes
        .iter()
        .find(|m| !SUPPORTED_ACCESS_MODES.contains(&m.as_str()))
    {
        return Some(Unsupported::AccessMode(bad.clone()));
    }
    claim_source(pvc).err()
}
use thiserror::Error;

use crate::names::ANN_LOCAL_DISK_SIZE;
use crate::quantity::{QuantityError, parse_quantity_bytes};
use crate::snapshot::{SNAPSHOT_GROUP, SNAPSHOT_KIND};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClaimSizeError {
    #[error("claim has no spec.resources.requests.storage and no {ANN_LOCAL_DISK_SIZE} annotation")]
    NoSize,
    #[error("claim spec.resources.requests.storage is invalid: {0}")]
    BadRequest(QuantityError),
    #[error("annotation {ANN_LOCAL_DISK_SIZE} is invalid: {0}")]
    BadAnnotation(QuantityError),
    #[error(
        "annotation {ANN_LOCAL_DISK_SIZE} declares {declared} bytes, less than the requested {requested} bytes"
    )]
    AnnotationBelowRequest { declared: u64, requested: u64 },
    #[error("claim asks for 0 bytes")]
    Zero,
}

/// Bytes the claim needs on the local disk.
///
/// `spec.resources.requests.storage` by default; the `lvmpin.io/local-disk-size`
/// annotation, when present, declares the size instead and may not be smaller
/// than the request.
pub fn claim_size_bytes(pvc: &PersistentVolumeClaim) -> Result<u64, ClaimSizeError> {
    let requested = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| parse_quantity_bytes(&q.0).map_err(ClaimSizeError::BadRequest))
        .transpose()?;
    let declared = pvc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_LOCAL_DISK_SIZE))
        .map(|v| parse_quantity_bytes(v).map_err(ClaimSizeError::BadAnnotation))
        .transpose()?;
    let size = match (declared, requested) {
        (Some(declared), Some(requested)) if declared < requested => {
            return Err(ClaimSizeError::AnnotationBelowRequest {
                declared,
                requested,
            });
        }
        (Some(declared), _) => declared,
        (None, Some(requested)) => requested,
        (None, None) => return Err(ClaimSizeError::NoSize),
    };
    if size == 0 {
        return Err(ClaimSizeError::Zero);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, VolumeResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;

    fn pvc(request: Option<&str>, annotation: Option<&str>) -> PersistentVolumeClaim {
        let mut p = PersistentVolumeClaim::default();
        if let Some(a) = annotation {
            p.metadata.annotations = Some(BTreeMap::from([(
                ANN_LOCAL_DISK_SIZE.to_string(),
                a.to_string(),
            )]));
        }
        p.spec = Some(PersistentVolumeClaimSpec {
            resources: request.map(|r| VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), Quantity(r.into()))])),
                ..Default::default()
            }),
            ..Default::default()
        });
        p
    }

    #[test]
    fn sources() {
        use k8s_openapi::api::core::v1::{TypedLocalObjectReference, TypedObjectReference};
        let with = |source: Option<(&str, &str)>, reference: Option<(&str, &str, Option<&str>)>| {
            let mut p = pvc(Some("1Gi"), None);
            p.metadata.namespace = Some("ns".into());
            let spec = p.spec.as_mut().unwrap();
            spec.data_source = source.map(|(group, kind)| TypedLocalObjectReference {
                api_group: Some(group.to_string()).filter(|g| !g.is_empty()),
                kind: kind.into(),
                name: "src".into(),
            });
            spec.data_source_ref = reference.map(|(group, kind, ns)| TypedObjectReference {
                api_group: Some(group.to_string()).filter(|g| !g.is_empty()),
                kind: kind.into(),
                name: "src".into(),
                namespace: ns.map(str::to_string),
            });
            claim_source(&p)
        };
        let snap = Ok(Some(ClaimSource::Snapshot("src".into())));
        let claim = Ok(Some(ClaimSource::Claim("src".into())));
        let cases = [
            ("none", with(None, None), Ok(None)),
            (
                "snapshot",
                with(Some((SNAPSHOT_GROUP, "VolumeSnapshot")), None),
                snap.clone(),
            ),
            (
                "claim",
                with(Some(("", "PersistentVolumeClaim")), None),
                claim.clone(),
            ),
            (
                "ref wins",
                with(
                    Some(("", "PersistentVolumeClaim")),
                    Some((SNAPSHOT_GROUP, "VolumeSnapshot", None)),
                ),
                snap.clone(),
            ),
            (
                "ref in own namespace",
                with(None, Some(("", "PersistentVolumeClaim", Some("ns")))),
                claim,
            ),
            (
                "snapshot without group",
                with(Some(("", "VolumeSnapshot")), None),
                Err(Unsupported::DataSource("VolumeSnapshot".into())),
            ),
            (
                "other kind",
                with(None, Some(("example.com", "Backup", None))),
                Err(Unsupported::DataSource("Backup.example.com".into())),
            ),
            (
                "other namespace",
                with(
                    None,
                    Some((SNAPSHOT_GROUP, "VolumeSnapshot", Some("other"))),
                ),
                Err(Unsupported::DataSourceNamespace("other".into())),
            ),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(claim_size_bytes(&pvc(Some("1Gi"), None)), Ok(1 << 30));
        assert_eq!(
            claim_size_bytes(&pvc(Some("1Gi"), Some("2Gi"))),
            Ok(2 << 30)
        );
        assert_eq!(claim_size_bytes(&pvc(None, Some("2Gi"))), Ok(2 << 30));
        assert_eq!(
            claim_size_bytes(&pvc(Some("1Gi"), Some("1Gi"))),
            Ok(1 << 30)
        );
        assert!(matches!(
            claim_size_bytes(&pvc(Some("2Gi"), Some("1Gi"))),
            Err(ClaimSizeError::AnnotationBelowRequest { .. })
        ));
        assert!(matches!(
            claim_size_bytes(&pvc(Some("1Gi"), Some("lots"))),
            Err(ClaimSizeError::BadAnnotation(_))
        ));
        assert_eq!(
            claim_size_bytes(&pvc(None, None)),
            Err(ClaimSizeError::NoSize)
        );
        assert_eq!(
            claim_size_bytes(&pvc(Some("0"), None)),
            Err(ClaimSizeError::Zero)
        );
    }
}
