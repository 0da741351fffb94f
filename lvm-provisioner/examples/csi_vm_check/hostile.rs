//! Hostile input against the running agent: modes a local volume cannot
//! have, paths that leave kubelet's directory, huge ids, and volumes that are
//! not lvmpin's. Each must be refused with the spec's code, change nothing,
//! and leave the agent up.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail, ensure};
use lvmpin_csi_proto::csi::v1 as pb;
use lvmpin_csi_proto::csi::v1::volume_capability::access_mode::Mode;
use lvmpin_csi_proto::csi::v1::volume_capability::{AccessType, MountVolume};
use tonic::Code;

use crate::agent::Agent;
use crate::kubelet::{Kubelet, mount_cap, with_mode};
use crate::{MIB, VG, sh, step};

fn code_of(r: Result<impl std::fmt::Debug>) -> Result<(Code, usize)> {
    match r {
        Ok(v) => bail!("accepted: {v:?}"),
        Err(e) => match e.downcast_ref::<tonic::Status>() {
            Some(s) => Ok((s.code(), s.message().len())),
            None => bail!("not a gRPC status: {e:#}"),
        },
    }
}

fn expect(what: &str, r: Result<impl std::fmt::Debug>, want: Code) -> Result<()> {
    let (code, len) = code_of(r)?;
    ensure!(code == want, "{what}: got {code:?}, want {want:?}");
    ensure!(len < 2048, "{what}: a {len}-byte status message");
    Ok(())
}

fn mounted(path: &Path) -> Result<bool> {
    let table = std::fs::read_to_string("/proc/self/mountinfo")?;
    let p = path.display().to_string();
    Ok(table
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str())))
}

pub async fn all(k: &mut Kubelet, agent: &mut Agent) -> Result<()> {
    let v = k
        .create("pvc-vm-hostile", 32 * MIB, mount_cap("ext4"))
        .await?;
    let id = v.volume_id;
    let staging = PathBuf::from("/var/lib/kubelet/plugins/kubernetes.io/csi/h/globalmount");

    step("hostile: multi-node access modes");
    for mode in [
        Mode::MultiNodeMultiWriter,
        Mode::MultiNodeSingleWriter,
        Mode::MultiNodeReaderOnly,
    ] {
        let cap = with_mode(AccessType::Mount(MountVolume::default()), mode);
        expect(
            "stage multi-node",
            k.stage(&id, &staging, cap.clone()).await,
            Code::FailedPrecondition,
        )?;
        let target = PathBuf::from("/var/lib/kubelet/pods/h/volumes/x/mount");
        expect(
            "publish multi-node",
            k.publish(&id, &staging, &target, cap.clone()).await,
            Code::FailedPrecondition,
        )?;
        expect(
            "create multi-node",
            k.create("pvc-vm-multi", 16 * MIB, cap).await,
            Code::InvalidArgument,
        )?;
    }
    ensure!(!mounted(&staging)?, "a refused stage left a mount");
    ensure!(
        sh("blkid", &["-p", "-o", "export", &format!("/dev/{id}")]).is_err(),
        "a refused stage formatted the volume"
    );

    step("hostile: staging paths outside kubelet's directory or climbing out of it");
    for bad in [
        "/tmp/escape/globalmount",
        "/var/lib/kubelet/plugins/../../../tmp/escape/globalmount",
        "relative/globalmount",
    ] {
        std::fs::create_dir_all("/tmp/escape/globalmount")?;
        expect(
            bad,
            k.stage(&id, Path::new(bad), mount_cap("ext4")).await,
            Code::InvalidArgument,
        )?;
        ensure!(
            !mounted(Path::new("/tmp/escape/globalmount"))?,
            "{bad} was mounted"
        );
    }
    let winding = PathBuf::from("/var/lib/kubelet/plugins/kubernetes.io/csi/x/../h/./globalmount");
    k.stage(&id, &winding, mount_cap("ext4")).await?;
    k.stage(&id, &winding, mount_cap("ext4")).await?;
    ensure!(
        mounted(&staging)?,
        "the winding path did not mount at its normal form"
    );
    k.unstage(&id, &winding).await?;
    ensure!(
        !mounted(&staging)?,
        "unstage of the same string left the mount"
    );

    step("hostile: a 1 MiB volume id and a 1 MiB path");
    let huge = format!("{VG}/{}", "x".repeat(1 << 20));
    expect(
        "huge id stage",
        k.stage(&huge, &staging, mount_cap("ext4")).await,
        Code::NotFound,
    )?;
    // Not a volume of ours: DeleteVolume of what does not exist is OK.
    k.delete(&huge).await?;
    let huge_path = PathBuf::from(format!("/var/lib/kubelet/{}", "p/".repeat(1 << 19)));
    expect(
        "huge path stage",
        k.stage(&id, &huge_path, mount_cap("ext4")).await,
        Code::InvalidArgument,
    )?;

    step("hostile: volumes that are not lvmpin's");
    sh("lvm", &["lvcreate", "-y", "-n", "rootlike", "-L", "8m", VG])?;
    let foreign = format!("{VG}/rootlike");
    expect(
        "stage an untagged LV",
        k.stage(&foreign, &staging, mount_cap("ext4")).await,
        Code::NotFound,
    )?;
    expect(
        "delete an untagged LV",
        k.delete(&foreign).await.map(|_| "deleted"),
        Code::FailedPrecondition,
    )?;
    expect(
        "expand an untagged LV",
        k.expand(&foreign, 16 * MIB).await,
        Code::NotFound,
    )?;
    ensure!(
        sh("lvm", &["lvs", "--noheadings", "-o", "lv_name", &foreign]).is_ok(),
        "the untagged LV is gone"
    );
    expect(
        "stage a VG not served",
        k.stage("othervg/pvc-x", &staging, mount_cap("ext4")).await,
        Code::NotFound,
    )?;
    sh("lvm", &["lvremove", "-y", &foreign])?;

    agent.alive()?;
    let probe = k.identity.probe(pb::ProbeRequest {}).await?.into_inner();
    ensure!(
        probe.ready == Some(true),
        "probe after hostile input: {probe:?}"
    );
    k.delete(&id).await?;
    step("hostile: refused with spec codes, nothing changed, agent still up");
    Ok(())
}
