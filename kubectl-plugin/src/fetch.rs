//! The edges: the Kubernetes API through the user's kubeconfig, and the
//! extender's debug endpoints with the same bearer token.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use lvmpin_api::LvmNode;
use lvmpin_api::debug_view::{NodesView, WhyView};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::plan::Request;

/// How long one extender request may take.
pub const EXTENDER_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest extender answer read (a why view of thousands of nodes is a few MiB).
pub const EXTENDER_BODY_LIMIT: usize = 64 << 20;

/// A connection to the cluster as the user's kubeconfig says.
pub struct Session {
    pub client: Client,
    /// `-n`, else the context's namespace, else "default".
    pub default_namespace: String,
    /// The bearer token of the kubeconfig user, if it has one.
    pub token: Option<String>,
}

/// Like `Client::try_default`, but honouring `--kubeconfig` and `--context`,
/// and keeping the user's token for the extender.
pub async fn connect(kubeconfig: Option<PathBuf>, context: Option<String>) -> Result<Session> {
    let config = match (kubeconfig, context) {
        (None, None) => Config::infer()
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
        (path, context) => {
            let kc = match &path {
                Some(p) => Kubeconfig::read_from(p)
                    .map_err(|e| Error::Config(format!("{}: {e}", p.display())))?,
                None => Kubeconfig::read().map_err(|e| Error::Config(e.to_string()))?,
            };
            let opts = KubeConfigOptions {
                context,
                ..Default::default()
            };
            Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| Error::Config(e.to_string()))?
        }
    };
    let token = match (&config.auth_info.token, &config.auth_info.token_file) {
        (Some(t), _) => Some(t.expose_secret().trim().to_string()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| Error::Config(format!("token file {f}: {e}")))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    }
    .filter(|t| !t.is_empty());
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
    Ok(Session {
        client,
        default_namespace,
        token,
    })
}

/// The extender's debug endpoints.
pub struct Extender {
    base: String,
    token: String,
    http: HttpClient<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
}

impl Extender {
    /// `base` as checked by `plan::extender_base`.
    pub fn new(base: String, token: String) -> Self {
        Self {
            base,
            token,
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let fail = |message: String| Error::Extender {
            url: url.clone(),
            message,
        };
        let req = http::Request::get(&url)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let resp = tokio::time::timeout(EXTENDER_TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| fail(format!("no answer within {}s", EXTENDER_TIMEOUT.as_secs())))?
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), EXTENDER_BODY_LIMIT)
            .collect()
            .await
            .map_err(|e| fail(format!("reading the answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(Error::ExtenderStatus {
                status: status.as_u16(),
                path: path.to_string(),
                body: lvmpin_api::text::cut(String::from_utf8_lossy(&body).trim(), 500),
            });
        }
        serde_json::from_slice(&body).map_err(|e| fail(format!("unexpected answer: {e}")))
    }
}

/// What the requests of a plan brought back.
#[derive(Debug, Default)]
pub struct Fetched {
    pub lvm_nodes: Vec<LvmNode>,
    pub claims: Vec<PersistentVolumeClaim>,
    pub pvs: Vec<PersistentVolume>,
    pub classes: Vec<StorageClass>,
    pub pod: Option<Pod>,
    pub events: Vec<Event>,
    pub extender_nodes: Option<NodesView>,
    pub why: Option<WhyView>,
}

fn kube_err(action: &str) -> impl FnOnce(kube::Error) -> Error + '_ {
    move |source| Error::Kube {
        action: action.to_string(),
        source,
    }
}

/// Makes the calls in order; the first failure ends the run.
pub async fn fetch(client: &Client, ext: Option<&Extender>, reqs: &[Request]) -> Result<Fetched> {
    let mut out = Fetched::default();
    let lp = ListParams::default();
    for r in reqs {
        match r {
            Request::LvmNodes => {
                out.lvm_nodes = Api::<LvmNode>::all(client.clone())
                    .list(&lp)
                    .await
                    .map_err(kube_err("list lvmnodes.lvmpin.io"))?
                    .items;
            }
            Request::Claims { namespace } => {
                let api = match namespace {
                    Some(ns) => Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns),
                    None => Api::all(client.clone()),
                };
                out.claims = api
                    .list(&lp)
                    .await
                    .map_err(kube_err("list persistentvolumeclaims"))?
                    .items;
            }
            Request::PersistentVolumes => {
                out.pvs = Api::<PersistentVolume>::all(client.clone())
                    .list(&lp)
                    .await
                    .map_err(kube_err("list persistentvolumes"))?
                    .items;
            }
            Request::StorageClasses => {
                out.classes = Api::<StorageClass>::all(client.clone())
                    .list(&lp)
                    .await
                    .map_err(kube_err("list storageclasses"))?
                    .items;
            }
            Request::Pod { namespace, name } => {
                let pod = Api::<Pod>::namespaced(client.clone(), namespace)
                    .get_opt(name)
                    .await
                    .map_err(kube_err("get pod"))?;
                out.pod = Some(pod.ok_or_else(|| Error::PodNotFound {
                    namespace: namespace.clone(),
                    name: name.clone(),
                })?);
            }
            Request::PodEvents { namespace, name } => {
                let fields = format!("involvedObject.kind=Pod,involvedObject.name={name}");
                let uid = out.pod.as_ref().and_then(|p| p.metadata.uid.clone());
                let mut evs = Api::<Event>::namespaced(client.clone(), namespace)
                    .list(&ListParams::default().fields(&fields))
                    .await
                    .map_err(kube_err("list events"))?
                    .items;
                // Events of an earlier pod of the same name are not this one's.
                if let Some(uid) = uid {
                    evs.retain(|e| e.involved_object.uid.as_deref().is_none_or(|u| u == uid));
                }
                out.events = evs;
            }
            Request::Extender(path) => {
                let ext = ext.ok_or(Error::NoExtender)?;
                if path.ends_with("/nodes") {
                    out.extender_nodes = Some(ext.get(path).await?);
                } else {
                    out.why = Some(ext.get(path).await?);
                }
            }
        }
    }
    Ok(out)
}
