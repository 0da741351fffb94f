//! Checks the arguments of each Controller call and decides what it asks for.
//! Pure: the shell (`controller`) adds the volume manager's state.
//!
//! A local LVM volume lives on one node and is used from one node: multi
//! node access modes and topologies that do not name this node are refused
//! here, before anything is created.

use lvmpin_api::thin::{ThinLimits, limits_from_params};
use std::collections::HashMap;

use lvmpin_api::VolumeId;
use lvmpin_api::names::{PARAM_FSTYPE, PARAM_THIN_POOL, PARAM_VOLUME_GROUP};
use lvmpin_csi_proto::csi::v1 as csi;
use lvmpin_csi_proto::csi::v1::volume_capability::AccessType;

use super::blkid::FsType;
use super::bounded::bounded;
use super::error::{Error, Result};
use super::naming::{claim_uid_in, lv_name};
use super::request::{check_mode, fs_type, mode, required};
use crate::backend::Owner;

/// Size of a volume whose request gives no capacity at all.
pub const DEFAULT_SIZE: u64 = 1 << 30;

/// Keys external-provisioner adds with `--extra-create-metadata`.
pub const PARAM_PVC_NAME: &str = "csi.storage.k8s.io/pvc/name";
pub const PARAM_PVC_NAMESPACE: &str = "csi.storage.k8s.io/pvc/namespace";
pub const PARAM_PV_NAME: &str = "csi.storage.k8s.io/pv/name";

/// Every `lvmpin.io/` parameter we know (the classes' own list); any other
/// is a typo and refused.
const KNOWN_LVMPIN_PARAMETERS: [&str; 6] = crate::claim_plan::KNOWN_PARAMS;

/// What this agent serves, as the requests are checked against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub node_name: String,
    pub topology_key: String,
    pub volume_groups: Vec<String>,
}

impl Scope {
    fn our_topology(&self) -> HashMap<String, String> {
        HashMap::from([(self.topology_key.clone(), self.node_name.clone())])
    }

    /// The response topology of every volume: this node.
    pub fn accessible_topology(&self) -> Vec<csi::Topology> {
        vec![csi::Topology {
            segments: self.our_topology(),
        }]
    }

    fn serves(&self, vg: &str) -> bool {
        self.volume_groups.iter().any(|v| v == vg)
    }

    /// The VG a request names, or the only one configured.
    fn volume_group(&self, parameters: &HashMap<String, String>) -> Result<String> {
        match parameters.get(PARAM_VOLUME_GROUP).filter(|v| !v.is_empty()) {
            Some(vg) if self.serves(vg) => Ok(vg.clone()),
            Some(vg) => Err(Error::InvalidArgument(format!(
                "parameter {PARAM_VOLUME_GROUP}={:?} names a volume group this node does not serve (it serves {:?})",
                bounded(vg),
                self.volume_groups
            ))),
            None => match self.volume_groups.as_slice() {
                [only] => Ok(only.clone()),
                _ => Err(Error::InvalidArgument(format!(
                    "parameter {PARAM_VOLUME_GROUP} is required: this node serves {:?}",
                    self.volume_groups
                ))),
            },
        }
    }

    /// True when a topology names this node (and nothing this node lacks).
    fn is_here(&self, t: &csi::Topology) -> bool {
        t.segments == self.our_topology()
    }

    /// A volume id we could have made, in a VG we serve; `None` otherwise.
    pub fn our_id(&self, raw: &str) -> Option<VolumeId> {
        let id: VolumeId = raw.parse().ok()?;
        self.serves(&id.vg).then_some(id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Create {
    pub name: String,
    pub vg: String,
    pub lv: String,
    pub thin_pool: Option<String>,
    /// The class's limits on `thin_pool`; Some exactly when it is.
    pub thin_limits: Option<ThinLimits>,
    /// Bytes to allocate before extent rounding.
    pub size: u64,
    pub required: u64,
    /// 0: no limit.
    pub limit: u64,
    pub fs_type: Option<FsType>,
    pub owner: Owner,
}

impl Create {
    /// True when an existing volume of this size meets the request.
    pub fn size_fits(&self, size: u64) -> bool {
        size >= self.required && (self.limit == 0 || size <= self.limit)
    }
}

/// Access type and mode of one capability, refusing what a local volume is not.
fn supported(cap: &csi::VolumeCapability) -> Result<Option<FsType>> {
    let fs = match &cap.access_type {
        Some(AccessType::Block(_)) => None,
        Some(AccessType::Mount(m)) if m.fs_type.is_empty() => None,
        Some(AccessType::Mount(m)) => Some(fs_type(&m.fs_type)?),
        None => {
            return Err(Error::InvalidArgument(
                "volume_capability needs an access type (block or mount)".into(),
            ));
        }
    };
    check_mode(mode(cap)).map_err(|e| match e {
        // Exceeding the capabilities is INVALID_ARGUMENT for the controller
        // calls (CSI spec, ControllerExpandVolume and CreateVolume errors).
        Error::FailedPrecondition(m) => Error::InvalidArgument(m),
        other => other,
    })?;
    Ok(fs)
}

fn capabilities(caps: &[csi::VolumeCapability]) -> Result<Option<FsType>> {
    if caps.is_empty() {
        return Err(Error::InvalidArgument(
            "volume_capabilities is required".into(),
        ));
    }
    let mut chosen = None;
    for cap in caps {
        if let Some(fs) = supported(cap)? {
            if chosen.is_some_and(|c| c != fs) {
                return Err(Error::InvalidArgument(
                    "volume_capabilities name two different filesystems".into(),
                ));
            }
            chosen = Some(fs);
        }
    }
    Ok(chosen)
}

/// Requested bytes and limit; negative or crossed values are refused.
fn capacity(range: Option<&csi::CapacityRange>) -> Result<(u64, u64)> {
    let Some(r) = range else {
        return Ok((0, 0));
    };
    if r.required_bytes < 0 || r.limit_bytes < 0 {
        return Err(Error::InvalidArgument(
            "capacity_range must not be negative".into(),
        ));
    }
    let (required, limit) = (r.required_bytes as u64, r.limit_bytes as u64);
    if limit > 0 && required > limit {
        return Err(Error::OutOfRange(format!(
            "capacity_range required_bytes {required} exceeds limit_bytes {limit}"
        )));
    }
    Ok((required, limit))
}

fn check_parameters(parameters: &HashMap<String, String>) -> Result<()> {
    if let Some(unknown) = parameters.keys().find(|k| {
        k.starts_with(lvmpin_api::names::API_GROUP)
            && !KNOWN_LVMPIN_PARAMETERS.contains(&k.as_str())
    }) {
        return Err(Error::InvalidArgument(format!(
            "unknown parameter {:?}; lvmpin knows {KNOWN_LVMPIN_PARAMETERS:?}",
            bounded(unknown)
        )));
    }
    thin_limits(parameters).map(|_| ())
}

/// The thin limits the parameters set: None without a thin pool.
fn thin_limits(parameters: &HashMap<String, String>) -> Result<Option<ThinLimits>> {
    let sorted: std::collections::BTreeMap<String, String> = parameters
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    limits_from_params(Some(&sorted)).map_err(|e| Error::InvalidArgument(e.to_string()))
}

pub fn create(r: &csi::CreateVolumeRequest, scope: &Scope) -> Result<Create> {
    let name = required(&r.name, "name")?.to_string();
    let cap_fs = capabilities(&r.volume_capabilities)?;
    if r.volume_content_source.is_some() {
        return Err(Error::InvalidArgument(
            "volume_content_source is not supported: lvmpin cannot clone or restore volumes".into(),
        ));
    }
    check_parameters(&r.parameters)?;
    let (required, limit) = capacity(r.capacity_range.as_ref())?;
    let vg = scope.volume_group(&r.parameters)?;
    if let Some(req) = &r.accessibility_requirements
        && !req.requisite.is_empty()
        && !req.requisite.iter().any(|t| scope.is_here(t))
    {
        return Err(Error::ResourceExhausted(format!(
            "no requisite topology names this node ({}={})",
            scope.topology_key, scope.node_name
        )));
    }
    let param_fs = match r.parameters.get(PARAM_FSTYPE).filter(|v| !v.is_empty()) {
        Some(f) => Some(fs_type(f)?),
        None => None,
    };
    let size = match (required, limit) {
        (0, 0) => DEFAULT_SIZE,
        (0, l) => l.min(DEFAULT_SIZE),
        (r, _) => r,
    };
    let param = |k: &str| r.parameters.get(k).cloned().unwrap_or_default();
    Ok(Create {
        lv: lv_name(&name),
        owner: Owner {
            claim_uid: claim_uid_in(&name).to_string(),
            claim_namespace: param(PARAM_PVC_NAMESPACE),
            claim_name: param(PARAM_PVC_NAME),
            pv_name: name.clone(),
        },
        name,
        vg,
        thin_limits: thin_limits(&r.parameters)?,
        thin_pool: r
            .parameters
            .get(PARAM_THIN_POOL)
            .filter(|p| !p.is_empty())
            .cloned(),
        size,
        required,
        limit,
        fs_type: cap_fs.or(param_fs),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expand {
    pub volume_id: String,
    pub required: u64,
    pub limit: u64,
    /// A block volume has no filesystem for the node to grow.
    pub node_expansion: bool,
}

pub fn expand(r: &csi::ControllerExpandVolumeRequest) -> Result<Expand> {
    let volume_id = required(&r.volume_id, "volume_id")?.to_string();
    if r.capacity_range.is_none() {
        return Err(Error::InvalidArgument("capacity_range is required".into()));
    }
    let (required, limit) = capacity(r.capacity_range.as_ref())?;
    if required == 0 && limit == 0 {
        return Err(Error::InvalidArgument(
            "capacity_range needs required_bytes or limit_bytes".into(),
        ));
    }
    let node_expansion = match &r.volume_capability {
        Some(cap) => {
            supported(cap)?;
            !matches!(cap.access_type, Some(AccessType::Block(_)))
        }
        None => true,
    };
    Ok(Expand {
        volume_id,
        required,
        limit,
        node_expansion,
    })
}

/// The capabilities a volume can have; an unsupported one is a reason, not an error.
pub fn validate(r: &csi::ValidateVolumeCapabilitiesRequest) -> Result<Option<String>> {
    required(&r.volume_id, "volume_id")?;
    if r.volume_capabilities.is_empty() {
        return Err(Error::InvalidArgument(
            "volume_capabilities is required".into(),
        ));
    }
    Ok(capabilities(&r.volume_capabilities)
        .err()
        .map(|e| e.bounded_message()))
}

/// The VG and pool GetCapacity asks about, or `None` when the answer is 0
/// (another node's topology, or capabilities a local volume cannot have).
/// A thin pool and the class's limits on it.
pub type PoolQuery = (String, ThinLimits);

/// The VG a GetCapacity asks about and, for a thin class, its pool and limits.
pub fn capacity_query(
    r: &csi::GetCapacityRequest,
    scope: &Scope,
) -> Result<Option<(String, Option<PoolQuery>)>> {
    check_parameters(&r.parameters)?;
    if r.accessible_topology
        .as_ref()
        .is_some_and(|t| !scope.is_here(t))
    {
        return Ok(None);
    }
    if !r.volume_capabilities.is_empty() && capabilities(&r.volume_capabilities).is_err() {
        return Ok(None);
    }
    let vg = scope.volume_group(&r.parameters)?;
    let pool = r
        .parameters
        .get(PARAM_THIN_POOL)
        .filter(|p| !p.is_empty())
        .cloned();
    let limits = thin_limits(&r.parameters)?;
    Ok(Some((vg, pool.zip(limits))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use csi::volume_capability::access_mode::Mode;
    use csi::volume_capability::{AccessMode, BlockVolume, MountVolume};

    fn scope() -> Scope {
        Scope {
            node_name: "n1".into(),
            topology_key: "topology.lvm.lvmpin.io/node".into(),
            volume_groups: vec!["vg0".into()],
        }
    }

    fn cap(fs: Option<&str>, mode: Mode) -> csi::VolumeCapability {
        csi::VolumeCapability {
            access_type: Some(match fs {
                None => AccessType::Block(BlockVolume {}),
                Some(f) => AccessType::Mount(MountVolume {
                    fs_type: f.into(),
                    ..Default::default()
                }),
            }),
            access_mode: Some(AccessMode { mode: mode as i32 }),
        }
    }

    fn topo(node: &str) -> csi::Topology {
        csi::Topology {
            segments: HashMap::from([("topology.lvm.lvmpin.io/node".into(), node.into())]),
        }
    }

    fn base() -> csi::CreateVolumeRequest {
        csi::CreateVolumeRequest {
            name: "pvc-6f1c0b8e-2f3a-4c55-9a43-1d2e3f405060".into(),
            volume_capabilities: vec![cap(Some("xfs"), Mode::SingleNodeWriter)],
            capacity_range: Some(csi::CapacityRange {
                required_bytes: 10 << 20,
                limit_bytes: 0,
            }),
            parameters: HashMap::from([
                (PARAM_PVC_NAME.into(), "data".into()),
                (PARAM_PVC_NAMESPACE.into(), "db".into()),
            ]),
            ..Default::default()
        }
    }

    #[test]
    fn a_good_request() {
        let c = create(&base(), &scope()).unwrap();
        assert_eq!(c.vg, "vg0");
        assert_eq!(c.lv, "pvc-6f1c0b8e-2f3a-4c55-9a43-1d2e3f405060");
        assert_eq!(c.size, 10 << 20);
        assert_eq!(c.fs_type, Some(FsType::Xfs));
        assert_eq!(c.owner.claim_uid, "6f1c0b8e-2f3a-4c55-9a43-1d2e3f405060");
        assert_eq!(
            (
                c.owner.claim_namespace.as_str(),
                c.owner.claim_name.as_str()
            ),
            ("db", "data")
        );
        assert!(c.size_fits(10 << 20) && !c.size_fits(5 << 20));
    }

    #[test]
    fn refusals() {
        type Case = (
            &'static str,
            fn(&mut csi::CreateVolumeRequest),
            fn(&Error) -> bool,
        );
        let invalid = |e: &Error| matches!(e, Error::InvalidArgument(_));
        let cases: Vec<Case> = vec![
            ("no name", |r| r.name.clear(), invalid),
            (
                "no capabilities",
                |r| r.volume_capabilities.clear(),
                invalid,
            ),
            (
                "multi node writer",
                |r| r.volume_capabilities = vec![cap(None, Mode::MultiNodeMultiWriter)],
                invalid,
            ),
            (
                "reader many",
                |r| {
                    r.volume_capabilities
                        .push(cap(Some("xfs"), Mode::MultiNodeReaderOnly))
                },
                invalid,
            ),
            (
                "btrfs",
                |r| r.volume_capabilities = vec![cap(Some("btrfs"), Mode::SingleNodeWriter)],
                invalid,
            ),
            (
                "two filesystems",
                |r| {
                    r.volume_capabilities
                        .push(cap(Some("ext4"), Mode::SingleNodeWriter))
                },
                invalid,
            ),
            (
                "typo in a parameter",
                |r| {
                    r.parameters
                        .insert("lvmpin.io/volume-grop".into(), "vg0".into());
                },
                invalid,
            ),
            (
                "a VG not served here",
                |r| {
                    r.parameters
                        .insert(PARAM_VOLUME_GROUP.into(), "rootvg".into());
                },
                invalid,
            ),
            (
                "a content source",
                |r| r.volume_content_source = Some(csi::VolumeContentSource::default()),
                invalid,
            ),
            (
                "negative size",
                |r| r.capacity_range.as_mut().unwrap().required_bytes = -1,
                invalid,
            ),
            (
                "crossed range",
                |r| r.capacity_range.as_mut().unwrap().limit_bytes = 1,
                |e| matches!(e, Error::OutOfRange(_)),
            ),
            (
                "another node's topology",
                |r| {
                    r.accessibility_requirements = Some(csi::TopologyRequirement {
                        requisite: vec![topo("n2")],
                        preferred: vec![topo("n2")],
                    })
                },
                |e| matches!(e, Error::ResourceExhausted(_)),
            ),
        ];
        for (what, edit, want) in cases {
            let mut r = base();
            edit(&mut r);
            match create(&r, &scope()) {
                Err(e) => assert!(want(&e), "{what}: {e:?}"),
                Ok(c) => panic!("{what}: accepted {c:?}"),
            }
        }
    }

    #[test]
    fn sizes_topology_and_defaults() {
        let mut r = base();
        r.capacity_range = None;
        r.volume_capabilities = vec![cap(Some(""), Mode::SingleNodeSingleWriter)];
        r.parameters.insert(PARAM_FSTYPE.into(), "ext4".into());
        r.accessibility_requirements = Some(csi::TopologyRequirement {
            requisite: vec![topo("n2"), topo("n1")],
            preferred: vec![],
        });
        r.name = "sanity name with spaces".into();
        let c = create(&r, &scope()).unwrap();
        assert_eq!(c.size, DEFAULT_SIZE);
        assert_eq!(c.fs_type, Some(FsType::Ext4));
        assert!(c.lv.starts_with("csi-"));
        assert_eq!(c.owner.claim_uid, "");
        assert_eq!(c.owner.pv_name, "sanity name with spaces");

        r.capacity_range = Some(csi::CapacityRange {
            required_bytes: 0,
            limit_bytes: 4 << 20,
        });
        assert_eq!(create(&r, &scope()).unwrap().size, 4 << 20);
    }

    #[test]
    fn volume_group_choice() {
        let two = Scope {
            volume_groups: vec!["vg0".into(), "vg1".into()],
            ..scope()
        };
        let mut r = base();
        assert!(
            matches!(create(&r, &two), Err(Error::InvalidArgument(m)) if m.contains(PARAM_VOLUME_GROUP))
        );
        r.parameters.insert(PARAM_VOLUME_GROUP.into(), "vg1".into());
        assert_eq!(create(&r, &two).unwrap().vg, "vg1");
        assert_eq!(two.our_id("vg1/x").map(|i| i.lv), Some("x".into()));
        assert_eq!(two.our_id("rootvg/root"), None);
        assert_eq!(two.our_id("nonsense"), None);
    }

    #[test]
    fn expansion_and_validation() {
        let e = expand(&csi::ControllerExpandVolumeRequest {
            volume_id: "vg0/a".into(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: 20 << 20,
                limit_bytes: 0,
            }),
            volume_capability: Some(cap(None, Mode::SingleNodeWriter)),
            ..Default::default()
        })
        .unwrap();
        assert!(!e.node_expansion);
        assert_eq!(e.required, 20 << 20);
        assert!(matches!(
            expand(&csi::ControllerExpandVolumeRequest {
                volume_id: "vg0/a".into(),
                ..Default::default()
            }),
            Err(Error::InvalidArgument(m)) if m.contains("capacity_range")
        ));
        let v = |caps| csi::ValidateVolumeCapabilitiesRequest {
            volume_id: "vg0/a".into(),
            volume_capabilities: caps,
            ..Default::default()
        };
        assert_eq!(
            validate(&v(vec![cap(Some("ext4"), Mode::SingleNodeWriter)])).unwrap(),
            None
        );
        assert!(
            validate(&v(vec![cap(Some("ext4"), Mode::MultiNodeMultiWriter)]))
                .unwrap()
                .is_some()
        );
        assert!(validate(&v(vec![])).is_err());
    }

    #[test]
    fn capacity_queries() {
        let q =
            |topology: Option<csi::Topology>, params: &[(&str, &str)]| csi::GetCapacityRequest {
                accessible_topology: topology,
                parameters: params
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            };
        assert_eq!(
            capacity_query(&q(None, &[]), &scope()).unwrap(),
            Some(("vg0".into(), None))
        );
        assert_eq!(
            capacity_query(&q(Some(topo("n2")), &[]), &scope()).unwrap(),
            None
        );
        assert_eq!(
            capacity_query(&q(Some(topo("n1")), &[(PARAM_THIN_POOL, "tp")]), &scope()).unwrap(),
            Some(("vg0".into(), Some(("tp".into(), ThinLimits::default()))))
        );
        assert!(capacity_query(&q(None, &[(PARAM_VOLUME_GROUP, "other")]), &scope()).is_err());
    }
}
