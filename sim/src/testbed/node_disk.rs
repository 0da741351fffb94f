//! A simulated node's disk: loop-backed LVM physical volumes in a VG that only
//! this node's processes see.
//!
//! All simulated nodes share one kernel, yet on a real cluster every node has a
//! VG of the same name. Each node therefore gets its own LVM configuration
//! directory (`LVM_SYSTEM_DIR`) whose `global_filter` accepts only that node's
//! loop devices; the node's agent runs with it, so N nodes can each own a VG
//! named like the StorageClass says. Everything is removed on drop, panics
//! included.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// VG and node names end up in command arguments and file names.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_string()))
    }
}

/// True when the kernel has device-mapper; otherwise LVM runs metadata-only.
/// The control node existing proves nothing: lvm creates it even without
/// device-mapper, so this opens it, as the agent does.
pub fn device_mapper_present() -> bool {
    lvmpin_lvm::device_mapper_available()
}

fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .map_err(|e| Error::Command {
            command: shown.clone(),
            reason: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: shown,
            reason: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[derive(Debug)]
pub struct NodeDisk {
    pub node: String,
    pub vg: String,
    /// `LVM_SYSTEM_DIR` for every LVM command about this node.
    pub lvm_dir: PathBuf,
    /// (backing file, loop device) per physical volume.
    devices: Vec<(PathBuf, String)>,
    vg_created: bool,
}

impl NodeDisk {
    /// Create `vg` of `size_bytes` on a new loop device under `dir`.
    pub fn create(dir: &Path, node: &str, vg: &str, size_bytes: u64) -> Result<Self> {
        validate_name(node)?;
        validate_name(vg)?;
        let lvm_dir = dir.join(format!("lvm-{node}"));
        std::fs::create_dir_all(&lvm_dir).map_err(|e| Error::io(&lvm_dir, e))?;
        let mut disk = NodeDisk {
            node: node.to_string(),
            vg: vg.to_string(),
            lvm_dir,
            devices: Vec::new(),
            vg_created: false,
        };
        let dev = disk.add_device(dir, size_bytes)?;
        disk.lvm(&["vgcreate", "-q", vg, &dev])?;
        disk.vg_created = true;
        Ok(disk)
    }

    fn write_config(&self) -> Result<()> {
        let accept: Vec<String> = self
            .devices
            .iter()
            .map(|(_, d)| format!("\"a|^{d}$|\""))
            .collect();
        // Locks live per node too, as on separate machines: with one shared
        // lock directory every node's VG (same name) would serialize.
        let lock_dir = self.lvm_dir.join("lock");
        std::fs::create_dir_all(&lock_dir).map_err(|e| Error::io(&lock_dir, e))?;
        let conf = format!(
            "# Written by lvmpin-sim: this node sees only its own loop devices.\n\
             devices {{\n  global_filter = [ {}, \"r|.*|\" ]\n  hints = \"none\"\n  obtain_device_list_from_udev = 0\n}}\n\
             global {{\n  locking_dir = \"{}\"\n}}\n\
             activation {{\n  udev_sync = 0\n  udev_rules = 0\n  monitoring = 0\n}}\n",
            accept.join(", "),
            lock_dir.display()
        );
        let path = self.lvm_dir.join("lvm.conf");
        std::fs::write(&path, conf).map_err(|e| Error::io(&path, e))
    }

    fn add_device(&mut self, dir: &Path, size_bytes: u64) -> Result<String> {
        let file = dir.join(format!("{}-{}.img", self.node, self.devices.len()));
        let f = std::fs::File::create(&file).map_err(|e| Error::io(&file, e))?;
        f.set_len(size_bytes).map_err(|e| Error::io(&file, e))?;
        let out = run(Command::new("losetup").args(["-f", "--show"]).arg(&file));
        let dev = match out {
            Ok(d) => d.trim().to_string(),
            Err(e) => {
                let _ = std::fs::remove_file(&file);
                return Err(e);
            }
        };
        self.devices.push((file, dev.clone()));
        self.write_config()?;
        self.lvm(&["pvcreate", "-q", &dev])?;
        Ok(dev)
    }

    /// Run an LVM command in this node's view (`lvm <args>`), returning stdout.
    pub fn lvm(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new("lvm");
        cmd.args(args).env("LVM_SYSTEM_DIR", &self.lvm_dir);
        run(&mut cmd)
    }

    /// An LV lvmpin did not make (no owner tags), as another tool or an
    /// operator would create it: it takes space behind the agent's back.
    pub fn create_foreign_lv(&self, name: &str, size_bytes: u64) -> Result<()> {
        validate_name(name)?;
        let size = format!("{size_bytes}b");
        let vg = self.vg.clone();
        let mut args = vec!["lvcreate", "-q", "-an", "-Zn", "-L", &size, "-n", name];
        if !device_mapper_present() {
            args.extend(["--driverloaded", "n"]);
        }
        args.push(&vg);
        self.lvm(&args).map(|_| ())
    }

    /// An LV carrying lvmpin's snapshot tags for the content `content_uid` /
    /// `content_name`, as the agent leaves a snapshot whose content was
    /// deleted with Retain (linear and inactive: the test bed may have no
    /// device-mapper for a thin one; the agent reads only the tags).
    pub fn create_snapshot_lv(
        &self,
        name: &str,
        size_bytes: u64,
        content_uid: &str,
        content_name: &str,
    ) -> Result<()> {
        validate_name(name)?;
        let size = format!("{size_bytes}b");
        let vg = self.vg.clone();
        let tags = lvmpin_lvm::snapshot_owner_tags(&lvmpin_lvm::SnapshotOwner {
            content_uid: content_uid.into(),
            content_name: content_name.into(),
        });
        let mut args = vec!["lvcreate", "-q", "-an", "-Zn", "-L", &size, "-n", name];
        for tag in &tags {
            args.extend(["--addtag", tag.as_str()]);
        }
        if !device_mapper_present() {
            args.extend(["--driverloaded", "n"]);
        }
        args.push(&vg);
        self.lvm(&args).map(|_| ())
    }

    /// Remove an LV by name (`lvremove`).
    pub fn remove_lv(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        let lv = format!("{}/{name}", self.vg);
        let mut args = vec!["lvremove", "-q", "-f"];
        if !device_mapper_present() {
            args.extend(["--driverloaded", "n"]);
        }
        args.push(&lv);
        self.lvm(&args).map(|_| ())
    }

    /// Grow the VG by a new loop device of `size_bytes` (`vgextend`).
    pub fn extend(&mut self, dir: &Path, size_bytes: u64) -> Result<()> {
        let dev = self.add_device(dir, size_bytes)?;
        let vg = self.vg.clone();
        self.lvm(&["vgextend", "-q", &vg, &dev]).map(|_| ())
    }

    /// (size, free) bytes as `vgs` reports them.
    pub fn vg_size_free(&self) -> Result<(u64, u64)> {
        let out = self.lvm(&[
            "vgs",
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "vg_size,vg_free",
            &self.vg,
        ])?;
        let nums: Vec<u64> = out
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
        match nums.as_slice() {
            [size, free] => Ok((*size, *free)),
            _ => Err(Error::Command {
                command: "vgs".into(),
                reason: format!("unexpected output {out:?}"),
            }),
        }
    }

    /// (LV name, size bytes) of every LV in the VG.
    pub fn lvs(&self) -> Result<Vec<(String, u64)>> {
        let out = self.lvm(&[
            "lvs",
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "lv_name,lv_size",
            &self.vg,
        ])?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((it.next()?.to_string(), it.next()?.parse().ok()?))
            })
            .collect())
    }

    /// `lvs` as an operator would see it on this node.
    pub fn lvs_table(&self) -> Result<String> {
        self.lvm(&["lvs", "-o", "lv_name,vg_name,lv_size,lv_tags", &self.vg])
    }

    fn cleanup(&mut self) {
        let dm = device_mapper_present();
        if self.vg_created {
            let mut args = vec!["vgremove", "-q", "-f"];
            if !dm {
                args.extend(["--driverloaded", "n"]);
            }
            let vg = self.vg.clone();
            args.push(&vg);
            if let Err(e) = self.lvm(&args) {
                eprintln!("cleanup of node {}: {e}", self.node);
            }
            self.vg_created = false;
        }
        for (file, dev) in self.devices.drain(..) {
            let _ = run(Command::new("lvm")
                .args(["pvremove", "-q", "-ff", "-y", &dev])
                .env("LVM_SYSTEM_DIR", &self.lvm_dir));
            if let Err(e) = run(Command::new("losetup").args(["-d", &dev])) {
                eprintln!("cleanup of node {}: {e}", self.node);
            }
            let _ = std::fs::remove_file(&file);
        }
        let _ = std::fs::remove_dir_all(&self.lvm_dir);
    }
}

impl Drop for NodeDisk {
    fn drop(&mut self) {
        self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("node-1").is_ok());
        for bad in ["", "-x", "a b", "A", "a/b", "a;rm"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
