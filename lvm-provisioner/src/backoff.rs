//! Per-object retry delays: quick for transient errors, slow for errors that
//! need a human, doubling per consecutive failure and reset on success.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

const BASE: Duration = Duration::from_millis(500);
const MAX: Duration = Duration::from_secs(300);
const PERMANENT_BASE: Duration = Duration::from_secs(30);

/// Delay before retry number `attempt` (0-based).
pub fn delay(attempt: u32, permanent: bool) -> Duration {
    let base = if permanent { PERMANENT_BASE } else { BASE };
    base.saturating_mul(1u32 << attempt.min(16)).min(MAX)
}

#[derive(Default)]
pub struct Backoff {
    attempts: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    pub fn next(&self, key: &str, permanent: bool) -> Duration {
        let mut map = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key.to_string()).or_insert(0);
        let d = delay(*n, permanent);
        *n = n.saturating_add(1);
        d
    }

    pub fn reset(&self, key: &str) {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        assert_eq!(delay(0, false), Duration::from_millis(500));
        assert_eq!(delay(3, false), Duration::from_secs(4));
        assert_eq!(delay(40, false), MAX);
        assert_eq!(delay(0, true), Duration::from_secs(30));
        let b = Backoff::default();
        assert_eq!(b.next("a", false), Duration::from_millis(500));
        assert_eq!(b.next("a", false), Duration::from_secs(1));
        assert_eq!(b.next("b", false), Duration::from_millis(500));
        b.reset("a");
        assert_eq!(b.next("a", false), Duration::from_millis(500));
    }
}
