//! Parsing of `/proc/self/mountinfo` and the questions the node service asks
//! of it. Pure: the text comes from the `Mounter`.

use std::path::{Path, PathBuf};

/// Kernel device number as `major:minor`, the key that ties a mount to its
/// block device whatever path (`/dev/vg/lv`, `/dev/mapper/vg-lv`, `/dev/dm-3`)
/// was used to mount it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DevNum {
    pub major: u64,
    pub minor: u64,
}

impl std::fmt::Display for DevNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub dev: DevNum,
    /// Path inside the filesystem that is mounted ("/" unless a bind of a subtree).
    pub root: String,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`/`ro`, `nosuid`, ...).
    pub options: Vec<String>,
    pub fs_type: String,
    pub source: String,
}

impl MountInfo {
    pub fn read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mountinfo line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: &'static str,
}

/// Parses the whole file. A malformed line is an error rather than skipped so
/// that a kernel format change cannot make us believe a path is unmounted.
pub fn parse(text: &str) -> Result<Vec<MountInfo>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_line(l).map_err(|reason| ParseError {
                line: i + 1,
                reason,
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Result<MountInfo, &'static str> {
    let mut fields = line.split(' ');
    let _id = fields.next().ok_or("missing mount id")?;
    let _parent = fields.next().ok_or("missing parent id")?;
    let dev = fields.next().ok_or("missing major:minor")?;
    let (major, minor) = dev.split_once(':').ok_or("major:minor has no colon")?;
    let dev = DevNum {
        major: major.parse().map_err(|_| "bad major number")?,
        minor: minor.parse().map_err(|_| "bad minor number")?,
    };
    let root = unescape(fields.next().ok_or("missing root")?);
    let mount_point = PathBuf::from(unescape(fields.next().ok_or("missing mount point")?));
    let options = fields
        .next()
        .ok_or("missing mount options")?
        .split(',')
        .map(str::to_string)
        .collect();
    // Optional fields (shared:N, master:N, ...) run until the lone "-".
    loop {
        match fields.next() {
            Some("-") => break,
            Some(_) => continue,
            None => return Err("missing '-' separator"),
        }
    }
    let fs_type = fields.next().ok_or("missing filesystem type")?.to_string();
    let source = unescape(fields.next().ok_or("missing mount source")?);
    Ok(MountInfo {
        dev,
        root,
        mount_point,
        options,
        fs_type,
        source,
    })
}

/// The kernel writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The topmost mount at exactly `path` (the last one listed wins, as in the kernel).
pub fn mount_at<'a>(mounts: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    let path = super::paths::normalize(path);
    mounts.iter().rev().find(|m| m.mount_point == path)
}

/// Every mount of the filesystem on `dev` (the staging mount and its binds).
pub fn mounts_of(mounts: &[MountInfo], dev: DevNum) -> impl Iterator<Item = &MountInfo> {
    mounts.iter().filter(move |m| m.dev == dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
29 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/root rw,errors=remount-ro
41 29 253:3 / /var/lib/kubelet/plugins/kubernetes.io/csi/lvm.lvmpin.io/abc/globalmount rw,noatime shared:30 - xfs /dev/mapper/vg0-pvc--1 rw,attr2,inode64
42 29 253:3 / /var/lib/kubelet/pods/p1/volumes/kubernetes.io~csi/pvc-1/mount ro,noatime shared:30 - xfs /dev/mapper/vg0-pvc--1 rw,attr2
43 29 0:5 /dm-4 /var/lib/kubelet/pods/p2/volumeDevices/kubernetes.io~csi/pvc-2 rw,nosuid - devtmpfs udev rw,size=100k
44 29 7:1 / /tmp/with\\040space rw - ext4 /dev/loop1 rw
";

    #[test]
    fn parses_fields() {
        let m = parse(SAMPLE).unwrap();
        assert_eq!(m.len(), 6);
        assert_eq!(
            m[2].dev,
            DevNum {
                major: 253,
                minor: 3
            }
        );
        assert_eq!(m[2].fs_type, "xfs");
        assert_eq!(m[2].source, "/dev/mapper/vg0-pvc--1");
        assert!(!m[2].read_only());
        assert!(m[3].read_only());
        assert_eq!(m[4].root, "/dm-4");
        assert_eq!(m[5].mount_point, PathBuf::from("/tmp/with space"));
    }

    #[test]
    fn lookups() {
        let m = parse(SAMPLE).unwrap();
        let dev = DevNum {
            major: 253,
            minor: 3,
        };
        assert_eq!(mounts_of(&m, dev).count(), 2);
        let cases: [(&str, Option<&str>); 4] = [
            ("/proc", Some("proc")),
            ("/proc/", Some("proc")),
            ("/tmp/with space", Some("ext4")),
            ("/nothing/here", None),
        ];
        for (path, want) in cases {
            assert_eq!(
                mount_at(&m, Path::new(path)).map(|x| x.fs_type.as_str()),
                want,
                "{path}"
            );
        }
    }

    #[test]
    fn stacked_mounts_topmost_wins() {
        let text = "1 0 7:1 / /a rw - ext4 /dev/loop1 rw\n2 1 7:2 / /a rw - xfs /dev/loop2 rw\n";
        let m = parse(text).unwrap();
        assert_eq!(mount_at(&m, Path::new("/a")).unwrap().fs_type, "xfs");
    }

    #[test]
    fn malformed_lines_are_errors() {
        let cases = [
            (
                "1 0 71 / /a rw - ext4 /dev/loop1 rw",
                "major:minor has no colon",
            ),
            ("1 0 x:1 / /a rw - ext4 /dev/loop1 rw", "bad major number"),
            (
                "1 0 7:1 / /a rw shared:1 ext4 /dev/loop1 rw",
                "missing '-' separator",
            ),
            ("1 0 7:1 / /a rw -", "missing filesystem type"),
            ("1 0 7:1", "missing root"),
        ];
        for (line, reason) in cases {
            assert_eq!(parse(line), Err(ParseError { line: 1, reason }), "{line}");
        }
        assert_eq!(parse("\n\n").unwrap(), vec![]);
    }

    #[test]
    fn unescape_cases() {
        assert_eq!(unescape(r"a\040b"), "a b");
        assert_eq!(unescape(r"a\011b\134"), "a\tb\\");
        assert_eq!(unescape(r"trailing\04"), r"trailing\04");
        assert_eq!(unescape(r"\999"), r"\999");
    }
}
