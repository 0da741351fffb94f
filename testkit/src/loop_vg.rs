//! A throwaway VG on a loop device over a sparse file, for tests against real
//! lvm2. `Drop` (which also runs while a test panics) removes the VG, the PV
//! label, the loop device and lvm's metadata backups of it. Without
//! device-mapper every lvm command gets `--driverloaded n`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// True when this kernel has no usable device-mapper. Opening the control
/// node is the only reliable probe: lvm creates the node even without one.
pub fn metadata_only_here() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mapper/control")
        .is_err()
}

/// Runs a setup or inspection command; panics with its stderr on failure.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lvm_args<'a>(sub: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![sub];
    if metadata_only_here() {
        v.extend(["--driverloaded", "n"]);
    }
    v.extend(rest);
    v
}

/// `lvm <sub> [--driverloaded n] args...`, panicking on failure.
pub fn lvm(sub: &str, rest: &[&str]) -> String {
    run("lvm", &lvm_args(sub, rest))
}

pub struct LoopVg {
    pub name: String,
    dir: tempfile::TempDir,
    device: Option<String>,
    labelled: bool,
    grouped: bool,
}

impl LoopVg {
    /// A VG of `mib` MiB named `lvmpin-<tag>-<pid>-<n>`.
    pub fn new(tag: &str, mib: u64) -> Self {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "the real-lvm2 tests need root (losetup, pvcreate); run them as root, as CI does"
        );
        let name = format!(
            "lvmpin-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut vg = LoopVg {
            name,
            dir: tempfile::tempdir().expect("tempdir"),
            device: None,
            labelled: false,
            grouped: false,
        };
        let image = vg.dir.path().join("disk.img");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(mib << 20))
            .expect("sparse image");
        let image = image.to_string_lossy().into_owned();
        let dev = run("losetup", &["--find", "--show", &image])
            .trim()
            .to_string();
        vg.device = Some(dev.clone());
        lvm("pvcreate", &["-q", &dev]);
        vg.labelled = true;
        lvm("vgcreate", &["-q", &vg.name, &dev]);
        vg.grouped = true;
        vg
    }

    /// The fixture's own directory, removed with it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// LV names in this VG, straight from `lvs` (not through our parser).
    pub fn lv_names(&self) -> Vec<String> {
        lvm("lvs", &["--noheadings", "-o", "lv_name", &self.name])
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// The LV's tags as lvs prints them.
    pub fn lv_tags(&self, lv: &str) -> String {
        lvm(
            "lvs",
            &[
                "--noheadings",
                "-o",
                "lv_tags",
                &format!("{}/{lv}", self.name),
            ],
        )
        .trim()
        .to_string()
    }

    /// Makes an executable script in this fixture's directory.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }
}

impl Drop for LoopVg {
    fn drop(&mut self) {
        // Best effort and quiet: a failing step must not stop the next one.
        let quiet = |program: &str, args: Vec<&str>| {
            let _ = Command::new(program)
                .args(args)
                .env("LC_ALL", "C")
                .env("LVM_SUPPRESS_FD_WARNINGS", "1")
                .output();
        };
        if self.grouped {
            quiet(
                "lvm",
                lvm_args("vgremove", &["--force", "--yes", &self.name]),
            );
        }
        if let Some(dev) = &self.device {
            if self.labelled {
                quiet("lvm", lvm_args("pvremove", &["-ff", "--yes", dev]));
            }
            quiet("losetup", vec!["--detach", dev]);
        }
        // lvm keeps metadata history per VG; ours are throwaway.
        let _ = std::fs::remove_file(format!("/etc/lvm/backup/{}", self.name));
        if let Ok(entries) = std::fs::read_dir("/etc/lvm/archive") {
            let prefix = format!("{}_", self.name);
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}
