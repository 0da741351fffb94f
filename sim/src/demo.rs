//! `lvmpin-sim demo`: lvmpin working on one machine, start to finish.
//!
//! It checks for lvm2 (installing it with apt-get when missing), makes a
//! loop-backed VG for each of 3 simulated nodes, runs the real extender and
//! agents against the simulated control plane, schedules a StatefulSet, prints
//! where everything landed, and removes every loop device, VG and file, also on
//! Ctrl-C.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::ListParams;
use lvmpin_api::LvmNode;

use crate::error::{Error, Result};
use crate::testbed::{Backend, Binaries, Mode, Testbed, TestbedOptions};
use crate::wait;
use crate::workload::StatefulSetLike;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub nodes: usize,
    pub vg_bytes: u64,
    pub replicas: usize,
    pub mode: Mode,
    /// Install lvm2 with apt-get when it is missing.
    pub install: bool,
    pub backend: Backend,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            vg_bytes: 1 << 30,
            replicas: 3,
            mode: Mode::Decisive,
            install: true,
            backend: Backend::Sim,
        }
    }
}

fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        pb.set_style(style);
    }
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

fn find_in_path(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/sbin", "/usr/sbin", "/usr/local/sbin"]
                .iter()
                .map(Into::into),
        )
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn run_checked(program: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| Error::Command {
            command: format!("{program} {}", args.join(" ")),
            reason: e.to_string(),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: format!("{program} {}", args.join(" ")),
            reason: status.to_string(),
        })
    }
}

/// Root, lvm2 and losetup; installs lvm2 with apt-get when allowed.
pub fn check_prerequisites(install: bool) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::Command {
            command: "lvmpin-sim demo".into(),
            reason: "must run as root: it creates loop devices and LVM volume groups (try: sudo -E cargo run --release -p lvmpin-sim -- demo)".into(),
        });
    }
    if find_in_path("losetup").is_none() {
        return Err(Error::BinaryMissing(
            "losetup (Debian/Ubuntu package `mount`: apt-get install mount)".into(),
        ));
    }
    if find_in_path("lvm").is_some() {
        return Ok(());
    }
    let apt = find_in_path("apt-get");
    match (install, apt) {
        (true, Some(_)) => {
            println!("lvm2 is not installed; installing it with apt-get");
            run_checked("apt-get", &["update", "-q"])?;
            run_checked("apt-get", &["install", "-y", "-q", "--no-install-recommends", "lvm2"])?;
            if find_in_path("lvm").is_none() {
                return Err(Error::BinaryMissing("lvm (apt-get install lvm2 did not provide it)".into()));
            }
            Ok(())
        }
        _ => Err(Error::BinaryMissing(
            "lvm: install lvm2 (Debian/Ubuntu: apt-get install --no-install-recommends lvm2; Fedora: dnf install lvm2)".into(),
        )),
    }
}

/// The whole demo; cleanup happens when the testbed is dropped, which also
/// happens when the caller drops this future on Ctrl-C.
pub async fn run(opts: DemoOptions) -> Result<()> {
    tokio::task::spawn_blocking(move || check_prerequisites(opts.install))
        .await
        .map_err(|e| Error::ApiServer(format!("prerequisite check failed: {e}")))??;
    if !crate::testbed::node_disk::device_mapper_present() {
        println!(
            "note: this kernel has no device-mapper; LVM runs in metadata-only mode (LVs are created and listed, not activated)"
        );
    }

    // cargo draws its own progress bar when it has to build.
    println!("step 1/4: release builds of lvmpin-scheduler-extender and lvmpin-agent");
    let bins = tokio::task::spawn_blocking(|| Binaries::locate_or_build(true))
        .await
        .map_err(|e| Error::ApiServer(format!("build task failed: {e}")))??;

    let pb = spinner(&format!(
        "step 2/4: starting the {} control plane, {} loop-backed VGs, {} agents and the extender",
        match opts.backend {
            Backend::Sim => "simulated",
            Backend::Kube => "upstream (kube-local)",
        },
        opts.nodes,
        opts.nodes
    ));
    let tb = Testbed::start_with(
        TestbedOptions {
            nodes: opts.nodes,
            vg_bytes: opts.vg_bytes,
            mode: opts.mode,
            backend: opts.backend,
            release: true,
            log_filter: "warn".into(),
            ..TestbedOptions::default()
        },
        bins,
    )
    .await?;
    pb.finish_with_message(format!(
        "cluster up: API server at {}, kubeconfig {}",
        tb.control_plane.url(),
        tb.kubeconfig.display()
    ));

    let result = show(&tb, &opts).await;
    let pb =
        spinner("step 4/4: cleaning up: stopping processes, removing VGs, loop devices and files");
    tb.shutdown().await;
    pb.finish_with_message("cleaned up");
    result
}

async fn show(tb: &Testbed, opts: &DemoOptions) -> Result<()> {
    let set = StatefulSetLike {
        namespace: "default".into(),
        name: "web".into(),
        replicas: opts.replicas,
        class: tb.class.clone(),
        templates: vec![
            ("data".into(), "256Mi".into()),
            ("wal".into(), "64Mi".into()),
        ],
    };
    let pb = spinner(&format!(
        "step 3/4: scheduling StatefulSet web: {} pods x 2 claims",
        opts.replicas
    ));
    tb.create_statefulset(&set).await?;
    let pods: Vec<String> = (0..set.replicas).map(|i| set.pod_name(i)).collect();
    let placements = tb
        .wait_bound(&set.namespace, &pods, Duration::from_secs(120))
        .await?;
    let claims_api = Api::<PersistentVolumeClaim>::namespaced(tb.client(), &set.namespace);
    let claims = wait::until(
        "all claims Bound",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let api = claims_api.clone();
            async move {
                let l = api.list(&ListParams::default()).await.ok()?;
                l.items
                    .iter()
                    .all(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
                    .then_some(l.items)
            }
        },
    )
    .await?;
    pb.finish_with_message("all pods bound, all claims Bound");

    println!("\nPlacements:");
    println!("  {:<8} {:<8} {:<14} VOLUME", "POD", "NODE", "CLAIM");
    let by_name: BTreeMap<String, &PersistentVolumeClaim> = claims
        .iter()
        .filter_map(|c| Some((c.metadata.name.clone()?, c)))
        .collect();
    for (pod, node) in &placements {
        let ordinal: usize = pod
            .rsplit('-')
            .next()
            .and_then(|o| o.parse().ok())
            .unwrap_or(0);
        for claim in set.claim_names(ordinal) {
            let volume = by_name
                .get(&claim)
                .and_then(|c| c.spec.as_ref()?.volume_name.clone())
                .unwrap_or_default();
            println!("  {pod:<8} {node:<8} {claim:<14} {volume}");
        }
    }

    println!("\nCapacity per node (LvmNode status):");
    println!("  {:<8} {:>10} {:>10} {:>4}", "NODE", "SIZE", "FREE", "LVS");
    let nodes = Api::<LvmNode>::all(tb.client())
        .list(&ListParams::default())
        .await?;
    for n in &nodes.items {
        if let Some(vg) = n.status.as_ref().and_then(|s| s.volume_group(&tb.vg)) {
            println!(
                "  {:<8} {:>8}Mi {:>8}Mi {:>4}",
                n.metadata.name.as_deref().unwrap_or(""),
                vg.size_bytes >> 20,
                vg.free_bytes >> 20,
                vg.lv_count
            );
        }
    }

    for disk in &tb.disks {
        println!("\n`lvs` on {} (VG {}):", disk.node, disk.vg);
        let text = disk
            .lvs_table()
            .unwrap_or_else(|e| format!("lvs failed: {e}"));
        for line in text.lines() {
            println!("  {line}");
        }
    }
    match tb.sim_stats() {
        Some(s) => println!(
            "\nScheduler: {} pods bound, {} retries, {} reschedules, {} claim-write conflicts",
            s.bound, s.retries, s.reschedules, s.conflicts
        ),
        None => println!(
            "\nkube-scheduler placed every pod; agents gave {} claims back for rescheduling",
            tb.reschedules().await?
        ),
    }
    Ok(())
}
