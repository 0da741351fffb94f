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
    /// `managedResources[].name`: when set, only pods requesting one of them
    /// are sent to this extender.
    pub managed_resources: Vec<String>,
}

/// The `extenders[]` fields of a `kubescheduler.config.k8s.io/v1`
/// KubeSchedulerConfiguration this driver reads (names as in
/// k8s.io/kube-scheduler/config/v1 `Extender`).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExtenderEntry {
    url_prefix: String,
    #[serde(default)]
    filter_verb: String,
    #[serde(default)]
    prioritize_verb: String,
    #[serde(default)]
    bind_verb: String,
    #[serde(default)]
    weight: i64,
    #[serde(default)]
    node_cache_capable: bool,
    #[serde(default)]
    ignorable: bool,
    #[serde(default)]
    http_timeout: Option<String>,
    #[serde(default)]
    managed_resources: Vec<ManagedResource>,
}

#[derive(Debug, serde::Deserialize)]
struct ManagedResource {
    name: String,
}

#[derive(Debug, serde::Deserialize)]
struct SchedulerFile {
    kind: String,
    #[serde(default)]
    extenders: Vec<ExtenderEntry>,
}

impl ExtenderConfig {
    /// The extenders of a KubeSchedulerConfiguration file as users deploy it
    /// (`manifests/scheduler/*.yaml`), so the simulator runs the same set-up
    /// as kube-scheduler. `path` only names the file in errors.
    pub fn from_scheduler_config(yaml: &str, path: &str) -> Result<Vec<Self>> {
        let bad = |reason: String| Error::SchedulerConfig {
            path: path.to_string(),
            reason,
        };
        let file: SchedulerFile = serde_yaml::from_str(yaml).map_err(|e| bad(e.to_string()))?;
        if file.kind != "KubeSchedulerConfiguration" {
            return Err(bad(format!(
                "kind is {:?}, want KubeSchedulerConfiguration",
                file.kind
            )));
        }
        let verb = |v: String| (!v.is_empty()).then_some(v);
        file.extenders
            .into_iter()
            .map(|e| {
                let http_timeout = match e.http_timeout.as_deref() {
                    // pkg/scheduler/extender.go NewHTTPExtender: 0 means 5 s.
                    None | Some("0s") | Some("0") => Duration::from_secs(5),
                    Some(t) => humantime::parse_duration(t)
                        .map_err(|err| bad(format!("httpTimeout {t:?}: {err}")))?,
                };
                Ok(Self {
                    url_prefix: e.url_prefix,
                    filter_verb: verb(e.filter_verb),
                    prioritize_verb: verb(e.prioritize_verb),
                    bind_verb: verb(e.bind_verb),
                    weight: e.weight,
                    node_cache_capable: e.node_cache_capable,
                    ignorable: e.ignorable,
                    http_timeout,
                    managed_resources: e.managed_resources.into_iter().map(|m| m.name).collect(),
                })
            })
            .collect()
    }

    /// Filter, prioritize and bind, weight 1, not ignorable: the simulator
    /// CLI's defaults, each of which it can change.
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
            managed_resources: Vec::new(),
        }
    }

    /// kube-scheduler's `HTTPExtender.IsInterested` (pkg/scheduler/extender.go):
    /// without managed resources every pod; otherwise pods whose containers or
    /// init containers request or limit one of them.
    pub fn is_interested(&self, pod: &Pod) -> bool {
        if self.managed_resources.is_empty() {
            return true;
        }
        let Some(spec) = pod.spec.as_ref() else {
            return false;
        };
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .filter_map(|c| c.resources.as_ref())
            .any(|r| {
                self.managed_resources.iter().any(|m| {
                    r.requests.as_ref().is_some_and(|q| q.contains_key(m))
                        || r.limits.as_ref().is_some_and(|q| q.contains_key(m))
                })
            })
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;

    fn pod(init: bool, requests: &[&str], limits: &[&str]) -> Pod {
        let list = |names: &[&str]| {
            Some(
                names
                    .iter()
                    .map(|n| (n.to_string(), Quantity("1".into())))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        let c = Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: list(requests),
                limits: list(limits),
                ..Default::default()
            }),
            ..Default::default()
        };
        let plain = Container {
            name: "plain".into(),
            ..Default::default()
        };
        Pod {
            spec: Some(if init {
                PodSpec {
                    containers: vec![plain],
                    init_containers: Some(vec![c]),
                    ..Default::default()
                }
            } else {
                PodSpec {
                    containers: vec![plain, c],
                    ..Default::default()
                }
            }),
            ..Default::default()
        }
    }

    #[test]
    fn managed_resources_select_pods_like_is_interested() {
        let all = ExtenderConfig::lvmpin("http://x");
        let managed = ExtenderConfig {
            managed_resources: vec!["lvmpin.io/local-storage".into()],
            ..all.clone()
        };
        let r = "lvmpin.io/local-storage";
        assert!(all.is_interested(&pod(false, &[], &[])));
        assert!(!managed.is_interested(&pod(false, &[], &[])));
        assert!(!managed.is_interested(&pod(false, &["example.com/gpu"], &[])));
        assert!(managed.is_interested(&pod(false, &[r], &[])));
        assert!(managed.is_interested(&pod(false, &[], &[r])));
        assert!(managed.is_interested(&pod(true, &[r], &[r])));
    }

    #[test]
    fn scheduler_config_files_are_read() {
        let yaml = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nextenders:\n- urlPrefix: http://e\n  filterVerb: filter\n  bindVerb: bind\n  ignorable: true\n  httpTimeout: 2s\n  managedResources: [{name: lvmpin.io/local-storage, ignoredByScheduler: true}]\n";
        let [e] = ExtenderConfig::from_scheduler_config(yaml, "s.yaml")
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(e.filter_verb.as_deref(), Some("filter"));
        assert_eq!(e.prioritize_verb, None);
        assert!(e.ignorable);
        assert_eq!(e.http_timeout, Duration::from_secs(2));
        assert_eq!(e.managed_resources, vec!["lvmpin.io/local-storage"]);
        let err =
            ExtenderConfig::from_scheduler_config(&yaml.replace("2s", "two seconds"), "s.yaml")
                .unwrap_err();
        assert!(err.to_string().contains("httpTimeout"), "{err}");
        let err = ExtenderConfig::from_scheduler_config("kind: Pod\n", "p.yaml").unwrap_err();
        assert!(err.to_string().contains("p.yaml"), "{err}");
    }
}
