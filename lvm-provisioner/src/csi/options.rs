//! Turns a StorageClass's `mountOptions` (CSI `mount_flags`) into mount(2)
//! flags plus the filesystem-specific data string. Pure.

use nix::mount::MsFlags;

use super::blkid::FsType;
use super::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// Comma-separated options the filesystem itself interprets.
    pub data: String,
}

impl MountOptions {
    pub fn read_only(&self) -> bool {
        self.flags.contains(MsFlags::MS_RDONLY)
    }
}

/// Options that change which mount(2) flags are set; anything else goes to
/// the filesystem as data (e.g. `discard`, `nobarrier`, `data=ordered`).
fn flag_for(opt: &str) -> Option<(MsFlags, bool)> {
    let set = |f| Some((f, true));
    let clear = |f| Some((f, false));
    match opt {
        "ro" => set(MsFlags::MS_RDONLY),
        "rw" => clear(MsFlags::MS_RDONLY),
        "nosuid" => set(MsFlags::MS_NOSUID),
        "suid" => clear(MsFlags::MS_NOSUID),
        "nodev" => set(MsFlags::MS_NODEV),
        "dev" => clear(MsFlags::MS_NODEV),
        "noexec" => set(MsFlags::MS_NOEXEC),
        "exec" => clear(MsFlags::MS_NOEXEC),
        "sync" => set(MsFlags::MS_SYNCHRONOUS),
        "async" => clear(MsFlags::MS_SYNCHRONOUS),
        "dirsync" => set(MsFlags::MS_DIRSYNC),
        "noatime" => set(MsFlags::MS_NOATIME),
        "atime" => clear(MsFlags::MS_NOATIME),
        "nodiratime" => set(MsFlags::MS_NODIRATIME),
        "diratime" => clear(MsFlags::MS_NODIRATIME),
        "relatime" => set(MsFlags::MS_RELATIME),
        "norelatime" => clear(MsFlags::MS_RELATIME),
        "strictatime" => set(MsFlags::MS_STRICTATIME),
        "lazytime" => set(MsFlags::MS_LAZYTIME),
        "defaults" => Some((MsFlags::empty(), true)),
        _ => None,
    }
}

/// Each entry may itself be a comma list, as `mount -o` accepts.
pub fn parse(mount_flags: &[String], read_only: bool) -> Result<MountOptions> {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in mount_flags.iter().flat_map(|f| f.split(',')).map(str::trim) {
        if opt.is_empty() {
            continue;
        }
        // Bind and propagation changes would let a class escape the staging layout.
        if matches!(
            opt,
            "bind" | "rbind" | "remount" | "move" | "shared" | "private" | "slave" | "unbindable"
        ) || opt.contains(|c: char| c.is_control())
        {
            return Err(Error::InvalidArgument(format!(
                "mount option {opt:?} is not allowed in a volume's mount flags"
            )));
        }
        match flag_for(opt) {
            Some((f, true)) => flags.insert(f),
            Some((f, false)) => flags.remove(f),
            None => data.push(opt.to_string()),
        }
    }
    if read_only {
        flags.insert(MsFlags::MS_RDONLY);
    }
    Ok(MountOptions {
        flags,
        data: data.join(","),
    })
}

/// The options a filesystem is mounted with at NodeStage: the class's
/// options, plus `nouuid` for xfs.
///
/// A restore or clone is a thin snapshot of its source, so its xfs carries
/// the source's UUID, and xfs refuses to mount a second filesystem with a
/// UUID that is already mounted. xfs is always mounted with `nouuid`, not
/// only for LVs made from a source, as TopoLVM does (topolvm/topolvm
/// `internal/driver/node.go`, `makeMountOptions`, "avoid duplicate UUIDs",
/// for every xfs mount): the copy and its source are symmetric (the source
/// staged after its restore collides just the same), a source-less LV may
/// become one's source at any time, and the agent already refuses to mount
/// one device twice by device number (`stage::plan`), which is the mistake
/// the UUID check guards against on a node.
pub fn for_filesystem(options: &MountOptions, fs: FsType) -> MountOptions {
    let mut out = options.clone();
    let present = out.data.split(',').any(|o| o == "nouuid");
    if fs == FsType::Xfs && !present {
        if !out.data.is_empty() {
            out.data.push(',');
        }
        out.data.push_str("nouuid");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn table() {
        let cases: Vec<(Vec<String>, bool, MsFlags, &str)> = vec![
            (s(&[]), false, MsFlags::empty(), ""),
            (s(&["noatime"]), false, MsFlags::MS_NOATIME, ""),
            (
                s(&["noatime,nodev", "discard"]),
                false,
                MsFlags::MS_NOATIME | MsFlags::MS_NODEV,
                "discard",
            ),
            (s(&["ro", "rw"]), false, MsFlags::empty(), ""),
            (s(&["rw"]), true, MsFlags::MS_RDONLY, ""),
            (
                s(&["data=ordered", " nobarrier ", "defaults"]),
                false,
                MsFlags::empty(),
                "data=ordered,nobarrier",
            ),
        ];
        for (input, ro, flags, data) in cases {
            let got = parse(&input, ro).unwrap();
            assert_eq!(got.flags, flags, "{input:?}");
            assert_eq!(got.data, data, "{input:?}");
            assert_eq!(got.read_only(), flags.contains(MsFlags::MS_RDONLY));
        }
    }

    #[test]
    fn xfs_gets_nouuid_once() {
        let cases = [
            (FsType::Xfs, "", "nouuid"),
            (FsType::Xfs, "discard", "discard,nouuid"),
            (FsType::Xfs, "nouuid", "nouuid"),
            (FsType::Xfs, "discard,nouuid", "discard,nouuid"),
            (FsType::Ext4, "", ""),
            (FsType::Ext4, "discard", "discard"),
        ];
        for (fs, data, want) in cases {
            let opts = MountOptions {
                flags: MsFlags::MS_NOATIME,
                data: data.into(),
            };
            let got = for_filesystem(&opts, fs);
            assert_eq!(got.data, want, "{fs} {data:?}");
            assert_eq!(got.flags, MsFlags::MS_NOATIME);
        }
    }

    #[test]
    fn rejects_bind_and_propagation() {
        for bad in ["bind", "noatime,rbind", "shared", "a\nb"] {
            assert!(matches!(
                parse(&s(&[bad]), false),
                Err(Error::InvalidArgument(_))
            ));
        }
    }
}
