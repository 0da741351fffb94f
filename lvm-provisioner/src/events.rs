//! Kubernetes Events. Publishing is best effort: a lost Event must never stop
//! or repeat a volume operation.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};

pub async fn publish(
    recorder: &Recorder,
    regarding: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, regarding).await {
        tracing::warn!(error = %e, reason, "could not publish event");
    }
}

pub async fn warn(
    recorder: &Recorder,
    regarding: &ObjectReference,
    reason: &str,
    action: &str,
    note: String,
) {
    publish(
        recorder,
        regarding,
        EventType::Warning,
        reason,
        action,
        note,
    )
    .await;
}

pub async fn normal(
    recorder: &Recorder,
    regarding: &ObjectReference,
    reason: &str,
    action: &str,
    note: String,
) {
    publish(recorder, regarding, EventType::Normal, reason, action, note).await;
}
