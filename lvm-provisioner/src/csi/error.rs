//! The CSI layer's one error type and its single mapping to gRPC status codes.

use std::path::PathBuf;

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    #[error("missing or invalid argument: {0}")]
    InvalidArgument(String),
    #[error("volume {0} not found")]
    VolumeNotFound(String),
    #[error("volume {volume} is not available at {}", path.display())]
    NotAtPath { volume: String, path: PathBuf },
    #[error("an operation on volume {0} is already in progress")]
    OperationPending(String),
    #[error("{0}")]
    Incompatible(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    OutOfRange(String),
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
        tonic::Status::new(code, e.to_string())
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
}
