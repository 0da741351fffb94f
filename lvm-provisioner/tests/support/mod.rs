//! The agent's test world: a Context on a mock API server (the call
//! verifier of lvmpin-testkit) with caches the test fills by hand.
#![allow(dead_code)]

pub mod vm;

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Client;
use kube::client::Body;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use lvmpin_provisioner::backend::VolumeBackend;
use lvmpin_provisioner::context::{AgentConfig, Caches, Context};
use lvmpin_provisioner::metrics::Metrics;
use tower_test::mock::Handle;

pub use lvmpin_testkit::{Call, verify};

pub const NOW: &str = "2026-01-01T00:00:00Z";

pub struct World<B> {
    pub ctx: Arc<Context<B>>,
    pub handle: Option<Handle<Request<Body>, Response<Body>>>,
    pub classes: Writer<StorageClass>,
    pub volumes: Writer<PersistentVolume>,
    pub claims: Writer<PersistentVolumeClaim>,
}

pub fn config(spare: u64) -> AgentConfig {
    AgentConfig {
        node_name: "n1".into(),
        volume_groups: vec!["vg0".into()],
        spare_bytes: spare,
        scan_interval: Duration::from_secs(10),
        report_heartbeat: Duration::from_secs(60),
        namespace: None,
        host_problem: None,
    }
}

pub fn world<B: VolumeBackend>(backend: B, config: AgentConfig) -> World<B> {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let (classes_r, classes) = reflector::store();
    let (volumes_r, volumes) = reflector::store();
    let (claims_r, claims) = reflector::store();
    let caches = Caches {
        classes: classes_r,
        volumes: volumes_r,
        claims: claims_r,
    };
    let ctx = Context::new(
        client,
        backend,
        config,
        caches,
        Arc::new(Metrics::default()),
        Arc::new(|| NOW.to_string()),
    );
    World {
        ctx: Arc::new(ctx),
        handle: Some(handle),
        classes,
        volumes,
        claims,
    }
}

impl<B: VolumeBackend> World<B> {
    pub fn add_class(&mut self, c: StorageClass) {
        self.classes.apply_watcher_event(&watcher::Event::Apply(c));
    }
    pub fn add_pv(&mut self, pv: PersistentVolume) {
        self.volumes.apply_watcher_event(&watcher::Event::Apply(pv));
    }
    pub fn add_claim(&mut self, c: PersistentVolumeClaim) {
        self.claims.apply_watcher_event(&watcher::Event::Apply(c));
    }

    /// Runs `fut` against the expected calls; both must finish in time.
    pub async fn run<T>(&mut self, calls: Vec<Call>, fut: impl Future<Output = T>) -> T {
        let handle = self.handle.take().expect("one scenario per world");
        let verifier = tokio::spawn(verify(handle, calls));
        let out = tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .expect("reconcile did not finish: an unexpected API call is waiting for an answer");
        match verifier.await {
            Ok(()) => {}
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("verifier: {e}"),
        }
        out
    }
}
