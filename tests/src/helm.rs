//! The helm binary (hack/helm/build.sh builds helm.sh/helm/v3 cmd/helm) and
//! the chart, for the tests that render or install charts/lvmpin.

use std::path::PathBuf;
use std::process::Command;

fn repo_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `LVMPIN_HELM`, or `<target>/helm/helm` where hack/helm/build.sh puts it.
fn helm_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LVMPIN_HELM") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_dir().join("target"));
    target.join("helm").join("helm")
}

/// The helm binary; None (and a note on stderr) when it is missing and
/// LVMPIN_REQUIRE_HELM is unset. `.ci/run` builds it and sets the variable,
/// so there a missing helm fails the tests.
pub fn helm() -> Option<PathBuf> {
    let path = helm_path();
    if path.is_file() {
        return Some(path);
    }
    let how = "build it with `bash hack/helm/build.sh` (needs Go)";
    if std::env::var_os("LVMPIN_REQUIRE_HELM").is_some() {
        panic!(
            "LVMPIN_REQUIRE_HELM is set but {} does not exist; {how}",
            path.display()
        );
    }
    eprintln!(
        "SKIPPED: no helm at {} (set LVMPIN_HELM, or {how}; LVMPIN_REQUIRE_HELM=1 makes this a failure)",
        path.display()
    );
    None
}

pub fn chart_dir() -> PathBuf {
    repo_dir().join("charts/lvmpin")
}

/// Runs helm with `args`; Ok(stdout) or Err(stderr).
pub fn run(helm: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let home = std::env::temp_dir().join("lvmpin-helm-home");
    let out = Command::new(helm)
        .args(args)
        // Keep helm off the user's configuration and repositories.
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .map_err(|e| format!("running {}: {e}", helm.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "helm {}: {}{}",
            args.join(" "),
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
