//! Runs the extender: the watch caches, leader election, the upkeep loop
//! (reservation and zone-pick pruning, silent-agent marking, stale zone
//! gauges), the Event publisher and the HTTP server, all stopped by one
//! cancellation token. `run` returns after every task ended.
//!
//! The watches run on a runtime of their own (`Watches`), with a client of
//! their own: decoding a relist of 100,000 claims is seconds of CPU, and on
//! the HTTP server's worker threads every filter arriving meanwhile waited
//! behind a page being decoded. On their own thread the kernel shares the
//! cores between the two instead (docs/operations.md, "The extender at
//! scale").

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum_server::accept::NoDelayAcceptor;
use kube::Client;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bind::Binder;
use crate::context::{App, Readiness};
use crate::engine::{Settings, State};
use crate::error::{Error, Result};
use crate::events;
use crate::http::router;
use crate::leader::{self, Leadership, LeaseConfig};
use crate::watch;

/// How often reservations are pruned and silent agents marked.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(10);
/// How long in-flight requests may take once shutdown begins.
const GRACE: Duration = Duration::from_secs(10);

/// Where and how the verbs are served.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// "" serves /filter, "/lvmpin" serves /lvmpin/filter.
    pub url_prefix: String,
    pub body_limit: usize,
    /// PEM certificate and key for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Everything the extender needs besides its Kubernetes client.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub settings: Settings,
    /// A node whose agent has not reported for this long takes no new claims.
    pub agent_silence: Duration,
    /// Elect a leader with this Lease; None runs as the only replica.
    pub election: Option<LeaseConfig>,
}

/// Where the watch tasks run, and the client they list and watch with. The
/// client's connections and its request queue are tasks of the runtime it
/// was built in (kube's `Client::new` spawns its buffer worker there, and
/// hyper its connections), so it must be built in `handle`'s.
pub struct Watches {
    pub client: Client,
    pub handle: Handle,
}

/// Serves until `shutdown` is cancelled (or the server fails), then waits
/// for every task to stop.
pub async fn run(
    kube_config: kube::Config,
    config: Config,
    shutdown: CancellationToken,
) -> Result<()> {
    let Config {
        server,
        settings,
        agent_silence,
        election,
    } = config;
    let client = kube_client(kube_config.clone())?;
    let leadership = Arc::new(match election {
        Some(_) => Leadership::elected(),
        None => Leadership::single(),
    });
    let app = Arc::new(App::new(
        State::default(),
        settings,
        Readiness::new(&watch::KINDS),
        leadership,
        Some(Binder {
            client: client.clone(),
        }),
    ));
    let (watch_runtime, watches) = watch_runtime(kube_config)?;
    let tasks = spawn_tasks(
        client,
        watches,
        app.clone(),
        election,
        agent_silence,
        &shutdown,
    );
    let served = serve(app, server, &shutdown).await;
    // A failed server stops the rest too.
    shutdown.cancel();
    for task in tasks {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "extender task failed");
        }
    }
    // Its tasks have all ended; dropping it here would block in async code.
    watch_runtime.shutdown_background();
    served
}

/// A runtime of one worker thread for the watches, and their client built
/// in it.
fn watch_runtime(kube_config: kube::Config) -> Result<(tokio::runtime::Runtime, Watches)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("lvmpin-watch")
        .enable_all()
        .build()
        .map_err(Error::WatchRuntime)?;
    let client = {
        let _in_watch_runtime = runtime.enter();
        kube_client(kube_config)
    };
    match client {
        Ok(client) => {
            let handle = runtime.handle().clone();
            Ok((runtime, Watches { client, handle }))
        }
        Err(e) => {
            runtime.shutdown_background();
            Err(e)
        }
    }
}

fn kube_client(config: kube::Config) -> Result<Client> {
    Client::try_from(config).map_err(|source| Error::Kube {
        action: "building the client".into(),
        source,
    })
}

/// Starts the background tasks: one watch per kind (on `watches`), leader
/// election when configured, the Event publisher and the upkeep loop. Each
/// ends when `shutdown` is cancelled.
pub fn spawn_tasks(
    client: Client,
    watches: Watches,
    app: Arc<App>,
    election: Option<LeaseConfig>,
    agent_silence: Duration,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = watch::spawn_all(&watches, app.clone(), shutdown);
    tasks.push(watches.handle.spawn(crate::snapshot_watch::run(
        watches.client,
        app.clone(),
        shutdown.clone(),
    )));
    if let Some(queue) = app.events.take_queue() {
        tasks.push(tokio::spawn(events::publish(
            client.clone(),
            election.as_ref().map(|l| l.identity.clone()),
            queue,
            shutdown.clone(),
        )));
    }
    if let Some(lease) = election {
        tasks.push(tokio::spawn(leader::run(
            client,
            lease,
            app.leadership.clone(),
            shutdown.clone(),
        )));
    }
    tasks.push(tokio::spawn(upkeep(
        app,
        agent_silence,
        UPKEEP_EVERY,
        shutdown.clone(),
    )));
    tasks
}

/// Reservations also end without any request arriving (TTL, settled
/// claims), and agents fall silent without any event: every `every`, prune
/// the one and mark the other, until `shutdown`.
pub async fn upkeep(
    app: Arc<App>,
    agent_silence: Duration,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let mut state = app.lock();
        let State {
            index,
            reservations,
        } = &mut *state;
        reservations.prune(index, Instant::now());
        index.prune_zone_picks(Instant::now());
        index.mark_silent(SystemTime::now(), agent_silence);
        app.metrics.reservations.set(reservations.len() as i64);
        let live: BTreeSet<String> = index
            .stateful_sets
            .values()
            .filter(|s| s.ratio.is_some())
            .map(|s| s.key())
            .collect();
        drop(state);
        app.metrics.retain_zone_series(&live);
    }
}

/// Serves the verbs over HTTP or HTTPS; on `shutdown`, in-flight requests
/// get `GRACE` to finish. TCP_NODELAY: an answer written in more than one
/// segment must not wait for the client's delayed ACK (tens of milliseconds
/// per filter otherwise).
async fn serve(app: Arc<App>, server: ServerConfig, shutdown: &CancellationToken) -> Result<()> {
    let ServerConfig {
        listen,
        url_prefix,
        body_limit,
        tls,
    } = server;
    let routes = router(app, &url_prefix, body_limit).into_make_service();
    let handle = axum_server::Handle::new();
    let stop = handle.clone();
    let token = shutdown.clone();
    tokio::spawn(async move {
        token.cancelled().await;
        tracing::info!("shutting down");
        stop.graceful_shutdown(Some(GRACE));
    });
    match tls {
        Some((cert, key)) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                .await
                .map_err(|source| Error::Serve {
                    what: format!("loading TLS {} / {}", cert.display(), key.display()),
                    source,
                })?;
            axum_server::bind_rustls(listen, tls)
                .map(|tls| tls.acceptor(NoDelayAcceptor))
                .handle(handle)
                .serve(routes)
                .await
                .map_err(|source| Error::Serve {
                    what: "HTTPS server".into(),
                    source,
                })
        }
        None => axum_server::bind(listen)
            .acceptor(NoDelayAcceptor)
            .handle(handle)
            .serve(routes)
            .await
            .map_err(|source| Error::Serve {
                what: "HTTP server".into(),
                source,
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ZoneNote;
    use crate::facts::ClaimKey;
    use crate::reservations::Hold;
    use crate::testutil::{lvm_node, stateful_set};

    fn app(leadership: Leadership) -> Arc<App> {
        Arc::new(App::new(
            State::default(),
            Settings::default(),
            Readiness::new(&watch::KINDS),
            Arc::new(leadership),
            None,
        ))
    }

    /// Watches and election rounds against an API server that never answers
    /// (a mock whose requests stay pending), so only the token can end them.
    #[tokio::test]
    async fn every_task_stops_when_the_token_is_cancelled() {
        let (svc, _api) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let client = Client::new(svc, "default");
        let lease = LeaseConfig {
            namespace: "kube-system".into(),
            name: "ext".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(4),
        };
        let shutdown = CancellationToken::new();
        let watches = Watches {
            client: client.clone(),
            handle: Handle::current(),
        };
        let tasks = spawn_tasks(
            client,
            watches,
            app(Leadership::elected()),
            Some(lease),
            Duration::from_secs(300),
            &shutdown,
        );
        // One watch per kind, the snapshot watches (waiting for their API
        // here), the Event publisher, the election loop and upkeep.
        assert_eq!(tasks.len(), watch::KINDS.len() + 4);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            tasks.iter().all(|t| !t.is_finished()),
            "a task ended before shutdown"
        );
        shutdown.cancel();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .expect("task stops on shutdown")
                .expect("task did not panic");
        }
    }

    fn zone_gauges(app: &App, statefulset: &str) {
        app.metrics.zone(&ZoneNote::Counted {
            statefulset: statefulset.into(),
            ordinal: 0,
            zone: Some("a".into()),
            ideal: Some("a".into()),
            wait: None,
            counts: vec![("a".into(), 1)],
            targets: vec![("a".into(), 1), ("b".into(), 1)],
        });
    }

    fn gauge_sets(app: &App) -> Vec<String> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &app.registry).unwrap();
        let mut sets: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("lvmpin_extender_zone_"))
            .filter_map(|l| {
                l.split("statefulset=\"")
                    .nth(1)?
                    .split('"')
                    .next()
                    .map(String::from)
            })
            .collect();
        sets.sort();
        sets.dedup();
        sets
    }

    /// Upkeep drops an expired hold, marks a node that never reported and
    /// removes the zone gauges of a StatefulSet that is gone, without any
    /// request or event, and stops on the token.
    #[tokio::test]
    async fn upkeep_prunes_and_marks_until_shutdown() {
        let app = app(Leadership::single());
        {
            let mut s = app.lock();
            s.index.upsert_lvm(lvm_node("n1", "vg", 100, 100, 1));
            s.reservations.record(Hold {
                pod_uid: "uid-p".into(),
                owner: None,
                node: "n1".into(),
                claims: vec![ClaimKey::new("ns", "c")],
                expires: Instant::now(),
            });
        }
        app.metrics.reservations.set(1);
        app.lock().index.upsert_sts(stateful_set(
            "live",
            2,
            &[(lvmpin_api::names::ANN_ZONE_WEIGHTS, "a=1,b=1")],
            &[],
        ));
        zone_gauges(&app, "ns/live");
        zone_gauges(&app, "ns/gone");
        assert_eq!(gauge_sets(&app), ["ns/gone", "ns/live"]);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(upkeep(
            app.clone(),
            Duration::from_secs(300),
            Duration::from_millis(10),
            shutdown.clone(),
        ));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let done = {
                let s = app.lock();
                s.reservations.is_empty()
                    && s.index.nodes["n1"].silent_since.is_some()
                    && app.metrics.reservations.get() == 0
            } && gauge_sets(&app) == ["ns/live"];
            if done {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "upkeep never ran: {:?}",
                app.lock()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("upkeep stops on shutdown")
            .expect("upkeep did not panic");
    }
}
