//! A kube-scheduler stand-in that treats HTTP extenders as kube-scheduler does.
//!
//! One pod at a time goes through the scheduling cycle (PreFilter and Filter of
//! VolumeBinding, extender filter, extender prioritize, host selection,
//! Reserve). The binding cycle (PreBind writes `selected-node` with the
//! resourceVersion read at cycle start and waits for the claims to bind, then
//! Bind) runs in its own task, so the next pod's cycle starts meanwhile. A
//! failure anywhere sends the pod back to the queue with backoff.

pub mod extender;
pub mod nodes;
pub mod queue;
pub mod scoring;
pub mod stats;
pub mod volume_binding;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Binding, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::{CSIDriver, CSIStorageCapacity, StorageClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource};
use tokio::sync::Notify;

use crate::informer::Informer;
pub use extender::{Extender, ExtenderConfig};
use queue::{PodKey, Queue};
pub use stats::{SchedulerStats, StatsSnapshot};
use volume_binding::{BindingCheck, CapacityView, PodVolumes};

pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Pods whose `spec.schedulerName` is this (or empty) are scheduled.
    pub scheduler_name: String,
    pub extenders: Vec<ExtenderConfig>,
    /// VolumeBinding's `bindTimeoutSeconds` (600 s by default).
    pub bind_timeout: Duration,
    /// How often PreBind re-checks the claims (1 s in kube-scheduler).
    pub bind_poll: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            scheduler_name: DEFAULT_SCHEDULER_NAME.into(),
            extenders: Vec::new(),
            bind_timeout: Duration::from_secs(600),
            bind_poll: Duration::from_secs(1),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
        }
    }
}

struct Shared {
    client: Client,
    cfg: SchedulerConfig,
    extenders: Vec<Extender>,
    stats: Arc<SchedulerStats>,
    recorder: Recorder,
    pods: Store<Pod>,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    nodes: Store<Node>,
    classes: Store<StorageClass>,
    capacities: Store<CSIStorageCapacity>,
    drivers: Store<CSIDriver>,
    queue: Mutex<Queue>,
    wake: Arc<Notify>,
    /// Cancelled when the scheduler stops, ending binding cycles in flight.
    stop: tokio_util::sync::CancellationToken,
}

/// Why an attempt ended without a binding.
struct Failure {
    reason: String,
    reschedule: bool,
    /// No node fitted: the pod waits for a cluster event, not just a backoff.
    unschedulable: bool,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            reschedule: false,
            unschedulable: false,
        }
    }

    fn unschedulable(reason: impl Into<String>) -> Self {
        Self {
            unschedulable: true,
            ..Self::new(reason)
        }
    }
}

fn lock(q: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    // A panic while holding the lock cannot leave the queue half-updated in a
    // way that matters more than stopping the simulator would.
    q.lock().unwrap_or_else(|p| p.into_inner())
}

fn is_pending(pod: &Pod, scheduler_name: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let ours = spec
        .scheduler_name
        .as_deref()
        .is_none_or(|n| n.is_empty() || n == scheduler_name);
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    ours && spec.node_name.as_deref().is_none_or(str::is_empty)
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(phase, Some("Succeeded") | Some("Failed"))
}

fn pod_key(pod: &Pod) -> Option<PodKey> {
    Some(PodKey {
        namespace: pod.metadata.namespace.clone()?,
        name: pod.metadata.name.clone()?,
        uid: pod.metadata.uid.clone()?,
    })
}

/// Runs the scheduler until the task is dropped or aborted.
pub async fn run(client: Client, cfg: SchedulerConfig, stats: Arc<SchedulerStats>) {
    let wake = Arc::new(Notify::new());
    // Any change the informers see is a cluster event for parked pods.
    let events = Arc::new(Notify::new());
    let pods = Informer::start(Api::<Pod>::all(client.clone()), events.clone());
    let claims = Informer::start(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        events.clone(),
    );
    let volumes = Informer::start(Api::<PersistentVolume>::all(client.clone()), events.clone());
    let nodes = Informer::start(Api::<Node>::all(client.clone()), events.clone());
    let classes = Informer::start(Api::<StorageClass>::all(client.clone()), events.clone());
    // Read by volume binding's capacity check; updates requeue parked pods.
    let capacities = Informer::start(
        Api::<CSIStorageCapacity>::all(client.clone()),
        events.clone(),
    );
    let drivers = Informer::start(Api::<CSIDriver>::all(client.clone()), events.clone());
    pods.synced().await;
    claims.synced().await;
    volumes.synced().await;
    nodes.synced().await;
    classes.synced().await;
    capacities.synced().await;
    drivers.synced().await;
    tracing::info!("scheduler: caches synced");
    let shared = Arc::new(Shared {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: DEFAULT_SCHEDULER_NAME.into(),
                instance: Some("lvmpin-sim".into()),
            },
        ),
        client,
        extenders: cfg.extenders.iter().cloned().map(Extender::new).collect(),
        queue: Mutex::new(Queue::new(cfg.initial_backoff, cfg.max_backoff)),
        cfg,
        stats,
        pods: pods.store.clone(),
        claims: claims.store.clone(),
        volumes: volumes.store.clone(),
        nodes: nodes.store.clone(),
        classes: classes.store.clone(),
        capacities: capacities.store.clone(),
        drivers: drivers.store.clone(),
        wake: wake.clone(),
        stop: tokio_util::sync::CancellationToken::new(),
    });
    let _stop_on_drop = shared.stop.clone().drop_guard();
    loop {
        let now = Instant::now();
        let next = {
            let pending = shared
                .pods
                .state()
                .iter()
                .filter(|p| is_pending(p, &shared.cfg.scheduler_name))
                .filter_map(|p| pod_key(p))
                .collect::<Vec<_>>();
            let mut q = lock(&shared.queue);
            q.sync(pending, now);
            q.pop(now).ok_or_else(|| q.next_ready())
        };
        match next {
            Ok(key) => schedule_one(&shared, key).await,
            Err(ready_at) => {
                let until = ready_at.unwrap_or(now + Duration::from_secs(1));
                let until = until.max(now + Duration::from_millis(5));
                tokio::select! {
                    _ = events.notified() => lock(&shared.queue).move_unschedulable(),
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep_until(until.into()) => {}
                }
            }
        }
    }
}

fn claim_getter(
    store: &Store<PersistentVolumeClaim>,
    ns: &str,
) -> impl Fn(&str) -> Option<PersistentVolumeClaim> {
    let store = store.clone();
    let ns = ns.to_string();
    move |name| {
        store
            .get(&ObjectRef::new(name).within(&ns))
            .map(|c| (*c).clone())
    }
}

/// The scheduling cycle for one pod; the binding cycle is spawned from here.
async fn schedule_one(shared: &Arc<Shared>, key: PodKey) {
    shared.stats.attempts.inc();
    let started = Instant::now();
    let pod = shared
        .pods
        .get(&ObjectRef::new(&key.name).within(&key.namespace))
        .filter(|p| p.metadata.uid.as_deref() == Some(key.uid.as_str()));
    let Some(pod) = pod.filter(|p| is_pending(p, &shared.cfg.scheduler_name)) else {
        lock(&shared.queue).done(&key.uid, Instant::now());
        return;
    };
    let found = find_node(shared, &pod).await;
    tracing::debug!(pod = %key, elapsed = ?started.elapsed(), ok = found.is_ok(), "scheduling cycle done");
    match found {
        Ok((node, volumes)) => {
            let assumed = volumes.assume(node.metadata.name.as_deref().unwrap_or(""));
            let shared = shared.clone();
            tokio::spawn(async move {
                let stop = shared.stop.clone();
                tokio::select! {
                    outcome = binding_cycle(&shared, &pod, &node, assumed) => {
                        finish(&shared, &pod, &key, &node, started, outcome).await;
                    }
                    _ = stop.cancelled() => {}
                }
            });
        }
        Err(f) => {
            shared.stats.unschedulable.inc();
            let shared = shared.clone();
            tokio::spawn(async move {
                fail(&shared, &pod, &key, f).await;
            });
        }
    }
}

/// PreFilter, Filter, extenders' filter and prioritize, selectHost.
async fn find_node(shared: &Shared, pod: &Pod) -> Result<(Arc<Node>, PodVolumes), Failure> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let volumes_store = shared.volumes.clone();
    let classes_store = shared.classes.clone();
    let volumes = volume_binding::collect(
        pod,
        claim_getter(&shared.claims, &ns),
        |n| volumes_store.get(&ObjectRef::new(n)).map(|v| (*v).clone()),
        |n| classes_store.get(&ObjectRef::new(n)).map(|c| (*c).clone()),
    )
    .map_err(Failure::unschedulable)?;

    let capacity = CapacityView {
        drivers: shared.drivers.state(),
        capacities: shared.capacities.state(),
    };
    let mut all_nodes = shared.nodes.state();
    all_nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let total = all_nodes.len();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut feasible: Vec<Arc<Node>> = Vec::new();
    for n in all_nodes {
        let verdict = if !lvmpin_api::node::is_schedulable(&n) {
            Err("node(s) were unschedulable or not ready")
        } else if !nodes::matches_node_selector(pod, &n) {
            Err("node(s) didn't match Pod's node affinity/selector")
        } else {
            volumes.node_fits(&n, &capacity)
        };
        match verdict {
            Ok(()) => feasible.push(n),
            Err(r) => *reasons.entry(r.to_string()).or_default() += 1,
        }
    }

    for ext in shared
        .extenders
        .iter()
        .filter(|e| e.config.is_interested(pod))
    {
        let Some(verb) = ext.config.filter_verb.as_deref() else {
            continue;
        };
        if feasible.is_empty() {
            break;
        }
        let refs: Vec<&Node> = feasible.iter().map(|n| n.as_ref()).collect();
        let names: Vec<&str> = refs
            .iter()
            .map(|n| n.metadata.name.as_deref().unwrap_or(""))
            .collect();
        let result = match ext.serialize_args(pod, &refs) {
            Ok(body) => ext.filter(verb, body).await,
            Err(e) => Err(e),
        };
        let result = result.map_err(|e| e.to_string()).and_then(|r| {
            if !r.error.is_empty() {
                return Err(format!(
                    "extender {} filter error: {}",
                    ext.config.url_prefix, r.error
                ));
            }
            if r.from_names {
                wire::check_subset(&names, &r.nodes)?;
            }
            Ok(r)
        });
        let r = match result {
            Ok(r) => r,
            Err(e) => {
                shared.stats.extender_errors.inc();
                if ext.config.ignorable {
                    tracing::warn!(error = %e, "ignorable extender failed; skipped");
                    continue;
                }
                return Err(Failure::new(e));
            }
        };
        for (_, reason) in r.failed.iter().chain(&r.unresolvable) {
            *reasons.entry(reason.clone()).or_default() += 1;
        }
        let passed: std::collections::HashSet<&str> = r.nodes.iter().map(String::as_str).collect();
        feasible.retain(|n| passed.contains(n.metadata.name.as_deref().unwrap_or("")));
    }
    if feasible.is_empty() {
        let detail = reasons
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Failure::unschedulable(format!(
            "0/{total} nodes are available: {detail}."
        )));
    }
    // kube-scheduler skips scoring entirely when only one node is feasible.
    if feasible.len() == 1 {
        let node = feasible.remove(0);
        return Ok((node, volumes));
    }
    let mut totals: BTreeMap<String, i64> = feasible
        .iter()
        .map(|n| (n.metadata.name.clone().unwrap_or_default(), 0))
        .collect();
    for ext in shared
        .extenders
        .iter()
        .filter(|e| e.config.is_interested(pod))
    {
        let Some(verb) = ext.config.prioritize_verb.as_deref() else {
            continue;
        };
        let refs: Vec<&Node> = feasible.iter().map(|n| n.as_ref()).collect();
        let scores = match ext.serialize_args(pod, &refs) {
            Ok(body) => ext.prioritize(verb, body).await,
            Err(e) => Err(e),
        };
        match scores {
            Ok(s) => scoring::add_extender_scores(&mut totals, &s, ext.config.weight),
            // kube-scheduler ignores prioritize errors.
            Err(e) => {
                shared.stats.extender_errors.inc();
                tracing::debug!(error = %e, "prioritize failed; ignored");
            }
        }
    }
    let best = scoring::pick_best(&totals).unwrap_or_default();
    let node = feasible
        .into_iter()
        .find(|n| n.metadata.name.as_deref() == Some(best.as_str()))
        .ok_or_else(|| Failure::new("no node selected"))?;
    Ok((node, volumes))
}

/// PreBind (claim writes with the cycle-start resourceVersion, then wait) and Bind.
async fn binding_cycle(
    shared: &Shared,
    pod: &Pod,
    node: &Node,
    assumed: Vec<PersistentVolumeClaim>,
) -> Result<(), Failure> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let node_name = node.metadata.name.clone().unwrap_or_default();
    let claims_api = Api::<PersistentVolumeClaim>::namespaced(shared.client.clone(), &ns);
    let mut written = Vec::new();
    for claim in &assumed {
        let name = claim.metadata.name.clone().unwrap_or_default();
        match claims_api
            .replace(&name, &PostParams::default(), claim)
            .await
        {
            Ok(w) => written.push(w),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                shared.stats.conflicts.inc();
                return Err(Failure::new(format!(
                    "running PreBind plugin \"VolumeBinding\": binding volumes: {}",
                    s.message
                )));
            }
            Err(e) => {
                return Err(Failure::new(format!(
                    "running PreBind plugin \"VolumeBinding\": binding volumes: {e}"
                )));
            }
        }
    }
    if !written.is_empty() {
        let deadline = Instant::now() + shared.cfg.bind_timeout;
        loop {
            let alive = shared
                .pods
                .get(&ObjectRef::new(&pod_name).within(&ns))
                .is_some_and(|p| {
                    p.metadata.uid == pod.metadata.uid && p.metadata.deletion_timestamp.is_none()
                });
            if !alive {
                return Err(Failure::new(
                    "pod was deleted while its volumes were binding",
                ));
            }
            let claims = shared.claims.clone();
            let volumes = shared.volumes.clone();
            let check = volume_binding::check_bindings(
                &written,
                node,
                |ns, name| {
                    claims
                        .get(&ObjectRef::new(name).within(ns))
                        .map(|c| (*c).clone())
                },
                |name| volumes.get(&ObjectRef::new(name)).map(|v| (*v).clone()),
            );
            match check {
                BindingCheck::Done => break,
                BindingCheck::Waiting => {}
                BindingCheck::Failed { reason, reschedule } => {
                    return Err(Failure {
                        reschedule,
                        ..Failure::new(format!(
                            "running PreBind plugin \"VolumeBinding\": {reason}"
                        ))
                    });
                }
            }
            if Instant::now() >= deadline {
                return Err(Failure::new(format!(
                    "running PreBind plugin \"VolumeBinding\": binding volumes: timed out waiting for the condition after {:?}",
                    shared.cfg.bind_timeout
                )));
            }
            tokio::time::sleep(shared.cfg.bind_poll).await;
        }
    }
    bind(shared, pod, &node_name).await
}

async fn bind(shared: &Shared, pod: &Pod, node: &str) -> Result<(), Failure> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    // kube-scheduler's extendersBinding (pkg/scheduler/schedule_one.go): the
    // binder extender binds; a failing ignorable one falls through to the
    // default binder.
    for ext in shared
        .extenders
        .iter()
        .filter(|e| e.config.is_interested(pod))
    {
        let Some(verb) = ext.config.bind_verb.as_deref() else {
            continue;
        };
        let args = wire::ExtenderBindingArgs {
            pod_name: name.clone(),
            pod_namespace: ns.clone(),
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
            node: node.to_string(),
        };
        match ext.bind(verb, &args).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                shared.stats.extender_errors.inc();
                if !ext.config.ignorable {
                    return Err(Failure::new(format!("binding rejected: {e}")));
                }
                tracing::warn!(error = %e, "ignorable extender failed to bind; default binder used");
            }
        }
    }
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    };
    Api::<Pod>::namespaced(shared.client.clone(), &ns)
        .create_subresource::<Binding, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await
        .map(|_| ())
        .map_err(|e| Failure::new(format!("binding rejected: {e}")))
}

async fn finish(
    shared: &Shared,
    pod: &Pod,
    key: &PodKey,
    node: &Node,
    started: Instant,
    outcome: Result<(), Failure>,
) {
    match outcome {
        Ok(()) => {
            shared.stats.bound.inc();
            shared
                .stats
                .binding_seconds
                .observe(started.elapsed().as_secs_f64());
            lock(&shared.queue).done(&key.uid, Instant::now());
            let node = node.metadata.name.as_deref().unwrap_or("");
            tracing::info!(pod = %key, node, "bound");
            publish(
                shared,
                pod,
                EventType::Normal,
                "Scheduled",
                format!("Successfully assigned {key} to {node}"),
            )
            .await;
        }
        Err(f) => fail(shared, pod, key, f).await,
    }
    shared.wake.notify_one();
}

async fn fail(shared: &Shared, pod: &Pod, key: &PodKey, f: Failure) {
    shared.stats.retries.inc();
    if f.reschedule {
        shared.stats.reschedules.inc();
    }
    if f.unschedulable {
        lock(&shared.queue).unschedulable(&key.uid, Instant::now());
    } else {
        lock(&shared.queue).failed(&key.uid, Instant::now());
    }
    tracing::info!(pod = %key, reason = %f.reason, reschedule = f.reschedule, unschedulable = f.unschedulable, "scheduling attempt failed");
    publish(
        shared,
        pod,
        EventType::Warning,
        "FailedScheduling",
        f.reason,
    )
    .await;
    shared.wake.notify_one();
}

async fn publish(shared: &Shared, pod: &Pod, type_: EventType, reason: &str, note: String) {
    let ev = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        action: "Scheduling".into(),
        secondary: None,
    };
    if let Err(e) = shared.recorder.publish(&ev, &pod.object_ref(&())).await {
        tracing::debug!(error = %e, "event not recorded");
    }
}
