//! The scheduling queue: FIFO by first arrival, per-pod exponential backoff
//! after a failed attempt (podInitialBackoffSeconds 1 s doubling up to
//! podMaxBackoffSeconds 10 s, kube-scheduler's defaults), and pods held out
//! while their binding cycle runs or until the cache shows them bound.
//!
//! A pod that no node fits (plugins or extenders) is parked as unschedulable,
//! as in kube-scheduler's `unschedulablePods`
//! (pkg/scheduler/backend/queue/scheduling_queue.go): it waits for a cluster
//! event, then for the rest of its backoff, or is flushed after
//! `podMaxInUnschedulablePodsDuration` (5 min). A pod rejected by extenders
//! has no plugin to ask whether an event matters, so upstream moves it on any
//! event (`isPodWorthRequeuing`); so does this queue. An event seen while a
//! pod's attempt is in flight is not lost: that pod then backs off instead of
//! parking, like upstream's `moveRequestCycle` check in
//! `AddUnschedulableIfNotPresent`.
//! Time is passed in, so the queue is a pure data structure.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl std::fmt::Display for PodKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready(Instant),
    InFlight,
    /// Bound by us; kept out until the cache shows `nodeName`, or until the
    /// deadline passes (then it is tried again).
    Assumed(Instant),
    /// No node fitted; waits for a cluster event or the flush deadline.
    Unschedulable {
        backoff_until: Instant,
        flush_at: Instant,
    },
}

/// kube-scheduler's default podMaxInUnschedulablePodsDuration.
pub const MAX_IN_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Entry {
    key: PodKey,
    seq: u64,
    attempts: u32,
    state: State,
    /// The scheduling cycle that last popped this pod.
    popped_in: u64,
}

#[derive(Debug)]
pub struct Queue {
    entries: HashMap<String, Entry>,
    seq: u64,
    /// Counts pops, like upstream's `schedulingCycle`.
    cycle: u64,
    /// The cycle of the last cluster event.
    move_request_cycle: u64,
    initial: Duration,
    max: Duration,
    assumed_ttl: Duration,
}

impl Queue {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            seq: 0,
            cycle: 0,
            move_request_cycle: 0,
            initial,
            max,
            assumed_ttl: Duration::from_secs(30),
        }
    }

    /// kube-scheduler's `calculateBackoffDuration`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let mut d = self.initial;
        for _ in 1..attempts {
            if d > self.max.saturating_sub(d) {
                return self.max;
            }
            d += d;
        }
        d.min(self.max)
    }

    /// Make the queue match the pods that are pending now.
    pub fn sync(&mut self, pending: impl IntoIterator<Item = PodKey>, now: Instant) {
        let mut seen = std::collections::HashSet::new();
        for key in pending {
            seen.insert(key.uid.clone());
            if !self.entries.contains_key(&key.uid) {
                self.seq += 1;
                self.entries.insert(
                    key.uid.clone(),
                    Entry {
                        key,
                        seq: self.seq,
                        attempts: 0,
                        state: State::Ready(now),
                        popped_in: 0,
                    },
                );
            }
        }
        self.entries
            .retain(|uid, e| seen.contains(uid) || e.state == State::InFlight);
        for e in self.entries.values_mut() {
            match e.state {
                State::Assumed(until) if until <= now => e.state = State::Ready(now),
                State::Unschedulable { flush_at, .. } if flush_at <= now => {
                    e.state = State::Ready(now)
                }
                _ => {}
            }
        }
    }

    /// The oldest pod whose backoff is over; it is in flight until `done`/`failed`.
    pub fn pop(&mut self, now: Instant) -> Option<PodKey> {
        let e = self
            .entries
            .values_mut()
            .filter(|e| matches!(e.state, State::Ready(at) if at <= now))
            .min_by_key(|e| e.seq)?;
        self.cycle += 1;
        e.popped_in = self.cycle;
        e.state = State::InFlight;
        Some(e.key.clone())
    }

    pub fn done(&mut self, uid: &str, now: Instant) {
        if let Some(e) = self.entries.get_mut(uid) {
            e.state = State::Assumed(now + self.assumed_ttl);
        }
    }

    pub fn failed(&mut self, uid: &str, now: Instant) {
        let backoff = self.entries.get(uid).map(|e| self.backoff(e.attempts + 1));
        if let (Some(e), Some(b)) = (self.entries.get_mut(uid), backoff) {
            e.attempts += 1;
            e.state = State::Ready(now + b);
        }
    }

    /// Park a pod that no node fitted until `move_unschedulable`, unless an
    /// event came while its attempt was in flight: that attempt may have
    /// judged stale state, so the pod only backs off.
    pub fn unschedulable(&mut self, uid: &str, now: Instant) {
        let backoff = self.entries.get(uid).map(|e| self.backoff(e.attempts + 1));
        let moved_since = self.move_request_cycle;
        if let (Some(e), Some(b)) = (self.entries.get_mut(uid), backoff) {
            e.attempts += 1;
            e.state = if moved_since >= e.popped_in {
                State::Ready(now + b)
            } else {
                State::Unschedulable {
                    backoff_until: now + b,
                    flush_at: now + MAX_IN_UNSCHEDULABLE,
                }
            };
        }
    }

    /// A cluster event: every parked pod goes back, after what is left of
    /// its backoff.
    pub fn move_unschedulable(&mut self) {
        self.move_request_cycle = self.cycle;
        for e in self.entries.values_mut() {
            if let State::Unschedulable { backoff_until, .. } = e.state {
                e.state = State::Ready(backoff_until);
            }
        }
    }

    pub fn attempts(&self, uid: &str) -> u32 {
        self.entries.get(uid).map_or(0, |e| e.attempts)
    }

    /// When the next backed-off pod becomes ready.
    pub fn next_ready(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| match e.state {
                State::Ready(at) | State::Assumed(at) => Some(at),
                State::Unschedulable { flush_at, .. } => Some(flush_at),
                State::InFlight => None,
            })
            .min()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> PodKey {
        PodKey {
            namespace: "ns".into(),
            name: n.into(),
            uid: format!("uid-{n}"),
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let q = Queue::new(Duration::from_secs(1), Duration::from_secs(10));
        let got: Vec<u64> = (1..=6).map(|a| q.backoff(a).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn fifo_backoff_and_assumed() {
        let t0 = Instant::now();
        let mut q = Queue::new(Duration::from_secs(1), Duration::from_secs(10));
        q.sync([key("a"), key("b")], t0);
        assert_eq!(q.pop(t0), Some(key("a")));
        // In flight: not popped again, and kept even if no longer pending.
        q.sync([key("b")], t0);
        assert_eq!(q.pop(t0), Some(key("b")));
        assert_eq!(q.pop(t0), None);
        q.failed("uid-a", t0);
        assert_eq!(q.pop(t0), None, "backing off");
        assert_eq!(q.next_ready(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(q.pop(t0 + Duration::from_secs(1)), Some(key("a")));
        q.failed("uid-a", t0);
        assert_eq!(q.attempts("uid-a"), 2);
        assert_eq!(q.pop(t0 + Duration::from_millis(1500)), None);
        // b bound: held out while the cache still shows it pending.
        q.done("uid-b", t0);
        q.sync([key("a"), key("b")], t0);
        assert_eq!(q.pop(t0 + Duration::from_secs(2)), Some(key("a")));
        q.sync([key("a")], t0);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn unschedulable_waits_for_an_event_or_the_flush() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut q = Queue::new(s(1), s(10));
        q.sync([key("a"), key("b")], t0);
        assert_eq!(q.pop(t0), Some(key("a")));
        assert_eq!(q.pop(t0), Some(key("b")));
        q.unschedulable("uid-a", t0);
        q.unschedulable("uid-b", t0);
        // Long past its backoff, still parked: no event came.
        q.sync([key("a"), key("b")], t0 + s(60));
        assert_eq!(q.pop(t0 + s(60)), None);
        assert_eq!(q.next_ready(), Some(t0 + MAX_IN_UNSCHEDULABLE));
        // An event moves both; each still serves the rest of its backoff.
        q.move_unschedulable();
        assert_eq!(q.pop(t0), None, "backing off");
        assert_eq!(q.pop(t0 + s(1)), Some(key("a")));
        q.unschedulable("uid-a", t0 + s(1));
        // Without events the flush brings it back after five minutes.
        let later = t0 + s(1) + MAX_IN_UNSCHEDULABLE;
        q.sync([key("a"), key("b")], later);
        assert_eq!(q.pop(later), Some(key("a")), "first come, first served");
        assert_eq!(q.pop(later), Some(key("b")));
    }

    #[test]
    fn an_event_during_the_attempt_is_not_lost() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut q = Queue::new(s(1), s(10));
        q.sync([key("a"), key("b")], t0);
        assert_eq!(q.pop(t0), Some(key("a")));
        // The event lands while a is in flight; b is popped after it.
        q.move_unschedulable();
        assert_eq!(q.pop(t0), Some(key("b")));
        q.unschedulable("uid-a", t0);
        q.unschedulable("uid-b", t0);
        assert_eq!(q.pop(t0 + s(1)), Some(key("a")), "a only backs off");
        assert_eq!(q.pop(t0 + s(60)), None, "b saw the event; parked");
    }
}
