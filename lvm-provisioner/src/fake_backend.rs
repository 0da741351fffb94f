//! An in-memory volume manager for tests and benchmarks. It allocates whole
//! extents like LVM does and can be told to fail the next calls.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::{CreateVolume, Scan, Volume, VolumeBackend, VolumeGroup};
use crate::error::{Error, Result};

#[derive(Debug, Default)]
struct State {
    scan: Scan,
    fail_next: Vec<(Option<&'static str>, Error)>,
    calls: Vec<String>,
}

#[derive(Clone, Default)]
pub struct FakeBackend {
    state: Arc<Mutex<State>>,
}

const EXTENT: u64 = 4 << 20;

impl FakeBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a VG of `size_bytes` with 4 MiB extents.
    pub fn with_vg(self, name: &str, size_bytes: u64) -> Self {
        self.lock().scan.volume_groups.push(VolumeGroup {
            name: name.to_string(),
            size_bytes,
            free_bytes: size_bytes,
            extent_size_bytes: EXTENT,
            pv_count: 1,
            ..Default::default()
        });
        self
    }

    pub fn with_volume(self, volume: Volume) -> Self {
        {
            let mut st = self.lock();
            if let Some(vg) = st
                .scan
                .volume_groups
                .iter_mut()
                .find(|g| g.name == volume.vg)
            {
                vg.free_bytes = vg.free_bytes.saturating_sub(volume.size_bytes);
                vg.lv_count += 1;
            }
            st.scan.volumes.push(volume);
        }
        self
    }

    /// The next backend call fails with `err` (queued in order).
    pub fn fail_next(&self, err: Error) {
        self.lock().fail_next.push((None, err));
    }

    /// The next call of `op` (`scan`, `create`, `remove`, `extend`) fails.
    pub fn fail_next_op(&self, op: &'static str, err: Error) {
        self.lock().fail_next.push((Some(op), err));
    }

    /// Operations performed so far, e.g. `create vg0/pvc-1 1073741824`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    pub fn snapshot(&self) -> Scan {
        self.lock().scan.clone()
    }

    pub fn grow_vg(&self, name: &str, extra: u64) {
        let mut st = self.lock();
        if let Some(vg) = st.scan.volume_groups.iter_mut().find(|g| g.name == name) {
            vg.size_bytes += extra;
            vg.free_bytes += extra;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another test thread must not poison every later call.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self, call: String) -> Result<MutexGuard<'_, State>> {
        let mut st = self.lock();
        let op = call.split(' ').next().unwrap_or_default().to_string();
        st.calls.push(call);
        let due = st
            .fail_next
            .iter()
            .position(|(want, _)| want.is_none_or(|w| w == op));
        if let Some(i) = due {
            return Err(st.fail_next.remove(i).1);
        }
        Ok(st)
    }
}

fn round_up(size: u64, extent: u64) -> u64 {
    size.div_ceil(extent.max(1)) * extent.max(1)
}

impl VolumeBackend for FakeBackend {
    async fn scan(&self) -> Result<Scan> {
        let st = self.begin("scan".into())?;
        Ok(st.scan.clone())
    }

    async fn create(&self, req: CreateVolume) -> Result<Volume> {
        let mut st = self.begin(format!("create {}/{} {}", req.vg, req.name, req.size_bytes))?;
        if let Some(existing) = st.scan.volume(&req.vg, &req.name) {
            if existing.owner.as_ref() == Some(&req.owner) {
                return Ok(existing.clone());
            }
            return Err(Error::OwnedByAnother {
                vg: req.vg,
                lv: req.name,
                message: "tags name a different claim".into(),
            });
        }
        let Some(vg) = st.scan.volume_groups.iter_mut().find(|g| g.name == req.vg) else {
            return Err(Error::VgNotFound { vg: req.vg });
        };
        let size = round_up(req.size_bytes, vg.extent_size_bytes);
        if size > vg.free_bytes {
            return Err(Error::InsufficientSpace {
                vg: req.vg,
                requested: size,
                free: vg.free_bytes,
                spare: 0,
            });
        }
        vg.free_bytes -= size;
        vg.lv_count += 1;
        let volume = Volume {
            vg: req.vg,
            name: req.name,
            size_bytes: size,
            pool: req.thin_pool,
            owner: Some(req.owner),
        };
        st.scan.volumes.push(volume.clone());
        Ok(volume)
    }

    async fn remove(&self, vg: &str, lv: &str) -> Result<()> {
        let mut st = self.begin(format!("remove {vg}/{lv}"))?;
        let Some(pos) = st
            .scan
            .volumes
            .iter()
            .position(|v| v.vg == vg && v.name == lv)
        else {
            return Ok(());
        };
        let removed = st.scan.volumes.remove(pos);
        if let Some(g) = st.scan.volume_groups.iter_mut().find(|g| g.name == vg) {
            g.free_bytes += removed.size_bytes;
            g.lv_count = g.lv_count.saturating_sub(1);
        }
        Ok(())
    }

    async fn extend(&self, vg: &str, lv: &str, size_bytes: u64) -> Result<Volume> {
        let mut st = self.begin(format!("extend {vg}/{lv} {size_bytes}"))?;
        let extent = st
            .scan
            .volume_group(vg)
            .map(|g| g.extent_size_bytes)
            .ok_or_else(|| Error::VgNotFound { vg: vg.into() })?;
        let free = st.scan.volume_group(vg).map(|g| g.free_bytes).unwrap_or(0);
        let Some(v) = st
            .scan
            .volumes
            .iter_mut()
            .find(|v| v.vg == vg && v.name == lv)
        else {
            return Err(Error::LvNotFound {
                vg: vg.into(),
                lv: lv.into(),
            });
        };
        let target = round_up(size_bytes, extent);
        if target <= v.size_bytes {
            return Ok(v.clone());
        }
        let grow = target - v.size_bytes;
        if grow > free {
            return Err(Error::InsufficientSpace {
                vg: vg.into(),
                requested: grow,
                free,
                spare: 0,
            });
        }
        v.size_bytes = target;
        let out = v.clone();
        if let Some(g) = st.scan.volume_groups.iter_mut().find(|g| g.name == vg) {
            g.free_bytes -= grow;
        }
        Ok(out)
    }
}
