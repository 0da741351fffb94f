//! Everything a reconcile needs, in one place.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use lvmpin_api::{LvmNode, LvmNodeStatus};
use tokio::sync::Notify;

use crate::backend::Scan;
use crate::backoff::Backoff;
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    pub volume_groups: Vec<String>,
    /// Bytes every VG keeps free; a create that would eat into them is
    /// treated like "no room" and the claim is rescheduled.
    pub spare_bytes: u64,
    pub scan_interval: Duration,
    /// Longest time between two writes of the LvmNode report.
    pub report_heartbeat: Duration,
    /// Where this node's CSIStorageCapacity objects live; `None`: none kept.
    pub namespace: Option<String>,
    /// Why this node must not provision at all (`lvm_mode`): its VGs are
    /// then reported unhealthy and claims are handed back. `None`: it may.
    pub host_problem: Option<String>,
}

/// What the PV and claim caches hold, and so what a name missing from them
/// means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheScope {
    /// Every PV and claim of the cluster: a name not cached does not exist.
    Cluster,
    /// This node's PVs (by label) and the claims that concern this node
    /// (`node_scope`), as the running agent keeps them: a name not cached may
    /// still exist, and the few questions about other objects (is a PV name
    /// taken, which claim owns an LV found at startup) are asked with a GET.
    Node,
}

/// Read-only caches filled by the watches.
#[derive(Clone)]
pub struct Caches {
    pub classes: Store<StorageClass>,
    pub volumes: Store<PersistentVolume>,
    pub claims: Store<PersistentVolumeClaim>,
}

impl Caches {
    pub fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.get(&ObjectRef::new(name))
    }

    pub fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volumes.get(&ObjectRef::new(name))
    }
}

pub type Clock = Arc<dyn Fn() -> String + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

pub struct Context<B> {
    pub client: Client,
    pub backend: B,
    pub config: AgentConfig,
    pub caches: Caches,
    /// `Cluster` unless `with_cache_scope` says otherwise.
    pub cache_scope: CacheScope,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub backoff: Backoff,
    /// The last volume scan, kept current by our own changes. The mutex also
    /// serialises "check free space, then create" so two claims cannot both
    /// pass the spare-bytes check on the same free space.
    pub lvm_state: tokio::sync::Mutex<Option<Scan>>,
    /// Poked after every LV change so that the LvmNode status follows at once.
    pub status_dirty: Notify,
    /// The status last written, to skip writes that change nothing.
    pub last_status: Mutex<Option<LvmNodeStatus>>,
    /// When `last_status` was written.
    pub last_written: Mutex<Option<std::time::Instant>>,
    /// The LvmNode's uid once created or read, for owner references.
    pub lvm_node_uid: Mutex<Option<String>>,
    /// Poked after each capacity report, for the CSIStorageCapacity task.
    pub capacity_dirty: Notify,
    /// CSIStorageCapacity (capacity, maximum) per object name as last written;
    /// `None` until the namespace was listed (and after a failed write).
    pub capacity_written: tokio::sync::Mutex<Option<CapacityWritten>>,
    pub clock: Clock,
    /// `vg/lv` of every orphan LV reported since start (the gauge is its size).
    pub orphans: Mutex<BTreeSet<String>>,
    /// Claim uids whose provisioning (LV create, PV create) is under way.
    pub provisioning: Mutex<BTreeSet<String>>,
    /// Thin pool uses over their warning threshold at the last scan, so
    /// that a warning is given on crossing only (`thin_warnings`).
    pub thin_over: Mutex<crate::thin_warnings::Over>,
}

/// One claim's provisioning in flight; the uid is released on drop, whatever
/// way the operation ends.
pub struct InFlight<'a> {
    set: &'a Mutex<BTreeSet<String>>,
    uid: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.uid);
    }
}

pub type CapacityWritten = BTreeMap<String, (String, String)>;

impl<B> Context<B> {
    pub fn new(
        client: Client,
        backend: B,
        config: AgentConfig,
        caches: Caches,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "lvmpin-agent".into(),
                instance: Some(format!("lvmpin-agent-{}", config.node_name)),
            },
        );
        Self {
            client,
            backend,
            config,
            caches,
            cache_scope: CacheScope::Cluster,
            recorder,
            metrics,
            backoff: Backoff::default(),
            lvm_state: tokio::sync::Mutex::new(None),
            status_dirty: Notify::new(),
            last_status: Mutex::new(None),
            last_written: Mutex::new(None),
            lvm_node_uid: Mutex::new(None),
            capacity_dirty: Notify::new(),
            capacity_written: tokio::sync::Mutex::new(None),
            clock,
            orphans: Mutex::new(BTreeSet::new()),
            provisioning: Mutex::new(BTreeSet::new()),
            thin_over: Mutex::default(),
        }
    }

    /// The same context over caches that hold `scope`.
    pub fn with_cache_scope(mut self, scope: CacheScope) -> Self {
        self.cache_scope = scope;
        self
    }

    /// Claims one claim's provisioning; `None` when another call already
    /// runs it, so that LV and PV are made (and announced) once.
    pub fn begin_provisioning(&self, claim_uid: &str) -> Option<InFlight<'_>> {
        let mut set = self.provisioning.lock().unwrap_or_else(|e| e.into_inner());
        set.insert(claim_uid.to_string()).then(|| InFlight {
            set: &self.provisioning,
            uid: claim_uid.to_string(),
        })
    }

    pub fn now(&self) -> String {
        (self.clock)()
    }

    /// This node's LvmNode as an owner, once its uid is known.
    pub fn lvm_node_owner(&self) -> Option<OwnerReference> {
        let uid = self
            .lvm_node_uid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        Some(OwnerReference {
            api_version: <LvmNode as kube::Resource>::api_version(&()).into_owned(),
            kind: "LvmNode".into(),
            name: self.config.node_name.clone(),
            uid,
            ..Default::default()
        })
    }
}
