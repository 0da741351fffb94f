//! Per-VG serialization of changes. lvm2 locks each VG itself, but only per
//! command; ours spans the check-then-act of an idempotent create or extend.
//! Reads take no lock, so a scan never waits behind a slow lvcreate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
pub(crate) struct VgLocks {
    by_vg: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl VgLocks {
    /// The mutex for `vg`; callers hold its guard for the whole operation.
    pub fn for_vg(&self, vg: &str) -> Arc<Mutex<()>> {
        // The map and the unit mutexes protect no data that a panic could leave
        // half-written, so a poisoned lock is still safe to use.
        let mut map = self.by_vg.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(vg.to_string()).or_default().clone()
    }
}

pub(crate) fn hold(mutex: &Mutex<()>) -> MutexGuard<'_, ()> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mutex_per_vg() {
        let locks = VgLocks::default();
        let a = locks.for_vg("a");
        assert!(Arc::ptr_eq(&a, &locks.for_vg("a")));
        assert!(!Arc::ptr_eq(&a, &locks.for_vg("b")));
        let _held = hold(&a);
        // Another VG is not blocked while "a" is held.
        assert!(locks.for_vg("b").try_lock().is_ok());
        assert!(a.try_lock().is_err());
    }
}
