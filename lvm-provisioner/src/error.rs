//! The one error type of the agent library.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error(
        "volume group {vg} has {free} bytes free; {requested} bytes requested while keeping {spare} spare bytes"
    )]
    InsufficientSpace {
        vg: String,
        requested: u64,
        free: u64,
        spare: u64,
    },
    #[error("thin pool {vg}/{pool} takes no new volume: {reason}")]
    ThinPoolFull {
        vg: String,
        pool: String,
        reason: String,
    },
    #[error("volume group {vg} does not exist on this node")]
    VgNotFound { vg: String },
    #[error("logical volume {vg}/{lv} does not exist")]
    LvNotFound { vg: String, lv: String },
    #[error("not supported on this node: {message}")]
    Unsupported { message: String },
    #[error("logical volume {vg}/{lv} belongs to another claim: {message}")]
    OwnedByAnother {
        vg: String,
        lv: String,
        message: String,
    },
    /// The source of a snapshot, restore or clone cannot serve as one (not a
    /// thin volume, another pool, larger than the requested size).
    #[error("cannot use logical volume {vg}/{lv} as a source: {reason}")]
    InvalidSource {
        vg: String,
        lv: String,
        reason: String,
    },
    #[error("invalid name: {0}")]
    InvalidName(String),
    #[error("lvm command timed out: {0}")]
    LvmTimeout(String),
    #[error("lvm failed: {0}")]
    Lvm(String),
    #[error("claim {claim} is invalid: {message}")]
    InvalidClaim { claim: String, message: String },
    #[error("storage class {0} is not known")]
    ClassNotFound(String),
    #[error("persistent volume {name} exists and is not ours for claim {claim}: {reason}")]
    ForeignVolume {
        name: String,
        claim: String,
        reason: String,
    },
    /// A restore or clone whose source cannot be used here (yet).
    #[error("cannot make the volume from its source: {0}")]
    Source(String),
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("encoding a patch: {0}")]
    Json(#[from] serde_json::Error),
    #[error("background task failed: {0}")]
    Join(String),
    #[error("cannot start: {0}")]
    Startup(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Short label for failure counters.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InsufficientSpace { .. } => "insufficient_space",
            Error::ThinPoolFull { .. } => "thin_pool_full",
            Error::VgNotFound { .. } => "vg_not_found",
            Error::LvNotFound { .. } => "lv_not_found",
            Error::Unsupported { .. } => "unsupported",
            Error::OwnedByAnother { .. } => "owned_by_another",
            Error::InvalidSource { .. } => "invalid_source",
            Error::InvalidName(_) => "invalid_name",
            Error::LvmTimeout(_) => "lvm_timeout",
            Error::Lvm(_) => "lvm",
            Error::InvalidClaim { .. } => "invalid_claim",
            Error::ClassNotFound(_) => "class_not_found",
            Error::ForeignVolume { .. } => "foreign_volume",
            Error::Source(_) => "source",
            Error::Kube(_) => "kube",
            Error::Json(_) => "json",
            Error::Join(_) => "join",
            Error::Startup(_) => "startup",
        }
    }

    /// Errors that no retry on this node can fix: the pod must go elsewhere.
    /// Mirrors the external-provisioner, which reschedules only on
    /// RESOURCE_EXHAUSTED and a vanished node topology (external-provisioner
    /// `pkg/controller/controller.go`, `checkError` and `prepareProvision`;
    /// docs/protocols.md, "Reschedule").
    pub fn needs_reschedule(&self) -> bool {
        matches!(
            self,
            Error::InsufficientSpace { .. }
                | Error::ThinPoolFull { .. }
                | Error::VgNotFound { .. }
                | Error::Unsupported { .. }
        )
    }

    /// Errors that a retry cannot fix either; they are reported and retried slowly.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::OwnedByAnother { .. }
                | Error::InvalidSource { .. }
                | Error::InvalidName(_)
                | Error::InvalidClaim { .. }
                | Error::ForeignVolume { .. }
        )
    }
}
