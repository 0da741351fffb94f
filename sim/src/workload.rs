//! Builders for the objects a simulated cluster needs: nodes, the lvmpin
//! StorageClass, claims (also from a VolumeSnapshot or another claim),
//! VolumeSnapshots, and StatefulSet-like sets of pods with their claims.
//!
//! There is no StatefulSet controller in the simulator, so a "StatefulSet" here
//! is what that controller would create: pods `<set>-<i>` and, per volume claim
//! template, claims `<template>-<set>-<i>`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{Container, PodTemplateSpec, VolumeMount};
use k8s_openapi::api::core::v1::{
    Node, NodeCondition, NodeSpec, NodeStatus, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Pod, PodSpec, TypedLocalObjectReference, Volume,
    VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use lvmpin_api::names::{
    ANN_LOCAL_DISK_SIZE, DRIVER_NAME, PARAM_FSTYPE, PARAM_VOLUME_GROUP, TOPOLOGY_KEY, ZONE_LABEL,
};
use lvmpin_api::snapshot::{VolumeSnapshot, VolumeSnapshotSource, VolumeSnapshotSpec};

/// [`node`] in `zone` (the well-known zone label).
pub fn zoned_node(name: &str, zone: &str) -> Node {
    let mut n = node(name);
    n.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(ZONE_LABEL.to_string(), zone.to_string());
    n
}

/// A Ready node labelled the way kubelet and our CSI registration would label it.
pub fn node(name: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/hostname".to_string(), name.to_string()),
                (TOPOLOGY_KEY.to_string(), name.to_string()),
            ])),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            // kube-scheduler's NodeResourcesFit admits no pod on a node
            // without allocatable pods; the simulator ignores these.
            capacity: Some(node_resources()),
            allocatable: Some(node_resources()),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                message: Some("simulated node".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn node_resources() -> BTreeMap<String, Quantity> {
    [("cpu", "64"), ("memory", "256Gi"), ("pods", "1000")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

/// The lvmpin StorageClass: WaitForFirstConsumer, reclaim Delete, one VG.
pub fn storage_class(name: &str, volume_group: &str) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        provisioner: DRIVER_NAME.to_string(),
        parameters: Some(BTreeMap::from([
            (PARAM_VOLUME_GROUP.to_string(), volume_group.to_string()),
            (PARAM_FSTYPE.to_string(), "ext4".to_string()),
        ])),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        allow_volume_expansion: Some(true),
        ..Default::default()
    }
}

/// [`claim`] restored from the VolumeSnapshot `snapshot`.
pub fn restore_claim(
    namespace: &str,
    name: &str,
    class: &str,
    size: &str,
    snapshot: &str,
) -> PersistentVolumeClaim {
    with_source(
        claim(namespace, name, class, size),
        Some("snapshot.storage.k8s.io"),
        "VolumeSnapshot",
        snapshot,
    )
}

/// [`claim`] cloned from the claim `source` of the same namespace.
pub fn clone_claim(
    namespace: &str,
    name: &str,
    class: &str,
    size: &str,
    source: &str,
) -> PersistentVolumeClaim {
    with_source(
        claim(namespace, name, class, size),
        None,
        "PersistentVolumeClaim",
        source,
    )
}

fn with_source(
    mut c: PersistentVolumeClaim,
    api_group: Option<&str>,
    kind: &str,
    name: &str,
) -> PersistentVolumeClaim {
    if let Some(spec) = c.spec.as_mut() {
        spec.data_source = Some(TypedLocalObjectReference {
            api_group: api_group.map(str::to_string),
            kind: kind.into(),
            name: name.into(),
        });
    }
    c
}

/// A VolumeSnapshot of the claim `source` with the snapshot class `class`.
pub fn volume_snapshot(name: &str, source: &str, class: &str) -> VolumeSnapshot {
    VolumeSnapshot::new(
        name,
        VolumeSnapshotSpec {
            source: VolumeSnapshotSource {
                persistent_volume_claim_name: Some(source.into()),
                volume_snapshot_content_name: None,
            },
            volume_snapshot_class_name: Some(class.into()),
        },
    )
}

/// A VolumeSnapshotClass of lvmpin's driver (no typed API for it here: the
/// agent never reads classes) and the resource to create it with.
pub fn volume_snapshot_class(name: &str, deletion_policy: &str) -> (DynamicObject, ApiResource) {
    let gvk = GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshotClass");
    let ar = ApiResource::from_gvk(&gvk);
    let mut class = DynamicObject::new(name, &ar);
    class.data = serde_json::json!({
        "driver": DRIVER_NAME,
        "deletionPolicy": deletion_policy,
    });
    (class, ar)
}

/// A claim of `size` (a quantity) in `class`.
pub fn claim(namespace: &str, name: &str, class: &str, size: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(class.to_string()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(size.to_string()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// Same claim with the `lvmpin.io/local-disk-size` annotation set to `value`.
pub fn with_local_disk_size(mut pvc: PersistentVolumeClaim, value: &str) -> PersistentVolumeClaim {
    pvc.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ANN_LOCAL_DISK_SIZE.to_string(), value.to_string());
    pvc
}

/// A pod mounting the named claims, for the default scheduler.
pub fn pod(namespace: &str, name: &str, claims: &[String]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.k8s.io/pause:3.10".into()),
                ..Default::default()
            }],
            volumes: Some(
                claims
                    .iter()
                    .map(|c| Volume {
                        name: c.clone(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: c.clone(),
                            read_only: None,
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

/// What a StatefulSet controller would create for `replicas` pods.
#[derive(Debug, Clone)]
pub struct StatefulSetLike {
    pub namespace: String,
    pub name: String,
    pub replicas: usize,
    pub class: String,
    /// (template name, size) per volume claim template.
    pub templates: Vec<(String, String)>,
}

impl StatefulSetLike {
    pub fn pod_name(&self, ordinal: usize) -> String {
        format!("{}-{ordinal}", self.name)
    }

    pub fn claim_names(&self, ordinal: usize) -> Vec<String> {
        self.templates
            .iter()
            .map(|(t, _)| format!("{t}-{}", self.pod_name(ordinal)))
            .collect()
    }

    /// Claims first, then pods, in ordinal order, as the controller creates them.
    pub fn objects(&self) -> (Vec<PersistentVolumeClaim>, Vec<Pod>) {
        self.objects_for(0..self.replicas)
    }

    /// [`Self::objects`] of the given ordinals only.
    pub fn objects_for(
        &self,
        ordinals: std::ops::Range<usize>,
    ) -> (Vec<PersistentVolumeClaim>, Vec<Pod>) {
        let mut claims = Vec::new();
        let mut pods = Vec::new();
        for i in ordinals {
            for (t, size) in &self.templates {
                let name = format!("{t}-{}", self.pod_name(i));
                claims.push(claim(&self.namespace, &name, &self.class, size));
            }
            let mut p = pod(&self.namespace, &self.pod_name(i), &self.claim_names(i));
            p.metadata.labels = Some(BTreeMap::from([("app".to_string(), self.name.clone())]));
            pods.push(p);
        }
        (claims, pods)
    }

    /// The StatefulSet that creates [`Self::objects`]: the same names, claims
    /// and pod spec. Pods start in parallel, as there is no kubelet to make
    /// one Ready before the next (OrderedReady would stop at the first).
    pub fn statefulset(&self) -> StatefulSet {
        let (claims, pods) = self.objects();
        let templates = claims
            .into_iter()
            .take(self.templates.len())
            .zip(&self.templates)
            .map(|(mut c, (t, _))| {
                c.metadata.name = Some(t.clone());
                c.metadata.namespace = None;
                c
            })
            .collect();
        let labels = BTreeMap::from([("app".to_string(), self.name.clone())]);
        let mut pod_spec = pods
            .into_iter()
            .next()
            .and_then(|p| p.spec)
            .unwrap_or_default();
        // The controller adds one volume per claim template itself.
        pod_spec.volumes = None;
        for c in &mut pod_spec.containers {
            c.volume_mounts = Some(
                self.templates
                    .iter()
                    .map(|(t, _)| VolumeMount {
                        name: t.clone(),
                        mount_path: format!("/{t}"),
                        ..Default::default()
                    })
                    .collect(),
            );
        }
        StatefulSet {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(i32::try_from(self.replicas).unwrap_or(i32::MAX)),
                pod_management_policy: Some("Parallel".into()),
                selector: LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..Default::default()
                },
                service_name: Some(self.name.clone()),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: Some(pod_spec),
                },
                volume_claim_templates: Some(templates),
                ..Default::default()
            }),
            status: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statefulset_names_follow_the_controller() {
        let s = StatefulSetLike {
            namespace: "default".into(),
            name: "web".into(),
            replicas: 2,
            class: "lvm".into(),
            templates: vec![
                ("data".into(), "1Gi".into()),
                ("log".into(), "100Mi".into()),
            ],
        };
        let (claims, pods) = s.objects();
        assert_eq!(pods.len(), 2);
        assert_eq!(claims.len(), 4);
        assert_eq!(claims[1].metadata.name.as_deref(), Some("log-web-0"));
        let vols = pods[1].spec.as_ref().unwrap().volumes.as_ref().unwrap();
        assert_eq!(
            vols[0].persistent_volume_claim.as_ref().unwrap().claim_name,
            "data-web-1"
        );
    }
}
