//! An HTTP extender as kube-scheduler configures and calls it
//! (`KubeSchedulerConfiguration.extenders[]`, pkg/scheduler/extender.go).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{Node, Pod};

use super::wire::{self, ExtenderArgs, ExtenderBindingArgs, FilterResult};
use crate::error::{Error, Result};

/// The fields of one `extenders[]` entry that the driver honours.
#[derive(Debug, Clone)]
pub struct ExtenderConfig {
    pub url_prefix: String,
    pub filter_verb: Option<String>,
    pub prioritize_verb: Option<String>,
    pub bind_verb: Option<String>,
    /// Multiplies prioritize scores; kube-scheduler requires > 0 with a prioritize verb.
    pub weight: i64,
    pub node_cache_capable: bool,
    /// An ignorable extender's errors and timeouts do not fail scheduling.
    pub ignorable: bool,
    pub http_timeout: Duration,
}

impl ExtenderConfig {
    /// lvmpin's documented setup: filter, prioritize and bind, weight 1.
    pub fn lvmpin(url_prefix: &str) -> Self {
        Self {
            url_prefix: url_prefix.to_string(),
            filter_verb: Some("filter".into()),
            prioritize_verb: Some("prioritize".into()),
            bind_verb: Some("bind".into()),
            weight: 1,
            node_cache_capable: true,
            ignorable: false,
            // kube-scheduler's default httpTimeout.
            http_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
pub struct Extender {
    pub config: ExtenderConfig,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

impl Extender {
    pub fn new(config: ExtenderConfig) -> Self {
        let http = HttpClient::builder(TokioExecutor::new()).build_http();
        Self { config, http }
    }

    fn url(&self, verb: &str) -> String {
        format!("{}/{}", self.config.url_prefix.trim_end_matches('/'), verb)
    }

    async fn post(&self, verb_kind: &'static str, verb: &str, body: Vec<u8>) -> Result<Bytes> {
        let url = self.url(verb);
        let fail = |reason: String| Error::Extender {
            verb: verb_kind,
            url: url.clone(),
            reason,
        };
        let req = http::Request::post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail(e.to_string()))?;
        let call = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| fail(e.to_string()))?
                .to_bytes();
            if status != http::StatusCode::OK {
                return Err(fail(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(512)])
                )));
            }
            Ok(body)
        };
        tokio::time::timeout(self.config.http_timeout, call)
            .await
            .map_err(|_| fail(format!("no answer within {:?}", self.config.http_timeout)))?
    }

    pub fn serialize_args(&self, pod: &Pod, nodes: &[&Node]) -> Result<Vec<u8>> {
        serde_json::to_vec(&ExtenderArgs::new(
            pod,
            nodes,
            self.config.node_cache_capable,
        ))
        .map_err(|e| Error::Extender {
            verb: "filter",
            url: self.config.url_prefix.clone(),
            reason: format!("cannot encode the request: {e}"),
        })
    }

    pub async fn filter(&self, verb: &str, body: Vec<u8>) -> Result<FilterResult> {
        let bytes = self.post("filter", verb, body).await?;
        wire::parse_filter_result(&bytes, self.config.node_cache_capable).map_err(|reason| {
            Error::Extender {
                verb: "filter",
                url: self.url(verb),
                reason,
            }
        })
    }

    pub async fn prioritize(&self, verb: &str, body: Vec<u8>) -> Result<Vec<(String, i64)>> {
        let bytes = self.post("prioritize", verb, body).await?;
        wire::parse_priorities(&bytes).map_err(|reason| Error::Extender {
            verb: "prioritize",
            url: self.url(verb),
            reason,
        })
    }

    pub async fn bind(&self, verb: &str, args: &ExtenderBindingArgs) -> Result<()> {
        let body = serde_json::to_vec(args).map_err(|e| Error::Extender {
            verb: "bind",
            url: self.url(verb),
            reason: e.to_string(),
        })?;
        let bytes = self.post("bind", verb, body).await?;
        wire::parse_binding_result(&bytes).map_err(|reason| Error::Extender {
            verb: "bind",
            url: self.url(verb),
            reason,
        })
    }
}
