//! The agent's CSI socket as kubelet and the sidecars use it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lvmpin_csi_proto::csi::v1 as pb;
use lvmpin_csi_proto::csi::v1::controller_client::ControllerClient;
use lvmpin_csi_proto::csi::v1::identity_client::IdentityClient;
use lvmpin_csi_proto::csi::v1::node_client::NodeClient;
use lvmpin_csi_proto::csi::v1::volume_capability::access_mode::Mode;
use lvmpin_csi_proto::csi::v1::volume_capability::{
    AccessMode, AccessType, BlockVolume, MountVolume,
};
use lvmpin_provisioner::csi::client::connect_unix;
use tonic::transport::Channel;

use crate::agent::Agent;
use crate::{MIB, step};

pub fn mount_cap(fs: &str) -> Option<pb::VolumeCapability> {
    with_mode(
        AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            mount_flags: vec!["noatime".into()],
            volume_mount_group: String::new(),
        }),
        Mode::SingleNodeWriter,
    )
}

pub fn block_cap() -> Option<pb::VolumeCapability> {
    with_mode(AccessType::Block(BlockVolume {}), Mode::SingleNodeWriter)
}

pub fn with_mode(access: AccessType, mode: Mode) -> Option<pb::VolumeCapability> {
    Some(pb::VolumeCapability {
        access_type: Some(access),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    })
}

pub struct Kubelet {
    pub node: NodeClient<Channel>,
    pub controller: ControllerClient<Channel>,
    pub identity: IdentityClient<Channel>,
}

impl Kubelet {
    pub async fn connect(agent: &Agent) -> Result<Self> {
        let channel = connect_unix(&agent.csi_socket).await?;
        Ok(Self {
            node: NodeClient::new(channel.clone()),
            controller: ControllerClient::new(channel.clone()),
            identity: IdentityClient::new(channel),
        })
    }

    /// Probe, NodeGetInfo and the capabilities a full driver announces.
    pub async fn identity(&mut self) -> Result<()> {
        step("Probe, NodeGetInfo, plugin and controller capabilities");
        let probe = self.identity.probe(pb::ProbeRequest {}).await?.into_inner();
        ensure!(
            probe.ready == Some(true),
            "probe not ready with device-mapper present"
        );
        let ni = self
            .node
            .node_get_info(pb::NodeGetInfoRequest {})
            .await?
            .into_inner();
        ensure!(ni.node_id == "vm-node", "{ni:?}");
        let caps = self
            .identity
            .get_plugin_capabilities(pb::GetPluginCapabilitiesRequest {})
            .await?
            .into_inner();
        let controller = pb::plugin_capability::service::Type::ControllerService as i32;
        ensure!(
            caps.capabilities.iter().any(|c| matches!(
                &c.r#type,
                Some(pb::plugin_capability::Type::Service(s)) if s.r#type == controller
            )),
            "no CONTROLLER_SERVICE capability: {caps:?}"
        );
        Ok(())
    }

    /// CreateVolume as external-provisioner sends it; returns the volume.
    pub async fn create(
        &mut self,
        name: &str,
        size: u64,
        cap: Option<pb::VolumeCapability>,
    ) -> Result<pb::Volume> {
        self.controller
            .create_volume(pb::CreateVolumeRequest {
                name: name.into(),
                capacity_range: Some(pb::CapacityRange {
                    required_bytes: size as i64,
                    limit_bytes: 0,
                }),
                volume_capabilities: cap.into_iter().collect(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("CreateVolume {name}"))?
            .into_inner()
            .volume
            .context("CreateVolume returned no volume")
    }

    pub async fn delete(&mut self, id: &str) -> Result<()> {
        self.controller
            .delete_volume(pb::DeleteVolumeRequest {
                volume_id: id.into(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("DeleteVolume {id}"))?;
        Ok(())
    }

    pub async fn expand(
        &mut self,
        id: &str,
        size: u64,
    ) -> Result<pb::ControllerExpandVolumeResponse> {
        Ok(self
            .controller
            .controller_expand_volume(pb::ControllerExpandVolumeRequest {
                volume_id: id.into(),
                capacity_range: Some(pb::CapacityRange {
                    required_bytes: size as i64,
                    limit_bytes: 0,
                }),
                ..Default::default()
            })
            .await
            .with_context(|| format!("ControllerExpandVolume {id} to {} MiB", size / MIB))?
            .into_inner())
    }

    pub async fn stage(
        &mut self,
        id: &str,
        staging: &Path,
        cap: Option<pb::VolumeCapability>,
    ) -> Result<Duration> {
        let t = Instant::now();
        self.node
            .node_stage_volume(pb::NodeStageVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging.display().to_string(),
                volume_capability: cap,
                ..Default::default()
            })
            .await
            .with_context(|| format!("NodeStageVolume {id}"))?;
        Ok(t.elapsed())
    }

    pub async fn publish(
        &mut self,
        id: &str,
        staging: &Path,
        target: &Path,
        cap: Option<pb::VolumeCapability>,
    ) -> Result<Duration> {
        let t = Instant::now();
        self.node
            .node_publish_volume(pb::NodePublishVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging.display().to_string(),
                target_path: target.display().to_string(),
                volume_capability: cap,
                ..Default::default()
            })
            .await
            .with_context(|| format!("NodePublishVolume {id}"))?;
        Ok(t.elapsed())
    }

    pub async fn unpublish(&mut self, id: &str, target: &Path) -> Result<()> {
        self.node
            .node_unpublish_volume(pb::NodeUnpublishVolumeRequest {
                volume_id: id.into(),
                target_path: target.display().to_string(),
            })
            .await
            .with_context(|| format!("NodeUnpublishVolume {id}"))?;
        ensure!(
            !target.exists(),
            "unpublish left {} behind",
            target.display()
        );
        Ok(())
    }

    pub async fn unstage(&mut self, id: &str, staging: &Path) -> Result<()> {
        self.node
            .node_unstage_volume(pb::NodeUnstageVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging.display().to_string(),
            })
            .await
            .with_context(|| format!("NodeUnstageVolume {id}"))?;
        Ok(())
    }

    pub async fn stats(&mut self, id: &str, path: &Path) -> Result<pb::NodeGetVolumeStatsResponse> {
        Ok(self
            .node
            .node_get_volume_stats(pb::NodeGetVolumeStatsRequest {
                volume_id: id.into(),
                volume_path: path.display().to_string(),
                staging_target_path: String::new(),
            })
            .await
            .with_context(|| format!("NodeGetVolumeStats {id}"))?
            .into_inner())
    }
}
