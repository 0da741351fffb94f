//! Runs inside the QEMU guest of hack/vm/run.sh (real kernel, device-mapper):
//! drives `Lvm` on the guest's virtio disk through what metadata-only mode
//! cannot show: active LVs, wiped signatures, thin volumes with real usage
//! figures, removal of active LVs, and create+remove latency with activation.
//! Prints one `lvm-vm: ...` line per check; exits non-zero on the first failure.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use lvmpin_lvm::{CreateLv, Error, Lvm, LvmConfig, Owner};

const MIB: u64 = 1 << 20;
const VG: &str = "vmvg";

type Check = Result<(), String>;

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

fn owner(uid: &str) -> Owner {
    Owner {
        claim_uid: uid.into(),
        claim_namespace: "vm".into(),
        claim_name: format!("data-{uid}"),
        pv_name: format!("pvc-{uid}"),
    }
}

fn req(uid: &str, size: u64, pool: Option<&str>) -> CreateLv {
    CreateLv {
        vg: VG.into(),
        name: format!("pvc-{uid}"),
        size_bytes: size,
        thin_pool: pool.map(String::from),
        owner: owner(uid),
    }
}

fn ensure(cond: bool, what: impl Into<String>) -> Check {
    if cond { Ok(()) } else { Err(what.into()) }
}

fn e(err: Error) -> String {
    err.to_string()
}

fn linear(lvm: &Lvm) -> Check {
    let lv = lvm.create_lv(&req("a", 64 * MIB, None)).map_err(e)?;
    ensure(lv.active, format!("new LV is not active: {lv:?}"))?;
    let path = lvm.activate_lv(VG, "pvc-a").map_err(e)?;
    ensure(path.exists(), format!("{} missing", path.display()))?;
    println!("lvm-vm: linear LV active at {}", path.display());

    ensure(
        lvm.create_lv(&req("a", 64 * MIB, None)).map_err(e)?.uuid == lv.uuid,
        "idempotent create",
    )?;
    let mut thief = req("a", 64 * MIB, None);
    thief.owner = owner("b");
    ensure(
        matches!(lvm.create_lv(&thief), Err(Error::OwnedByAnother { .. })),
        "another owner must be refused",
    )?;
    println!("lvm-vm: idempotent create and owner conflict ok");

    let grown = lvm.extend_lv(VG, "pvc-a", 100 * MIB).map_err(e)?;
    ensure(
        grown.size_bytes == 100 * MIB && grown.active,
        format!("extend: {grown:?}"),
    )?;
    println!("lvm-vm: extended active LV to {} bytes", grown.size_bytes);

    // A new claim on the same extents must not see the old filesystem.
    sh(
        "mkfs.ext4",
        &["-q", "-F", path.to_str().unwrap_or_default()],
    )?;
    lvm.remove_lv(VG, "pvc-a").map_err(e)?;
    ensure(!path.exists(), "device node left after remove")?;
    let fresh = lvm.create_lv(&req("c", 100 * MIB, None)).map_err(e)?;
    let probe = Command::new("blkid")
        .args(["-p", fresh.path().to_str().unwrap_or_default()])
        .output()
        .map_err(|err| err.to_string())?;
    ensure(
        probe.status.code() == Some(2),
        format!(
            "old signature visible on a new LV: {}",
            String::from_utf8_lossy(&probe.stdout)
        ),
    )?;
    lvm.remove_lv(VG, "pvc-c").map_err(e)?;
    lvm.remove_lv(VG, "pvc-c").map_err(e)?;
    println!("lvm-vm: removed active LVs; no old signature on a new LV");
    Ok(())
}

/// Writes `bytes` of data at the start of a block device and flushes it.
fn write_data(device: &Path, bytes: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).open(device)?;
    let chunk = vec![0xA5u8; MIB as usize];
    for _ in 0..bytes / MIB {
        f.write_all(&chunk)?;
    }
    f.sync_all()
}

fn thin(lvm: &Lvm) -> Check {
    sh(
        "lvm",
        &[
            "lvcreate",
            "-q",
            "--type",
            "thin-pool",
            "--size",
            "64m",
            "--name",
            "pool0",
            VG,
        ],
    )?;
    let lv = lvm
        .create_lv(&req("t", 1024 * MIB, Some("pool0")))
        .map_err(e)?;
    ensure(
        lv.pool.as_deref() == Some("pool0") && lv.active,
        format!("thin LV: {lv:?}"),
    )?;
    ensure(lv.size_bytes == 1024 * MIB, "thin LV virtual size")?;
    let before = lvm.report().map_err(e)?;
    let pool = before
        .thin_pools_in(VG)
        .next()
        .ok_or("pool0 missing from report")?
        .clone();
    ensure(
        pool.metadata_percent > 0.0,
        format!("active pool metadata%: {pool:?}"),
    )?;
    write_data(&lv.path(), 16 * MIB).map_err(|err| format!("write to thin LV: {err}"))?;
    let after = lvm.report().map_err(e)?;
    let used = after
        .thin_pools_in(VG)
        .next()
        .ok_or("pool0 missing")?
        .clone();
    ensure(
        used.data_percent >= 20.0 && used.data_percent <= 30.0,
        format!("16 MiB into a 64 MiB pool should read ~25%: {used:?}"),
    )?;
    println!(
        "lvm-vm: thin LV in pool0; data {:.2}% -> {:.2}%, metadata {:.2}%, free {} bytes",
        pool.data_percent,
        used.data_percent,
        used.metadata_percent,
        used.free_bytes()
    );
    let grown = lvm.extend_lv(VG, "pvc-t", 2048 * MIB).map_err(e)?;
    ensure(grown.size_bytes == 2048 * MIB, "thin extend")?;
    lvm.remove_lv(VG, "pvc-t").map_err(e)?;
    sh("lvm", &["lvremove", "-q", "--yes", &format!("{VG}/pool0")])?;
    println!("lvm-vm: thin LV extended and removed");
    Ok(())
}

fn latency(lvm: &Lvm) -> Check {
    let mut samples = Vec::new();
    for i in 0..10 {
        let r = req(&format!("bench-{i}"), 64 * MIB, None);
        let t = Instant::now();
        lvm.create_lv(&r).map_err(e)?;
        lvm.remove_lv(VG, &r.name).map_err(e)?;
        samples.push(t.elapsed());
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "lvm-vm: create+remove with activation (TCG guest) n=10 p50={:.1} ms p99={:.1} ms",
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1])
    );
    Ok(())
}

fn run(disk: &str) -> Check {
    let lvm = Lvm::new(LvmConfig::default());
    ensure(
        !lvm.metadata_only(),
        "device-mapper should be available in the guest",
    )?;
    sh("lvm", &["pvcreate", "-q", disk])?;
    sh("lvm", &["vgcreate", "-q", VG, disk])?;
    linear(&lvm)?;
    thin(&lvm)?;
    latency(&lvm)?;
    sh("lvm", &["vgremove", "-q", "--yes", VG])?;
    ensure(
        !Path::new("/dev").join(VG).exists(),
        "VG directory left behind",
    )?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let disk = args
        .windows(2)
        .find(|w| w[0] == "--disk")
        .map(|w| w[1].clone())
        .unwrap_or_else(|| "/dev/vda".into());
    match run(&disk) {
        Ok(()) => {
            println!("lvm-vm: all checks passed");
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("lvm-vm: FAILED: {why}");
            ExitCode::FAILURE
        }
    }
}
