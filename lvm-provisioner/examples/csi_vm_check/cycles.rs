//! Whole volume lives, as kubelet and the sidecars drive them.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use lvmpin_csi_proto::csi::v1 as pb;

use crate::kubelet::{Kubelet, block_cap, mount_cap};
use crate::{MIB, sh, step};

fn bytes_usage(s: &pb::NodeGetVolumeStatsResponse) -> Result<&pb::VolumeUsage> {
    s.usage
        .iter()
        .find(|u| u.unit == pb::volume_usage::Unit::Bytes as i32)
        .context("no BYTES usage")
}

fn uuid(dev: &str) -> Result<String> {
    sh("blkid", &["-p", "-s", "UUID", "-o", "value", dev])
}

fn device(id: &str) -> String {
    format!("/dev/{id}")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50 and p99 by nearest rank; with few samples p99 is the maximum.
fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (rank(0.50), rank(0.99))
}

fn staging_for(name: &str) -> PathBuf {
    PathBuf::from(format!(
        "/var/lib/kubelet/plugins/kubernetes.io/csi/lvm.lvmpin.io/{name}/globalmount"
    ))
}

fn target_for(pod: &str, name: &str) -> PathBuf {
    PathBuf::from(format!(
        "/var/lib/kubelet/pods/{pod}/volumes/kubernetes.io~csi/{name}/mount"
    ))
}

pub async fn filesystem(k: &mut Kubelet, fs: &str, rounds: usize) -> Result<String> {
    let name = format!("pvc-vm-{fs}");
    step(&format!("{fs}: CreateVolume {name} (320 MiB)"));
    let volume = k.create(&name, 320 * MIB, mount_cap(fs)).await?;
    let id = volume.volume_id.clone();
    let dev = device(&id);
    ensure!(volume.capacity_bytes == (320 * MIB) as i64, "{volume:?}");
    let again = k.create(&name, 320 * MIB, mount_cap(fs)).await?;
    ensure!(
        again.volume_id == id,
        "CreateVolume is not idempotent by name"
    );
    let staging = staging_for(&name);
    let target = target_for(&format!("pod-{fs}"), &name);

    step(&format!(
        "{fs}: stage (activate + blkid + mkfs + mount), twice"
    ));
    let first_stage = k.stage(&id, &staging, mount_cap(fs)).await?;
    k.stage(&id, &staging, mount_cap(fs)).await?;
    ensure!(
        sh("blkid", &["-p", "-s", "TYPE", "-o", "value", &dev])? == fs,
        "device is not {fs}"
    );
    let fs_uuid = uuid(&dev)?;

    step(&format!(
        "{fs}: publish twice, write and read a file through the target"
    ));
    let first_publish = k.publish(&id, &staging, &target, mount_cap(fs)).await?;
    k.publish(&id, &staging, &target, mount_cap(fs)).await?;
    let payload = format!("lvmpin data on {fs}");
    std::fs::write(target.join("data.txt"), &payload)?;
    ensure!(
        std::fs::read_to_string(target.join("data.txt"))? == payload,
        "read back differs"
    );
    ensure!(
        std::fs::read_to_string(staging.join("data.txt"))? == payload,
        "staging view differs"
    );

    step(&format!("{fs}: stats"));
    let s = k.stats(&id, &target).await?;
    let before = *bytes_usage(&s)?;
    let inodes = s
        .usage
        .iter()
        .find(|u| u.unit == pb::volume_usage::Unit::Inodes as i32)
        .context("no INODES usage")?;
    ensure!(
        before.total > 250 * MIB as i64 && before.used > 0 && before.available > 0,
        "bytes {before:?}"
    );
    ensure!(inodes.total > 0 && inodes.used > 0, "inodes {inodes:?}");
    let cond = s.volume_condition.context("no volume condition")?;
    ensure!(!cond.abnormal, "abnormal: {}", cond.message);

    step(&format!(
        "{fs}: ControllerExpandVolume to 480 MiB, NodeExpandVolume online"
    ));
    let grown = k.expand(&id, 480 * MIB).await?;
    ensure!(
        grown.capacity_bytes == (480 * MIB) as i64 && grown.node_expansion_required,
        "{grown:?}"
    );
    let r = k
        .node
        .node_expand_volume(pb::NodeExpandVolumeRequest {
            volume_id: id.clone(),
            volume_path: target.display().to_string(),
            capacity_range: Some(pb::CapacityRange {
                required_bytes: (480 * MIB) as i64,
                limit_bytes: 0,
            }),
            staging_target_path: staging.display().to_string(),
            volume_capability: mount_cap(fs),
            ..Default::default()
        })
        .await
        .context("NodeExpandVolume")?
        .into_inner();
    ensure!(
        r.capacity_bytes == grown.capacity_bytes,
        "capacity {} != LV {}",
        r.capacity_bytes,
        grown.capacity_bytes
    );
    let after = bytes_usage(&k.stats(&id, &target).await?)?.total;
    ensure!(
        after > before.total + 120 * MIB as i64,
        "filesystem did not grow: {} -> {after}",
        before.total
    );
    println!(
        "GUEST: {fs}: filesystem grew {} -> {after} bytes",
        before.total
    );

    step(&format!("{fs}: DeleteVolume while staged is refused"));
    let err = k.delete(&id).await.expect_err("deleted a mounted volume");
    ensure!(
        err.downcast_ref::<tonic::Status>()
            .is_some_and(|s| s.code() == tonic::Code::FailedPrecondition),
        "{err:#}"
    );

    step(&format!("{fs}: unpublish and unstage, twice each"));
    for _ in 0..2 {
        k.unpublish(&id, &target).await?;
    }
    for _ in 0..2 {
        k.unstage(&id, &staging).await?;
    }

    // Deactivate, as after a reboot: staging must activate the LV again.
    sh("lvm", &["lvchange", "--activate", "n", &id])?;
    ensure!(
        !Path::new(&dev).exists(),
        "{dev} still there after deactivation"
    );
    step(&format!(
        "{fs}: stage again (activates the LV): same filesystem, data still there"
    ));
    k.stage(&id, &staging, mount_cap(fs)).await?;
    ensure!(
        uuid(&dev)? == fs_uuid,
        "filesystem UUID changed: the device was reformatted"
    );
    ensure!(
        std::fs::read_to_string(staging.join("data.txt"))? == payload,
        "data lost after restage"
    );
    k.unstage(&id, &staging).await?;

    let (mut stages, mut publishes) = (vec![], vec![]);
    for _ in 0..rounds {
        stages.push(ms(k.stage(&id, &staging, mount_cap(fs)).await?));
        publishes.push(ms(k.publish(&id, &staging, &target, mount_cap(fs)).await?));
        k.unpublish(&id, &target).await?;
        k.unstage(&id, &staging).await?;
    }

    step(&format!("{fs}: DeleteVolume, twice"));
    k.delete(&id).await?;
    k.delete(&id).await?;
    ensure!(
        sh("lvm", &["lvs", "--noheadings", "-o", "lv_name", crate::VG])?
            .lines()
            .all(|l| l.trim() != id.rsplit('/').next().unwrap_or_default()),
        "the LV is still there"
    );

    let mut line = format!(
        "BENCH csi-node emulated-cpu(QEMU TCG, -cpu max, 2 vCPU) fs={fs} first_stage_with_mkfs_ms={:.1} first_publish_ms={:.1}",
        ms(first_stage),
        ms(first_publish)
    );
    if rounds > 0 {
        let (s50, s99) = percentiles(stages);
        let (p50, p99) = percentiles(publishes);
        line.push_str(&format!(
            " stage_p50_ms={s50:.1} stage_p99_ms={s99:.1} publish_p50_ms={p50:.1} publish_p99_ms={p99:.1} rounds={rounds}"
        ));
    }
    Ok(line)
}

pub async fn block(k: &mut Kubelet) -> Result<()> {
    let name = "pvc-vm-raw";
    step("block: stage and publish the device node");
    let volume = k.create(name, 16 * MIB, block_cap()).await?;
    let id = volume.volume_id;
    let staging = PathBuf::from(
        "/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/staging/pvc-vm-raw",
    );
    let target = PathBuf::from(
        "/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-vm-raw/pod-raw",
    );
    k.stage(&id, &staging, block_cap()).await?;
    k.publish(&id, &staging, &target, block_cap()).await?;
    k.publish(&id, &staging, &target, block_cap()).await?;
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&target)?;
        f.seek(SeekFrom::Start(MIB))?;
        f.write_all(&pattern)?;
        f.sync_all()?;
        let mut back = vec![0u8; 4096];
        let mut d = std::fs::File::open(device(&id))?;
        d.seek(SeekFrom::Start(MIB))?;
        d.read_exact(&mut back)?;
        ensure!(
            back == pattern,
            "bytes written through the target are not on the LV"
        );
    }
    ensure!(
        sh("blkid", &["-p", "-o", "export", &device(&id)]).is_err(),
        "a block volume must not be formatted"
    );
    let s = k.stats(&id, &target).await?;
    ensure!(
        bytes_usage(&s)?.total == (16 * MIB) as i64,
        "block stats {s:?}"
    );
    let grown = k.expand(&id, 32 * MIB).await?;
    ensure!(grown.capacity_bytes == (32 * MIB) as i64, "{grown:?}");
    k.unpublish(&id, &target).await?;
    k.unpublish(&id, &target).await?;
    k.unstage(&id, &staging).await?;
    k.delete(&id).await?;
    Ok(())
}

/// A volume made on extents another volume used must come up blank: no old
/// filesystem or LVM signature in its first or last MiB, and its first
/// stage formats it afresh.
pub async fn wipe(k: &mut Kubelet) -> Result<()> {
    step("wipe: write a filesystem and an LVM label, delete, create again on the same extents");
    let size = 64 * MIB;
    let old = k.create("pvc-vm-old", size, mount_cap("ext4")).await?;
    let old_id = old.volume_id.clone();
    let ranges = |id: &str| sh("lvm", &["lvs", "--noheadings", "-o", "seg_pe_ranges", id]);
    let old_extents = ranges(&old_id)?;
    let staging = staging_for("pvc-vm-old");
    k.stage(&old_id, &staging, mount_cap("ext4")).await?;
    std::fs::write(staging.join("secret.txt"), b"old tenant data")?;
    let old_uuid = uuid(&device(&old_id))?;
    k.unstage(&old_id, &staging).await?;
    // An LVM label near the end as well, where a filesystem probe at the
    // start would not look.
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(device(&old_id))?;
        f.seek(SeekFrom::Start(size - 512 * 1024))?;
        f.write_all(b"LABELONE\x01\x00\x00\x00\x00\x00\x00\x00LVM2 001")?;
        f.sync_all()?;
    }
    k.delete(&old_id).await?;

    let new = k.create("pvc-vm-new", size, mount_cap("ext4")).await?;
    let new_id = new.volume_id.clone();
    let new_extents = ranges(&new_id)?;
    ensure!(
        new_extents.split(':').nth(1) == old_extents.split(':').nth(1),
        "not the same extents: {old_extents} vs {new_extents}"
    );
    let dev = device(&new_id);
    ensure!(
        sh("blkid", &["-p", "-o", "export", &dev]).is_err(),
        "the new volume carries an old signature"
    );
    let mut head = vec![0u8; MIB as usize];
    let mut tail = vec![0u8; MIB as usize];
    {
        let mut d = std::fs::File::open(&dev)?;
        d.read_exact(&mut head)?;
        d.seek(SeekFrom::Start(size - MIB))?;
        d.read_exact(&mut tail)?;
    }
    for (part, bytes) in [("first", &head), ("last", &tail)] {
        for magic in [
            &b"LABELONE"[..],
            &b"LVM2 001"[..],
            &b"XFSB"[..],
            &b"old tenant data"[..],
        ] {
            ensure!(
                !bytes.windows(magic.len()).any(|w| w == magic),
                "the {part} MiB of the new volume still holds {:?}",
                String::from_utf8_lossy(magic)
            );
        }
        // ext4's magic sits at byte 1080 of the device.
        ensure!(
            part != "first" || bytes[1080..1082] != [0x53, 0xEF],
            "an old ext4 superblock survived"
        );
    }
    let staging = staging_for("pvc-vm-new");
    k.stage(&new_id, &staging, mount_cap("ext4")).await?;
    ensure!(uuid(&dev)? != old_uuid, "the old filesystem was mounted");
    ensure!(!staging.join("secret.txt").exists(), "old data is visible");
    k.unstage(&new_id, &staging).await?;
    k.delete(&new_id).await?;
    step("wipe: a new volume on old extents is blank");
    Ok(())
}
