//! The crate's one error type.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("malformed {what} JSON: {}{source}", at(path))]
    BadJson {
        what: &'static str,
        /// Where in the document, e.g. `NodeNames` or `Pod.spec.volumes[0]`.
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("this replica is not the leader; ask the current leader")]
    NotLeader,
    #[error("claim {0} is not in the extender's cache yet")]
    ClaimNotCached(String),
    #[error("claim {claim} has {annotation}={found}, not the node {node} being bound")]
    SelectedElsewhere {
        claim: String,
        annotation: &'static str,
        found: String,
        node: String,
    },
    #[error("Kubernetes API call {action} failed: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("invalid {flag}: {message}")]
    Config { flag: &'static str, message: String },
    #[error("starting the watches' runtime: {0}")]
    WatchRuntime(#[source] std::io::Error),
    #[error("{what}: {source}")]
    Serve {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn at(path: &str) -> String {
    if path.is_empty() || path == "." {
        String::new()
    } else {
        format!("at {path}: ")
    }
}

impl Error {
    /// Parses JSON, naming the path of the offending field on failure.
    pub fn parse<'de, T: serde::Deserialize<'de>>(
        what: &'static str,
        body: &'de [u8],
    ) -> Result<T> {
        // Path tracking costs time on every element; pay it only to explain a failure.
        if let Ok(v) = serde_json::from_slice(body) {
            return Ok(v);
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| Error::BadJson {
            what,
            path: e.path().to_string(),
            source: e.into_inner(),
        })?;
        de.end().map_err(|source| Error::BadJson {
            what,
            path: String::new(),
            source,
        })?;
        Ok(value)
    }

    pub fn bad_json(what: &'static str, message: impl std::fmt::Display) -> Self {
        Error::BadJson {
            what,
            path: String::new(),
            source: serde::de::Error::custom(message),
        }
    }

    /// Short, fixed label for failure counters.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::BadJson { .. } => "bad_json",
            Error::NotLeader => "not_leader",
            Error::ClaimNotCached(_) => "claim_not_cached",
            Error::SelectedElsewhere { .. } => "selected_elsewhere",
            Error::Kube { .. } => "kube",
            Error::Config { .. } => "config",
            Error::WatchRuntime(_) => "watch_runtime",
            Error::Serve { .. } => "serve",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
