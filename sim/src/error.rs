//! The one error type of the simulator library.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("extender {verb} call to {url} failed: {reason}")]
    Extender {
        verb: &'static str,
        url: String,
        reason: String,
    },
    #[error("command `{command}` failed: {reason}")]
    Command { command: String, reason: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid name {0:?}: only lowercase letters, digits and '-' are allowed")]
    InvalidName(String),
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        what: String,
        after: std::time::Duration,
    },
    #[error(
        "binary {0} not found; build it with `cargo build -p lvmpin-scheduler-extender -p lvmpin-provisioner -p lvmpin-cluster-controller --bins`"
    )]
    BinaryMissing(String),
    #[error("API server: {0}")]
    ApiServer(String),
    #[error("scheduler configuration {path}: {reason}")]
    SchedulerConfig { path: String, reason: String },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// True for a 409 from the API server: a stale resourceVersion or an existing name.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.code == 409)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
