//! The claims that concern this node, for the claim controller: a watch of
//! every claim's metadata only, and a whole copy (one GET) of each claim that
//! `node_scope::claim_concerns_node`. Nothing else of another node's claims
//! is kept, so memory follows this node's claims.
//!
//! Why metadata and not whole claims filtered before storing: claims carry
//! no label of ours and no field selector names an annotation, so every
//! claim reaches every agent either way; its metadata is all the decision
//! needs (the selected node is an annotation, the uid ties it to our PVs),
//! and it is the smaller form on the wire: `lvmpin-sim bench agent-scale`
//! (docs/operations.md) measured one list of 50,000 claims at 32,428 KiB
//! whole and 21,746 KiB as metadata. Filtering whole claims before storing
//! would keep memory as low but read half as much again.

use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher;
use kube::{Api, Client};
use tracing::warn;

use crate::node_scope::claim_concerns_node;

type Meta = PartialObjectMeta<PersistentVolumeClaim>;

/// The longest pause between two attempts to read a claim.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Claims per page of the metadata watch's list (kube-runtime's default,
/// `watcher::Config::page_size`, is 500, as client-go's pager). The watcher
/// holds a whole page at once: kube-client `Client::request` reads the body
/// into one string (`request_text`) and parses all of it, and kube-runtime
/// `watcher` keeps the parsed page in `State::InitPage` while it yields its
/// claims one by one. So after a restart the agent's peak memory grows with
/// the page, not with the cluster: `lvmpin-sim bench agent-scale` (50,000
/// claims, docs/operations.md "Agent memory at scale") measured the peak
/// heap (heaptrack) at 2.2 MiB with pages of 500 and 1.0 MiB with pages of
/// 100 (0.8 MiB in an empty cluster), and VmHWM at 1.15-1.17 and 1.02-1.06
/// times the empty cluster's. The cost: five times as many list requests
/// (500 instead of 100 for 50,000 claims, about 0.5% more bytes), once per
/// restart or relist; the watch itself is unchanged.
const CLAIM_LIST_PAGE: u32 = 100;

/// The store of this node's claims and the stream that fills it; the stream
/// yields each claim it stores, as the trigger of `Controller::for_stream`.
/// It starts once `volumes_listed` resolves (this node's PVs have their
/// first list), because a claim bound to one of them concerns this node too.
pub fn node_claims(
    client: Client,
    node: String,
    volumes: Store<PersistentVolume>,
    volumes_listed: impl Future<Output = ()> + Send + 'static,
) -> (
    Store<PersistentVolumeClaim>,
    impl Stream<Item = Result<PersistentVolumeClaim, watcher::Error>> + Send + 'static,
) {
    let writer = Writer::default();
    let store = writer.as_reader();
    let follower = Follower {
        writer,
        client: client.clone(),
        node,
        volumes,
    };
    let events = futures::stream::once(async move {
        volumes_listed.await;
        // An `Api` of `PartialObjectMeta` asks for metadata only
        // (`as=PartialObjectMetadata`/`PartialObjectMetadataList`).
        watcher(
            Api::<Meta>::all(client),
            watcher::Config::default().page_size(CLAIM_LIST_PAGE),
        )
    })
    // The controller backs off a failing trigger stream itself
    // (kube-runtime `Controller::run`), as for the watch of `Controller::new`.
    .flatten()
    .boxed();
    let stream = futures::stream::unfold((events, follower), |(mut events, mut f)| async move {
        loop {
            let out = match events.next().await? {
                Ok(event) => f.follow(event).await.map(Ok),
                Err(e) => Some(Err(e)),
            };
            if let Some(out) = out {
                return Some((out, (events, f)));
            }
        }
    });
    (store, stream)
}

/// Keeps the store of this node's claims in step with the metadata events.
struct Follower {
    writer: Writer<PersistentVolumeClaim>,
    client: Client,
    node: String,
    volumes: Store<PersistentVolume>,
}

fn key(meta: &Meta) -> ObjectRef<PersistentVolumeClaim> {
    ObjectRef::new(&meta.name_any()).within(&meta.namespace().unwrap_or_default())
}

impl Follower {
    /// Applies one event to the store; returns the claim to reconcile, if any.
    async fn follow(&mut self, event: watcher::Event<Meta>) -> Option<PersistentVolumeClaim> {
        match event {
            watcher::Event::Init => {
                self.writer.apply_watcher_event(&watcher::Event::Init);
                None
            }
            watcher::Event::InitDone => {
                self.writer.apply_watcher_event(&watcher::Event::InitDone);
                None
            }
            watcher::Event::InitApply(meta) => {
                let claim = self.whole_if_ours(&meta).await?;
                self.writer
                    .apply_watcher_event(&watcher::Event::InitApply(claim.clone()));
                Some(claim)
            }
            watcher::Event::Apply(meta) => match self.whole_if_ours(&meta).await {
                Some(claim) => {
                    self.writer
                        .apply_watcher_event(&watcher::Event::Apply(claim.clone()));
                    Some(claim)
                }
                None => {
                    self.forget(&meta);
                    None
                }
            },
            watcher::Event::Delete(meta) => {
                self.forget(&meta);
                None
            }
        }
    }

    /// Drops a claim that no longer concerns this node (or is gone).
    fn forget(&mut self, meta: &Meta) {
        if let Some(old) = self.writer.as_reader().get(&key(meta)) {
            self.writer
                .apply_watcher_event(&watcher::Event::Delete((*old).clone()));
        }
    }

    /// The whole claim when it concerns this node: the stored copy when it is
    /// as new as the event (a re-list), else read with a GET. `None` when it
    /// is not ours, or is gone or replaced by a claim of the same name (its
    /// own events follow).
    async fn whole_if_ours(&self, meta: &Meta) -> Option<PersistentVolumeClaim> {
        let uid = meta.metadata.uid.as_deref();
        let bound_here = uid.is_some()
            && self
                .volumes
                .find(|pv| {
                    pv.spec
                        .as_ref()
                        .and_then(|s| s.claim_ref.as_ref())
                        .and_then(|r| r.uid.as_deref())
                        == uid
                })
                .is_some();
        if !claim_concerns_node(&meta.metadata, &self.node, bound_here) {
            return None;
        }
        if let Some(stored) = self.writer.as_reader().get(&key(meta))
            && stored.metadata.uid.as_deref() == uid
            && stored.metadata.resource_version == meta.metadata.resource_version
        {
            return Some((*stored).clone());
        }
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &meta.namespace().unwrap_or_default());
        let name = meta.name_any();
        let mut attempt = 0u32;
        loop {
            match api.get_opt(&name).await {
                Ok(found) => return found.filter(|c| c.metadata.uid.as_deref() == uid),
                Err(e) => {
                    let delay = crate::backoff::delay(attempt, false).min(MAX_RETRY);
                    attempt = attempt.saturating_add(1);
                    warn!(claim = %key(meta), error = %e, retry_in = ?delay, "cannot read a claim placed on this node");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
