//! What every part of the controller shares.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::metrics::Metrics;

#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a Node object must be gone before lvmpin acts on it.
    pub node_gone_grace: Duration,
    /// How long an agent may go without reporting before claims waiting on
    /// its node are handed back to the scheduler.
    pub agent_silence: Duration,
    /// Longest time between two passes when nothing changes.
    pub resync: Duration,
}

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub settings: Settings,
    /// Claim uids already reported as kept on a lost node, so each gets one
    /// Event per controller run rather than one per pass.
    reported: Mutex<HashSet<String>>,
}

impl Context {
    pub fn new(client: Client, metrics: Metrics, settings: Settings, instance: String) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "lvmpin-controller".into(),
                instance: Some(instance),
            },
        );
        Self {
            client,
            recorder,
            metrics,
            settings,
            reported: Mutex::new(HashSet::new()),
        }
    }

    /// True the first time it is called for `uid`.
    pub fn first_report(&self, uid: &str) -> bool {
        self.reported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid.to_string())
    }
}
