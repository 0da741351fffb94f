//! An in-memory volume manager for tests and benchmarks. It allocates whole
//! extents like LVM does and can be told to fail the next calls. Thin
//! snapshots and restores follow lvm's rules (thin sources only, same pool,
//! never smaller than the source; snapshots survive their origin) but hold no
//! data and take no space.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::{
    CreateSnapshot, CreateVolume, Scan, SnapshotOwner, Volume, VolumeBackend, VolumeGroup,
    check_clone_source, check_snapshot_source,
};
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

    /// The next call of `op` (`scan`, `create`, `remove`, `extend`,
    /// `create_snapshot`, `remove_snapshot`) fails.
    pub fn fail_next_op(&self, op: &'static str, err: Error) {
        self.lock().fail_next.push((Some(op), err));
    }

    /// Operations performed so far, e.g. `create vg0/pvc-1 1073741824`,
    /// `create vg0/pvc-2 1073741824 from snap-1`, `create_snapshot vg0/snap-1
    /// from pvc-1`, `remove_snapshot vg0/snap-1`.
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
        let call = match &req.source {
            None => format!("create {}/{} {}", req.vg, req.name, req.size_bytes),
            Some(source) => format!(
                "create {}/{} {} from {source}",
                req.vg, req.name, req.size_bytes
            ),
        };
        let mut st = self.begin(call)?;
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
        if st.scan.volume_group(&req.vg).is_none() {
            return Err(Error::VgNotFound { vg: req.vg });
        }
        if let Some(source) = &req.source {
            let Some(src) = st.scan.volume(&req.vg, source) else {
                return Err(Error::LvNotFound {
                    vg: req.vg,
                    lv: source.clone(),
                });
            };
            check_clone_source(src, req.thin_pool.as_deref(), req.size_bytes)?;
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
            origin: req.source,
            ..Default::default()
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
        // lvm forgets the origin of snapshots whose origin is removed; the
        // snapshots themselves stay.
        for v in st.scan.volumes.iter_mut().filter(|v| v.vg == vg) {
            if v.origin.as_deref() == Some(lv) {
                v.origin = None;
            }
        }
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

    async fn create_snapshot(&self, req: CreateSnapshot) -> Result<Volume> {
        let mut st = self.begin(format!(
            "create_snapshot {}/{} from {}",
            req.vg, req.name, req.source
        ))?;
        if let Some(existing) = st.scan.volume(&req.vg, &req.name) {
            if existing.snapshot_owner.as_ref() == Some(&req.owner) {
                return Ok(existing.clone());
            }
            return Err(Error::OwnedByAnother {
                vg: req.vg,
                lv: req.name,
                message: format!(
                    "its tags do not name snapshot content uid {}",
                    req.owner.content_uid
                ),
            });
        }
        if st.scan.volume_group(&req.vg).is_none() {
            return Err(Error::VgNotFound { vg: req.vg });
        }
        let Some(source) = st.scan.volume(&req.vg, &req.source) else {
            return Err(Error::LvNotFound {
                vg: req.vg,
                lv: req.source,
            });
        };
        check_snapshot_source(source)?;
        let snapshot = Volume {
            vg: req.vg.clone(),
            name: req.name,
            size_bytes: source.size_bytes,
            pool: source.pool.clone(),
            owner: None,
            snapshot_owner: Some(req.owner),
            origin: Some(req.source),
            created_unix: None,
        };
        st.scan.volumes.push(snapshot.clone());
        if let Some(g) = st.scan.volume_groups.iter_mut().find(|g| g.name == req.vg) {
            g.lv_count += 1;
        }
        Ok(snapshot)
    }

    async fn remove_snapshot(&self, vg: &str, name: &str, owner: &SnapshotOwner) -> Result<()> {
        let mut st = self.begin(format!("remove_snapshot {vg}/{name}"))?;
        let Some(pos) = st
            .scan
            .volumes
            .iter()
            .position(|v| v.vg == vg && v.name == name)
        else {
            return Ok(());
        };
        if st.scan.volumes[pos].snapshot_owner.as_ref() != Some(owner) {
            return Err(Error::OwnedByAnother {
                vg: vg.into(),
                lv: name.into(),
                message: format!(
                    "its tags do not name snapshot content uid {}",
                    owner.content_uid
                ),
            });
        }
        st.scan.volumes.remove(pos);
        for v in st.scan.volumes.iter_mut().filter(|v| v.vg == vg) {
            if v.origin.as_deref() == Some(name) {
                v.origin = None;
            }
        }
        if let Some(g) = st.scan.volume_groups.iter_mut().find(|g| g.name == vg) {
            g.lv_count = g.lv_count.saturating_sub(1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Owner, snapshot_lv_name};

    const GI: u64 = 1 << 30;

    fn owner(uid: &str) -> Owner {
        Owner {
            claim_uid: uid.into(),
            claim_namespace: "ns".into(),
            claim_name: format!("c-{uid}"),
            pv_name: format!("pvc-{uid}"),
        }
    }

    fn content(uid: &str) -> SnapshotOwner {
        SnapshotOwner {
            content_uid: uid.into(),
            content_name: format!("snapcontent-{uid}"),
        }
    }

    fn create(uid: &str, size: u64, pool: Option<&str>, source: Option<&str>) -> CreateVolume {
        CreateVolume {
            vg: "vg0".into(),
            name: format!("pvc-{uid}"),
            size_bytes: size,
            thin_pool: pool.map(String::from),
            owner: owner(uid),
            source: source.map(String::from),
        }
    }

    fn snap(uid: &str, source: &str) -> CreateSnapshot {
        CreateSnapshot {
            vg: "vg0".into(),
            name: snapshot_lv_name(uid),
            source: source.into(),
            owner: content(uid),
        }
    }

    async fn with_thin_volume() -> FakeBackend {
        let b = FakeBackend::new().with_vg("vg0", 10 * GI);
        b.create(create("a", GI, Some("pool0"), None))
            .await
            .unwrap();
        b
    }

    #[tokio::test]
    async fn snapshot_is_idempotent_and_not_a_claim_volume() {
        let b = with_thin_volume().await;
        let s = b.create_snapshot(snap("s1", "pvc-a")).await.unwrap();
        assert_eq!(s.name, "snap-s1");
        assert_eq!((s.size_bytes, s.pool.as_deref()), (GI, Some("pool0")));
        assert_eq!(s.owner, None);
        assert_eq!(s.snapshot_owner, Some(content("s1")));
        assert_eq!(s.origin.as_deref(), Some("pvc-a"));
        assert_eq!(b.create_snapshot(snap("s1", "pvc-a")).await.unwrap(), s);
        assert_eq!(b.snapshot().snapshots().count(), 1);

        let mut thief = snap("s1", "pvc-a");
        thief.owner = content("s2");
        let err = b.create_snapshot(thief).await.unwrap_err();
        assert!(matches!(err, Error::OwnedByAnother { .. }), "{err}");
        // A claim's volume is never adopted as a snapshot.
        let mut over_volume = snap("s3", "pvc-a");
        over_volume.name = "pvc-a".into();
        let err = b.create_snapshot(over_volume).await.unwrap_err();
        assert!(matches!(err, Error::OwnedByAnother { .. }), "{err}");
    }

    #[tokio::test]
    async fn snapshot_sources_must_exist_and_be_thin() {
        let b = with_thin_volume().await;
        b.create(create("lin", GI, None, None)).await.unwrap();
        let err = b.create_snapshot(snap("s1", "pvc-lin")).await.unwrap_err();
        assert!(matches!(err, Error::InvalidSource { .. }), "{err}");
        assert!(err.to_string().contains("not a thin volume"), "{err}");
        let err = b.create_snapshot(snap("s1", "pvc-none")).await.unwrap_err();
        assert!(matches!(err, Error::LvNotFound { .. }), "{err}");
        let mut other_vg = snap("s1", "pvc-a");
        other_vg.vg = "vg9".into();
        let err = b.create_snapshot(other_vg).await.unwrap_err();
        assert!(matches!(err, Error::VgNotFound { .. }), "{err}");
        assert_eq!(b.snapshot().snapshots().count(), 0);
    }

    #[tokio::test]
    async fn restore_and_clone_follow_the_source_rules() {
        let b = with_thin_volume().await;
        b.create_snapshot(snap("s1", "pvc-a")).await.unwrap();
        let restored = b
            .create(create("r", 2 * GI, Some("pool0"), Some("snap-s1")))
            .await
            .unwrap();
        assert_eq!(restored.size_bytes, 2 * GI);
        assert_eq!(restored.owner, Some(owner("r")));
        assert_eq!(restored.snapshot_owner, None);
        assert_eq!(restored.origin.as_deref(), Some("snap-s1"));
        let clone = b
            .create(create("c", GI, Some("pool0"), Some("pvc-a")))
            .await
            .unwrap();
        assert_eq!(clone.origin.as_deref(), Some("pvc-a"));
        assert!(
            b.calls()
                .contains(&"create vg0/pvc-c 1073741824 from pvc-a".to_string())
        );

        let err = b
            .create(create("small", GI / 2, Some("pool0"), Some("snap-s1")))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidSource { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("1073741824") && msg.contains("536870912"),
            "{msg}"
        );
        for pool in [None, Some("pool1")] {
            let err = b
                .create(create("p", GI, pool, Some("snap-s1")))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("thin pool pool0"), "{err}");
        }
        let err = b
            .create(create("m", GI, Some("pool0"), Some("snap-gone")))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::LvNotFound { .. }), "{err}");
        b.create(create("lin", GI, None, None)).await.unwrap();
        let err = b
            .create(create("l2", GI, None, Some("pvc-lin")))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not a thin volume"), "{err}");
    }

    #[tokio::test]
    async fn snapshots_survive_their_origin_and_removal_needs_their_owner() {
        let b = with_thin_volume().await;
        b.create_snapshot(snap("s1", "pvc-a")).await.unwrap();
        b.remove("vg0", "pvc-a").await.unwrap();
        let s = b.snapshot().volume("vg0", "snap-s1").cloned().unwrap();
        assert_eq!(s.origin, None);
        b.create(create("r", GI, Some("pool0"), Some("snap-s1")))
            .await
            .unwrap();

        let err = b
            .remove_snapshot("vg0", "snap-s1", &content("other"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::OwnedByAnother { .. }), "{err}");
        let err = b
            .remove_snapshot("vg0", "pvc-r", &content("s1"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::OwnedByAnother { .. }), "{err}");
        assert!(b.snapshot().volume("vg0", "pvc-r").is_some());

        b.remove_snapshot("vg0", "snap-s1", &content("s1"))
            .await
            .unwrap();
        b.remove_snapshot("vg0", "snap-s1", &content("s1"))
            .await
            .unwrap();
        assert_eq!(b.snapshot().snapshots().count(), 0);
        assert_eq!(b.snapshot().volume("vg0", "pvc-r").unwrap().origin, None);
    }

    #[tokio::test]
    async fn snapshot_calls_can_be_made_to_fail() {
        let b = with_thin_volume().await;
        b.fail_next_op("create_snapshot", Error::Lvm("boom".into()));
        assert!(b.create_snapshot(snap("s1", "pvc-a")).await.is_err());
        b.create_snapshot(snap("s1", "pvc-a")).await.unwrap();
        b.fail_next_op("remove_snapshot", Error::Lvm("boom".into()));
        assert!(
            b.remove_snapshot("vg0", "snap-s1", &content("s1"))
                .await
                .is_err()
        );
        assert_eq!(
            b.calls()[1..],
            [
                "create_snapshot vg0/snap-s1 from pvc-a",
                "create_snapshot vg0/snap-s1 from pvc-a",
                "remove_snapshot vg0/snap-s1",
            ]
        );
    }
}
