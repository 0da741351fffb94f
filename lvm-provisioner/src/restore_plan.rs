//! Restores and clones: which LV a new thin volume is made from, and whether
//! this node can make it. Pure: the inputs are the objects read from the
//! API and what this node's scan found.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use lvmpin_api::names::DRIVER_NAME;
use lvmpin_api::snapshot::{VolumeSnapshot, VolumeSnapshotContent};
use lvmpin_api::{ClaimSource, VolumeId};

/// The LV a restore starts from: a VolumeSnapshot's bound content, ours and
/// ready, names it in `status.snapshotHandle`.
pub fn snapshot_volume(
    what: &str,
    snapshot: Option<&VolumeSnapshot>,
    content: Option<&VolumeSnapshotContent>,
) -> Result<VolumeId, String> {
    let Some(snapshot) = snapshot else {
        return Err(format!("{what} does not exist"));
    };
    let bound = snapshot
        .status
        .as_ref()
        .and_then(|s| s.bound_volume_snapshot_content_name.as_deref());
    let (Some(_), Some(content)) = (bound, content) else {
        return Err(format!(
            "{what} is not bound to a VolumeSnapshotContent yet"
        ));
    };
    if content.spec.driver != DRIVER_NAME {
        return Err(format!(
            "{what} was taken by driver {}, not {DRIVER_NAME}",
            content.spec.driver
        ));
    }
    if !content.is_ready() {
        return Err(format!("{what} is not ready to use yet"));
    }
    let handle = content
        .status
        .as_ref()
        .and_then(|s| s.snapshot_handle.as_deref())
        .unwrap_or_default();
    handle
        .parse()
        .map_err(|_| format!("{what} has snapshot handle {handle:?}, not <vg>/<lv>"))
}

/// The LV a clone starts from: the source claim's volume, of the same class.
pub fn claim_volume(
    what: &str,
    class: &str,
    source: Option<&PersistentVolumeClaim>,
    pv: Option<&PersistentVolume>,
) -> Result<VolumeId, String> {
    let Some(source) = source else {
        return Err(format!("{what} does not exist"));
    };
    let source_class = crate::claim_plan::claim_class_name(source);
    if source_class != Some(class) {
        return Err(format!(
            "{what} has StorageClass {}; a clone must use the same StorageClass ({class})",
            source_class.unwrap_or("(none)")
        ));
    }
    let Some(pv) = pv else {
        return Err(format!("{what} is not bound yet"));
    };
    let csi = pv.spec.as_ref().and_then(|s| s.csi.as_ref());
    match csi {
        Some(csi) if csi.driver == DRIVER_NAME => csi.volume_handle.parse().map_err(|_| {
            format!(
                "{what} has volume handle {:?}, not <vg>/<lv>",
                csi.volume_handle
            )
        }),
        _ => Err(format!("{what} is not an lvmpin volume")),
    }
}

/// What this node's scan says of the source LV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub size_bytes: u64,
    /// In a thin pool (a thin snapshot is one too).
    pub thin: bool,
}

/// Whether a claim of `size_bytes` in `vg` can be made here from `source`.
pub fn check_restore(
    what: &str,
    node: &str,
    vg: &str,
    size_bytes: u64,
    source: &VolumeId,
    found: Option<Found>,
) -> Result<(), String> {
    if source.vg != vg {
        return Err(format!(
            "{what} is in volume group {}, but the claim's StorageClass uses {vg}; a thin volume is made from a source in its own volume group",
            source.vg
        ));
    }
    let Some(found) = found else {
        return Err(format!(
            "{what} ({source}) is not on node {node}: a restore or clone can only be made on its source's node"
        ));
    };
    if !found.thin {
        return Err(format!("{what} ({source}) is not a thin volume"));
    }
    if size_bytes < found.size_bytes {
        return Err(format!(
            "claim asks for {size_bytes} bytes, less than the {} bytes of {what}; a restore or clone may not be smaller than its source",
            found.size_bytes
        ));
    }
    Ok(())
}

/// `VolumeSnapshot ns/name` or `PersistentVolumeClaim ns/name`.
pub fn describe(namespace: &str, source: &ClaimSource) -> String {
    let kind = match source {
        ClaimSource::Snapshot(_) => "VolumeSnapshot",
        ClaimSource::Claim(_) => "PersistentVolumeClaim",
    };
    format!("{kind} {namespace}/{}", source.name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{CSIPersistentVolumeSource, PersistentVolumeSpec};
    use lvmpin_api::snapshot::{
        VolumeSnapshotContentSpec, VolumeSnapshotContentStatus, VolumeSnapshotSpec,
        VolumeSnapshotStatus,
    };
    use lvmpin_testkit::ClaimBuilder;

    fn snap(bound: bool) -> VolumeSnapshot {
        let mut s = VolumeSnapshot::new("s", VolumeSnapshotSpec::default());
        s.status = Some(VolumeSnapshotStatus {
            bound_volume_snapshot_content_name: bound.then(|| "c".into()),
            ..Default::default()
        });
        s
    }

    fn content(driver: &str, ready: bool, handle: &str) -> VolumeSnapshotContent {
        let mut c = VolumeSnapshotContent::new(
            "c",
            VolumeSnapshotContentSpec {
                driver: driver.into(),
                ..Default::default()
            },
        );
        c.status = Some(VolumeSnapshotContentStatus {
            ready_to_use: Some(ready),
            snapshot_handle: Some(handle.into()),
            ..Default::default()
        });
        c
    }

    #[test]
    fn snapshot_sources() {
        let ok = content(DRIVER_NAME, true, "vg0/snapshot-1");
        let w = "VolumeSnapshot ns/s";
        type Case = (
            &'static str,
            Option<VolumeSnapshot>,
            Option<VolumeSnapshotContent>,
            Result<VolumeId, &'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "ready",
                Some(snap(true)),
                Some(ok.clone()),
                Ok(VolumeId::new("vg0", "snapshot-1")),
            ),
            ("missing", None, None, Err("does not exist")),
            (
                "unbound",
                Some(snap(false)),
                Some(ok.clone()),
                Err("not bound"),
            ),
            ("no content", Some(snap(true)), None, Err("not bound")),
            (
                "other driver",
                Some(snap(true)),
                Some(content("x.io", true, "a/b")),
                Err("driver x.io"),
            ),
            (
                "not ready",
                Some(snap(true)),
                Some(content(DRIVER_NAME, false, "a/b")),
                Err("not ready"),
            ),
            (
                "bad handle",
                Some(snap(true)),
                Some(content(DRIVER_NAME, true, "ab")),
                Err("not <vg>/<lv>"),
            ),
        ];
        for (name, s, c, want) in cases {
            match (snapshot_volume(w, s.as_ref(), c.as_ref()), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{name}"),
                (Err(e), Err(want)) => assert!(e.contains(want) && e.contains(w), "{name}: {e}"),
                (got, want) => panic!("{name}: {got:?} vs {want:?}"),
            }
        }
    }

    fn pv(driver: &str) -> PersistentVolume {
        PersistentVolume {
            spec: Some(PersistentVolumeSpec {
                csi: Some(CSIPersistentVolumeSource {
                    driver: driver.into(),
                    volume_handle: "vg0/pvc-src".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn claim_sources() {
        let src = ClaimBuilder::new("ns", "src", "u").class("thin").build();
        let w = "PersistentVolumeClaim ns/src";
        assert_eq!(
            claim_volume(w, "thin", Some(&src), Some(&pv(DRIVER_NAME))),
            Ok(VolumeId::new("vg0", "pvc-src"))
        );
        let err = |r: Result<VolumeId, String>| r.unwrap_err();
        assert!(
            err(claim_volume(w, "other", Some(&src), Some(&pv(DRIVER_NAME))))
                .contains("same StorageClass (other)")
        );
        assert!(err(claim_volume(w, "thin", Some(&src), None)).contains("not bound yet"));
        assert!(err(claim_volume(w, "thin", None, None)).contains("does not exist"));
        assert!(
            err(claim_volume(w, "thin", Some(&src), Some(&pv("x.io"))))
                .contains("not an lvmpin volume")
        );
    }

    #[test]
    fn restore_checks() {
        let id = VolumeId::new("vg0", "snapshot-1");
        let thin = |size| {
            Some(Found {
                size_bytes: size,
                thin: true,
            })
        };
        let cases = [
            ("same size", "vg0", 10, thin(10), Ok(())),
            ("larger: grown", "vg0", 20, thin(10), Ok(())),
            (
                "smaller",
                "vg0",
                5,
                thin(10),
                Err("may not be smaller than its source"),
            ),
            (
                "other vg",
                "vg1",
                10,
                thin(10),
                Err("is in volume group vg0"),
            ),
            ("elsewhere", "vg0", 10, None, Err("is not on node n1")),
            (
                "linear",
                "vg0",
                10,
                Some(Found {
                    size_bytes: 10,
                    thin: false,
                }),
                Err("not a thin volume"),
            ),
        ];
        for (name, vg, size, found, want) in cases {
            match (
                check_restore("VolumeSnapshot ns/s", "n1", vg, size, &id, found),
                want,
            ) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(want)) => assert!(e.contains(want), "{name}: {e}"),
                (got, want) => panic!("{name}: {got:?} vs {want:?}"),
            }
        }
    }
}
