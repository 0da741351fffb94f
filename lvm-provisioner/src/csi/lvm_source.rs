//! `VolumeSource` backed by the real lvm2 layer.

use std::path::PathBuf;

use lvmpin_api::VolumeId;
use lvmpin_lvm::{Error as LvmError, Lvm};

use super::error::{Error, Result};
use super::source::{VolumeInfo, VolumeSource};

impl VolumeSource for Lvm {
    fn lookup(&self, id: &VolumeId) -> Result<Option<VolumeInfo>> {
        let lv = match self.find_lv(&id.vg, &id.lv) {
            Ok(Some(lv)) => lv,
            // A name lvm would refuse or a VG that is not here names no volume of ours.
            Ok(None) | Err(LvmError::InvalidName { .. } | LvmError::VgNotFound { .. }) => {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let path = lv.path();
        let device = (lv.active && path.exists()).then_some(path);
        Ok(Some(VolumeInfo {
            size_bytes: lv.size_bytes,
            device,
        }))
    }

    fn activate(&self, id: &VolumeId) -> Result<PathBuf> {
        if let Some(VolumeInfo {
            device: Some(d), ..
        }) = self.lookup(id)?
        {
            return Ok(d);
        }
        Ok(self.activate_lv(&id.vg, &id.lv)?)
    }

    fn device_path(&self, id: &VolumeId) -> PathBuf {
        PathBuf::from(format!("/dev/{}/{}", id.vg, id.lv))
    }

    fn probe(&self) -> Result<()> {
        if self.metadata_only() {
            return Err(Error::Unavailable(
                "device-mapper is missing, so volumes cannot be activated or mounted".into(),
            ));
        }
        self.report()?;
        Ok(())
    }
}
