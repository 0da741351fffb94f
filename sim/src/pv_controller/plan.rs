//! What the PV controller would write, given the objects it sees.
//!
//! This follows kube-controller-manager's persistentvolume controller
//! (pkg/controller/volume/persistentvolume/pv_controller.go, 1.31–1.34) for the
//! cases lvmpin hits:
//! - `syncVolume`: a PV without claimRef, or with a claimRef lacking a uid (a
//!   mere reservation), is Available; a PV whose claim is gone or has a new uid is
//!   Released; a dynamically provisioned Delete PV whose claim is bound to another
//!   volume is Released too.
//! - `syncUnboundClaim` → `findBestMatchForClaim`: a PV pre-bound to the claim
//!   (claimRef namespace, name and uid) matches when its access modes are a
//!   superset of the claim's, its capacity covers the request, the volume modes are
//!   equal (nil = Filesystem) and it is not being deleted. StorageClass and
//!   WaitForFirstConsumer are not checked on this path.
//! - `bind()`: PV status Bound, then the claim Update (`spec.volumeName`,
//!   `pv.kubernetes.io/bound-by-controller` when the controller set volumeName,
//!   `pv.kubernetes.io/bind-completed`), then the claim status (Bound, capacity
//!   and access modes from the PV, capacity only on the transition to Bound).
//! - `provisionClaim` / `setClaimProvisioner`: for a class with an external
//!   provisioner the claim gets both storage-provisioner annotations; under
//!   WaitForFirstConsumer only once `volume.kubernetes.io/selected-node` is set.
//! - `syncBoundClaim`: a bound claim whose PV is gone is Lost.
//!
//! The planner emits at most one write per object per pass. The shell runs
//! volume writes before claim writes, so the order of `bind()` is kept; the next
//! pass (woken by the watch event of the write) does the next step, which is
//! what the real controller's requeue does after a conflict.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus, PersistentVolumeStatus,
};
use k8s_openapi::api::storage::v1::StorageClass;
use lvmpin_api::names::{
    ANN_BETA_STORAGE_CLASS, ANN_BETA_STORAGE_PROVISIONER, ANN_PROVISIONED_BY, ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER,
};
use lvmpin_api::parse_quantity_bytes;

pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
pub const ANN_PRE_RESIZE_CAPACITY: &str = "volume.alpha.kubernetes.io/pre-resize-capacity";

pub const PHASE_AVAILABLE: &str = "Available";
pub const PHASE_BOUND: &str = "Bound";
pub const PHASE_RELEASED: &str = "Released";
pub const PHASE_FAILED: &str = "Failed";
pub const PHASE_LOST: &str = "Lost";

/// One write, carrying the whole object to send (with the resourceVersion it
/// was computed from, so a concurrent change makes it fail with 409).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `PUT .../persistentvolumes/<name>/status`
    VolumeStatus(PersistentVolume),
    /// Released is written only after the shell confirmed with a live GET that
    /// the claim is really gone, as the controller does before releasing.
    ReleaseVolume(PersistentVolume),
    /// `PUT .../persistentvolumeclaims/<name>`
    ClaimUpdate(PersistentVolumeClaim),
    /// `PUT .../persistentvolumeclaims/<name>/status`
    ClaimStatus(PersistentVolumeClaim),
}

impl Action {
    /// Volume writes go first, like `bind()` writes the PV before the claim.
    pub fn order(&self) -> u8 {
        match self {
            Action::VolumeStatus(_) | Action::ReleaseVolume(_) => 0,
            Action::ClaimUpdate(_) | Action::ClaimStatus(_) => 1,
        }
    }
}

fn ns_name(pvc: &PersistentVolumeClaim) -> (&str, &str) {
    (
        pvc.metadata.namespace.as_deref().unwrap_or("default"),
        pvc.metadata.name.as_deref().unwrap_or(""),
    )
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn volume_phase(pv: &PersistentVolume) -> Option<&str> {
    pv.status.as_ref()?.phase.as_deref()
}

fn claim_phase(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.status.as_ref()?.phase.as_deref()
}

fn volume_name_of(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.spec
        .as_ref()?
        .volume_name
        .as_deref()
        .filter(|v| !v.is_empty())
}

/// The claim's class: the beta annotation wins over the field.
pub fn claim_class(pvc: &PersistentVolumeClaim) -> Option<&str> {
    annotation(&pvc.metadata, ANN_BETA_STORAGE_CLASS)
        .or_else(|| pvc.spec.as_ref()?.storage_class_name.as_deref())
        .filter(|c| !c.is_empty())
}

/// `IsVolumeBoundToClaim`: namespace and name, and uid when the PV has one.
fn claim_ref_names(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    let (ns, name) = ns_name(pvc);
    if r.namespace.as_deref() != Some(ns) || r.name.as_deref() != Some(name) {
        return false;
    }
    match r.uid.as_deref().filter(|u| !u.is_empty()) {
        Some(uid) => pvc.metadata.uid.as_deref() == Some(uid),
        None => true,
    }
}

fn set_volume_phase(pv: &PersistentVolume, phase: &str) -> PersistentVolume {
    let mut out = pv.clone();
    let status = out
        .status
        .get_or_insert_with(PersistentVolumeStatus::default);
    status.phase = Some(phase.to_string());
    status.message = None;
    status.reason = None;
    out
}

/// `checkVolumeSatisfyClaim` for the pre-bound path of `FindMatchingVolume`.
pub fn volume_satisfies_claim(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let (Some(vs), Some(cs)) = (pv.spec.as_ref(), pvc.spec.as_ref()) else {
        return false;
    };
    if pv.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let pv_modes = vs.access_modes.clone().unwrap_or_default();
    if !cs
        .access_modes
        .iter()
        .flatten()
        .all(|m| pv_modes.contains(m))
    {
        return false;
    }
    let fs = "Filesystem";
    if vs.volume_mode.as_deref().unwrap_or(fs) != cs.volume_mode.as_deref().unwrap_or(fs) {
        return false;
    }
    if vs.volume_attributes_class_name != cs.volume_attributes_class_name {
        return false;
    }
    let requested = cs
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| parse_quantity_bytes(&q.0));
    let capacity = vs
        .capacity
        .as_ref()
        .and_then(|c| c.get("storage"))
        .map(|q| parse_quantity_bytes(&q.0));
    match (requested, capacity) {
        (Some(Ok(r)), Some(Ok(c))) => c >= r,
        (None, Some(Ok(_))) => true,
        _ => false,
    }
}

/// Everything the controller would write now.
pub fn plan(
    volumes: &[&PersistentVolume],
    claims: &[&PersistentVolumeClaim],
    classes: &[&StorageClass],
) -> Vec<Action> {
    let claims_by_key: HashMap<(&str, &str), &PersistentVolumeClaim> =
        claims.iter().map(|c| (ns_name(c), *c)).collect();
    let volumes_by_name: HashMap<&str, &PersistentVolume> = volumes
        .iter()
        .filter_map(|v| Some((v.metadata.name.as_deref()?, *v)))
        .collect();
    let classes_by_name: HashMap<&str, &StorageClass> = classes
        .iter()
        .filter_map(|c| Some((c.metadata.name.as_deref()?, *c)))
        .collect();
    // Pre-bound volumes by the claim they name, for the unbound-claim path.
    let mut prebound: HashMap<(&str, &str), Vec<&PersistentVolume>> = HashMap::new();
    for pv in volumes {
        if let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref())
            && let (Some(ns), Some(name)) = (r.namespace.as_deref(), r.name.as_deref())
        {
            prebound.entry((ns, name)).or_default().push(pv);
        }
    }

    let mut actions = Vec::new();
    for pv in volumes {
        if let Some(a) = plan_volume(pv, &claims_by_key) {
            actions.push(a);
        }
    }
    for pvc in claims {
        if let Some(a) = plan_claim(pvc, &volumes_by_name, &prebound, &classes_by_name) {
            actions.push(a);
        }
    }
    actions.sort_by_key(Action::order);
    actions
}

fn plan_volume(
    pv: &PersistentVolume,
    claims: &HashMap<(&str, &str), &PersistentVolumeClaim>,
) -> Option<Action> {
    let phase = volume_phase(pv);
    let want = |p: &str| (phase != Some(p)).then(|| Action::VolumeStatus(set_volume_phase(pv, p)));
    let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let Some(r) = claim_ref.filter(|r| r.uid.as_deref().is_some_and(|u| !u.is_empty())) else {
        // No claimRef, or a reservation without uid: Available.
        return want(PHASE_AVAILABLE);
    };
    let key = (
        r.namespace.as_deref().unwrap_or("default"),
        r.name.as_deref().unwrap_or(""),
    );
    let claim = claims
        .get(&key)
        .filter(|c| c.metadata.uid.as_deref() == r.uid.as_deref());
    let release = || {
        (!matches!(phase, Some(PHASE_RELEASED) | Some(PHASE_FAILED)))
            .then(|| Action::ReleaseVolume(set_volume_phase(pv, PHASE_RELEASED)))
    };
    let Some(claim) = claim else {
        return release();
    };
    let name = pv.metadata.name.as_deref().unwrap_or("");
    match volume_name_of(claim) {
        Some(v) if v == name => want(PHASE_BOUND),
        Some(_) => {
            let provisioned = annotation(&pv.metadata, ANN_PROVISIONED_BY).is_some();
            let delete = pv
                .spec
                .as_ref()
                .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
                == Some("Delete");
            if provisioned && delete {
                release()
            } else {
                want(PHASE_AVAILABLE)
            }
        }
        None if volume_satisfies_claim(pv, claim) => want(PHASE_BOUND),
        None => want(PHASE_AVAILABLE),
    }
}

fn plan_claim(
    pvc: &PersistentVolumeClaim,
    volumes: &HashMap<&str, &PersistentVolume>,
    prebound: &HashMap<(&str, &str), Vec<&PersistentVolume>>,
    classes: &HashMap<&str, &StorageClass>,
) -> Option<Action> {
    let bind_completed = annotation(&pvc.metadata, ANN_BIND_COMPLETED).is_some();
    match volume_name_of(pvc) {
        None => {
            if let Some(pv) = prebound
                .get(&ns_name(pvc))
                .into_iter()
                .flatten()
                .filter(|pv| claim_ref_names(pv, pvc))
                .find(|pv| volume_satisfies_claim(pv, pvc))
            {
                return Some(Action::ClaimUpdate(bind_claim(pvc, pv, true)));
            }
            plan_provisioning(pvc, classes)
        }
        Some(name) => {
            let Some(pv) = volumes.get(name) else {
                // syncBoundClaim: the volume is gone. Before bind-completed the
                // claim just waits for the named volume to appear.
                return (bind_completed && claim_phase(pvc) != Some(PHASE_LOST))
                    .then(|| Action::ClaimStatus(set_claim_phase(pvc, PHASE_LOST)));
            };
            let pv_claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
            if pv_claim_ref.is_some() && !claim_ref_names(pv, pvc) {
                // Two claims name this volume and it is bound to the other one.
                return (bind_completed && claim_phase(pvc) != Some(PHASE_LOST))
                    .then(|| Action::ClaimStatus(set_claim_phase(pvc, PHASE_LOST)));
            }
            // Without a claimRef the controller would bind the volume to the
            // claim first; our provisioner always pre-binds, so this is a
            // user's manual setup and left alone.
            pv_claim_ref?;
            if !bind_completed {
                return Some(Action::ClaimUpdate(bind_claim(pvc, pv, false)));
            }
            (claim_phase(pvc) != Some(PHASE_BOUND))
                .then(|| Action::ClaimStatus(claim_bound_status(pvc, pv)))
        }
    }
}

fn plan_provisioning(
    pvc: &PersistentVolumeClaim,
    classes: &HashMap<&str, &StorageClass>,
) -> Option<Action> {
    let class = classes.get(claim_class(pvc)?)?;
    let delayed = class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
    if delayed && annotation(&pvc.metadata, ANN_SELECTED_NODE).is_none_or(str::is_empty) {
        return None;
    }
    let provisioner = class.provisioner.as_str();
    // In-tree plugins provision inside the controller; none is simulated.
    if provisioner.is_empty() || provisioner.starts_with("kubernetes.io/") {
        return None;
    }
    if annotation(&pvc.metadata, ANN_STORAGE_PROVISIONER) == Some(provisioner) {
        return None;
    }
    let mut out = pvc.clone();
    let ann = out.metadata.annotations.get_or_insert_with(BTreeMap::new);
    ann.insert(
        ANN_BETA_STORAGE_PROVISIONER.to_string(),
        provisioner.to_string(),
    );
    ann.insert(ANN_STORAGE_PROVISIONER.to_string(), provisioner.to_string());
    Some(Action::ClaimUpdate(out))
}

fn bind_claim(
    pvc: &PersistentVolumeClaim,
    pv: &PersistentVolume,
    sets_volume_name: bool,
) -> PersistentVolumeClaim {
    let mut out = pvc.clone();
    let name = pv.metadata.name.clone().unwrap_or_default();
    out.spec.get_or_insert_with(Default::default).volume_name = Some(name);
    let ann = out.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if sets_volume_name {
        ann.insert(ANN_BOUND_BY_CONTROLLER.to_string(), "yes".to_string());
    }
    ann.insert(ANN_BIND_COMPLETED.to_string(), "yes".to_string());
    out
}

fn set_claim_phase(pvc: &PersistentVolumeClaim, phase: &str) -> PersistentVolumeClaim {
    let mut out = pvc.clone();
    out.status
        .get_or_insert_with(PersistentVolumeClaimStatus::default)
        .phase = Some(phase.to_string());
    out
}

fn claim_bound_status(pvc: &PersistentVolumeClaim, pv: &PersistentVolume) -> PersistentVolumeClaim {
    let mut out = set_claim_phase(pvc, PHASE_BOUND);
    let spec = pv.spec.as_ref();
    let status = out.status.get_or_insert_with(Default::default);
    status.access_modes = spec.and_then(|s| s.access_modes.clone());
    let mut capacity = spec.and_then(|s| s.capacity.clone()).unwrap_or_default();
    if let Some(pre) = annotation(&pv.metadata, ANN_PRE_RESIZE_CAPACITY) {
        capacity.insert(
            "storage".to_string(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity(pre.to_string()),
        );
    }
    status.capacity = Some(capacity);
    out
}

#[cfg(test)]
mod tests;
