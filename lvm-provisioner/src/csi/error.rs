//! The CSI layer's one error type and its single mapping to gRPC status codes.

use std::path::PathBuf;

use thiserror::Error;

use super::bounded::{bounded, bounded_path, cut};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    #[error("missing or invalid argument: {0}")]
    InvalidArgument(String),
    #[error("volume {} not found", bounded(.0))]
    VolumeNotFound(String),
    #[error("volume {} is not available at {}", bounded(.volume), bounded_path(.path))]
    NotAtPath { volume: String, path: PathBuf },
    #[error("an operation on volume {} is already in progress", bounded(.0))]
    OperationPending(String),
    #[error("{0}")]
    Incompatible(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {}: {source}", path.display())]
    Sys {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` did not finish within {timeout:?} and was killed")]
    CommandTimeout {
        command: String,
        timeout: std::time::Duration,
    },
    #[error("volume backend: {0}")]
    Backend(String),
    #[error(transparent)]
    Lvm(#[from] lvmpin_lvm::Error),
    #[error("volume backend is not usable: {0}")]
    Unavailable(String),
    #[error("cannot serve {}: {source}", path.display())]
    Listen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("worker task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl Error {
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub fn sys(what: &'static str, path: impl Into<PathBuf>, source: nix::Error) -> Self {
        Self::Sys {
            what,
            path: path.into(),
            source,
        }
    }

    /// Short, stable label for failure counters and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "invalid_argument",
            Self::VolumeNotFound(_) | Self::NotAtPath { .. } => "not_found",
            Self::OperationPending(_) => "aborted",
            Self::Incompatible(_) => "already_exists",
            Self::FailedPrecondition(_) => "failed_precondition",
            Self::OutOfRange(_) => "out_of_range",
            Self::ResourceExhausted(_) => "resource_exhausted",
            Self::Io { .. } | Self::Sys { .. } => "io",
            Self::Command { .. } => "command",
            Self::CommandTimeout { .. } => "command_timeout",
            Self::Backend(_) => "backend",
            Self::Lvm(e) => e.metric_label(),
            Self::Unavailable(_) => "unavailable",
            Self::Listen { .. } | Self::Transport(_) | Self::Join(_) => "internal",
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        use tonic::Code;
        let code = match &e {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::VolumeNotFound(_) | Error::NotAtPath { .. } => Code::NotFound,
            Error::OperationPending(_) => Code::Aborted,
            Error::Incompatible(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::OutOfRange(_) => Code::OutOfRange,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            // A timed-out command may succeed on retry; kubelet retries Unavailable.
            Error::CommandTimeout { .. } | Error::Unavailable(_) => Code::Unavailable,
            Error::Lvm(l) => match l {
                lvmpin_lvm::Error::LvNotFound { .. } | lvmpin_lvm::Error::VgNotFound { .. } => {
                    Code::NotFound
                }
                lvmpin_lvm::Error::Timeout { .. } => Code::Unavailable,
                lvmpin_lvm::Error::Unsupported { .. } => Code::FailedPrecondition,
                lvmpin_lvm::Error::InsufficientSpace { .. } => Code::ResourceExhausted,
                _ => Code::Internal,
            },
            Error::Io { .. }
            | Error::Sys { .. }
            | Error::Command { .. }
            | Error::Backend(_)
            | Error::Listen { .. }
            | Error::Transport(_)
            | Error::Join(_) => Code::Internal,
        };
        tonic::Status::new(code, e.bounded_message())
    }
}

/// The agent's volume-manager errors as the controller calls report them.
impl From<crate::error::Error> for Error {
    fn from(e: crate::error::Error) -> Self {
        use crate::error::Error as Agent;
        let message = e.to_string();
        match e {
            Agent::InsufficientSpace { .. } => Error::ResourceExhausted(message),
            Agent::LvNotFound { vg, lv } => Error::VolumeNotFound(format!("{vg}/{lv}")),
            // The CO cannot fix a missing disk by retrying differently.
            Agent::VgNotFound { .. } | Agent::LvmTimeout(_) => Error::Unavailable(message),
            Agent::Unsupported { .. } => Error::FailedPrecondition(message),
            // A name taken by another owner: "already exists but is incompatible".
            Agent::OwnedByAnother { .. } | Agent::ForeignVolume { .. } => {
                Error::Incompatible(message)
            }
            Agent::InvalidName(_) | Agent::InvalidClaim { .. } | Agent::InvalidSource { .. } => {
                Error::InvalidArgument(message)
            }
            _ => Error::Backend(message),
        }
    }
}

/// Longest status message or logged error, whatever the variant holds.
const MESSAGE_LIMIT: usize = 1024;

impl Error {
    /// The message, cut to `MESSAGE_LIMIT` bytes: what callers and logs see.
    pub fn bounded_message(&self) -> String {
        cut(&self.to_string(), MESSAGE_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes() {
        let cases = [
            (Error::InvalidArgument("x".into()), Code::InvalidArgument),
            (Error::VolumeNotFound("vg/lv".into()), Code::NotFound),
            (
                Error::NotAtPath {
                    volume: "vg/lv".into(),
                    path: "/p".into(),
                },
                Code::NotFound,
            ),
            (Error::OperationPending("vg/lv".into()), Code::Aborted),
            (Error::Incompatible("x".into()), Code::AlreadyExists),
            (
                Error::FailedPrecondition("x".into()),
                Code::FailedPrecondition,
            ),
            (Error::OutOfRange("x".into()), Code::OutOfRange),
            (Error::Backend("x".into()), Code::Internal),
            (
                Error::CommandTimeout {
                    command: "mkfs".into(),
                    timeout: std::time::Duration::from_secs(1),
                },
                Code::Unavailable,
            ),
        ];
        for (e, code) in cases {
            let label = e.metric_label();
            let status = tonic::Status::from(e);
            assert_eq!(status.code(), code, "{label}");
            assert!(!status.message().is_empty());
        }
    }

    #[test]
    fn messages_are_bounded_whatever_the_variant_holds() {
        let huge = "v".repeat(1 << 20);
        for e in [
            Error::VolumeNotFound(huge.clone()),
            Error::OperationPending(huge.clone()),
            Error::NotAtPath {
                volume: huge.clone(),
                path: PathBuf::from(format!("/{huge}")),
            },
            Error::Incompatible(huge.clone()),
            Error::InvalidArgument(huge.clone()),
        ] {
            let status = tonic::Status::from(e);
            assert!(status.message().len() <= 1100, "{}", status.message().len());
        }
    }
}
