//! The crate's one error type.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("invalid {what} {value:?}: {why}")]
    InvalidName {
        what: &'static str,
        value: String,
        why: String,
    },
    #[error("invalid --extender-url {url:?}: {why}")]
    ExtenderUrl { url: String, why: String },
    #[error(
        "this command needs the extender: pass --extender-url or set LVMPIN_EXTENDER_URL \
         (e.g. after `kubectl -n lvmpin-system port-forward svc/lvmpin-scheduler-extender 8080`, \
         http://127.0.0.1:8080)"
    )]
    NoExtender,
    #[error(
        "the extender needs a bearer token, and the kubeconfig user has none (token or tokenFile); \
         use a kubeconfig with a token, e.g. from `kubectl create token`"
    )]
    NoToken,
    #[error("kubeconfig: {0}")]
    Config(String),
    #[error("Kubernetes API: {action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("pod {namespace}/{name} not found")]
    PodNotFound { namespace: String, name: String },
    #[error("extender {url}: {message}")]
    Extender { url: String, message: String },
    #[error("extender answered {status} for {path}: {body}")]
    ExtenderStatus {
        status: u16,
        path: String,
        body: String,
    },
    #[error("encoding {format}: {message}")]
    Encode {
        format: &'static str,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
