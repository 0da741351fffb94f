//! The one error type of the controller library.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("building a JSON patch: {0}")]
    Patch(#[from] serde_json::Error),
    #[error("node {0} exists again; nothing done")]
    NodeBack(String),
    #[error("serving metrics on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
