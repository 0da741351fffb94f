//! What to do about nodes that are gone, decided over plain facts.
//!
//! - An unbound claim whose `selected-node` names a Node that is gone, or
//!   whose agent has been silent too long, is handed back to the scheduler
//!   (external-provisioner does the same when the Node is not found:
//!   `pkg/controller/controller.go`, `prepareProvision`; docs/protocols.md,
//!   "Reschedule").
//! - A bound claim whose volume's Node is gone follows its node-loss policy:
//!   `keep` (the default) only reports it; `recreate` deletes the claim and
//!   the pods using it, so that their StatefulSet makes a fresh, empty volume
//!   on another node.
//! - A PV with reclaim policy `Delete` on a Node that is gone, whose claim no
//!   longer exists, is stranded: no agent will ever delete its LV. It is
//!   removed from the API (finalizer and object); no disk is touched.
//!
//! Only a Node object that is gone counts, never NotReady: a node that comes
//! back keeps its data.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// What happens to a bound claim whose node was deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Keep,
    Recreate,
}

impl Policy {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "keep" => Ok(Policy::Keep),
            "recreate" => Ok(Policy::Recreate),
            other => Err(format!(
                "node-loss policy {other:?} is neither \"keep\" nor \"recreate\""
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A claim of an lvmpin StorageClass.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    pub key: Key,
    pub uid: String,
    pub selected_node: Option<String>,
    /// `spec.volumeName`.
    pub volume: Option<String>,
    /// From the claim's annotation, else its class's parameter, else `keep`;
    /// an unknown value is kept as the message that names it.
    pub policy: Result<Policy, String>,
    pub deleting: bool,
}

/// A PV lvmpin provisioned.
#[derive(Clone, Debug, PartialEq)]
pub struct Volume {
    pub name: String,
    pub uid: String,
    pub node: Option<String>,
    pub reclaim_delete: bool,
    /// `spec.claimRef`: the claim's key and uid.
    pub claim: Option<(Key, String)>,
    pub deleting: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PodUse {
    pub key: Key,
    pub uid: String,
    /// Names of the claims it mounts, in its namespace.
    pub claims: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// Nodes whose Node object has been gone for the grace period.
    pub gone: BTreeSet<String>,
    /// Nodes whose agent last reported longer ago than allowed, with that time.
    pub silent: BTreeMap<String, String>,
    pub claims: Vec<Claim>,
    pub volumes: Vec<Volume>,
    pub pods: Vec<PodUse>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    NodeGone,
    AgentSilent { last_report: String },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Remove `selected-node` from an unbound claim.
    Reselect { claim: Key, node: String, why: Why },
    /// Policy `keep`: report only.
    Keep {
        claim: Key,
        uid: String,
        volume: String,
        node: String,
    },
    /// The claim names a policy that does not exist; treated as `keep`.
    BadPolicy {
        claim: Key,
        uid: String,
        node: String,
        message: String,
    },
    /// Policy `recreate`: delete the pods using the claim, then the claim.
    Recreate {
        claim: Key,
        uid: String,
        volume: String,
        node: String,
        pods: Vec<(Key, String)>,
    },
    /// Remove a stranded PV from the API; its disk is gone with its node.
    RemoveVolume {
        name: String,
        uid: String,
        node: String,
    },
}

pub fn plan(f: &Facts) -> Vec<Action> {
    let mut out = Vec::new();
    let volumes: HashMap<&str, &Volume> = f.volumes.iter().map(|v| (v.name.as_str(), v)).collect();
    for c in f.claims.iter().filter(|c| !c.deleting) {
        match (&c.volume, &c.selected_node) {
            (None, Some(node)) => {
                let why = if f.gone.contains(node) {
                    Why::NodeGone
                } else if let Some(t) = f.silent.get(node) {
                    Why::AgentSilent {
                        last_report: t.clone(),
                    }
                } else {
                    continue;
                };
                out.push(Action::Reselect {
                    claim: c.key.clone(),
                    node: node.clone(),
                    why,
                });
            }
            (Some(volume), _) => {
                let Some(node) = volumes
                    .get(volume.as_str())
                    .and_then(|v| v.node.as_ref())
                    .filter(|n| f.gone.contains(*n))
                else {
                    continue;
                };
                let (claim, uid, volume, node) =
                    (c.key.clone(), c.uid.clone(), volume.clone(), node.clone());
                out.push(match &c.policy {
                    Ok(Policy::Keep) => Action::Keep {
                        claim,
                        uid,
                        volume,
                        node,
                    },
                    Ok(Policy::Recreate) => Action::Recreate {
                        pods: users(f, &claim),
                        claim,
                        uid,
                        volume,
                        node,
                    },
                    Err(message) => Action::BadPolicy {
                        claim,
                        uid,
                        node,
                        message: message.clone(),
                    },
                });
            }
            (None, None) => {}
        }
    }
    let live: BTreeSet<(&Key, &str)> = f.claims.iter().map(|c| (&c.key, c.uid.as_str())).collect();
    for v in f.volumes.iter().filter(|v| v.reclaim_delete && !v.deleting) {
        let Some(node) = v.node.as_ref().filter(|n| f.gone.contains(*n)) else {
            continue;
        };
        let claimed = v
            .claim
            .as_ref()
            .is_some_and(|(k, uid)| live.contains(&(k, uid.as_str())));
        if !claimed {
            out.push(Action::RemoveVolume {
                name: v.name.clone(),
                uid: v.uid.clone(),
                node: node.clone(),
            });
        }
    }
    out
}

fn users(f: &Facts, claim: &Key) -> Vec<(Key, String)> {
    f.pods
        .iter()
        .filter(|p| p.key.namespace == claim.namespace && p.claims.contains(&claim.name))
        .map(|p| (p.key.clone(), p.uid.clone()))
        .collect()
}

/// How long each node lvmpin still refers to has been without a Node object.
#[derive(Debug, Default)]
pub struct Absence {
    since: HashMap<String, Instant>,
}

impl Absence {
    /// Nodes in `referenced` but not in `present` for at least `grace`.
    pub fn update<'a>(
        &mut self,
        present: &BTreeSet<String>,
        referenced: impl IntoIterator<Item = &'a str>,
        now: Instant,
        grace: Duration,
    ) -> BTreeSet<String> {
        let missing: BTreeSet<&str> = referenced
            .into_iter()
            .filter(|n| !present.contains(*n))
            .collect();
        self.since.retain(|n, _| missing.contains(n.as_str()));
        let mut gone = BTreeSet::new();
        for n in missing {
            let since = *self.since.entry(n.to_string()).or_insert(now);
            if now.duration_since(since) >= grace {
                gone.insert(n.to_string());
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests;
