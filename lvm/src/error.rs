//! The one error type of the LVM layer.

use std::sync::Arc;
use std::time::Duration;

use crate::tags::{Owner, SnapshotOwner};

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A VG or LV name that LVM would refuse (or misread); caught before any command runs.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        kind: &'static str,
        name: String,
        reason: String,
    },
    /// `requested` is what the command tried to allocate (for an extend, the
    /// growth); `free` is the VG's free space right after the failure.
    #[error(
        "volume group {vg} has insufficient free space: {requested} bytes requested, {free} bytes free"
    )]
    InsufficientSpace {
        vg: String,
        requested: u64,
        free: u64,
    },
    #[error("volume group {vg} not found")]
    VgNotFound { vg: String },
    #[error("logical volume {vg}/{lv} not found")]
    LvNotFound { vg: String, lv: String },
    /// The name is taken by an LV whose tags name a different claim (or no claim at
    /// all): never hand someone else's data to this claim. Boxed to keep `Error`
    /// (and every `Result` carrying it) small.
    #[error("logical volume {vg}/{lv} exists but belongs to {}", describe_owner(.owner))]
    OwnedByAnother {
        vg: String,
        lv: String,
        owner: Option<Box<Owner>>,
    },
    /// The name is taken by an LV that is not this VolumeSnapshotContent's
    /// snapshot (another content's, a claim's volume, or untagged).
    #[error("logical volume {vg}/{lv} exists but belongs to {}", describe_snapshot_owner(.owner))]
    SnapshotOwnedByAnother {
        vg: String,
        lv: String,
        owner: Option<Box<SnapshotOwner>>,
    },
    /// The source of a snapshot, restore or clone cannot serve as one. Boxed
    /// to keep `Error` small.
    #[error("cannot use logical volume {}/{} as a source: {}", .0.vg, .0.lv, .0.reason)]
    InvalidSource(Box<SourceProblem>),
    #[error("command `{command}` timed out after {after:?} and was killed with its process group")]
    Timeout { command: String, after: Duration },
    #[error("command `{command}` failed with {}: {stderr}", describe_code(.code))]
    CommandFailed {
        command: String,
        code: Option<i32>,
        stderr: String,
    },
    /// lvm printed something we cannot read as a report.
    #[error("cannot parse lvm output ({context}): {message}")]
    Parse { context: String, message: String },
    #[error("{operation} is not supported: {reason}")]
    Unsupported { operation: String, reason: String },
    #[error("cannot run `{command}`: {source}")]
    Io {
        command: String,
        #[source]
        source: Arc<std::io::Error>,
    },
}

/// Why an LV cannot be the source of a snapshot, restore or clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceProblem {
    pub vg: String,
    pub lv: String,
    pub reason: String,
}

fn describe_owner(owner: &Option<Box<Owner>>) -> String {
    match owner {
        Some(o) => format!(
            "claim {}/{} (uid {}, pv {})",
            o.claim_namespace, o.claim_name, o.claim_uid, o.pv_name
        ),
        None => "no lvmpin claim (untagged)".to_string(),
    }
}

fn describe_snapshot_owner(owner: &Option<Box<SnapshotOwner>>) -> String {
    match owner {
        Some(o) => format!(
            "snapshot content {} (uid {})",
            o.content_name, o.content_uid
        ),
        None => "no lvmpin snapshot content (a claim's volume, or untagged)".to_string(),
    }
}

fn describe_code(code: &Option<i32>) -> String {
    match code {
        Some(c) => format!("exit code {c}"),
        None => "no exit code (killed by a signal)".to_string(),
    }
}

impl Error {
    /// Stable label for failure counters.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidName { .. } => "invalid_name",
            Error::InsufficientSpace { .. } => "insufficient_space",
            Error::VgNotFound { .. } => "vg_not_found",
            Error::LvNotFound { .. } => "lv_not_found",
            Error::OwnedByAnother { .. } | Error::SnapshotOwnedByAnother { .. } => {
                "owned_by_another"
            }
            Error::InvalidSource(_) => "invalid_source",
            Error::Timeout { .. } => "timeout",
            Error::CommandFailed { .. } => "command_failed",
            Error::Parse { .. } => "parse",
            Error::Unsupported { .. } => "unsupported",
            Error::Io { .. } => "io",
        }
    }

    pub(crate) fn parse(context: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Parse {
            context: context.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_is_wrong() {
        let e = Error::InsufficientSpace {
            vg: "vg0".into(),
            requested: 10,
            free: 4,
        };
        assert_eq!(
            e.to_string(),
            "volume group vg0 has insufficient free space: 10 bytes requested, 4 bytes free"
        );
        let e = Error::CommandFailed {
            command: "lvm lvs".into(),
            code: Some(5),
            stderr: "boom".into(),
        };
        assert_eq!(
            e.to_string(),
            "command `lvm lvs` failed with exit code 5: boom"
        );
        let e = Error::OwnedByAnother {
            vg: "vg0".into(),
            lv: "pvc-1".into(),
            owner: None,
        };
        assert!(e.to_string().contains("untagged"), "{e}");
        assert_eq!(e.metric_label(), "owned_by_another");
    }

    #[test]
    fn stays_small_for_callers_results() {
        // clippy::result_large_err fires at 128 bytes in every crate wrapping this.
        assert!(
            std::mem::size_of::<Error>() <= 64,
            "{}",
            std::mem::size_of::<Error>()
        );
    }
}
