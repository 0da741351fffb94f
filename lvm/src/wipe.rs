//! Zeroes both ends of a new LV. lvcreate's own `--zero y` clears only the
//! first 4 KiB and `--wipesignatures y` only what blkid recognises, so a new
//! volume on extents another volume used could still carry an old
//! superblock copy, an LVM label or a partition table backup near either
//! end; the node service would then mount it instead of formatting. Only a
//! volume just created (never one adopted) is wiped, so no volume's own data
//! is ever touched.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};

/// Bytes zeroed at each end.
pub const WIPE_BYTES: u64 = 1 << 20;

fn io(device: &Path, source: std::io::Error) -> Error {
    Error::Io {
        command: format!("zeroing the ends of {}", device.display()),
        source: Arc::new(source),
    }
}

/// Where the zeroed ranges start: the head, and the tail when it does not
/// overlap the head.
pub(crate) fn ranges(size: u64) -> Vec<(u64, u64)> {
    let head = size.min(WIPE_BYTES);
    let mut out = vec![(0, head)];
    if size > WIPE_BYTES {
        let tail_start = (size - WIPE_BYTES).max(head);
        out.push((tail_start, size - tail_start));
    }
    out.retain(|&(_, len)| len > 0);
    out
}

pub(crate) fn wipe_ends(device: &Path, size: u64) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(device)
        .map_err(|e| io(device, e))?;
    let zeros = vec![0u8; WIPE_BYTES as usize];
    for (start, len) in ranges(size) {
        f.seek(SeekFrom::Start(start)).map_err(|e| io(device, e))?;
        f.write_all(&zeros[..len as usize])
            .map_err(|e| io(device, e))?;
    }
    f.sync_all().map_err(|e| io(device, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = WIPE_BYTES;

    #[test]
    fn both_ends_without_overlap() {
        assert_eq!(ranges(64 * M), vec![(0, M), (63 * M, M)]);
        assert_eq!(ranges(M + 4096), vec![(0, M), (M, 4096)]);
        assert_eq!(ranges(M), vec![(0, M)]);
        assert_eq!(ranges(4096), vec![(0, 4096)]);
        assert_eq!(ranges(0), vec![]);
    }

    #[test]
    fn zeroes_head_and_tail_of_a_file_and_nothing_between() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev");
        let size = 4 * M;
        std::fs::write(&path, vec![0xAAu8; size as usize]).unwrap();
        wipe_ends(&path, size).unwrap();
        let data = std::fs::read(&path).unwrap();
        assert!(data[..M as usize].iter().all(|&b| b == 0));
        assert!(data[(3 * M) as usize..].iter().all(|&b| b == 0));
        assert!(
            data[M as usize..(3 * M) as usize]
                .iter()
                .all(|&b| b == 0xAA)
        );
    }
}
