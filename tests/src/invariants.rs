//! What must hold once an e2e scenario's cluster is idle, checked against the
//! API objects and what `lvs` reports on each node's disk.
//!
//! [`check`] is a pure function over a [`Snapshot`] of plain values, so each
//! rule can be shown to catch its violation without a cluster; [`snapshot`]
//! reads one from a running testbed and [`assert_invariants`] ties the two
//! together at the end of a scenario.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::ListParams;
use lvmpin_api::names::{DRIVER_NAME, volume_name_for_claim};
use lvmpin_sim::testbed::Testbed;

/// A claim as the checker needs it.
#[derive(Clone, Debug, Default)]
pub struct Claim {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub class: Option<String>,
    pub volume_name: Option<String>,
    pub phase: Option<String>,
}

/// The claim a PV's claimRef names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// An lvmpin PV (CSI driver or provisioned-by annotation ours).
#[derive(Clone, Debug, Default)]
pub struct Volume {
    pub name: String,
    pub claim: Option<ClaimRef>,
    /// `lvmpin_api::volume::pinned_node`.
    pub node: Option<String>,
    /// The CSI volume handle, `<vg>/<lv>`.
    pub handle: Option<String>,
    pub capacity: Option<u64>,
    /// Reclaim policy Delete: the PV must go with its claim.
    pub reclaim_delete: bool,
}

#[derive(Clone, Debug, Default)]
pub struct PodPlacement {
    pub namespace: String,
    pub name: String,
    pub node: Option<String>,
    /// Names of the claims its volumes mount (same namespace).
    pub claims: Vec<String>,
}

/// One LV as `lvs` reports it, with the owner tags lvmpin writes on it.
#[derive(Clone, Debug, Default)]
pub struct Lv {
    pub name: String,
    pub size: u64,
    /// `lvmpin.io/claim-uid=`
    pub claim_uid: Option<String>,
    /// `lvmpin.io/pv-name=`
    pub pv_name: Option<String>,
}

/// One node's VG.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub node: String,
    pub vg: String,
    pub vg_size: u64,
    pub lvs: Vec<Lv>,
}

/// What the extender says about its in-memory capacity holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Reservations {
    /// `lvmpin_extender_reservations`: pods holding a reservation.
    Held(f64),
    /// The scenario stopped the extender on purpose: nothing to ask.
    ExtenderStopped,
    /// It should be running but its /metrics could not be read.
    Unreadable(String),
}

#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Names of the StorageClasses whose provisioner is lvmpin's driver.
    pub classes: BTreeSet<String>,
    pub claims: Vec<Claim>,
    pub volumes: Vec<Volume>,
    pub pods: Vec<PodPlacement>,
    pub disks: Vec<Disk>,
    pub reservations: Reservations,
}

/// What a scenario leaves behind on purpose.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    /// `namespace/name` of claims that may stay unbound (e.g. refused ones).
    pub unbound_claims: Vec<String>,
    /// Names of owner-tagged LVs that may outlive their PV (Retain, node
    /// loss with `recreate`): lvmpin never touches a disk it cannot see a
    /// claim for, so these stay for an operator.
    pub orphan_lvs: Vec<String>,
}

impl Expected {
    pub fn orphan_lvs<I: IntoIterator<Item = S>, S: Into<String>>(lvs: I) -> Self {
        Expected {
            orphan_lvs: lvs.into_iter().map(Into::into).collect(),
            ..Expected::default()
        }
    }
}

/// Every violation in `s`, each naming the object it is about; empty when
/// the invariants hold.
pub fn check(s: &Snapshot, expected: &Expected) -> Vec<String> {
    let mut out = Vec::new();
    let pv_by_name: BTreeMap<&str, &Volume> =
        s.volumes.iter().map(|v| (v.name.as_str(), v)).collect();
    let ours: Vec<&Claim> = s
        .claims
        .iter()
        .filter(|c| c.class.as_ref().is_some_and(|k| s.classes.contains(k)))
        .collect();

    // 1. Each claim of our classes is Bound to pvc-<uid>, that PV's claimRef
    //    names it, and no other PV claims it (a second provisioning).
    for c in &ours {
        let who = format!("claim {}/{}", c.namespace, c.name);
        let claiming: Vec<&str> = s
            .volumes
            .iter()
            .filter(|v| v.claim.as_ref().is_some_and(|r| r.uid == c.uid))
            .map(|v| v.name.as_str())
            .collect();
        if claiming.len() > 1 {
            out.push(format!("{who}: several PVs claim it: {claiming:?}"));
        }
        let key = format!("{}/{}", c.namespace, c.name);
        if c.volume_name.is_none() && expected.unbound_claims.contains(&key) {
            continue;
        }
        if c.phase.as_deref() != Some("Bound") {
            out.push(format!("{who} is {:?}, not Bound", c.phase));
        }
        let Some(pv) = c.volume_name.as_deref() else {
            out.push(format!("{who} names no PV"));
            continue;
        };
        let want = volume_name_for_claim(&c.uid);
        if pv != want {
            out.push(format!("{who} is bound to PV {pv}, not {want}"));
        }
        match pv_by_name.get(pv) {
            None => out.push(format!("{who} is bound to PV {pv}, which does not exist")),
            Some(v) => {
                let mine = ClaimRef {
                    namespace: c.namespace.clone(),
                    name: c.name.clone(),
                    uid: c.uid.clone(),
                };
                if v.claim.as_ref() != Some(&mine) {
                    out.push(format!(
                        "{who} (uid {}) is bound to PV {pv}, whose claimRef is {:?}",
                        c.uid, v.claim
                    ));
                }
            }
        }
    }

    // 2. Each PV has exactly one owner-tagged LV, on its pinned node, named
    //    by its volume handle and tagged with its claim's uid.
    let claim_uids: BTreeSet<&str> = s.claims.iter().map(|c| c.uid.as_str()).collect();
    for v in &s.volumes {
        let who = format!("PV {}", v.name);
        let Some(node) = v.node.as_deref() else {
            out.push(format!("{who} has no node affinity"));
            continue;
        };
        let Some(claim) = &v.claim else {
            out.push(format!("{who} has no claimRef"));
            continue;
        };
        if v.reclaim_delete && !claim_uids.contains(claim.uid.as_str()) {
            out.push(format!(
                "{who} (reclaim Delete) outlives its claim {}/{} (uid {})",
                claim.namespace, claim.name, claim.uid
            ));
        }
        let tagged: Vec<(&Disk, &Lv)> = s
            .disks
            .iter()
            .flat_map(|d| d.lvs.iter().map(move |lv| (d, lv)))
            .filter(|(_, lv)| lv.pv_name.as_deref() == Some(v.name.as_str()))
            .collect();
        let [(disk, lv)] = tagged.as_slice() else {
            let found: Vec<String> = tagged
                .iter()
                .map(|(d, lv)| format!("{}:{}/{}", d.node, d.vg, lv.name))
                .collect();
            out.push(format!(
                "{who}: want exactly one LV tagged for it on {node}, found {found:?}"
            ));
            continue;
        };
        let at = format!("{}:{}/{}", disk.node, disk.vg, lv.name);
        if disk.node != node {
            out.push(format!("{who} is pinned to {node}, but its LV is {at}"));
        }
        let handle = format!("{}/{}", disk.vg, lv.name);
        if v.handle.as_deref() != Some(handle.as_str()) {
            out.push(format!(
                "{who}: volume handle {:?} does not name its LV {at}",
                v.handle
            ));
        }
        if lv.claim_uid.as_deref() != Some(claim.uid.as_str()) {
            out.push(format!(
                "{who}: LV {at} is tagged for claim uid {:?}, the PV's claimRef has {}",
                lv.claim_uid, claim.uid
            ));
        }
        if let Some(cap) = v.capacity
            && lv.size < cap
        {
            out.push(format!(
                "{who} promises {cap} bytes, its LV {at} has {}",
                lv.size
            ));
        }
    }

    // 3. No owner-tagged LV without its PV, unless the scenario keeps it.
    for d in &s.disks {
        for lv in &d.lvs {
            let Some(pv) = lv.pv_name.as_deref() else {
                continue;
            };
            if !pv_by_name.contains_key(pv) && !expected.orphan_lvs.contains(&lv.name) {
                out.push(format!(
                    "LV {}:{}/{} is tagged for PV {pv} (claim uid {:?}), which does not exist",
                    d.node, d.vg, lv.name, lv.claim_uid
                ));
            }
        }
    }

    // 4. A pod runs where its volumes are.
    let claim_by_key: BTreeMap<(&str, &str), &Claim> = s
        .claims
        .iter()
        .map(|c| ((c.namespace.as_str(), c.name.as_str()), c))
        .collect();
    for p in &s.pods {
        let Some(node) = p.node.as_deref() else {
            continue;
        };
        for cn in &p.claims {
            let Some(pv) = claim_by_key
                .get(&(p.namespace.as_str(), cn.as_str()))
                .and_then(|c| c.volume_name.as_deref())
                .and_then(|n| pv_by_name.get(n))
            else {
                continue;
            };
            if let Some(pinned) = pv.node.as_deref()
                && pinned != node
            {
                out.push(format!(
                    "pod {}/{} runs on {node}, but its claim {cn}'s PV {} is pinned to {pinned}",
                    p.namespace, p.name, pv.name
                ));
            }
        }
    }

    // 5. The LVs of each node fit its VG.
    for d in &s.disks {
        let used: u64 = d.lvs.iter().map(|lv| lv.size).sum();
        if used > d.vg_size {
            out.push(format!(
                "node {}: LVs in VG {} take {used} bytes of {}",
                d.node, d.vg, d.vg_size
            ));
        }
    }

    // 6. Once every claim is provisioned and reported, the extender holds
    //    nothing back: a leftover hold would shrink every later placement.
    match &s.reservations {
        Reservations::Held(n) if *n > 0.0 => out.push(format!(
            "extender: {n} pod(s) still hold a capacity reservation"
        )),
        Reservations::Unreadable(e) => out.push(format!("extender: /metrics unreadable: {e}")),
        _ => {}
    }
    out
}

/// `lvs --separator '|' -o lv_name,lv_size,lv_tags` output, sizes in bytes.
/// Owner values are Kubernetes names and UIDs, which lvmpin's tag encoding
/// never escapes, so they are taken as written.
pub fn parse_lvs(out: &str) -> Result<Vec<Lv>, String> {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut f = l.splitn(3, '|');
            let (Some(name), Some(size), tags) = (f.next(), f.next(), f.next().unwrap_or(""))
            else {
                return Err(format!("lvs line {l:?}"));
            };
            let size = size
                .trim()
                .parse()
                .map_err(|e| format!("lvs line {l:?}: {e}"))?;
            let tag = |key: &str| {
                tags.split(',')
                    .find_map(|t| t.trim().strip_prefix(key))
                    .map(str::to_string)
            };
            Ok(Lv {
                name: name.trim().to_string(),
                size,
                claim_uid: tag("lvmpin.io/claim-uid="),
                pv_name: tag("lvmpin.io/pv-name="),
            })
        })
        .collect()
}

fn claim_of(c: &PersistentVolumeClaim) -> Claim {
    Claim {
        namespace: c.metadata.namespace.clone().unwrap_or_default(),
        name: c.metadata.name.clone().unwrap_or_default(),
        uid: c.metadata.uid.clone().unwrap_or_default(),
        class: c.spec.as_ref().and_then(|s| s.storage_class_name.clone()),
        volume_name: c.spec.as_ref().and_then(|s| s.volume_name.clone()),
        phase: c.status.as_ref().and_then(|s| s.phase.clone()),
    }
}

fn volume_of(pv: &PersistentVolume) -> Option<Volume> {
    let spec = pv.spec.as_ref();
    let csi = spec
        .and_then(|s| s.csi.as_ref())
        .filter(|c| c.driver == DRIVER_NAME);
    if csi.is_none() && !lvmpin_api::volume::provisioned_by_lvmpin(pv) {
        return None;
    }
    Some(Volume {
        name: pv.metadata.name.clone().unwrap_or_default(),
        claim: spec.and_then(|s| s.claim_ref.as_ref()).map(|r| ClaimRef {
            namespace: r.namespace.clone().unwrap_or_default(),
            name: r.name.clone().unwrap_or_default(),
            uid: r.uid.clone().unwrap_or_default(),
        }),
        node: lvmpin_api::volume::pinned_node(pv).map(str::to_string),
        handle: csi.map(|c| c.volume_handle.clone()),
        capacity: spec
            .and_then(|s| s.capacity.as_ref()?.get("storage"))
            .and_then(|q| lvmpin_api::parse_quantity_bytes(&q.0).ok()),
        reclaim_delete: spec.and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            == Some("Delete"),
    })
}

fn pod_of(p: &Pod) -> PodPlacement {
    let spec = p.spec.as_ref();
    PodPlacement {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        node: spec.and_then(|s| s.node_name.clone()),
        claims: spec
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|v| Some(v.persistent_volume_claim.as_ref()?.claim_name.clone()))
            .collect(),
    }
}

async fn list<K>(tb: &Testbed) -> Result<Vec<K>, String>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    Api::<K>::all(tb.client())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| e.to_string())
}

async fn list_ns<K>(tb: &Testbed) -> Result<Vec<K>, String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    Api::<K>::all(tb.client())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| e.to_string())
}

/// Reads the cluster and every node's disk (with the node's own
/// `LVM_SYSTEM_DIR`, as its agent sees it).
pub async fn snapshot(tb: &Testbed) -> Result<Snapshot, String> {
    let classes = list::<StorageClass>(tb)
        .await?
        .into_iter()
        .filter(|c| c.provisioner == DRIVER_NAME)
        .filter_map(|c| c.metadata.name)
        .collect();
    let claims = list_ns::<PersistentVolumeClaim>(tb).await?;
    let volumes = list::<PersistentVolume>(tb).await?;
    let pods = list_ns::<Pod>(tb).await?;
    let mut disks = Vec::new();
    for d in &tb.disks {
        let (vg_size, _) = d.vg_size_free().map_err(|e| e.to_string())?;
        let out = d
            .lvm(&[
                "lvs",
                "--noheadings",
                "--units",
                "b",
                "--nosuffix",
                "--separator",
                "|",
                "-o",
                "lv_name,lv_size,lv_tags",
                &d.vg,
            ])
            .map_err(|e| e.to_string())?;
        disks.push(Disk {
            node: d.node.clone(),
            vg: d.vg.clone(),
            vg_size,
            lvs: parse_lvs(&out)?,
        });
    }
    // A scenario that kills the extender for good has nothing to ask.
    let reservations = if tb.extender.pid().is_none() {
        Reservations::ExtenderStopped
    } else {
        match tb.extender_metrics().await {
            // A missing gauge (renamed, say) must not read as "nothing held".
            Ok(text) => {
                match lvmpin_sim::bench::sample_sum(&text, "lvmpin_extender_reservations", "") {
                    Some(n) => Reservations::Held(n),
                    None => Reservations::Unreadable(
                        "no lvmpin_extender_reservations gauge in /metrics".into(),
                    ),
                }
            }
            Err(e) => Reservations::Unreadable(e.to_string()),
        }
    };
    Ok(Snapshot {
        classes,
        claims: claims.iter().map(claim_of).collect(),
        volumes: volumes.iter().filter_map(volume_of).collect(),
        pods: pods.iter().map(pod_of).collect(),
        disks,
        reservations,
    })
}

/// Panics with every violation unless the invariants hold. A cluster that
/// just went idle may still be settling (the extender prunes its holds every
/// 10 s, the PV controller finishes a bind), so the check is repeated until
/// it passes or `SETTLE` is over; the last violations are the report.
pub async fn assert_invariants(tb: &Testbed, expected: &Expected) {
    const SETTLE: Duration = Duration::from_secs(45);
    let deadline = Instant::now() + SETTLE;
    loop {
        let violations = match snapshot(tb).await {
            Ok(s) => check(&s, expected),
            Err(e) => vec![format!("could not read the cluster or a disk: {e}")],
        };
        if violations.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            let e = lvmpin_sim::error::Error::Timeout {
                what: format!(
                    "the invariants to hold; still violated:\n  {}",
                    violations.join("\n  ")
                ),
                after: SETTLE,
            };
            panic!("{}", tb.with_logs(e));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: u64 = 1 << 20;

    fn uid(n: u32) -> String {
        format!("00000000-0000-0000-0000-{n:012}")
    }

    /// Two claims on two nodes, all consistent.
    fn healthy() -> Snapshot {
        let mut claims = Vec::new();
        let mut volumes = Vec::new();
        let mut pods = Vec::new();
        let mut disks = Vec::new();
        for i in 0..2u32 {
            let node = format!("node-{i}");
            let pv = volume_name_for_claim(&uid(i));
            claims.push(Claim {
                namespace: "default".into(),
                name: format!("data-web-{i}"),
                uid: uid(i),
                class: Some("lvmpin".into()),
                volume_name: Some(pv.clone()),
                phase: Some("Bound".into()),
            });
            volumes.push(Volume {
                name: pv.clone(),
                claim: Some(ClaimRef {
                    namespace: "default".into(),
                    name: format!("data-web-{i}"),
                    uid: uid(i),
                }),
                node: Some(node.clone()),
                handle: Some(format!("vg0/{pv}")),
                capacity: Some(16 * MI),
                reclaim_delete: true,
            });
            pods.push(PodPlacement {
                namespace: "default".into(),
                name: format!("web-{i}"),
                node: Some(node.clone()),
                claims: vec![format!("data-web-{i}")],
            });
            disks.push(Disk {
                node,
                vg: "vg0".into(),
                vg_size: 64 * MI,
                lvs: vec![
                    Lv {
                        name: pv.clone(),
                        size: 16 * MI,
                        claim_uid: Some(uid(i)),
                        pv_name: Some(pv),
                    },
                    // Not lvmpin's: ignored except for the space it takes.
                    Lv {
                        name: "root".into(),
                        size: 8 * MI,
                        ..Lv::default()
                    },
                ],
            });
        }
        // A claim of another provisioner is none of the checker's business.
        claims.push(Claim {
            namespace: "default".into(),
            name: "nfs".into(),
            uid: uid(9),
            class: Some("nfs".into()),
            ..Claim::default()
        });
        Snapshot {
            classes: ["lvmpin".to_string()].into(),
            claims,
            volumes,
            pods,
            disks,
            reservations: Reservations::Held(0.0),
        }
    }

    #[test]
    fn a_consistent_cluster_has_no_violation() {
        assert_eq!(
            check(&healthy(), &Expected::default()),
            Vec::<String>::new()
        );
        let mut s = healthy();
        s.reservations = Reservations::ExtenderStopped;
        assert!(check(&s, &Expected::default()).is_empty());
    }

    type Break = fn(&mut Snapshot);

    /// Each rule, broken once: the violation names the object.
    #[test]
    fn each_rule_catches_its_violation() {
        let cases: &[(&str, Break, &str)] = &[
            (
                "claim pending",
                |s| {
                    s.claims[0].phase = Some("Pending".into());
                    s.claims[0].volume_name = None;
                },
                "claim default/data-web-0 is Some(\"Pending\"), not Bound",
            ),
            (
                "claim bound to a missing PV",
                |s| {
                    s.volumes.remove(0);
                },
                "claim default/data-web-0 is bound to PV pvc-00000000-0000-0000-0000-000000000000, which does not exist",
            ),
            (
                "claim bound to a PV of another name",
                |s| s.claims[0].volume_name = Some("pv-other".into()),
                "claim default/data-web-0 is bound to PV pv-other, not pvc-",
            ),
            (
                "claimRef names another uid",
                |s| s.volumes[0].claim.as_mut().unwrap().uid = uid(7),
                "claim default/data-web-0 (uid 00000000-0000-0000-0000-000000000000) is bound to PV pvc-",
            ),
            (
                "second PV for one claim",
                |s| {
                    let mut dup = s.volumes[0].clone();
                    dup.name = "pvc-dup".into();
                    s.volumes.push(dup);
                },
                "claim default/data-web-0: several PVs claim it",
            ),
            (
                "PV without its LV",
                |s| {
                    s.disks[0].lvs.remove(0);
                },
                "PV pvc-00000000-0000-0000-0000-000000000000: want exactly one LV tagged for it on node-0, found []",
            ),
            (
                "PV's LV twice",
                |s| {
                    let lv = s.disks[0].lvs[0].clone();
                    s.disks[1].lvs.push(lv);
                },
                "PV pvc-00000000-0000-0000-0000-000000000000: want exactly one LV tagged for it on node-0, found [\"node-0:vg0/pvc-00000000-0000-0000-0000-000000000000\", \"node-1:",
            ),
            (
                "LV on another node than the PV's affinity",
                |s| s.volumes[0].node = Some("node-1".into()),
                "PV pvc-00000000-0000-0000-0000-000000000000 is pinned to node-1, but its LV is node-0:",
            ),
            (
                "PV without node affinity",
                |s| s.volumes[0].node = None,
                "PV pvc-00000000-0000-0000-0000-000000000000 has no node affinity",
            ),
            (
                "handle names another LV",
                |s| s.volumes[0].handle = Some("vg0/other".into()),
                "PV pvc-00000000-0000-0000-0000-000000000000: volume handle Some(\"vg0/other\") does not name its LV",
            ),
            (
                "handle names another VG",
                |s| s.disks[0].vg = "vg1".into(),
                "does not name its LV node-0:vg1/",
            ),
            (
                "LV tagged for another claim",
                |s| s.disks[0].lvs[0].claim_uid = Some(uid(7)),
                "PV pvc-00000000-0000-0000-0000-000000000000: LV node-0:vg0/pvc-00000000-0000-0000-0000-000000000000 is tagged for claim uid Some(\"00000000-0000-0000-0000-000000000007\")",
            ),
            (
                "LV smaller than the PV",
                |s| s.disks[0].lvs[0].size = 12 * MI,
                "PV pvc-00000000-0000-0000-0000-000000000000 promises 16777216 bytes, its LV",
            ),
            (
                "PV outlives its claim",
                |s| {
                    s.claims.remove(0);
                    s.pods.remove(0);
                },
                "PV pvc-00000000-0000-0000-0000-000000000000 (reclaim Delete) outlives its claim default/data-web-0",
            ),
            (
                "orphan LV",
                |s| {
                    s.disks[1].lvs.push(Lv {
                        name: "pvc-gone".into(),
                        size: MI,
                        claim_uid: Some(uid(5)),
                        pv_name: Some("pvc-gone".into()),
                    })
                },
                "LV node-1:vg0/pvc-gone is tagged for PV pvc-gone (claim uid Some(\"00000000-0000-0000-0000-000000000005\")), which does not exist",
            ),
            (
                "pod away from its volume",
                |s| s.pods[0].node = Some("node-1".into()),
                "pod default/web-0 runs on node-1, but its claim data-web-0's PV pvc-00000000-0000-0000-0000-000000000000 is pinned to node-0",
            ),
            (
                "LVs exceed the VG",
                |s| s.disks[1].lvs[1].size = 60 * MI,
                "node node-1: LVs in VG vg0 take 79691776 bytes of 67108864",
            ),
            (
                "reservation still held",
                |s| s.reservations = Reservations::Held(1.0),
                "extender: 1 pod(s) still hold a capacity reservation",
            ),
            (
                "extender metrics unreadable",
                |s| s.reservations = Reservations::Unreadable("refused".into()),
                "extender: /metrics unreadable: refused",
            ),
        ];
        for (what, break_it, want) in cases {
            let mut s = healthy();
            break_it(&mut s);
            let got = check(&s, &Expected::default());
            assert!(
                got.iter().any(|v| v.starts_with(want) || v.contains(want)),
                "{what}: want {want:?} in {got:#?}"
            );
        }
    }

    #[test]
    fn expected_leftovers_are_allowed_and_nothing_else() {
        let mut s = healthy();
        // A Retain PV deleted by an operator: its LV stays.
        s.volumes.remove(0);
        s.claims.remove(0);
        s.pods.remove(0);
        // A claim the agent refused.
        s.claims.push(Claim {
            namespace: "default".into(),
            name: "bad".into(),
            uid: uid(3),
            class: Some("lvmpin".into()),
            phase: Some("Pending".into()),
            ..Claim::default()
        });
        let pv0 = volume_name_for_claim(&uid(0));
        let got = check(&s, &Expected::default());
        assert!(
            got.iter().any(|v| v.starts_with("claim default/bad "))
                && got
                    .iter()
                    .any(|v| v.starts_with(&format!("LV node-0:vg0/{pv0} "))),
            "{got:#?}"
        );
        let expected = Expected {
            unbound_claims: vec!["default/bad".into()],
            orphan_lvs: vec![pv0],
        };
        assert_eq!(check(&s, &expected), Vec::<String>::new());
        // The allowance is by name: another orphan is still reported.
        s.disks[1].lvs.push(Lv {
            name: "pvc-x".into(),
            size: MI,
            claim_uid: Some(uid(4)),
            pv_name: Some("pvc-x".into()),
        });
        let got = check(&s, &expected);
        assert!(
            got.len() == 1 && got[0].starts_with("LV node-1:vg0/pvc-x "),
            "{got:#?}"
        );
    }

    #[test]
    fn lvs_output_is_parsed_with_owner_tags() {
        let out = "  pvc-a|16777216|lvmpin.io/claim-uid=a,lvmpin.io/claim-namespace=default,lvmpin.io/claim-name=data,lvmpin.io/pv-name=pvc-a\n  root|8388608|\n";
        let lvs = parse_lvs(out).unwrap();
        assert_eq!(lvs.len(), 2);
        assert_eq!(lvs[0].name, "pvc-a");
        assert_eq!(lvs[0].size, 16 * MI);
        assert_eq!(lvs[0].claim_uid.as_deref(), Some("a"));
        assert_eq!(lvs[0].pv_name.as_deref(), Some("pvc-a"));
        assert_eq!(lvs[1].pv_name, None);
        assert!(parse_lvs("  x|lots|\n").is_err());
    }
}
