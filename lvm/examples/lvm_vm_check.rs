//! Runs inside the QEMU guest of hack/vm/run.sh (real kernel, device-mapper):
//! drives `Lvm` on the guest's virtio disk through what metadata-only mode
//! cannot show: active LVs, wiped signatures, thin volumes with real usage
//! figures, removal of active LVs, thin snapshots with restore and clone
//! (data, tags, activation, survival of the origin's removal), and
//! create+remove latency with activation.
//! Prints one `lvm-vm: ...` line per check; exits non-zero on the first failure.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use lvmpin_lvm::{
    CreateLv, CreateSnapshotLv, Error, Lvm, LvmConfig, Owner, SnapshotOwner, owner_tags,
    snapshot_owner_tags,
};

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
        source: None,
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

fn content(uid: &str) -> SnapshotOwner {
    SnapshotOwner {
        content_uid: uid.into(),
        content_name: format!("snapcontent-{uid}"),
    }
}

fn snap_req(uid: &str, source: &str) -> CreateSnapshotLv {
    CreateSnapshotLv {
        vg: VG.into(),
        name: format!("snap-{uid}"),
        source: source.into(),
        owner: content(uid),
    }
}

fn from(uid: &str, size: u64, source: &str) -> CreateLv {
    CreateLv {
        source: Some(source.into()),
        ..req(uid, size, Some("pool1"))
    }
}

/// Fills the first MiB of a device with `byte` and flushes it.
fn fill(device: &Path, byte: u8) -> Check {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(device)
        .map_err(|err| format!("open {}: {err}", device.display()))?;
    f.write_all(&vec![byte; MIB as usize])
        .and_then(|()| f.sync_all())
        .map_err(|err| format!("write {}: {err}", device.display()))
}

/// The one byte value the first MiB of a device holds, or an error.
fn holds(device: &Path) -> Result<u8, String> {
    use std::io::Read;
    let mut buf = vec![0u8; MIB as usize];
    std::fs::File::open(device)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|err| format!("read {}: {err}", device.display()))?;
    let first = buf[0];
    ensure(
        buf.iter().all(|b| *b == first),
        format!("{} holds mixed data", device.display()),
    )?;
    Ok(first)
}

fn sorted(mut tags: Vec<String>) -> Vec<String> {
    tags.sort();
    tags
}

fn snapshots(lvm: &Lvm) -> Check {
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
            "pool1",
            VG,
        ],
    )?;
    let origin = lvm
        .create_lv(&req("o", 64 * MIB, Some("pool1")))
        .map_err(e)?;
    fill(&origin.path(), 0xA1)?;

    let snap = lvm.create_snapshot(&snap_req("s1", "pvc-o")).map_err(e)?;
    println!(
        "lvm-vm: snapshot lvs: {}",
        sh(
            "lvm",
            &[
                "lvs",
                "--noheadings",
                "-o",
                "lv_name,lv_attr,origin,lv_time,lv_tags",
                VG
            ]
        )?
        .replace('\n', " | ")
    );
    ensure(
        !snap.active,
        format!("a snapshot must stay inactive: {snap:?}"),
    )?;
    ensure(
        snap.attr.ends_with('k'),
        format!("activation skip: {}", snap.attr),
    )?;
    ensure(
        snap.origin.as_deref() == Some("pvc-o") && snap.pool.as_deref() == Some("pool1"),
        format!("origin and pool: {snap:?}"),
    )?;
    ensure(
        snap.owner.is_none() && snap.snapshot_owner == Some(content("s1")),
        format!("owners: {snap:?}"),
    )?;
    ensure(
        sorted(snap.tags.clone()) == sorted(snapshot_owner_tags(&content("s1"))),
        format!(
            "a snapshot carries exactly its content's tags: {:?}",
            snap.tags
        ),
    )?;
    ensure(
        snap.created_unix.is_some_and(|t| t > 1_600_000_000),
        format!("lv_time: {snap:?}"),
    )?;
    println!(
        "lvm-vm: snapshot inactive with activation skip, tags {:?}",
        snap.tags
    );

    let again = lvm.create_snapshot(&snap_req("s1", "pvc-o")).map_err(e)?;
    ensure(
        again.uuid == snap.uuid,
        "repeated create_snapshot returns the same LV",
    )?;
    let mut thief = snap_req("s1", "pvc-o");
    thief.owner = content("s2");
    ensure(
        matches!(
            lvm.create_snapshot(&thief),
            Err(Error::SnapshotOwnedByAnother { .. })
        ),
        "another content must be refused",
    )?;
    println!("lvm-vm: idempotent snapshot and owner conflict ok");

    fill(&origin.path(), 0xB2)?;
    let restored = lvm.create_lv(&from("r", 128 * MIB, "snap-s1")).map_err(e)?;
    ensure(
        restored.active && restored.size_bytes == 128 * MIB,
        format!("restore is active and grown: {restored:?}"),
    )?;
    ensure(
        restored.owner == Some(owner("r")) && restored.snapshot_owner.is_none(),
        format!("restore owners: {restored:?}"),
    )?;
    ensure(
        sorted(restored.tags.clone()) == sorted(owner_tags(&owner("r"))),
        format!(
            "a restore carries exactly its claim's tags: {:?}",
            restored.tags
        ),
    )?;
    let got = holds(&restored.path())?;
    ensure(
        got == 0xA1,
        format!("restore holds {got:#x}, the snapshot held 0xa1"),
    )?;
    let again = lvm.create_lv(&from("r", 128 * MIB, "snap-s1")).map_err(e)?;
    ensure(
        again.uuid == restored.uuid,
        "repeated restore returns the same LV",
    )?;
    println!(
        "lvm-vm: restore of snap-s1 holds the snapshot's data, grown to 128 MiB, tags {:?}",
        restored.tags
    );

    let clone = lvm.create_lv(&from("c", 64 * MIB, "pvc-o")).map_err(e)?;
    ensure(
        holds(&clone.path())? == 0xB2,
        "clone holds the source's data",
    )?;
    fill(&clone.path(), 0xC3)?;
    ensure(
        holds(&origin.path())? == 0xB2,
        "a write to the clone reached the source",
    )?;
    fill(&origin.path(), 0xD4)?;
    ensure(
        holds(&clone.path())? == 0xC3,
        "a write to the source reached the clone",
    )?;
    println!("lvm-vm: clone is independent of its source");

    match lvm.create_lv(&from("small", 32 * MIB, "snap-s1")) {
        Err(err @ Error::InvalidSource(_)) => println!("lvm-vm: smaller restore refused: {err}"),
        other => return Err(format!("smaller restore: {other:?}")),
    }
    lvm.create_lv(&req("lin", 8 * MIB, None)).map_err(e)?;
    match lvm.create_snapshot(&snap_req("s3", "pvc-lin")) {
        Err(err @ Error::InvalidSource(_)) => {
            println!("lvm-vm: snapshot of a linear LV refused: {err}")
        }
        other => return Err(format!("snapshot of linear: {other:?}")),
    }

    lvm.remove_lv(VG, "pvc-o").map_err(e)?;
    let kept = lvm
        .find_lv(VG, "snap-s1")
        .map_err(e)?
        .ok_or("snapshot gone with its origin")?;
    ensure(
        kept.origin.is_none(),
        format!("origin after removal: {kept:?}"),
    )?;
    let late = lvm
        .create_lv(&from("late", 64 * MIB, "snap-s1"))
        .map_err(e)?;
    ensure(
        holds(&late.path())? == 0xA1,
        "restore after the origin's removal",
    )?;
    println!("lvm-vm: snapshot survives its origin; restore from it still holds its data");

    ensure(
        matches!(
            lvm.remove_snapshot(VG, "snap-s1", &content("s2")),
            Err(Error::SnapshotOwnedByAnother { .. })
        ),
        "remove_snapshot with the wrong owner must refuse",
    )?;
    ensure(
        matches!(
            lvm.remove_snapshot(VG, "pvc-r", &content("s1")),
            Err(Error::SnapshotOwnedByAnother { .. })
        ),
        "remove_snapshot must refuse a claim's volume",
    )?;
    lvm.remove_snapshot(VG, "snap-s1", &content("s1"))
        .map_err(e)?;
    lvm.remove_snapshot(VG, "snap-s1", &content("s1"))
        .map_err(e)?;
    ensure(
        lvm.find_lv(VG, "snap-s1").map_err(e)?.is_none(),
        "snapshot still there",
    )?;
    ensure(
        holds(&restored.path())? == 0xA1,
        "restore lost data with its snapshot",
    )?;
    for lv in ["pvc-r", "pvc-c", "pvc-late", "pvc-lin"] {
        lvm.remove_lv(VG, lv).map_err(e)?;
    }
    sh("lvm", &["lvremove", "-q", "--yes", &format!("{VG}/pool1")])?;
    println!("lvm-vm: snapshot removal needs its owner; restores outlive it");
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
    snapshots(&lvm)?;
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
