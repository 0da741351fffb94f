//! Runs inside the QEMU guest built by `hack/vm/run.sh` (see
//! `tests/csi_vm.rs`): creates a VG on the virtio disk, starts the agent's real
//! CSI node service (`csi::serve`, real `Lvm`, real `SysMounter`) on a unix
//! socket, and drives it over gRPC the way kubelet does. Exits non-zero on the
//! first failed check. Also measures stage and publish latency (BENCH lines).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use lvmpin_csi_proto::csi::v1 as pb;
use lvmpin_csi_proto::csi::v1::identity_client::IdentityClient;
use lvmpin_csi_proto::csi::v1::node_client::NodeClient;
use lvmpin_csi_proto::csi::v1::volume_capability::access_mode::Mode;
use lvmpin_csi_proto::csi::v1::volume_capability::{
    AccessMode, AccessType, BlockVolume, MountVolume,
};
use lvmpin_csi_proto::pluginregistration as reg;
use lvmpin_lvm::{CreateLv, DeviceMapper, Lvm, LvmConfig, Owner};
use lvmpin_provisioner::csi::{
    self, CsiMetrics, CsiOptions, RegistrationHealth, client::connect_unix,
};
use tonic::transport::Channel;

const VG: &str = "vmvg";
const MIB: u64 = 1 << 20;

#[derive(Parser, Debug)]
struct Args {
    /// Block device to turn into the volume group.
    #[arg(long)]
    disk: PathBuf,
    /// Directory (the 9p share) for bench results.
    #[arg(long)]
    results: PathBuf,
    /// Extra stage/publish/unpublish/unstage rounds per filesystem, for latency.
    #[arg(long, default_value_t = 5)]
    bench_rounds: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "warn,lvmpin_provisioner=info",
        ))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match run(Args::parse()).await {
        Ok(()) => {
            println!("GUEST: all CSI checks passed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("GUEST: CHECK FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn sh(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    ensure!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn step(name: &str) {
    println!("GUEST: {name}");
}

fn mount_cap(fs: &str) -> Option<pb::VolumeCapability> {
    Some(pb::VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            mount_flags: vec!["noatime".into()],
            volume_mount_group: String::new(),
        })),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    })
}

fn block_cap() -> Option<pb::VolumeCapability> {
    Some(pb::VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    })
}

struct Kubelet {
    node: NodeClient<Channel>,
}

impl Kubelet {
    async fn stage(
        &mut self,
        id: &str,
        staging: &Path,
        cap: Option<pb::VolumeCapability>,
    ) -> Result<Duration> {
        let t = Instant::now();
        self.node
            .node_stage_volume(pb::NodeStageVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging.display().to_string(),
                volume_capability: cap,
                ..Default::default()
            })
            .await
            .with_context(|| format!("NodeStageVolume {id}"))?;
        Ok(t.elapsed())
    }

    async fn publish(
        &mut self,
        id: &str,
        staging: &Path,
        target: &Path,
        cap: Option<pb::VolumeCapability>,
    ) -> Result<Duration> {
        let t = Instant::now();
        self.node
            .node_publish_volume(pb::NodePublishVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging.display().to_string(),
                target_path: target.display().to_string(),
                volume_capability: cap,
                ..Default::default()
            })
            .await
            .with_context(|| format!("NodePublishVolume {id}"))?;
        Ok(t.elapsed())
    }

    async fn unpublish(&mut self, id: &str, target: &Path) -> Result<()> {
        self.node
            .node_unpublish_volume(pb::NodeUnpublishVolumeRequest {
                volume_id: id.into(),
                target_path: target.display().to_string(),
            })
            .await
            .with_context(|| format!("NodeUnpublishVolume {id}"))?;
        ensure!(
            !target.exists(),
            "unpublish left {} behind",
            target.display()
        );
        Ok(())
    }

    async fn unstage(&mut self, id: &str, staging: &Path) -> Result<()> {
        self.node
            .node_unstage_volume(pb::NodeUnstageVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging.display().to_string(),
            })
            .await
            .with_context(|| format!("NodeUnstageVolume {id}"))?;
        Ok(())
    }

    async fn stats(&mut self, id: &str, path: &Path) -> Result<pb::NodeGetVolumeStatsResponse> {
        Ok(self
            .node
            .node_get_volume_stats(pb::NodeGetVolumeStatsRequest {
                volume_id: id.into(),
                volume_path: path.display().to_string(),
                staging_target_path: String::new(),
            })
            .await
            .with_context(|| format!("NodeGetVolumeStats {id}"))?
            .into_inner())
    }
}

fn bytes_usage(s: &pb::NodeGetVolumeStatsResponse) -> Result<&pb::VolumeUsage> {
    s.usage
        .iter()
        .find(|u| u.unit == pb::volume_usage::Unit::Bytes as i32)
        .context("no BYTES usage")
}

fn owner(name: &str) -> Owner {
    Owner {
        claim_uid: format!("uid-{name}"),
        claim_namespace: "vm".into(),
        claim_name: name.into(),
        pv_name: name.into(),
    }
}

fn uuid(dev: &str) -> Result<String> {
    sh("blkid", &["-p", "-s", "UUID", "-o", "value", dev])
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

async fn filesystem_cycle(k: &mut Kubelet, lvm: &Lvm, fs: &str, rounds: usize) -> Result<String> {
    let lv = format!("pvc-{fs}");
    let id = format!("{VG}/{lv}");
    let dev = format!("/dev/{VG}/{lv}");
    let staging = PathBuf::from(format!(
        "/var/lib/kubelet/plugins/kubernetes.io/csi/lvm.lvmpin.io/{lv}/globalmount"
    ));
    let target = PathBuf::from(format!(
        "/var/lib/kubelet/pods/pod-{fs}/volumes/kubernetes.io~csi/{lv}/mount"
    ));
    step(&format!("{fs}: create LV {id} (320 MiB)"));
    lvm.create_lv(&CreateLv {
        vg: VG.into(),
        name: lv.clone(),
        size_bytes: 320 * MIB,
        thin_pool: None,
        owner: owner(&lv),
    })?;

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
        "{fs}: lvextend to 480 MiB, NodeExpandVolume online"
    ));
    let grown = lvm.extend_lv(VG, &lv, 480 * MIB)?;
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
        r.capacity_bytes == grown.size_bytes as i64,
        "capacity {} != LV {}",
        r.capacity_bytes,
        grown.size_bytes
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

async fn block_cycle(k: &mut Kubelet, lvm: &Lvm) -> Result<()> {
    let lv = "pvc-raw";
    let id = format!("{VG}/{lv}");
    let staging =
        PathBuf::from("/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/staging/pvc-raw");
    let target = PathBuf::from(
        "/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-raw/pod-raw",
    );
    step("block: create LV, stage, publish the device node");
    lvm.create_lv(&CreateLv {
        vg: VG.into(),
        name: lv.into(),
        size_bytes: 16 * MIB,
        thin_pool: None,
        owner: owner(lv),
    })?;
    k.stage(&id, &staging, block_cap()).await?;
    k.publish(&id, &staging, &target, block_cap()).await?;
    k.publish(&id, &staging, &target, block_cap()).await?;
    {
        use std::io::{Read, Seek, SeekFrom, Write};
        let pattern: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let mut f = std::fs::OpenOptions::new().write(true).open(&target)?;
        f.seek(SeekFrom::Start(MIB))?;
        f.write_all(&pattern)?;
        f.sync_all()?;
        let mut back = vec![0u8; 4096];
        let mut d = std::fs::File::open(format!("/dev/{VG}/{lv}"))?;
        d.seek(SeekFrom::Start(MIB))?;
        d.read_exact(&mut back)?;
        ensure!(
            back == pattern,
            "bytes written through the target are not on the LV"
        );
    }
    ensure!(
        sh("blkid", &["-p", "-o", "export", &format!("/dev/{VG}/{lv}")]).is_err(),
        "a block volume must not be formatted"
    );
    let s = k.stats(&id, &target).await?;
    ensure!(
        bytes_usage(&s)?.total == (16 * MIB) as i64,
        "block stats {s:?}"
    );
    k.unpublish(&id, &target).await?;
    k.unpublish(&id, &target).await?;
    k.unstage(&id, &staging).await?;
    Ok(())
}

async fn wait_for(path: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        if Instant::now() > deadline {
            bail!("{} never appeared", path.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn run(args: Args) -> Result<()> {
    let disk = args.disk.display().to_string();
    step(&format!("pvcreate + vgcreate {VG} on {disk}"));
    sh("lvm", &["pvcreate", "-y", &disk])?;
    sh("lvm", &["vgcreate", VG, &disk])?;
    let lvm = Lvm::new(LvmConfig {
        binary: "lvm".into(),
        timeout: Duration::from_secs(120),
        device_mapper: DeviceMapper::Present,
    });

    let csi_socket = PathBuf::from("/var/lib/kubelet/plugins/lvm.lvmpin.io/csi.sock");
    let kubelet_dir = PathBuf::from("/var/lib/kubelet");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(csi::serve(
        CsiOptions {
            node_name: "vm-node".into(),
            csi_socket: csi_socket.clone(),
            kubelet_dir: kubelet_dir.clone(),
            kubelet_endpoint: None,
            metrics: CsiMetrics::default(),
        },
        Arc::new(lvm.clone()),
        RegistrationHealth::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let reg_socket = csi::registration::socket_path(&kubelet_dir);
    wait_for(&csi_socket).await?;
    wait_for(&reg_socket).await?;

    step("registration GetInfo, Probe, NodeGetInfo");
    let mut r = reg::registration_client::RegistrationClient::new(connect_unix(&reg_socket).await?);
    let info = r.get_info(reg::InfoRequest {}).await?.into_inner();
    ensure!(
        info.r#type == "CSIPlugin" && info.name == "lvm.lvmpin.io",
        "{info:?}"
    );
    ensure!(
        info.endpoint == csi_socket.display().to_string(),
        "{info:?}"
    );
    let channel = connect_unix(&csi_socket).await?;
    let probe = IdentityClient::new(channel.clone())
        .probe(pb::ProbeRequest {})
        .await?
        .into_inner();
    ensure!(
        probe.ready == Some(true),
        "probe not ready with device-mapper present"
    );
    let mut k = Kubelet {
        node: NodeClient::new(channel),
    };
    let ni = k
        .node
        .node_get_info(pb::NodeGetInfoRequest {})
        .await?
        .into_inner();
    ensure!(ni.node_id == "vm-node", "{ni:?}");

    let mut bench = vec![];
    for fs in ["ext4", "xfs"] {
        bench.push(filesystem_cycle(&mut k, &lvm, fs, args.bench_rounds).await?);
    }
    block_cycle(&mut k, &lvm).await?;

    for line in &bench {
        println!("{line}");
    }
    std::fs::write(args.results.join("bench.txt"), bench.join("\n") + "\n")?;
    let _ = stop.send(());
    server.await?.context("CSI server")?;
    Ok(())
}
