//! Runs inside the QEMU guest of hack/vm/run.sh (real kernel, device-mapper
//! thin pools): thin accounting end to end on a real pool. A VG on the
//! virtio disk is filled by one thin pool; thin claims of two StorageClasses
//! (overprovision ratios 1.5 and 3, data limit 80%) are placed by the
//! extender's own filter (`lvmpin_scheduler_extender::engine::filter`) from
//! the LvmNode status the agent's own code builds from a real scan, and each
//! placed claim is created through the agent's guard (`capacity::check_create`)
//! and its real `LvmBackend`. Shows:
//! - claims fit up to floor(pool size × ratio) and the next is refused for the
//!   ratio, by placement and by the agent's guard alike;
//! - after real data is written (data% past the limit), placement and the
//!   guard both refuse a class that still has virtual room.
//!
//! Prints one `thin-vm: ...` line per step with the numbers it saw; exits
//! non-zero on the first failure.

use std::io::Write;
use std::process::{Command, ExitCode};
use std::time::Instant;

use k8s_openapi::api::storage::v1::StorageClass;
use lvmpin_api::names::{
    DRIVER_NAME, PARAM_THIN_DATA_LIMIT, PARAM_THIN_OVERPROVISION_RATIO, PARAM_THIN_POOL,
    PARAM_VOLUME_GROUP,
};
use lvmpin_api::{LvmNode, LvmNodeSpec};
use lvmpin_lvm::{Lvm, LvmConfig};
use lvmpin_provisioner::backend::{CreateVolume, Owner, Scan, VolumeBackend};
use lvmpin_provisioner::capacity::{ThinTarget, check_create};
use lvmpin_provisioner::claim_plan::thin_limits;
use lvmpin_provisioner::lvm_backend::LvmBackend;
use lvmpin_provisioner::lvm_node_status::build_status;
use lvmpin_provisioner::{Error, storage_capacity};
use lvmpin_scheduler_extender::engine::{Settings, State, filter};
use lvmpin_scheduler_extender::facts::{class_facts, lvm_facts};
use lvmpin_scheduler_extender::testutil::{IntoFacts as _, claim_named, pod_with};

const MIB: u64 = 1 << 20;
const VG: &str = "thinvg";
const POOL: &str = "pool0";
const NODE: &str = "vm";
/// 128 MiB pool, 32 MiB claims: 6 fit at ratio 1.5, 12 at ratio 3.
const POOL_MIB: u64 = 128;
const CLAIM_MIB: u64 = 32;

type Check = Result<(), String>;

fn ensure(cond: bool, what: impl Into<String>) -> Check {
    if cond { Ok(()) } else { Err(what.into()) }
}

fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn class(name: &str, ratio: &str) -> StorageClass {
    lvmpin_testkit::class(
        name,
        DRIVER_NAME,
        &[
            (PARAM_VOLUME_GROUP, VG),
            (PARAM_THIN_POOL, POOL),
            (PARAM_THIN_OVERPROVISION_RATIO, ratio),
            (PARAM_THIN_DATA_LIMIT, "80"),
        ],
    )
}

struct World {
    backend: LvmBackend,
    state: State,
    classes: Vec<StorageClass>,
    scan: Scan,
    next: u32,
}

impl World {
    /// Scans the node, builds the LvmNode status with the agent's code and
    /// hands it to the extender's index, as the watch would.
    async fn rescan(&mut self) -> Check {
        self.scan = self.backend.scan().await.map_err(|e| e.to_string())?;
        let status = build_status(&self.scan, &[VG.to_string()], None, None, "now");
        let mut node = LvmNode::new(
            NODE,
            LvmNodeSpec {
                node_name: NODE.into(),
            },
        );
        node.status = Some(status);
        let facts = lvm_facts(&node).ok_or("no facts from the LvmNode")?;
        self.state.index.upsert_lvm(facts);
        Ok(())
    }

    fn pool_line(&self) -> String {
        let status = build_status(&self.scan, &[VG.to_string()], None, None, "now");
        let pool = status
            .volume_group(VG)
            .and_then(|v| v.thin_pools.iter().find(|p| p.name == POOL))
            .cloned()
            .unwrap_or_default();
        let vg_free = status.volume_group(VG).map_or(0, |v| v.free_bytes);
        format!(
            "VG free {} MiB, pool size {} MiB, data {:.2}%, metadata {:.2}%, promised {} MiB",
            vg_free / MIB,
            pool.size_bytes / MIB,
            pool.data_percent,
            pool.metadata_percent,
            pool.promised_bytes.unwrap_or(0) / MIB
        )
    }

    /// One claim of `class` through the extender's filter: its name, and
    /// Ok when it was placed on the node or the reason it was refused.
    fn place(&mut self, class: &str) -> Result<(String, Result<(), String>), String> {
        self.next += 1;
        let name = format!("c{}", self.next);
        self.state.index.upsert_claim(
            claim_named(&name)
                .size(&format!("{CLAIM_MIB}Mi"))
                .class(class)
                .facts(),
        );
        let mut pod = pod_with(&[&name]);
        pod.uid = format!("pod-{name}");
        let out = filter(
            &mut self.state,
            &Settings::default(),
            &pod,
            &[NODE],
            Instant::now(),
        );
        if let Some(e) = out.error {
            return Err(format!("filter error: {e}"));
        }
        let verdict = match (out.pass.first(), out.unresolvable.first()) {
            (Some(_), _) => Ok(()),
            (None, Some((_, why))) => Err(why.clone()),
            (None, None) => Err("neither passed nor refused".into()),
        };
        Ok((name, verdict))
    }

    /// The agent's side: its guard on the current scan, then lvcreate.
    async fn create(&mut self, claim: &str, class: &str) -> Result<Result<(), Error>, String> {
        let sc = self
            .classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(class))
            .ok_or("unknown class")?;
        let limits = thin_limits(sc)?.ok_or("not a thin class")?;
        let lv = format!("pvc-uid-{claim}");
        let guard = check_create(
            &self.scan,
            VG,
            &lv,
            CLAIM_MIB * MIB,
            Some(ThinTarget {
                pool: POOL,
                limits: &limits,
            }),
            0,
        );
        if let Err(e) = guard {
            return Ok(Err(e));
        }
        self.backend
            .create(CreateVolume {
                vg: VG.into(),
                name: lv.clone(),
                size_bytes: CLAIM_MIB * MIB,
                thin_pool: Some(POOL.into()),
                source: None,
                owner: Owner {
                    claim_uid: format!("uid-{claim}"),
                    claim_namespace: "ns".into(),
                    claim_name: claim.into(),
                    pv_name: lv,
                },
            })
            .await
            .map_err(|e| format!("lvcreate: {e}"))?;
        Ok(Ok(()))
    }

    /// The CSIStorageCapacity number for a class, as the agent publishes it.
    fn published(&self, class: &str) -> u64 {
        let status = build_status(&self.scan, &[VG.to_string()], None, None, "now");
        let classes: Vec<&StorageClass> = self.classes.iter().collect();
        storage_capacity::plan(&status, &classes, 0)
            .into_iter()
            .find(|c| c.class == class)
            .map_or(0, |c| c.capacity)
    }
}

/// Writes `bytes` of non-zero data to a block device and flushes it.
fn write_data(device: &str, bytes: u64) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(device)?;
    let chunk = vec![0xA5u8; MIB as usize];
    for _ in 0..bytes / MIB {
        f.write_all(&chunk)?;
    }
    f.sync_all()
}

async fn run(disk: &str) -> Check {
    let lvm = Lvm::new(LvmConfig::default());
    ensure(
        !lvm.metadata_only(),
        "device-mapper should work in the guest",
    )?;
    sh("lvm", &["pvcreate", "-q", disk])?;
    sh("lvm", &["vgcreate", "-q", VG, disk])?;
    // The usual set-up: the pool takes (almost) the whole VG.
    sh(
        "lvm",
        &[
            "lvcreate",
            "-q",
            "--type",
            "thin-pool",
            "--size",
            &format!("{POOL_MIB}m"),
            "--name",
            POOL,
            VG,
        ],
    )?;
    let mut w = World {
        backend: LvmBackend::new(lvm),
        state: State::default(),
        classes: vec![class("thin15", "1.5"), class("thin3", "3")],
        scan: Scan::default(),
        next: 0,
    };
    for c in &w.classes {
        let facts = class_facts(c).ok_or("class facts")?;
        w.state.index.upsert_class(facts);
    }
    w.rescan().await?;
    println!("thin-vm: start: {}", w.pool_line());
    let vg_free = w.scan.volume_group(VG).map_or(0, |v| v.free_bytes);
    ensure(
        vg_free < CLAIM_MIB * MIB,
        format!("the pool should fill the VG, {vg_free} bytes left"),
    )?;

    // (a) ratio 1.5: floor(128 MiB × 1.5) = 192 MiB = 6 claims of 32 MiB.
    let want = POOL_MIB * 3 / 2 / CLAIM_MIB;
    let mut placed = 0;
    let refusal = loop {
        let published = w.published("thin15");
        let (claim, verdict) = w.place("thin15")?;
        match verdict {
            Ok(()) => {
                w.create(&claim, "thin15")
                    .await?
                    .map_err(|e| format!("guard refused a claim placement took: {e}"))?;
                placed += 1;
                w.rescan().await?;
                ensure(
                    published >= CLAIM_MIB * MIB,
                    format!("CSIStorageCapacity {published} did not cover a placed claim"),
                )?;
            }
            Err(why) => break (claim, why, published),
        }
        ensure(placed <= want, "placement went past floor(size × ratio)")?;
    };
    let (claim, why, published) = refusal;
    println!(
        "thin-vm: ratio 1.5: {placed} claims of {CLAIM_MIB} MiB placed; {}",
        w.pool_line()
    );
    println!("thin-vm: ratio 1.5: placement refused the next: {why}");
    ensure(placed == want, format!("placed {placed}, want {want}"))?;
    ensure(
        why.contains("overprovision ratio 1.5") && why.contains("thin pool thinvg/pool0"),
        "the refusal must name the pool and the ratio",
    )?;
    ensure(
        published == 0,
        format!("CSIStorageCapacity {published}, want 0"),
    )?;
    match w.create(&claim, "thin15").await? {
        Err(e @ Error::ThinPoolFull { .. }) => {
            println!("thin-vm: ratio 1.5: the agent's guard refused it too: {e}")
        }
        Err(e) => return Err(format!("guard refused for another reason: {e}")),
        Ok(()) => return Err("the agent's guard did not bite on the ratio".into()),
    }

    // A class with ratio 3 still has room in the same pool.
    let (claim, verdict) = w.place("thin3")?;
    verdict.map_err(|why| format!("ratio 3 should still fit: {why}"))?;
    w.create(&claim, "thin3")
        .await?
        .map_err(|e| format!("guard refused a ratio-3 claim: {e}"))?;
    w.rescan().await?;
    println!(
        "thin-vm: ratio 3: placed in the same pool; CSIStorageCapacity thin3 {} MiB; {}",
        w.published("thin3") / MIB,
        w.pool_line()
    );

    // (b) real data: fill three volumes and part of a fourth, past 80%.
    let lvs: Vec<String> = w
        .scan
        .volumes
        .iter()
        .filter(|v| v.pool.as_deref() == Some(POOL))
        .map(|v| format!("/dev/{VG}/{}", v.name))
        .take(4)
        .collect();
    ensure(lvs.len() == 4, "four thin volumes to write to")?;
    for (i, dev) in lvs.iter().enumerate() {
        let bytes = if i < 3 { CLAIM_MIB * MIB } else { 8 * MIB };
        write_data(dev, bytes).map_err(|e| format!("write {dev}: {e}"))?;
    }
    w.rescan().await?;
    let data = w
        .scan
        .thin_pools
        .iter()
        .find(|p| p.name == POOL)
        .map_or(0.0, |p| p.data_percent);
    println!("thin-vm: wrote 104 MiB: {}", w.pool_line());
    ensure(data >= 80.0, format!("data {data:.2}% should be past 80%"))?;
    let (claim, verdict) = w.place("thin3")?;
    let why = match verdict {
        Ok(()) => return Err("placement did not refuse a pool past its data limit".into()),
        Err(why) => why,
    };
    println!("thin-vm: data limit: placement refused: {why}");
    ensure(
        why.contains("thin pool thinvg/pool0: data use") && why.contains("limit of 80%"),
        "the refusal must name the pool and the data limit",
    )?;
    let published = w.published("thin3");
    ensure(
        published == 0,
        format!("CSIStorageCapacity {published}, want 0"),
    )?;
    match w.create(&claim, "thin3").await? {
        Err(e @ Error::ThinPoolFull { .. }) if e.to_string().contains("data use") => {
            println!("thin-vm: data limit: the agent's guard refused it too: {e}")
        }
        Err(e) => return Err(format!("guard refused for another reason: {e}")),
        Ok(()) => return Err("the agent's guard did not bite on the data limit".into()),
    }
    sh("lvm", &["vgremove", "-q", "--yes", "--force", VG])?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let disk = args
        .windows(2)
        .find(|w| w[0] == "--disk")
        .map(|w| w[1].clone())
        .unwrap_or_else(|| "/dev/vda".into());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("thin-vm: FAILED: tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&disk)) {
        Ok(()) => {
            println!("thin-vm: all checks passed");
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("thin-vm: FAILED: {why}");
            ExitCode::FAILURE
        }
    }
}
