//! A throwaway VG on a loop device over a sparse file, for tests against real
//! lvm2. `Drop` (which also runs while a test panics) removes the VG, the PV
//! label, the loop device and lvm's metadata backups of it.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn metadata_only() -> bool {
    // Opening the control node is the only reliable probe: lvm itself creates
    // the node even on kernels without device-mapper.
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mapper/control")
        .is_err()
}

fn lvm_args<'a>(sub: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![sub];
    if metadata_only() {
        v.extend(["--driverloaded", "n"]);
    }
    v.extend(rest);
    v
}

fn must(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn lvm(sub: &str, rest: &[&str]) -> String {
    must("lvm", &lvm_args(sub, rest))
}

pub struct LoopVg {
    pub name: String,
    _dir: tempfile::TempDir,
    device: Option<String>,
    labelled: bool,
    grouped: bool,
}

impl LoopVg {
    pub fn new(tag: &str, mib: u64) -> Self {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "real-lvm2 tests need root for losetup and pvcreate"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let name = format!(
            "lvmpin-agent-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut vg = LoopVg {
            name,
            _dir: dir,
            device: None,
            labelled: false,
            grouped: false,
        };
        let image = vg._dir.path().join("disk.img");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(mib << 20))
            .expect("sparse image");
        let image = image.to_string_lossy().into_owned();
        let dev = must("losetup", &["--find", "--show", &image])
            .trim()
            .to_string();
        vg.device = Some(dev.clone());
        lvm("pvcreate", &["-q", &dev]);
        vg.labelled = true;
        lvm("vgcreate", &["-q", &vg.name, &dev]);
        vg.grouped = true;
        vg
    }

    pub fn lv_names(&self) -> Vec<String> {
        lvm("lvs", &["--noheadings", "-o", "lv_name", &self.name])
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

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
}

impl Drop for LoopVg {
    fn drop(&mut self) {
        let quiet = |program: &str, args: Vec<&str>| {
            let _ = Command::new(program)
                .args(args)
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
