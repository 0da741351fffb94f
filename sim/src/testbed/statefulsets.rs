//! StatefulSets on the testbed. On the upstream control plane the real
//! StatefulSet controller makes the pods and claims; the simulator has no
//! controller, so the testbed makes what it would: claims `<template>-<pod>`
//! (kept across scale-downs), and pods `<set>-<i>` owned by the StatefulSet.
//! Without a kubelet nothing confirms a pod's graceful deletion, so the
//! testbed does, with grace period 0.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};

use super::{Backend, Testbed};
use crate::error::{Error, Result};
use crate::wait;
use crate::workload::StatefulSetLike;

/// How long the StatefulSet controller may take to start deleting the pods
/// above a lowered replica count.
const SCALE_DOWN_WAIT: Duration = Duration::from_secs(60);

impl Testbed {
    /// Creates the StatefulSet (and, on the simulator, its claims and pods).
    pub async fn create_statefulset(&self, set: &StatefulSetLike) -> Result<()> {
        self.create_annotated_statefulset(set, &[]).await
    }

    /// [`Self::create_statefulset`] with annotations on the StatefulSet.
    pub async fn create_annotated_statefulset(
        &self,
        set: &StatefulSetLike,
        annotations: &[(&str, &str)],
    ) -> Result<()> {
        let mut sts = set.statefulset();
        if !annotations.is_empty() {
            sts.metadata.annotations = Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            );
        }
        let created = Api::<StatefulSet>::namespaced(self.client(), &set.namespace)
            .create(&PostParams::default(), &sts)
            .await?;
        if self.backend() == Backend::Kube {
            return Ok(());
        }
        self.create_members(set, &created, 0..set.replicas).await
    }

    /// Sets the replica count and waits until pods above it are gone; returns
    /// the set at its new size.
    pub async fn scale_statefulset(
        &self,
        set: &StatefulSetLike,
        replicas: usize,
    ) -> Result<StatefulSetLike> {
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        let sts = Api::<StatefulSet>::namespaced(self.client(), &set.namespace)
            .patch(&set.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let scaled = StatefulSetLike {
            replicas,
            ..set.clone()
        };
        if replicas < set.replicas {
            self.remove_members(set, replicas..set.replicas).await?;
        } else if self.backend() == Backend::Sim {
            self.create_members(&scaled, &sts, set.replicas..replicas)
                .await?;
        }
        Ok(scaled)
    }

    /// Remove a set's pods, keeping its claims: the StatefulSet goes first
    /// (orphaning its pods, or its controller would make them again), then
    /// the pods, with grace period 0.
    pub async fn delete_set_pods(&self, set: &StatefulSetLike) -> Result<()> {
        let orphan = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            ..DeleteParams::default()
        };
        match Api::<StatefulSet>::namespaced(self.client(), &set.namespace)
            .delete(&set.name, &orphan)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        let pods = Api::<Pod>::namespaced(self.client(), &set.namespace);
        for i in 0..set.replicas {
            force_delete(&pods, &set.pod_name(i)).await?;
        }
        Ok(())
    }

    /// What the StatefulSet controller creates for `ordinals`: claims that
    /// do not exist yet, and pods it controls.
    async fn create_members(
        &self,
        set: &StatefulSetLike,
        owner: &StatefulSet,
        ordinals: Range<usize>,
    ) -> Result<()> {
        let (claims, pods) = set.objects_for(ordinals);
        let c = Api::<PersistentVolumeClaim>::namespaced(self.client(), &set.namespace);
        for claim in &claims {
            match c.create(&PostParams::default(), claim).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        let controller = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: set.name.clone(),
            uid: owner.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let p = Api::<Pod>::namespaced(self.client(), &set.namespace);
        for mut pod in pods {
            pod.metadata.owner_references = Some(vec![controller.clone()]);
            p.create(&PostParams::default(), &pod).await?;
        }
        Ok(())
    }

    /// Pods of `ordinals` after a scale-down. On the upstream control plane
    /// the controller marks them deleted and kubelet would confirm; here the
    /// testbed confirms once the mark is there. On the simulator it deletes
    /// them itself.
    async fn remove_members(&self, set: &StatefulSetLike, ordinals: Range<usize>) -> Result<()> {
        let pods = Api::<Pod>::namespaced(self.client(), &set.namespace);
        for i in ordinals {
            let name = set.pod_name(i);
            if self.backend() == Backend::Kube {
                let marked = wait::until(
                    &format!("the StatefulSet controller to delete pod {name}"),
                    SCALE_DOWN_WAIT,
                    Duration::from_millis(200),
                    || {
                        let (pods, name) = (pods.clone(), name.clone());
                        async move {
                            match pods.get_opt(&name).await {
                                Ok(None) => Some(()),
                                Ok(Some(p)) => p.metadata.deletion_timestamp.map(|_| ()),
                                Err(_) => None,
                            }
                        }
                    },
                )
                .await;
                marked.map_err(|e| self.with_logs(e))?;
            }
            force_delete(&pods, &name).await?;
        }
        Ok(())
    }
}

async fn force_delete(pods: &Api<Pod>, name: &str) -> Result<()> {
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    match pods.delete(name, &now).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::from(e)),
    }
}
