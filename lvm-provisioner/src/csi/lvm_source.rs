//! `VolumeSource` backed by the real lvm2 layer, limited to lvmpin's own
//! volumes: an id outside the configured volume groups, or an LV without
//! owner tags that lead to it (`naming::owned`), names nothing the node
//! service will activate or mount. A PV naming the host's root LV is refused
//! as NotFound and logged, never staged.

use std::path::PathBuf;

use lvmpin_api::VolumeId;
use lvmpin_lvm::{Error as LvmError, Lvm};
use tracing::error;

use super::error::{Error, Result};
use super::naming::owned;
use super::source::{VolumeInfo, VolumeSource};

pub struct LvmVolumes {
    lvm: Lvm,
    volume_groups: Vec<String>,
}

impl LvmVolumes {
    pub fn new(lvm: Lvm, volume_groups: Vec<String>) -> Self {
        Self { lvm, volume_groups }
    }
}

impl VolumeSource for LvmVolumes {
    fn lookup(&self, id: &VolumeId) -> Result<Option<VolumeInfo>> {
        if !self.volume_groups.contains(&id.vg) {
            error!(vg = %id.vg, "refusing a volume outside the volume groups this agent serves");
            return Ok(None);
        }
        let lv = match self.lvm.find_lv(&id.vg, &id.lv) {
            Ok(Some(lv)) => lv,
            // A name lvm would refuse or a VG that is not here names no volume of ours.
            Ok(None) | Err(LvmError::InvalidName { .. } | LvmError::VgNotFound { .. }) => {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if !owned(lv.owner.as_ref().map(|o| o.pv_name.as_str()), &lv.name) {
            error!(%id, "refusing a logical volume without lvmpin owner tags that name it");
            return Ok(None);
        }
        let path = lv.path();
        let device = (lv.active && path.exists()).then_some(path);
        Ok(Some(VolumeInfo {
            size_bytes: lv.size_bytes,
            device,
        }))
    }

    fn activate(&self, id: &VolumeId) -> Result<PathBuf> {
        match self.lookup(id)? {
            Some(VolumeInfo {
                device: Some(d), ..
            }) => Ok(d),
            Some(_) => Ok(self.lvm.activate_lv(&id.vg, &id.lv)?),
            None => Err(Error::VolumeNotFound(id.to_string())),
        }
    }

    fn device_path(&self, id: &VolumeId) -> PathBuf {
        lvmpin_lvm::device_path(&id.vg, &id.lv)
    }

    fn probe(&self) -> Result<()> {
        if self.lvm.metadata_only() {
            return Err(Error::Unavailable(
                "device-mapper is missing, so volumes cannot be activated or mounted".into(),
            ));
        }
        self.lvm.report()?;
        Ok(())
    }
}
