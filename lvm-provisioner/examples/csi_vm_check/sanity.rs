//! Upstream csi-sanity (github.com/kubernetes-csi/csi-test/v5) against the
//! agent binary: Identity, Controller and Node, for ext4, xfs and raw block.
//! Every case must pass or be skipped by csi-sanity itself; the skips are
//! printed with csi-sanity's own reason.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::agent::{Agent, CSI_SOCKET, KUBELET_DIR};
use crate::step;

pub struct Kind {
    pub name: &'static str,
    pub access_type: &'static str,
    /// StorageClass-style parameters for CreateVolume.
    pub parameters: &'static str,
}

pub const KINDS: [Kind; 3] = [
    Kind {
        name: "ext4",
        access_type: "mount",
        parameters: "csi.storage.k8s.io/fstype: ext4\n",
    },
    Kind {
        name: "xfs",
        access_type: "mount",
        parameters: "csi.storage.k8s.io/fstype: xfs\n",
    },
    Kind {
        name: "block",
        access_type: "block",
        parameters: "{}\n",
    },
];

/// xfs needs 300 MiB at least.
const SIZE: &str = "335544320";
const EXPANDED: &str = "402653184";

/// `(name, reason)` of every skipped case in a JUnit report.
fn skipped(junit: &str) -> Vec<(String, String)> {
    let attr = |tag: &str, key: &str| -> String {
        let needle = format!("{key}=\"");
        tag.find(&needle)
            .map(|i| &tag[i + needle.len()..])
            .and_then(|rest| rest.find('"').map(|end| rest[..end].to_string()))
            .unwrap_or_default()
    };
    junit
        .split("<testcase ")
        .skip(1)
        .filter_map(|case| {
            let skip = case.find("<skipped")?;
            let end = case.find("</testcase>").unwrap_or(case.len());
            (skip < end).then(|| (attr(case, "name"), attr(&case[skip..], "message")))
        })
        .collect()
}

pub async fn run(binary: &Path, agent: &Agent, kind: Kind) -> Result<()> {
    step(&format!("csi-sanity {}: start", kind.name));
    let dir = format!("{KUBELET_DIR}/sanity-{}", kind.name);
    let mount_parent = format!("{KUBELET_DIR}/pods/sanity-{}", kind.name);
    let staging_parent = format!("{KUBELET_DIR}/plugins/sanity-{}", kind.name);
    for d in [&dir, &mount_parent, &staging_parent] {
        std::fs::create_dir_all(d)?;
    }
    let params = format!("{dir}/parameters.yaml");
    std::fs::write(&params, kind.parameters)?;
    let junit = format!("{dir}/junit.xml");
    let status = Command::new(binary)
        .arg(format!("--csi.endpoint={CSI_SOCKET}"))
        .arg(format!("--csi.mountdir={mount_parent}/mount"))
        .arg(format!("--csi.stagingdir={staging_parent}/staging"))
        .arg(format!("--csi.testvolumeaccesstype={}", kind.access_type))
        .arg(format!("--csi.testvolumeparameters={params}"))
        .arg(format!("--csi.testvolumesize={SIZE}"))
        .arg(format!("--csi.testvolumeexpandsize={EXPANDED}"))
        .arg(format!("--ginkgo.junit-report={junit}"))
        .arg("--ginkgo.no-color")
        .status()
        .with_context(|| format!("run {}", binary.display()))?;
    let report = std::fs::read_to_string(&junit).unwrap_or_default();
    for (name, reason) in skipped(&report) {
        println!("SANITY {} SKIPPED: {name}: {reason}", kind.name);
    }
    ensure!(
        status.success(),
        "csi-sanity {} failed: {status}",
        kind.name
    );
    ensure!(
        std::path::Path::new(&agent.csi_socket).exists(),
        "the agent's socket is gone"
    );
    step(&format!("csi-sanity {}: passed", kind.name));
    Ok(())
}
