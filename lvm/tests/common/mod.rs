//! A throwaway volume group on a loop device backed by a sparse file. Everything
//! it creates is removed in `Drop`, which also runs when a test panics.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use lvmpin_lvm::{Lvm, LvmConfig, device_mapper_available};

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub struct TestVg {
    pub name: String,
    pub dir: tempfile::TempDir,
    loop_device: Option<String>,
    pv_created: bool,
    vg_created: bool,
}

pub fn metadata_only_here() -> bool {
    !device_mapper_available()
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

/// `lvm <sub> [--driverloaded n] args...`
pub fn lvm_cmd(sub: &str, args: &[&str]) -> String {
    let mut all = vec![sub];
    if metadata_only_here() {
        all.extend(["--driverloaded", "n"]);
    }
    all.extend(args);
    run("lvm", &all)
}

impl TestVg {
    pub fn new(size_mib: u64) -> TestVg {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "the real-lvm2 tests need root (losetup, pvcreate); run them as root, as CI does"
        );
        let name = format!(
            "lvmpin-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut vg = TestVg {
            name,
            dir: tempfile::tempdir().expect("tempdir"),
            loop_device: None,
            pv_created: false,
            vg_created: false,
        };
        let image = vg.dir.path().join("disk.img");
        let file = std::fs::File::create(&image).expect("create image");
        file.set_len(size_mib << 20).expect("size image");
        drop(file);
        let image = image.to_str().expect("utf-8 path");
        let dev = run("losetup", &["--find", "--show", image])
            .trim()
            .to_string();
        vg.loop_device = Some(dev.clone());
        lvm_cmd("pvcreate", &["-q", &dev]);
        vg.pv_created = true;
        lvm_cmd("vgcreate", &["-q", &vg.name, &dev]);
        vg.vg_created = true;
        vg
    }

    pub fn lvm(&self) -> Lvm {
        Lvm::new(LvmConfig::default())
    }

    pub fn lvm_with_binary(&self, binary: &Path) -> Lvm {
        Lvm::new(LvmConfig {
            binary: binary.to_path_buf(),
            ..LvmConfig::default()
        })
    }

    /// LV names in this VG, straight from `lvs` (not through our parser).
    pub fn lv_names(&self) -> Vec<String> {
        lvm_cmd("lvs", &["--noheadings", "-o", "lv_name", &self.name])
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Makes an executable script in this fixture's temp dir.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }
}

impl Drop for TestVg {
    fn drop(&mut self) {
        // Best effort and quiet: a failing step must not stop the next one.
        let quiet = |program: &str, args: &[&str]| {
            let _ = Command::new(program)
                .args(args)
                .env("LC_ALL", "C")
                .env("LVM_SUPPRESS_FD_WARNINGS", "1")
                .output();
        };
        let dl: &[&str] = if metadata_only_here() {
            &["--driverloaded", "n"]
        } else {
            &[]
        };
        if self.vg_created {
            quiet(
                "lvm",
                &[&["vgremove", "--force", "--yes"], dl, &[self.name.as_str()]].concat(),
            );
        }
        if let Some(dev) = &self.loop_device {
            if self.pv_created {
                quiet(
                    "lvm",
                    &[&["pvremove", "-ff", "--yes"], dl, &[dev.as_str()]].concat(),
                );
            }
            quiet("losetup", &["--detach", dev]);
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
