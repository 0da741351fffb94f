//! What `blkid -p -o export <device>` says is on a device. Pure parsing; the
//! call itself sits in the `Mounter`.

use super::command::Output;
use super::error::{Error, Result};

/// Filesystems the node service creates and grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ext4,
    Xfs,
}

impl FsType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ext4" => Some(Self::Ext4),
            "xfs" => Some(Self::Xfs),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ext4 => "ext4",
            Self::Xfs => "xfs",
        }
    }
}

impl std::fmt::Display for FsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// No signature at all: the only state in which we format.
    Blank,
    /// A filesystem (TYPE=...).
    Filesystem(String),
    /// Something that is not a filesystem but still data: partition table,
    /// LVM PV, RAID member, swap, ...
    Other(String),
}

/// Interprets blkid's exit status and export output. Exit 2 means "no
/// signature found"; anything else but 0 (including 8, "ambivalent result")
/// is an error, because guessing wrong would destroy data.
pub fn interpret(device: &str, out: &Output) -> Result<Probe> {
    match out.code {
        Some(2) => Ok(Probe::Blank),
        Some(0) => Ok(parse_export(&out.stdout)),
        code => Err(Error::Command {
            command: format!("blkid -p -o export {device}"),
            status: format!("{code:?}"),
            stderr: out.stderr.clone(),
        }),
    }
}

pub fn parse_export(text: &str) -> Probe {
    let mut ty = None;
    let mut usage = None;
    let mut pttype = None;
    for line in text.lines() {
        match line.split_once('=') {
            Some(("TYPE", v)) => ty = Some(v.to_string()),
            Some(("USAGE", v)) => usage = Some(v.to_string()),
            Some(("PTTYPE", v)) => pttype = Some(v.to_string()),
            _ => {}
        }
    }
    match (ty, usage.as_deref(), pttype) {
        (Some(t), Some("filesystem") | None, _) => Probe::Filesystem(t),
        (Some(t), Some(_), _) => Probe::Other(t),
        (None, _, Some(pt)) => Probe::Other(format!("partition table {pt}")),
        // blkid exited 0 yet named nothing we understand: treat as data.
        (None, _, None) => Probe::Other("unrecognised signature".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(code: i32, stdout: &str) -> Output {
        Output {
            code: Some(code),
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    #[test]
    fn table() {
        let cases = [
            (out(2, ""), Probe::Blank),
            (
                out(
                    0,
                    "DEVNAME=/dev/vg/a\nUUID=1\nBLOCK_SIZE=4096\nTYPE=ext4\nUSAGE=filesystem\n",
                ),
                Probe::Filesystem("ext4".into()),
            ),
            (
                out(0, "DEVNAME=/dev/x\nTYPE=xfs\n"),
                Probe::Filesystem("xfs".into()),
            ),
            (
                out(0, "DEVNAME=/dev/x\nTYPE=LVM2_member\nUSAGE=raid\n"),
                Probe::Other("LVM2_member".into()),
            ),
            (
                out(0, "DEVNAME=/dev/x\nPTUUID=ab\nPTTYPE=gpt\n"),
                Probe::Other("partition table gpt".into()),
            ),
            (
                out(0, "DEVNAME=/dev/x\n"),
                Probe::Other("unrecognised signature".into()),
            ),
        ];
        for (o, want) in cases {
            assert_eq!(interpret("/dev/x", &o).unwrap(), want, "{o:?}");
        }
        assert!(interpret("/dev/x", &out(8, "")).is_err());
        assert!(interpret("/dev/x", &out(4, "")).is_err());
    }

    #[test]
    fn fs_names() {
        assert_eq!(FsType::parse("ext4"), Some(FsType::Ext4));
        assert_eq!(FsType::parse("xfs").map(FsType::as_str), Some("xfs"));
        assert_eq!(FsType::parse("btrfs"), None);
    }
}
