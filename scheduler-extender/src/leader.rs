//! Leader election over a `coordination.k8s.io/v1` Lease, for running several
//! replicas without conflicting promises: only the leader answers the verbs
//! (followers answer `Error`, and report not-ready so a Service routes to the
//! leader). The Lease is written with plain create and replace
//! (resourceVersion), so two candidates can never both win one round.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio_util::sync::CancellationToken;

/// Whether this replica may answer. Without election it always may.
#[derive(Debug)]
pub struct Leadership {
    elected: bool,
    until: Mutex<Option<Instant>>,
}

impl Leadership {
    /// A single replica: always the leader.
    pub fn single() -> Self {
        Self {
            elected: false,
            until: Mutex::new(None),
        }
    }

    pub fn elected() -> Self {
        Self {
            elected: true,
            until: Mutex::new(None),
        }
    }

    pub fn is_leader(&self) -> bool {
        if !self.elected {
            return true;
        }
        let until = *self.until.lock().unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|u| Instant::now() < u)
    }

    fn set_until(&self, until: Option<Instant>) {
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = until;
    }
}

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Create,
    /// Ours: renew it.
    Renew,
    /// Someone else's and expired (or empty): take it over.
    TakeOver,
    /// Someone else holds it.
    Follow {
        holder: String,
    },
}

/// What to do with the current Lease (pure).
pub fn decide(lease: Option<&Lease>, me: &str, now: Timestamp) -> Step {
    let Some(lease) = lease else {
        return Step::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == me {
        return Step::Renew;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let renewed = spec.renew_time.or(spec.acquire_time).map(|t| t.0);
    let expired = match renewed {
        Some(t) => t + SignedDuration::from_secs(duration) < now,
        None => true,
    };
    if holder.is_empty() || expired {
        Step::TakeOver
    } else {
        Step::Follow { holder }
    }
}

fn spec_for(cfg: &LeaseConfig, old: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
    let ours = old.and_then(|s| s.holder_identity.as_deref()) == Some(cfg.identity.as_str());
    let transitions = old.and_then(|s| s.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.lease_duration.as_secs() as i32),
        acquire_time: if ours {
            old.and_then(|s| s.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if ours || old.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..Default::default()
    }
}

/// One election round. Ok(true) when we hold the Lease afterwards.
pub async fn round(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let current = api.get_opt(&cfg.name).await?;
    let now = Timestamp::now();
    match decide(current.as_ref(), &cfg.identity, now) {
        Step::Follow { .. } => Ok(false),
        Step::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(spec_for(cfg, None, now)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Step::Renew | Step::TakeOver => {
            let Some(mut lease) = current else {
                return Ok(false);
            };
            lease.spec = Some(spec_for(cfg, lease.spec.as_ref(), now));
            // replace carries the resourceVersion we read: a 409 means another
            // replica wrote in between and won this round.
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Runs election rounds until `shutdown`, keeping `leadership` current.
/// Leadership is trusted only until two thirds of the lease duration after
/// the last successful write, so a partitioned leader steps down before
/// anyone else may take over.
pub async fn run(
    client: Client,
    cfg: LeaseConfig,
    leadership: std::sync::Arc<Leadership>,
    shutdown: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let trust = cfg.lease_duration * 2 / 3;
    let mut was_leader = false;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = round(&api, &cfg) => r,
        };
        match result {
            Ok(true) => leadership.set_until(Some(started + trust)),
            Ok(false) => leadership.set_until(None),
            Err(e) => tracing::warn!(error = %e, lease = %cfg.name, "leader election round failed"),
        }
        let now_leader = leadership.is_leader();
        if now_leader != was_leader {
            tracing::info!(identity = %cfg.identity, leader = now_leader, "leadership changed");
            was_leader = now_leader;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(cfg.renew_every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_secs_ago: i64, now: Timestamp) -> Lease {
        Lease {
            metadata: Default::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(now - SignedDuration::from_secs(renewed_secs_ago))),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn decide_table() {
        let now = Timestamp::now();
        let cases: Vec<(&str, Option<Lease>, Step)> = vec![
            ("no lease", None, Step::Create),
            ("ours", Some(lease("me", 100, now)), Step::Renew),
            (
                "theirs, fresh",
                Some(lease("them", 5, now)),
                Step::Follow {
                    holder: "them".into(),
                },
            ),
            (
                "theirs, expired",
                Some(lease("them", 16, now)),
                Step::TakeOver,
            ),
            ("released", Some(lease("", 1, now)), Step::TakeOver),
        ];
        for (name, l, want) in cases {
            assert_eq!(decide(l.as_ref(), "me", now), want, "{name}");
        }
    }

    #[test]
    fn takeover_counts_a_transition() {
        let now = Timestamp::now();
        let cfg = LeaseConfig {
            namespace: "ns".into(),
            name: "l".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        };
        let mut old = lease("them", 20, now).spec.unwrap_or_default();
        old.lease_transitions = Some(3);
        assert_eq!(spec_for(&cfg, Some(&old), now).lease_transitions, Some(4));
        let mine = spec_for(&cfg, Some(&old), now);
        assert_eq!(spec_for(&cfg, Some(&mine), now).lease_transitions, Some(4));
    }
}
