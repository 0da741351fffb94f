//! Where the node service may create and remove mounts. Every path a caller
//! names is normalised lexically (`.` dropped, `..` resolved, repeated `/`
//! folded) and must then lie strictly inside kubelet's directory. One request
//! string therefore maps to exactly one mount point, and the unstage or
//! unpublish that names the same string always finds it: `/a/b/../c` is
//! `/a/c` at mount and at unmount alike, where the kernel and a naive
//! component walk would disagree.
//!
//! Symlinks are not followed here: kubelet's directory belongs to root, and
//! mount(2) itself refuses nothing a root caller could not do anyway.

use std::path::{Component, Path, PathBuf};

use super::bounded::bounded;
use super::error::{Error, Result};

/// Longest path accepted (PATH_MAX on Linux, including the NUL).
const PATH_MAX: usize = 4095;

/// The directory every staging and target path must lie in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRoot(PathBuf);

impl MountRoot {
    /// `dir` must be absolute; it is normalised like the requests are.
    pub fn new(dir: &Path) -> Result<Self> {
        if !dir.is_absolute() {
            return Err(Error::InvalidArgument(format!(
                "the kubelet directory {} must be an absolute path",
                dir.display()
            )));
        }
        Ok(Self(normalize(dir)))
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// Checks one path field of a request and returns its normal form.
    pub fn confine(&self, value: &str, field: &str) -> Result<PathBuf> {
        if value.is_empty() {
            return Err(Error::InvalidArgument(format!("{field} is required")));
        }
        if value.len() > PATH_MAX || value.contains('\0') {
            return Err(Error::InvalidArgument(format!(
                "{field} {:?} is not a usable path (too long or holds a NUL byte)",
                bounded(value)
            )));
        }
        let raw = Path::new(value);
        if !raw.is_absolute() {
            return Err(Error::InvalidArgument(format!(
                "{field} {:?} must be an absolute path",
                bounded(value)
            )));
        }
        let path = normalize(raw);
        if path == self.0 || !path.starts_with(&self.0) {
            return Err(Error::InvalidArgument(format!(
                "{field} {:?} is outside the kubelet directory {}",
                bounded(value),
                self.0.display()
            )));
        }
        Ok(path)
    }
}

/// Refuses a mount point reached through a symlink below `root`: the
/// lexical check above cannot see one, and mount(2) follows it, so a link
/// planted inside kubelet's directory could carry a mount anywhere. Parts of
/// the path that do not exist yet are created by us as plain directories.
pub fn no_symlink_below(root: &MountRoot, path: &Path, field: &str) -> Result<()> {
    let Ok(rest) = path.strip_prefix(root.dir()) else {
        return Err(Error::InvalidArgument(format!(
            "{field} is outside the kubelet directory {}",
            root.dir().display()
        )));
    };
    let mut at = root.dir().to_path_buf();
    for part in rest.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::InvalidArgument(format!(
                    "{field} {:?} passes through the symlink {}",
                    bounded(&path.to_string_lossy()),
                    bounded(&at.to_string_lossy())
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("inspect", at, e)),
        }
    }
    Ok(())
}

/// Lexical normal form of an absolute path; `..` at the root stays at the root.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> MountRoot {
        MountRoot::new(Path::new("/var/lib/kubelet/")).unwrap()
    }

    #[test]
    fn normal_forms() {
        let cases = [
            ("/a/b/../c", "/a/c"),
            ("/a/./b//c/", "/a/b/c"),
            ("/../../etc", "/etc"),
            ("/a/b/c/../../..", "/"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize(Path::new(raw)), PathBuf::from(want), "{raw}");
        }
    }

    #[test]
    fn confinement() {
        let r = root();
        let inside = "/var/lib/kubelet/plugins/kubernetes.io/csi/lvm.lvmpin.io/abc/globalmount";
        assert_eq!(r.confine(inside, "p").unwrap(), PathBuf::from(inside));
        assert_eq!(
            r.confine("/var/lib/kubelet/pods/x/../y//mount", "p")
                .unwrap(),
            PathBuf::from("/var/lib/kubelet/pods/y/mount")
        );
        let refused = [
            "",
            "relative/path",
            "/tmp/stage",
            "/var/lib/kubelet",
            "/var/lib/kubelet/..",
            "/var/lib/kubelet/pods/../../../../etc",
            "/var/lib/kubeletX/pods/a",
            "/var/lib/kubelet/pods/a\0b",
        ];
        for raw in refused {
            assert!(
                matches!(r.confine(raw, "target_path"), Err(Error::InvalidArgument(m)) if m.contains("target_path")),
                "{raw:?} should be refused"
            );
        }
        let huge = format!("/var/lib/kubelet/{}", "a/".repeat(4000));
        match r.confine(&huge, "target_path") {
            Err(Error::InvalidArgument(m)) => assert!(m.len() < 600, "{}", m.len()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_symlink_below_the_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = MountRoot::new(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("pods/a")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("pods/evil")).unwrap();
        let ok = dir.path().join("pods/a/volumes/x/mount");
        assert!(no_symlink_below(&root, &ok, "target_path").is_ok());
        let bad = dir.path().join("pods/evil/x/mount");
        assert!(matches!(
            no_symlink_below(&root, &bad, "target_path"),
            Err(Error::InvalidArgument(m)) if m.contains("symlink")
        ));
        let outside = Path::new("/tmp/x");
        assert!(no_symlink_below(&root, outside, "target_path").is_err());
    }

    #[test]
    fn the_root_must_be_absolute() {
        assert!(MountRoot::new(Path::new("var/lib/kubelet")).is_err());
    }
}
