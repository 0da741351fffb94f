//! How long snapshots, restores and clones take on the upstream control
//! plane, with the agent on a real kernel in the QEMU guest
//! (`lvmpin_e2e::vm_node`; the checks of their data are in
//! tests/snapshots_vm.rs). Per round:
//!
//! - VolumeSnapshot created → its `status.readyToUse` (the upstream
//!   snapshot-controller, the agent's thin snapshot, the controller again);
//! - restore claim (and its pod) created → claim Bound (kube-scheduler with
//!   the extender, the agent's thin LV and PV, the PV controller);
//! - clone claim (and its pod) created → claim Bound.
//!
//! The agent and lvm2 run under instruction emulation (TCG), so these are
//! not hardware numbers; the control plane runs natively on the host.
//!
//!   cargo bench -p lvmpin-e2e --bench snapshot_vm   (LVMPIN_SNAPSHOT_BENCH_ROUNDS, default 5)

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DynamicObject, PostParams};
use lvmpin_api::snapshot::VolumeSnapshot;
use lvmpin_e2e::vm_node::start_cluster;
use lvmpin_sim::{wait, workload};

const NS: &str = "default";
const CLASS: &str = "thin";
const TIMEOUT: Duration = Duration::from_secs(240);
/// Polling interval of the waits: the resolution of every number.
const EVERY: Duration = Duration::from_millis(50);

async fn claim_bound(claims: &Api<PersistentVolumeClaim>, name: &str) -> Result<()> {
    wait::until(&format!("claim {name} bound"), TIMEOUT, EVERY, || async {
        let c = claims.get(name).await.ok()?;
        (c.status?.phase.as_deref() == Some("Bound")).then_some(())
    })
    .await?;
    Ok(())
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn summary(name: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    println!(
        "{name:<34} p50 {:>8.0} ms   min {:>8.0} ms   max {:>8.0} ms   (n={})",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1],
        v.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let rounds: usize = std::env::var("LVMPIN_SNAPSHOT_BENCH_ROUNDS")
        .ok()
        .map(|v| v.parse().context("LVMPIN_SNAPSHOT_BENCH_ROUNDS"))
        .transpose()?
        .unwrap_or(5)
        .max(1);
    let (tb, node) = start_cluster(CLASS, TIMEOUT).await?;
    let client = tb.client();
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS);
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    let snapshots = Api::<VolumeSnapshot>::namespaced(client.clone(), NS);
    let (class, ar) = workload::volume_snapshot_class("thin", "Delete");
    Api::<DynamicObject>::all_with(client.clone(), &ar)
        .create(&PostParams::default(), &class)
        .await?;
    let schedule = async |claim: PersistentVolumeClaim, pod: &str| -> Result<()> {
        let name = claim.metadata.name.clone().unwrap_or_default();
        claims.create(&PostParams::default(), &claim).await?;
        pods.create(&PostParams::default(), &workload::pod(NS, pod, &[name]))
            .await?;
        Ok(())
    };
    schedule(workload::claim(NS, "src", CLASS, "64Mi"), "writer").await?;
    claim_bound(&claims, "src").await?;

    let (mut ready, mut restored, mut cloned) = (vec![], vec![], vec![]);
    for i in 0..rounds {
        let snap = format!("snap-{i}");
        let t = Instant::now();
        snapshots
            .create(
                &PostParams::default(),
                &workload::volume_snapshot(&snap, "src", "thin"),
            )
            .await?;
        wait::until(&format!("{snap} readyToUse"), TIMEOUT, EVERY, || async {
            let s = snapshots.get(&snap).await.ok()?.status?;
            (s.ready_to_use == Some(true)).then_some(())
        })
        .await?;
        ready.push(millis(t.elapsed()));

        let name = format!("restore-{i}");
        let t = Instant::now();
        schedule(
            workload::restore_claim(NS, &name, CLASS, "64Mi", &snap),
            &format!("reader-{i}"),
        )
        .await?;
        claim_bound(&claims, &name).await?;
        restored.push(millis(t.elapsed()));

        let name = format!("clone-{i}");
        let t = Instant::now();
        schedule(
            workload::clone_claim(NS, &name, CLASS, "64Mi", "src"),
            &format!("cloner-{i}"),
        )
        .await?;
        claim_bound(&claims, &name).await?;
        cloned.push(millis(t.elapsed()));
        println!(
            "round {i}: snapshot ready {:.0} ms, restore bound {:.0} ms, clone bound {:.0} ms",
            ready[i], restored[i], cloned[i]
        );
    }
    println!("BENCH snapshot_vm (agent under TCG, control plane native; ±{EVERY:?} polling)");
    summary("VolumeSnapshot → readyToUse", ready);
    summary("restore claim → Bound", restored);
    summary("clone claim → Bound", cloned);
    let run = node.stop().await?;
    anyhow::ensure!(run.success, "guest failed:\n{}", run.console);
    tb.shutdown().await;
    Ok(())
}
