//! Thin snapshots, restores and clones through the agent's real
//! `LvmBackend` (what the agent's snapshot reconcile calls), with the data
//! checked through the running agent's NodeStage/NodePublish mounts: a
//! restore holds the snapshot's files and nothing written after it, a clone
//! is independent of its source, a snapshot outlives its origin, a larger
//! restore's filesystem is grown by NodeStage itself, an xfs restore and
//! clone mount beside their mounted source (same UUID), and the refusals
//! (smaller restore, linear source, wrong owner) hold.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lvmpin_lvm::{Lvm, LvmConfig};
use lvmpin_provisioner::backend::{
    CreateSnapshot, CreateVolume, Owner, SnapshotOwner, Volume, VolumeBackend,
};
use lvmpin_provisioner::error::Error as AgentError;
use lvmpin_provisioner::lvm_backend::LvmBackend;
use sha2::{Digest, Sha256};

use crate::kubelet::{Kubelet, mount_cap};
use crate::{MIB, VG, sh, step};

const POOL: &str = "snappool";
const FS: &str = "ext4";

fn id(lv: &str) -> String {
    format!("{VG}/{lv}")
}

pub fn staging(lv: &str) -> PathBuf {
    PathBuf::from(format!(
        "/var/lib/kubelet/plugins/kubernetes.io/csi/lvm.lvmpin.io/{lv}/globalmount"
    ))
}

pub fn target(lv: &str) -> PathBuf {
    PathBuf::from(format!(
        "/var/lib/kubelet/pods/pod-{lv}/volumes/kubernetes.io~csi/{lv}/mount"
    ))
}

fn owner(lv: &str) -> Owner {
    Owner {
        claim_uid: format!("uid-{lv}"),
        claim_namespace: "vm".into(),
        claim_name: format!("claim-{lv}"),
        // The node service stages an LV only when its pv-name tag leads to it.
        pv_name: lv.into(),
    }
}

fn content(uid: &str) -> SnapshotOwner {
    SnapshotOwner {
        content_uid: uid.into(),
        content_name: format!("snapcontent-{uid}"),
    }
}

fn restore(lv: &str, size: u64, source: &str) -> CreateVolume {
    CreateVolume {
        vg: VG.into(),
        name: lv.into(),
        size_bytes: size,
        thin_pool: Some(POOL.into()),
        owner: owner(lv),
        source: Some(source.into()),
    }
}

fn snapshot(lv: &str, uid: &str, source: &str) -> CreateSnapshot {
    CreateSnapshot {
        vg: VG.into(),
        name: lv.into(),
        source: source.into(),
        owner: content(uid),
    }
}

/// 1 MiB of bytes that differ per `seed` (xorshift), so that checksums tell
/// the files apart.
pub fn payload(seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..MIB)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes a file and makes it durable (file and directory fsync).
pub fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(dir.join(name))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The checksum of `dir/name`, or `None` if there is no such file.
pub fn checksum(dir: &Path, name: &str) -> Result<Option<String>> {
    match std::fs::read(dir.join(name)) {
        Ok(b) => Ok(Some(sha(&b))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}/{name}", dir.display())),
    }
}

fn lv_size(lv: &str) -> Result<u64> {
    let out = sh(
        "lvm",
        &[
            "lvs",
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "lv_size",
            &id(lv),
        ],
    )?;
    out.trim().parse().context("lv_size")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Stage and publish `lv` as ext4; returns the published directory.
async fn mount(k: &mut Kubelet, lv: &str) -> Result<PathBuf> {
    mount_as(k, lv, FS).await
}

async fn mount_as(k: &mut Kubelet, lv: &str, fs: &str) -> Result<PathBuf> {
    k.stage(&id(lv), &staging(lv), mount_cap(fs)).await?;
    k.publish(&id(lv), &staging(lv), &target(lv), mount_cap(fs))
        .await?;
    Ok(target(lv))
}

/// Bytes of the filesystem mounted at `dir`.
fn fs_bytes(dir: &Path) -> Result<u64> {
    let s =
        nix::sys::statvfs::statvfs(dir).with_context(|| format!("statvfs {}", dir.display()))?;
    Ok(s.blocks() as u64 * s.fragment_size() as u64)
}

async fn unmount(k: &mut Kubelet, lv: &str) -> Result<()> {
    k.unpublish(&id(lv), &target(lv)).await?;
    k.unstage(&id(lv), &staging(lv)).await
}

/// What a refused call must look like.
fn refused<T: std::fmt::Debug>(
    what: &str,
    got: Result<T, AgentError>,
    ok: impl Fn(&AgentError) -> bool,
) -> Result<()> {
    match got {
        Err(e) if ok(&e) => {
            println!("GUEST: snapshot: refused {what}: {e}");
            Ok(())
        }
        other => bail!("{what} must be refused, got {other:?}"),
    }
}

fn invalid_source(e: &AgentError) -> bool {
    matches!(e, AgentError::InvalidSource { .. })
}

fn owned_by_another(e: &AgentError) -> bool {
    matches!(e, AgentError::OwnedByAnother { .. })
}

pub async fn all(k: &mut Kubelet) -> Result<()> {
    let backend = LvmBackend::new(Lvm::new(LvmConfig::default()));
    let (a, b, c, d) = (payload(1), payload(2), payload(3), payload(4));
    let mut numbers = vec![];

    step("snapshot: thin pool and a thin source volume (CSI CreateVolume, 128 MiB, ext4)");
    sh(
        "lvm",
        &[
            "lvcreate",
            "-q",
            "--type",
            "thin-pool",
            "--size",
            "512m",
            "--name",
            POOL,
            VG,
        ],
    )?;
    let src = "pvc-vm-snap-src";
    let created = k
        .controller
        .create_volume(lvmpin_csi_proto::csi::v1::CreateVolumeRequest {
            name: src.into(),
            capacity_range: Some(lvmpin_csi_proto::csi::v1::CapacityRange {
                required_bytes: (128 * MIB) as i64,
                limit_bytes: 0,
            }),
            volume_capabilities: mount_cap(FS).into_iter().collect(),
            parameters: [(
                lvmpin_api::names::PARAM_THIN_POOL.to_string(),
                POOL.to_string(),
            )]
            .into(),
            ..Default::default()
        })
        .await
        .context("CreateVolume of the thin source")?
        .into_inner()
        .volume
        .context("no volume")?;
    ensure!(created.volume_id == id(src), "{created:?}");
    let src_dir = mount(k, src).await?;
    write_durably(&src_dir, "a.bin", &a)?;
    println!(
        "GUEST: snapshot: wrote a.bin (sha256 {}) on the source",
        sha(&a)
    );

    step("snapshot: create_snapshot of the mounted source, twice; another owner refused");
    let t = Instant::now();
    let snap = backend
        .create_snapshot(snapshot("snap-vm-1", "c1", src))
        .await?;
    numbers.push(format!("create_snapshot {:.0} ms", ms(t.elapsed())));
    ensure!(
        snap.snapshot_owner == Some(content("c1"))
            && snap.owner.is_none()
            && snap.origin.as_deref() == Some(src)
            && snap.pool.as_deref() == Some(POOL)
            && snap.size_bytes == 128 * MIB,
        "snapshot: {snap:?}"
    );
    let again = backend
        .create_snapshot(snapshot("snap-vm-1", "c1", src))
        .await?;
    ensure!(
        again == snap,
        "repeated create_snapshot: {again:?} != {snap:?}"
    );
    refused(
        "create_snapshot of an existing snapshot for another content",
        backend
            .create_snapshot(snapshot("snap-vm-1", "c2", src))
            .await,
        owned_by_another,
    )?;
    let scan = backend.scan().await?;
    ensure!(
        scan.snapshots()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>()
            == ["snap-vm-1"],
        "scan snapshots: {:?}",
        scan.snapshots().collect::<Vec<_>>()
    );
    ensure!(
        scan.volumes
            .iter()
            .filter(|v| v.owner.is_some())
            .all(|v| !v.name.starts_with("snap-")),
        "a snapshot reads as a claim's volume"
    );
    let err = k
        .stage(&id("snap-vm-1"), &staging("snap-vm-1"), mount_cap(FS))
        .await
        .expect_err("staged a snapshot LV");
    ensure!(
        err.downcast_ref::<tonic::Status>()
            .is_some_and(|s| s.code() == tonic::Code::NotFound),
        "NodeStage of a snapshot LV: {err:#}"
    );
    println!("GUEST: snapshot: idempotent, owned, not a claim volume");

    step("snapshot: write b.bin on the source after the snapshot");
    write_durably(&src_dir, "b.bin", &b)?;

    step("snapshot: restore snap-vm-1 to a new volume and mount it elsewhere");
    let t = Instant::now();
    let restored = backend
        .create(restore("pvc-vm-restore", 128 * MIB, "snap-vm-1"))
        .await?;
    numbers.push(format!("restore {:.0} ms", ms(t.elapsed())));
    ensure!(
        restored.owner == Some(owner("pvc-vm-restore")) && restored.snapshot_owner.is_none(),
        "restore owners: {restored:?}"
    );
    let again = backend
        .create(restore("pvc-vm-restore", 128 * MIB, "snap-vm-1"))
        .await?;
    ensure!(again.name == restored.name, "repeated restore");
    let r_dir = mount(k, "pvc-vm-restore").await?;
    ensure!(
        checksum(&r_dir, "a.bin")? == Some(sha(&a)),
        "restore: a.bin differs from what the snapshot held"
    );
    ensure!(
        checksum(&r_dir, "b.bin")?.is_none(),
        "restore: b.bin was written after the snapshot yet is there"
    );
    println!("GUEST: snapshot: restore holds exactly a.bin (sha256 matches) and not b.bin");

    step("snapshot: clone the source volume; writes stay on their side");
    let t = Instant::now();
    backend
        .create(restore("pvc-vm-clone", 128 * MIB, src))
        .await?;
    numbers.push(format!("clone {:.0} ms", ms(t.elapsed())));
    let c_dir = mount(k, "pvc-vm-clone").await?;
    ensure!(
        checksum(&c_dir, "a.bin")? == Some(sha(&a)) && checksum(&c_dir, "b.bin")? == Some(sha(&b)),
        "clone does not hold the source's files"
    );
    write_durably(&c_dir, "c.bin", &c)?;
    write_durably(&src_dir, "d.bin", &d)?;
    ensure!(
        checksum(&src_dir, "c.bin")?.is_none(),
        "a write to the clone appeared in the source"
    );
    ensure!(
        checksum(&c_dir, "d.bin")?.is_none(),
        "a write to the source appeared in the clone"
    );
    println!("GUEST: snapshot: clone is independent of its source");

    step("snapshot: restore larger than the source (256 MiB), smaller refused");
    let big = backend
        .create(restore("pvc-vm-big", 256 * MIB, "snap-vm-1"))
        .await?;
    ensure!(
        big.size_bytes == 256 * MIB && lv_size("pvc-vm-big")? == 256 * MIB,
        "larger restore: {big:?}"
    );
    // No NodeExpandVolume: kubelet sends none for a restore, so NodeStage
    // itself grows the source's 128 MiB filesystem to the 256 MiB LV.
    let big_dir = mount(k, "pvc-vm-big").await?;
    ensure!(
        checksum(&big_dir, "a.bin")? == Some(sha(&a)) && checksum(&big_dir, "b.bin")?.is_none(),
        "larger restore differs from the snapshot"
    );
    let fs_total = fs_bytes(&big_dir)?;
    ensure!(
        fs_total > 200 * MIB,
        "filesystem of the larger restore is {fs_total} bytes right after NodeStage"
    );
    println!(
        "GUEST: snapshot: larger restore is a 256 MiB LV; NodeStage grew its filesystem to {fs_total} bytes and a.bin matches"
    );
    refused(
        "a restore smaller than its snapshot",
        backend
            .create(restore("pvc-vm-small", 64 * MIB, "snap-vm-1"))
            .await,
        |e| {
            invalid_source(e)
                && e.to_string().contains("134217728")
                && e.to_string().contains("67108864")
        },
    )?;
    let mut other_pool = restore("pvc-vm-other", 128 * MIB, "snap-vm-1");
    other_pool.thin_pool = None;
    refused(
        "a restore outside the snapshot's pool",
        backend.create(other_pool).await,
        invalid_source,
    )?;
    ensure!(
        sh("lvm", &["lvs", "--noheadings", "-o", "lv_name", VG])?
            .lines()
            .all(|l| !matches!(l.trim(), "pvc-vm-small" | "pvc-vm-other")),
        "a refused restore left an LV"
    );

    step("snapshot: xfs source (320 MiB), restore (384 MiB) and clone, all mounted at once");
    xfs(k, &backend, &mut numbers).await?;

    step("snapshot: a snapshot of a linear volume is refused");
    let linear = backend
        .create(CreateVolume {
            vg: VG.into(),
            name: "pvc-vm-linear".into(),
            size_bytes: 8 * MIB,
            thin_pool: None,
            owner: owner("pvc-vm-linear"),
            source: None,
        })
        .await?;
    ensure!(linear.pool.is_none(), "{linear:?}");
    refused(
        "a snapshot of a linear volume",
        backend
            .create_snapshot(snapshot("snap-vm-lin", "c3", "pvc-vm-linear"))
            .await,
        |e| {
            invalid_source(e)
                && e.to_string()
                    .contains("snapshots are for thin volumes only")
        },
    )?;

    step("snapshot: delete the source (CSI DeleteVolume); the snapshot stays and restores");
    unmount(k, src).await?;
    k.delete(&id(src)).await?;
    let scan = backend.scan().await?;
    ensure!(scan.volume(VG, src).is_none(), "source still there");
    let kept: &Volume = scan
        .volume(VG, "snap-vm-1")
        .context("the snapshot went with its origin")?;
    ensure!(kept.origin.is_none() && kept.is_snapshot(), "{kept:?}");
    backend
        .create(restore("pvc-vm-late", 128 * MIB, "snap-vm-1"))
        .await?;
    let late_dir = mount(k, "pvc-vm-late").await?;
    ensure!(
        checksum(&late_dir, "a.bin")? == Some(sha(&a)) && checksum(&late_dir, "b.bin")?.is_none(),
        "restore after the source's deletion differs from the snapshot"
    );
    println!(
        "GUEST: snapshot: survives its origin's deletion; restore from it holds exactly a.bin"
    );

    step("snapshot: remove_snapshot needs its owner; restores outlive their snapshot");
    refused(
        "remove_snapshot with another owner",
        backend
            .remove_snapshot(VG, "snap-vm-1", &content("c2"))
            .await,
        owned_by_another,
    )?;
    refused(
        "remove_snapshot of a claim's volume",
        backend
            .remove_snapshot(VG, "pvc-vm-restore", &content("c1"))
            .await,
        owned_by_another,
    )?;
    backend
        .remove_snapshot(VG, "snap-vm-1", &content("c1"))
        .await?;
    backend
        .remove_snapshot(VG, "snap-vm-1", &content("c1"))
        .await?;
    ensure!(
        backend.scan().await?.snapshots().count() == 0,
        "snapshot still listed"
    );
    ensure!(
        checksum(&r_dir, "a.bin")? == Some(sha(&a)),
        "the restore lost data with its snapshot"
    );
    println!("GUEST: snapshot: removal refused for the wrong owner; restores outlive the snapshot");

    for lv in [
        "pvc-vm-restore",
        "pvc-vm-clone",
        "pvc-vm-big",
        "pvc-vm-late",
    ] {
        unmount(k, lv).await?;
        k.delete(&id(lv)).await?;
    }
    k.delete(&id("pvc-vm-linear")).await?;
    sh("lvm", &["lvremove", "-q", "--yes", &id(POOL)])?;
    println!("BENCH snapshot (TCG guest): {}", numbers.join(", "));
    Ok(())
}

/// xfs refuses a second mount of a filesystem UUID, and a thin snapshot
/// copies the UUID: the restore and the clone must mount while their source
/// is mounted (NodeStage passes nouuid), hold its data (sha256), and the
/// larger restore's filesystem is grown at NodeStage.
async fn xfs(k: &mut Kubelet, backend: &LvmBackend, numbers: &mut Vec<String>) -> Result<()> {
    const XFS: &str = "xfs";
    let (x, y) = (payload(5), payload(6));
    let (src, snap, restored, clone) = (
        "pvc-vm-xfs-src",
        "snap-vm-xfs",
        "pvc-vm-xfs-restore",
        "pvc-vm-xfs-clone",
    );
    // mkfs.xfs refuses filesystems below about 300 MiB.
    let mut source = restore(src, 320 * MIB, snap);
    source.source = None;
    backend.create(source).await?;
    let src_dir = mount_as(k, src, XFS).await?;
    write_durably(&src_dir, "x.bin", &x)?;
    backend.create_snapshot(snapshot(snap, "cx", src)).await?;
    write_durably(&src_dir, "y.bin", &y)?;
    let t = Instant::now();
    backend.create(restore(restored, 384 * MIB, snap)).await?;
    numbers.push(format!("xfs restore {:.0} ms", ms(t.elapsed())));
    let r_dir = mount_as(k, restored, XFS).await?;
    backend.create(restore(clone, 320 * MIB, src)).await?;
    let c_dir = mount_as(k, clone, XFS).await?;
    ensure!(
        checksum(&r_dir, "x.bin")? == Some(sha(&x)) && checksum(&r_dir, "y.bin")?.is_none(),
        "xfs restore differs from its snapshot"
    );
    ensure!(
        checksum(&c_dir, "x.bin")? == Some(sha(&x)) && checksum(&c_dir, "y.bin")? == Some(sha(&y)),
        "xfs clone does not hold its source's files"
    );
    write_durably(&c_dir, "z.bin", &x)?;
    ensure!(
        checksum(&src_dir, "z.bin")?.is_none() && checksum(&r_dir, "z.bin")?.is_none(),
        "a write to the xfs clone appeared elsewhere"
    );
    let (src_fs, r_fs) = (fs_bytes(&src_dir)?, fs_bytes(&r_dir)?);
    ensure!(
        r_fs > src_fs + 40 * MIB,
        "xfs restore's filesystem is {r_fs} bytes, its source's {src_fs}: not grown at NodeStage"
    );
    println!(
        "GUEST: snapshot: xfs restore and clone mounted beside their source; sha256 match; restore grown at NodeStage to {r_fs} bytes"
    );
    for lv in [clone, restored, src] {
        unmount(k, lv).await?;
        k.delete(&id(lv)).await?;
    }
    backend.remove_snapshot(VG, snap, &content("cx")).await?;
    Ok(())
}
