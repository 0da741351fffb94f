//! One operation per volume at a time. kubelet retries, and a retry that
//! overlaps a slow mkfs must not start a second mkfs; it gets Aborted instead.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use super::error::{Error, Result};

#[derive(Debug, Clone, Default)]
pub struct OperationGuards {
    busy: Arc<Mutex<HashSet<String>>>,
}

/// Releases the volume when dropped, including on panic or cancellation.
#[derive(Debug)]
pub struct Held {
    busy: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl OperationGuards {
    pub fn try_acquire(&self, volume_id: &str) -> Result<Held> {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        if !busy.insert(volume_id.to_string()) {
            return Err(Error::OperationPending(volume_id.to_string()));
        }
        Ok(Held {
            busy: self.busy.clone(),
            key: volume_id.to_string(),
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_release() {
        let g = OperationGuards::default();
        let a = g.try_acquire("vg/a").unwrap();
        assert!(matches!(
            g.try_acquire("vg/a"),
            Err(Error::OperationPending(_))
        ));
        let b = g.try_acquire("vg/b").unwrap();
        drop(a);
        let _a2 = g.try_acquire("vg/a").unwrap();
        drop(b);
        assert!(g.try_acquire("vg/b").is_ok());
    }
}
