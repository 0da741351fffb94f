//! gRPC shell of the CSI Controller service. It lets the standard sidecars
//! (external-provisioner in distributed mode, external-resizer) drive the
//! agent, and csi-sanity judge it. The arguments are checked by
//! `controller_request`; volumes are created, grown and removed through the
//! agent's own `VolumeBackend`, behind the same spare-space check
//! (`capacity::check_create`) as the agent's watch-driven provisioning, and
//! GetCapacity answers with `storage_capacity::available`, the number the
//! CSIStorageCapacity objects carry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use lvmpin_api::VolumeId;
use lvmpin_csi_proto::csi::v1 as csi;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info, info_span, warn};

use super::bounded::bounded;
use super::controller_request::{self as request, Create, Scope};
use super::device::block_dev_num;
use super::error::{Error, Result};
use super::guard::OperationGuards;
use super::metrics::CsiMetrics;
use super::mounter::Mounter;
use super::mountinfo::mounts_of;
use super::naming::owned_volume as owned;
use super::request::CONTEXT_FS_TYPE;
use crate::backend::{CreateVolume, Scan, Volume, VolumeBackend};
use crate::capacity::{check_create, extent_round_up};
use crate::lvm_node_status::build_status;
use crate::storage_capacity::available;

type Rpc<T> = std::result::Result<Response<T>, Status>;

pub struct ControllerService<B> {
    scope: Scope,
    /// Why no VG of this node may be used (no device-mapper), if so.
    host_problem: Option<String>,
    spare_bytes: u64,
    backend: B,
    mounter: Arc<dyn Mounter>,
    guards: OperationGuards,
    metrics: CsiMetrics,
}

impl<B: VolumeBackend> ControllerService<B> {
    pub fn new(
        scope: Scope,
        host_problem: Option<String>,
        spare_bytes: u64,
        backend: B,
        mounter: Arc<dyn Mounter>,
        metrics: CsiMetrics,
    ) -> Self {
        Self {
            scope,
            host_problem,
            spare_bytes,
            backend,
            mounter,
            guards: OperationGuards::default(),
            metrics,
        }
    }

    /// Times and logs one call; `key` names the volume in logs (bounded).
    async fn observe<T>(
        &self,
        operation: &'static str,
        key: &str,
        work: impl Future<Output = Result<T>>,
    ) -> std::result::Result<T, Status> {
        let started = Instant::now();
        let span = info_span!("csi", op = operation, volume = %bounded(key));
        let result = work.instrument(span.clone()).await;
        let failure = result.as_ref().err().map(Error::metric_label);
        self.metrics.observe(operation, started.elapsed(), failure);
        result.map_err(|e| {
            span.in_scope(|| warn!(error = %e.bounded_message(), "{operation} failed"));
            Status::from(e)
        })
    }

    async fn scan(&self) -> Result<Scan> {
        Ok(self.backend.scan().await?)
    }

    /// The volume behind an id, if it is one of ours, with the scan it was
    /// found in; anything else is absent.
    async fn find_ours(&self, raw: &str) -> Result<Option<(Volume, Scan)>> {
        let Some(id) = self.scope.our_id(raw) else {
            return Ok(None);
        };
        let scan = self.scan().await?;
        let volume = scan
            .volume(&id.vg, &id.lv)
            .filter(|v| owned(v.owner.as_ref(), &v.name))
            .cloned();
        Ok(volume.map(|v| (v, scan)))
    }

    fn volume(&self, v: &Volume, fs: Option<&str>) -> csi::Volume {
        csi::Volume {
            capacity_bytes: i64::try_from(v.size_bytes).unwrap_or(i64::MAX),
            volume_id: VolumeId::new(&v.vg, &v.name).to_string(),
            volume_context: fs
                .map(|f| HashMap::from([(CONTEXT_FS_TYPE.to_string(), f.to_string())]))
                .unwrap_or_default(),
            content_source: None,
            accessible_topology: self.scope.accessible_topology(),
        }
    }

    async fn create(&self, req: Create) -> Result<Volume> {
        if let Some(problem) = &self.host_problem {
            return Err(Error::Unavailable(problem.clone()));
        }
        let scan = self.scan().await?;
        let Some(group) = scan.volume_group(&req.vg) else {
            return Err(Error::Unavailable(format!(
                "volume group {} is not present on this node",
                req.vg
            )));
        };
        if let Some(existing) = scan.volume(&req.vg, &req.lv) {
            let same_owner = owned(existing.owner.as_ref(), &existing.name)
                && existing.owner.as_ref() == Some(&req.owner);
            if !same_owner || existing.pool != req.thin_pool || !req.size_fits(existing.size_bytes)
            {
                return Err(Error::Incompatible(format!(
                    "volume {:?} already exists as {}/{} ({} bytes, pool {:?}) and does not match this request",
                    bounded(&req.name),
                    existing.vg,
                    existing.name,
                    existing.size_bytes,
                    existing.pool
                )));
            }
            return Ok(existing.clone());
        }
        if let Some(pool) = &req.thin_pool
            && !scan
                .thin_pools
                .iter()
                .any(|p| p.vg == req.vg && &p.name == pool)
        {
            return Err(Error::InvalidArgument(format!(
                "thin pool {}/{} does not exist on this node",
                req.vg,
                bounded(pool)
            )));
        }
        let size = extent_round_up(req.size, group.extent_size_bytes);
        if req.limit > 0 && size > req.limit {
            return Err(Error::OutOfRange(format!(
                "{} bytes in whole extents of {} bytes exceeds limit_bytes {}",
                size, group.extent_size_bytes, req.limit
            )));
        }
        check_create(
            &scan,
            &req.vg,
            &req.lv,
            size,
            req.thin_pool.is_some(),
            self.spare_bytes,
        )?;
        let created = self
            .backend
            .create(CreateVolume {
                vg: req.vg.clone(),
                name: req.lv.clone(),
                size_bytes: size,
                thin_pool: req.thin_pool.clone(),
                owner: req.owner.clone(),
                source: None,
            })
            .await?;
        info!(name = %bounded(&req.name), vg = %created.vg, lv = %created.name, size_bytes = created.size_bytes, "created volume");
        Ok(created)
    }

    async fn delete(&self, raw: &str) -> Result<()> {
        let Some(id) = self.scope.our_id(raw) else {
            info!("DeleteVolume: not a volume of a VG this node serves; nothing to delete");
            return Ok(());
        };
        let scan = self.scan().await?;
        let Some(volume) = scan.volume(&id.vg, &id.lv) else {
            return Ok(());
        };
        if !owned(volume.owner.as_ref(), &volume.name) {
            return Err(Error::FailedPrecondition(format!(
                "logical volume {id} carries no lvmpin owner tags naming it; refusing to delete it"
            )));
        }
        let mounter = self.mounter.clone();
        let device = lvmpin_lvm::device_path(&id.vg, &id.lv);
        let in_use = tokio::task::spawn_blocking(move || -> Result<Option<String>> {
            let Some(dev) = block_dev_num(&device)? else {
                return Ok(None);
            };
            let mounts = mounter.mounts()?;
            Ok(mounts_of(&mounts, dev)
                .next()
                .map(|m| m.mount_point.display().to_string()))
        })
        .await??;
        if let Some(at) = in_use {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is still mounted at {at}; unstage it first"
            )));
        }
        self.backend.remove(&id.vg, &id.lv).await?;
        info!(%id, "deleted volume");
        Ok(())
    }

    async fn expand(&self, req: &request::Expand) -> Result<Volume> {
        let Some((volume, scan)) = self.find_ours(&req.volume_id).await? else {
            return Err(Error::VolumeNotFound(req.volume_id.clone()));
        };
        let extent = scan
            .volume_group(&volume.vg)
            .map_or(0, |g| g.extent_size_bytes);
        let target = extent_round_up(req.required, extent);
        if volume.size_bytes >= target {
            return Ok(volume);
        }
        if req.limit > 0 && target > req.limit {
            return Err(Error::OutOfRange(format!(
                "{target} bytes in whole extents exceeds limit_bytes {}",
                req.limit
            )));
        }
        let grown = self
            .backend
            .extend(&volume.vg, &volume.name, target)
            .await?;
        info!(vg = %volume.vg, lv = %volume.name, from = volume.size_bytes, to = grown.size_bytes, "expanded volume");
        Ok(grown)
    }

    async fn capacity(&self, r: &csi::GetCapacityRequest) -> Result<u64> {
        let Some((vg, pool)) = request::capacity_query(r, &self.scope)? else {
            return Ok(0);
        };
        let scan = self.scan().await?;
        let status = build_status(
            &scan,
            &self.scope.volume_groups,
            self.host_problem.as_deref(),
            None,
            "",
        );
        Ok(available(&status, &vg, pool.as_deref(), self.spare_bytes).unwrap_or(0))
    }
}

fn cap(t: csi::controller_service_capability::rpc::Type) -> csi::ControllerServiceCapability {
    use csi::controller_service_capability::{Rpc, Type};
    csi::ControllerServiceCapability {
        r#type: Some(Type::Rpc(Rpc { r#type: t as i32 })),
    }
}

fn bytes(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[tonic::async_trait]
impl<B: VolumeBackend> csi::controller_server::Controller for ControllerService<B> {
    async fn create_volume(
        &self,
        r: Request<csi::CreateVolumeRequest>,
    ) -> Rpc<csi::CreateVolumeResponse> {
        let r = r.into_inner();
        let (volume, fs) = self
            .observe("CreateVolume", &r.name, async {
                let req = request::create(&r, &self.scope)?;
                let _held = self.guards.try_acquire(&format!("{}/{}", req.vg, req.lv))?;
                let fs = req.fs_type.map(|f| f.as_str());
                Ok((self.create(req).await?, fs))
            })
            .await?;
        Ok(Response::new(csi::CreateVolumeResponse {
            volume: Some(self.volume(&volume, fs)),
        }))
    }

    async fn delete_volume(
        &self,
        r: Request<csi::DeleteVolumeRequest>,
    ) -> Rpc<csi::DeleteVolumeResponse> {
        let id = r.into_inner().volume_id;
        self.observe("DeleteVolume", &id, async {
            if id.is_empty() {
                return Err(Error::InvalidArgument("volume_id is required".into()));
            }
            let _held = self.guards.try_acquire(&id)?;
            self.delete(&id).await
        })
        .await?;
        Ok(Response::new(csi::DeleteVolumeResponse {}))
    }

    async fn validate_volume_capabilities(
        &self,
        r: Request<csi::ValidateVolumeCapabilitiesRequest>,
    ) -> Rpc<csi::ValidateVolumeCapabilitiesResponse> {
        let r = r.into_inner();
        let reason = self
            .observe("ValidateVolumeCapabilities", &r.volume_id, async {
                let reason = request::validate(&r)?;
                if self.find_ours(&r.volume_id).await?.is_none() {
                    return Err(Error::VolumeNotFound(r.volume_id.clone()));
                }
                Ok(reason)
            })
            .await?;
        let response = match reason {
            Some(message) => csi::ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message,
            },
            None => csi::ValidateVolumeCapabilitiesResponse {
                confirmed: Some(csi::validate_volume_capabilities_response::Confirmed {
                    volume_context: r.volume_context,
                    volume_capabilities: r.volume_capabilities,
                    parameters: r.parameters,
                    mutable_parameters: r.mutable_parameters,
                }),
                message: String::new(),
            },
        };
        Ok(Response::new(response))
    }

    async fn get_capacity(
        &self,
        r: Request<csi::GetCapacityRequest>,
    ) -> Rpc<csi::GetCapacityResponse> {
        let r = r.into_inner();
        let free = self.observe("GetCapacity", "", self.capacity(&r)).await?;
        Ok(Response::new(csi::GetCapacityResponse {
            available_capacity: bytes(free),
            maximum_volume_size: Some(bytes(free)),
            minimum_volume_size: None,
        }))
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<csi::ControllerGetCapabilitiesRequest>,
    ) -> Rpc<csi::ControllerGetCapabilitiesResponse> {
        use csi::controller_service_capability::rpc::Type;
        Ok(Response::new(csi::ControllerGetCapabilitiesResponse {
            capabilities: vec![
                cap(Type::CreateDeleteVolume),
                cap(Type::GetCapacity),
                cap(Type::ExpandVolume),
            ],
        }))
    }

    async fn controller_expand_volume(
        &self,
        r: Request<csi::ControllerExpandVolumeRequest>,
    ) -> Rpc<csi::ControllerExpandVolumeResponse> {
        let r = r.into_inner();
        let (volume, node_expansion) = self
            .observe("ControllerExpandVolume", &r.volume_id, async {
                let req = request::expand(&r)?;
                let _held = self.guards.try_acquire(&req.volume_id)?;
                Ok((self.expand(&req).await?, req.node_expansion))
            })
            .await?;
        Ok(Response::new(csi::ControllerExpandVolumeResponse {
            capacity_bytes: bytes(volume.size_bytes),
            node_expansion_required: node_expansion,
        }))
    }
}
