//! gRPC shell of the CSI Identity and Node services: checks arguments, takes
//! the per-volume guard, runs the blocking work off the async runtime, and
//! translates results. The Controller service is `controller.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use lvmpin_api::names::{DRIVER_NAME, TOPOLOGY_KEY};
use lvmpin_csi_proto::csi::v1 as csi;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span, warn};

use super::bounded::bounded;
use super::error::{Error, Result};
use super::guard::OperationGuards;
use super::metrics::CsiMetrics;
use super::mounter::Mounter;
use super::paths::MountRoot;
use super::source::VolumeSource;
use super::stats::Measured;
use super::{expand, paths, publish, request, stage, stats};

type Rpc<T> = std::result::Result<Response<T>, Status>;

#[derive(Clone)]
pub struct CsiService {
    node_name: String,
    /// Where staging and target paths must lie.
    root: MountRoot,
    /// Whether the Controller service is served beside this one.
    controller: bool,
    source: Arc<dyn VolumeSource>,
    mounter: Arc<dyn Mounter>,
    guards: OperationGuards,
    metrics: CsiMetrics,
}

impl CsiService {
    pub fn new(
        node_name: String,
        root: MountRoot,
        controller: bool,
        source: Arc<dyn VolumeSource>,
        mounter: Arc<dyn Mounter>,
        metrics: CsiMetrics,
    ) -> Self {
        Self {
            node_name,
            root,
            controller,
            source,
            mounter,
            guards: OperationGuards::default(),
            metrics,
        }
    }

    /// Runs `work` on the blocking pool. With `exclusive`, the volume's guard
    /// is held until the work ends, even if kubelet gives up on the call
    /// meanwhile, so a retry cannot overlap a still-running mkfs.
    async fn run<T: Send + 'static>(
        &self,
        operation: &'static str,
        volume_id: &str,
        exclusive: bool,
        work: impl FnOnce(&dyn VolumeSource, &dyn Mounter) -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, Status> {
        let started = Instant::now();
        let span = info_span!("csi", op = operation, volume = %bounded(volume_id));
        let result = async {
            let held = if exclusive {
                Some(self.guards.try_acquire(volume_id)?)
            } else {
                None
            };
            let (source, mounter) = (self.source.clone(), self.mounter.clone());
            let span = tracing::Span::current();
            tokio::task::spawn_blocking(move || {
                let _held = held;
                let _enter = span.enter();
                work(&*source, &*mounter)
            })
            .await?
        }
        .instrument(span.clone())
        .await;
        let failure = result.as_ref().err().map(Error::metric_label);
        self.metrics.observe(operation, started.elapsed(), failure);
        result.map_err(|e| {
            span.in_scope(|| warn!(error = %e.bounded_message(), "{operation} failed"));
            Status::from(e)
        })
    }
}

fn node_cap(t: csi::node_service_capability::rpc::Type) -> csi::NodeServiceCapability {
    csi::NodeServiceCapability {
        r#type: Some(csi::node_service_capability::Type::Rpc(
            csi::node_service_capability::Rpc { r#type: t as i32 },
        )),
    }
}

#[tonic::async_trait]
impl csi::identity_server::Identity for CsiService {
    async fn get_plugin_info(
        &self,
        _: Request<csi::GetPluginInfoRequest>,
    ) -> Rpc<csi::GetPluginInfoResponse> {
        Ok(Response::new(csi::GetPluginInfoResponse {
            name: DRIVER_NAME.to_string(),
            vendor_version: env!("CARGO_PKG_VERSION").to_string(),
            manifest: HashMap::new(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<csi::GetPluginCapabilitiesRequest>,
    ) -> Rpc<csi::GetPluginCapabilitiesResponse> {
        use csi::plugin_capability::{Service, Type, VolumeExpansion, service, volume_expansion};
        let mut capabilities = vec![
            csi::PluginCapability {
                r#type: Some(Type::Service(Service {
                    r#type: service::Type::VolumeAccessibilityConstraints as i32,
                })),
            },
            csi::PluginCapability {
                r#type: Some(Type::VolumeExpansion(VolumeExpansion {
                    r#type: volume_expansion::Type::Online as i32,
                })),
            },
        ];
        if self.controller {
            capabilities.push(csi::PluginCapability {
                r#type: Some(Type::Service(Service {
                    r#type: service::Type::ControllerService as i32,
                })),
            });
        }
        Ok(Response::new(csi::GetPluginCapabilitiesResponse {
            capabilities,
        }))
    }

    /// Ready only when the volume backend answers; not-ready is an answer, not an error.
    async fn probe(&self, _: Request<csi::ProbeRequest>) -> Rpc<csi::ProbeResponse> {
        let ready = self.run("Probe", "", false, |s, _| s.probe()).await.is_ok();
        Ok(Response::new(csi::ProbeResponse { ready: Some(ready) }))
    }
}

#[tonic::async_trait]
impl csi::node_server::Node for CsiService {
    async fn node_stage_volume(
        &self,
        r: Request<csi::NodeStageVolumeRequest>,
    ) -> Rpc<csi::NodeStageVolumeResponse> {
        let req = request::stage(r.get_ref(), &self.root)?;
        let (id, root) = (req.volume_id.clone(), self.root.clone());
        self.run("NodeStageVolume", &id, true, move |s, m| {
            paths::no_symlink_below(&root, &req.staging, "staging_target_path")?;
            stage::stage(s, m, &req)
        })
        .await?;
        Ok(Response::new(csi::NodeStageVolumeResponse {}))
    }

    async fn node_unstage_volume(
        &self,
        r: Request<csi::NodeUnstageVolumeRequest>,
    ) -> Rpc<csi::NodeUnstageVolumeResponse> {
        let req = request::unstage(r.get_ref(), &self.root)?;
        let id = req.volume_id.clone();
        self.run("NodeUnstageVolume", &id, true, move |_, m| {
            stage::unstage(m, &req)
        })
        .await?;
        Ok(Response::new(csi::NodeUnstageVolumeResponse {}))
    }

    async fn node_publish_volume(
        &self,
        r: Request<csi::NodePublishVolumeRequest>,
    ) -> Rpc<csi::NodePublishVolumeResponse> {
        let req = request::publish(r.get_ref(), &self.root)?;
        let (id, root) = (req.volume_id.clone(), self.root.clone());
        self.run("NodePublishVolume", &id, true, move |s, m| {
            paths::no_symlink_below(&root, &req.target, "target_path")?;
            publish::publish(s, m, &req)
        })
        .await?;
        Ok(Response::new(csi::NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        r: Request<csi::NodeUnpublishVolumeRequest>,
    ) -> Rpc<csi::NodeUnpublishVolumeResponse> {
        let req = request::unpublish(r.get_ref(), &self.root)?;
        let id = req.volume_id.clone();
        self.run("NodeUnpublishVolume", &id, true, move |_, m| {
            publish::unpublish(m, &req)
        })
        .await?;
        Ok(Response::new(csi::NodeUnpublishVolumeResponse {}))
    }

    /// Read-only, so not guarded: kubelet polls stats while other calls run.
    async fn node_get_volume_stats(
        &self,
        r: Request<csi::NodeGetVolumeStatsRequest>,
    ) -> Rpc<csi::NodeGetVolumeStatsResponse> {
        use csi::volume_usage::Unit;
        let req = request::stats(r.get_ref(), &self.root)?;
        let id = req.volume_id.clone();
        let st = self
            .run("NodeGetVolumeStats", &id, false, move |s, m| {
                stats::stats(s, m, &req)
            })
            .await?;
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let usage = match st.measured {
            Measured::Filesystem(u) => vec![
                csi::VolumeUsage {
                    available: i(u.bytes_available),
                    total: i(u.bytes_total),
                    used: i(u.bytes_used),
                    unit: Unit::Bytes as i32,
                },
                csi::VolumeUsage {
                    available: i(u.inodes_free),
                    total: i(u.inodes_total),
                    used: i(u.inodes_used),
                    unit: Unit::Inodes as i32,
                },
            ],
            Measured::Block { size_bytes } => vec![csi::VolumeUsage {
                available: 0,
                total: i(size_bytes),
                used: 0,
                unit: Unit::Bytes as i32,
            }],
        };
        Ok(Response::new(csi::NodeGetVolumeStatsResponse {
            usage,
            volume_condition: Some(csi::VolumeCondition {
                abnormal: st.abnormal.is_some(),
                message: st.abnormal.unwrap_or_else(|| "volume is healthy".into()),
            }),
        }))
    }

    async fn node_expand_volume(
        &self,
        r: Request<csi::NodeExpandVolumeRequest>,
    ) -> Rpc<csi::NodeExpandVolumeResponse> {
        let req = request::expand(r.get_ref(), &self.root)?;
        let id = req.volume_id.clone();
        let size = self
            .run("NodeExpandVolume", &id, true, move |s, m| {
                expand::expand(s, m, &req)
            })
            .await?;
        Ok(Response::new(csi::NodeExpandVolumeResponse {
            capacity_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        }))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<csi::NodeGetCapabilitiesRequest>,
    ) -> Rpc<csi::NodeGetCapabilitiesResponse> {
        use csi::node_service_capability::rpc::Type;
        Ok(Response::new(csi::NodeGetCapabilitiesResponse {
            capabilities: vec![
                node_cap(Type::StageUnstageVolume),
                node_cap(Type::GetVolumeStats),
                node_cap(Type::ExpandVolume),
                node_cap(Type::VolumeCondition),
            ],
        }))
    }

    async fn node_get_info(
        &self,
        _: Request<csi::NodeGetInfoRequest>,
    ) -> Rpc<csi::NodeGetInfoResponse> {
        Ok(Response::new(csi::NodeGetInfoResponse {
            node_id: self.node_name.clone(),
            // 0: no limit beyond VG space, which the scheduler extender accounts for.
            max_volumes_per_node: 0,
            accessible_topology: Some(csi::Topology {
                segments: HashMap::from([(TOPOLOGY_KEY.to_string(), self.node_name.clone())]),
            }),
        }))
    }
}
