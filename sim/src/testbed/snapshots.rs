//! The upstream snapshot-controller and its CRDs, for the real control plane.
//!
//! `hack/snapshot-controller/build.sh` builds `cmd/snapshot-controller` of
//! github.com/kubernetes-csi/external-snapshotter and copies the CRDs of its
//! client module (`client/config/crd`) next to the binary. Clusters install
//! both themselves, as an add-on; lvmpin ships neither.

use std::path::{Path, PathBuf};

use kube::Client;

use crate::error::{Error, Result};
use crate::testbed::install;
use crate::testbed::process::{ManagedProcess, target_dir};

pub const SNAPSHOT_CONTROLLER_BIN: &str = "snapshot-controller";

/// `LVMPIN_SNAPSHOT_CONTROLLER_DIR` or `<target>/snapshot-controller`, where
/// `.ci/run` and the build script put the binary and `crds/`.
pub fn install_dir() -> PathBuf {
    std::env::var_os("LVMPIN_SNAPSHOT_CONTROLLER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join(SNAPSHOT_CONTROLLER_BIN))
}

fn missing(path: &Path) -> Error {
    Error::BinaryMissing(format!(
        "{} (build it with `bash hack/snapshot-controller/build.sh`; needs Go)",
        path.display()
    ))
}

pub fn binary() -> Result<PathBuf> {
    let path = install_dir().join(SNAPSHOT_CONTROLLER_BIN);
    if path.is_file() {
        Ok(path)
    } else {
        Err(missing(&path))
    }
}

/// The CRD files, sorted so installs are repeatable.
fn crd_files() -> Result<Vec<PathBuf>> {
    let dir = install_dir().join("crds");
    let entries = std::fs::read_dir(&dir).map_err(|_| missing(&dir))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(missing(&dir));
    }
    Ok(files)
}

/// Create the upstream CRDs and wait until each one serves.
pub async fn install_crds(client: &Client) -> Result<()> {
    let mut names = Vec::new();
    for file in crd_files()? {
        for crd in install::read_manifest(&file)? {
            install::create_object(client, &crd).await?;
            names.extend(crd.metadata.name);
        }
    }
    for name in &names {
        install::wait_established(client, name).await?;
    }
    Ok(())
}

/// Start the controller as the cluster's add-on, with `extra_args` after
/// the connection flags.
pub fn start(kubeconfig: &Path, log: PathBuf, extra_args: &[String]) -> Result<ManagedProcess> {
    let mut args = vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        // Failed creations are retried from 1 s, doubling; the default cap
        // of 5 minutes would outlast a test's wait.
        "--retry-interval-max=10s".to_string(),
    ];
    args.extend(extra_args.iter().cloned());
    ManagedProcess::spawn(SNAPSHOT_CONTROLLER_BIN, &binary()?, args, Vec::new(), log)
}
