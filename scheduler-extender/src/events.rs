//! Events that say what a StatefulSet's zone ratio did: on the pod, which
//! zone it was offered or why it waits; on the StatefulSet, that its zone
//! annotations do not parse.
//!
//! The filter verb must not wait on the API server, so it only offers an
//! Event to a bounded queue (`EventSink::offer`); one task publishes them
//! (`publish`). kube-scheduler retries a waiting pod many times, so an Event
//! is offered only when what it says about its object changed.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::ZoneNote;
use crate::facts::PodFacts;

/// Events waiting to be published; more are dropped (and counted).
const QUEUE: usize = 1024;
/// Objects whose last Event is remembered; past this the memory starts over,
/// which at worst repeats an Event.
const REMEMBERED: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Regarding {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneEvent {
    pub regarding: Regarding,
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

fn pod_ref(pod: &PodFacts) -> Regarding {
    Regarding {
        kind: "Pod",
        api_version: "v1",
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        uid: pod.uid.clone(),
    }
}

fn split(counts: &[(String, u32)]) -> String {
    let parts: Vec<String> = counts.iter().map(|(z, n)| format!("{z} {n}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// The Event a filter's zone note deserves, if any. Pure.
pub fn zone_event(pod: &PodFacts, note: &ZoneNote) -> Option<ZoneEvent> {
    match note {
        ZoneNote::Malformed {
            statefulset,
            message,
            ..
        } => {
            let (namespace, name) = statefulset.split_once('/')?;
            Some(ZoneEvent {
                regarding: Regarding {
                    kind: "StatefulSet",
                    api_version: "apps/v1",
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    uid: pod.owner.clone().unwrap_or_default(),
                },
                warning: true,
                reason: "InvalidZoneRatio",
                note: format!("{message}; its pods are placed without a zone ratio"),
            })
        }
        ZoneNote::Counted {
            statefulset,
            ordinal,
            zone,
            ideal,
            wait,
            counts,
            targets,
        } => {
            let tally = format!("pods per zone {}, target {}", split(counts), split(targets));
            let slot = format!("slot {ordinal} of StatefulSet {statefulset}");
            let (warning, reason, note) = match (zone, wait) {
                (Some(z), _) if ideal.as_deref() == Some(z.as_str()) => (
                    false,
                    "ZoneRatioPlaced",
                    format!("{slot} goes to zone {z} by its zone ratio ({tally})"),
                ),
                (Some(z), _) => (
                    false,
                    "ZoneRatioFallback",
                    format!(
                        "{slot} goes to zone {z}: zone {} is next by the ratio but none of its nodes can take the pod (Preferred) ({tally})",
                        ideal.as_deref().unwrap_or("-")
                    ),
                ),
                (None, Some(why)) => (
                    true,
                    "ZoneRatioWaiting",
                    format!("{slot} waits: {why} (Required) ({tally})"),
                ),
                (None, None) => (
                    true,
                    "ZoneRatioFallback",
                    format!(
                        "{slot}: no zone of the ratio has a node that can take the pod; placed without the ratio (Preferred) ({tally})"
                    ),
                ),
            };
            Some(ZoneEvent {
                regarding: pod_ref(pod),
                warning,
                reason,
                note,
            })
        }
    }
}

/// The filter's side of the queue.
pub struct EventSink {
    tx: mpsc::Sender<ZoneEvent>,
    rx: Mutex<Option<mpsc::Receiver<ZoneEvent>>>,
    /// Per object UID, the reason and note of its last Event.
    last: Mutex<HashMap<String, (&'static str, String)>>,
}

/// What `offer` did with an Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offered {
    Queued,
    /// The object's last Event said the same.
    Repeat,
    /// The queue was full.
    Dropped,
}

impl Default for EventSink {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            last: Mutex::new(HashMap::new()),
        }
    }
}

impl EventSink {
    pub fn offer(&self, event: ZoneEvent) -> Offered {
        let key = (event.reason, event.note.clone());
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.get(&event.regarding.uid) == Some(&key) {
                return Offered::Repeat;
            }
            if last.len() >= REMEMBERED {
                last.clear();
            }
            last.insert(event.regarding.uid.clone(), key);
        }
        match self.tx.try_send(event) {
            Ok(()) => Offered::Queued,
            Err(_) => Offered::Dropped,
        }
    }

    /// The queue's receiving end, once: the publishing task owns it.
    pub fn take_queue(&self) -> Option<mpsc::Receiver<ZoneEvent>> {
        self.rx.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

fn object_ref(r: &Regarding) -> ObjectReference {
    ObjectReference {
        api_version: Some(r.api_version.to_string()),
        kind: Some(r.kind.to_string()),
        namespace: Some(r.namespace.clone()),
        name: Some(r.name.clone()),
        uid: (!r.uid.is_empty()).then(|| r.uid.clone()),
        ..Default::default()
    }
}

/// Publishes queued Events until `shutdown`. Best effort: a failed write is
/// logged, never retried, and never touches placement.
pub async fn publish(
    client: Client,
    instance: Option<String>,
    mut queue: mpsc::Receiver<ZoneEvent>,
    shutdown: CancellationToken,
) {
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: "lvmpin-scheduler-extender".into(),
            instance,
        },
    );
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = queue.recv() => next,
        };
        let Some(e) = next else { return };
        let event = Event {
            type_: if e.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: e.reason.to_string(),
            note: Some(e.note),
            action: "Scheduling".into(),
            secondary: None,
        };
        if let Err(err) = recorder.publish(&event, &object_ref(&e.regarding)).await {
            tracing::warn!(error = %err, reason = e.reason, object = %e.regarding.name, "could not publish event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodFacts {
        PodFacts {
            uid: "uid-mq-3".into(),
            namespace: "ns".into(),
            name: "mq-3".into(),
            owner: Some("uid-mq".into()),
            ordinal: Some(3),
            ..Default::default()
        }
    }

    fn counted(zone: Option<&str>, ideal: Option<&str>, wait: Option<&str>) -> ZoneNote {
        ZoneNote::Counted {
            statefulset: "ns/mq".into(),
            ordinal: 3,
            zone: zone.map(str::to_string),
            ideal: ideal.map(str::to_string),
            wait: wait.map(str::to_string),
            counts: vec![("a".into(), 2), ("b".into(), 1)],
            targets: vec![("a".into(), 2), ("b".into(), 2), ("c".into(), 1)],
        }
    }

    #[test]
    fn each_outcome_has_its_event() {
        let malformed = ZoneNote::Malformed {
            statefulset: "ns/mq".into(),
            reason: "weights",
            message: "bad weights".into(),
        };
        // (note, kind, warning, reason, words the note must hold)
        let cases = [
            (
                counted(Some("b"), Some("b"), None),
                "Pod",
                false,
                "ZoneRatioPlaced",
                "slot 3 of StatefulSet ns/mq goes to zone b",
            ),
            (
                counted(Some("c"), Some("b"), None),
                "Pod",
                false,
                "ZoneRatioFallback",
                "zone b is next by the ratio",
            ),
            (
                counted(
                    None,
                    Some("b"),
                    Some("zone b is next and none of its nodes can take the pod"),
                ),
                "Pod",
                true,
                "ZoneRatioWaiting",
                "waits: zone b is next",
            ),
            (
                counted(None, Some("b"), None),
                "Pod",
                true,
                "ZoneRatioFallback",
                "placed without the ratio",
            ),
            (
                malformed,
                "StatefulSet",
                true,
                "InvalidZoneRatio",
                "bad weights",
            ),
        ];
        for (note, kind, warning, reason, words) in cases {
            let e = zone_event(&pod(), &note).expect("an event");
            assert_eq!(e.regarding.kind, kind, "{note:?}");
            assert_eq!((e.warning, e.reason), (warning, reason), "{note:?}");
            assert!(e.note.contains(words), "{:?} lacks {words:?}", e.note);
        }
        let sts = zone_event(
            &pod(),
            &ZoneNote::Malformed {
                statefulset: "ns/mq".into(),
                reason: "weights",
                message: "m".into(),
            },
        )
        .unwrap();
        assert_eq!(
            (
                sts.regarding.namespace.as_str(),
                sts.regarding.name.as_str(),
                sts.regarding.uid.as_str()
            ),
            ("ns", "mq", "uid-mq")
        );
        assert!(
            zone_event(&pod(), &counted(Some("b"), Some("b"), None))
                .unwrap()
                .note
                .contains("pods per zone a 2, b 1, target a 2, b 2, c 1")
        );
    }

    #[test]
    fn a_repeated_event_is_offered_once_and_a_full_queue_drops() {
        let sink = EventSink::default();
        let e = zone_event(&pod(), &counted(None, Some("b"), Some("w"))).unwrap();
        assert_eq!(sink.offer(e.clone()), Offered::Queued);
        assert_eq!(sink.offer(e.clone()), Offered::Repeat);
        let placed = zone_event(&pod(), &counted(Some("b"), Some("b"), None)).unwrap();
        assert_eq!(sink.offer(placed), Offered::Queued);
        assert_eq!(sink.offer(e.clone()), Offered::Queued);
        let mut queue = sink.take_queue().expect("the queue");
        assert!(sink.take_queue().is_none(), "taken once");
        let mut reasons = Vec::new();
        while let Ok(e) = queue.try_recv() {
            reasons.push(e.reason);
        }
        assert_eq!(
            reasons,
            ["ZoneRatioWaiting", "ZoneRatioPlaced", "ZoneRatioWaiting"]
        );
        for i in 0..QUEUE {
            let mut other = e.clone();
            other.regarding.uid = format!("uid-{i}");
            assert_eq!(sink.offer(other), Offered::Queued);
        }
        let mut last = e.clone();
        last.regarding.uid = "one-too-many".into();
        assert_eq!(sink.offer(last), Offered::Dropped);
    }
}
