//! Who may read the debug endpoints: the caller's bearer token is checked
//! with a TokenReview (authentication.k8s.io/v1), and the user it names with
//! a SubjectAccessReview (authorization.k8s.io/v1) for `get` on
//! `lvmnodes.lvmpin.io`, the way kube-rbac-proxy guards metrics
//! (brancz/kube-rbac-proxy, pkg/authn/delegating.go and
//! pkg/authz/auth.go).
//!
//! Decisions are cached briefly, keyed by a SHA-256 of the token so the map
//! never holds a token; tokens are never logged or echoed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};
use lvmpin_api::debug_view::{REQUIRED_GROUP, REQUIRED_RESOURCE, REQUIRED_VERB};
use sha2::{Digest, Sha256};

/// How long a decision is reused: short, so a revoked binding or token stops
/// working within seconds, long enough that a `kubectl lvmpin` run costs two
/// reviews, not two per request.
pub const DECISION_TTL: Duration = Duration::from_secs(10);
/// Decisions kept at most; past that, expired ones go, then all.
pub const CACHE_ENTRIES: usize = 1024;
/// Longer headers are refused before any review (service account tokens are
/// about 1 KiB; the API server's own header limit is far above this).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// What the caller gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        user: String,
    },
    /// 401: no token, or the API server does not accept it.
    Unauthenticated(String),
    /// 403: a known user without the permission.
    Forbidden(String),
    /// 503: the reviews could not be made; not cached.
    Unavailable(String),
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &HeaderMap) -> Result<&str, Decision> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Decision::Unauthenticated(
            "no bearer token: send Authorization: Bearer <token> (kubectl lvmpin sends the token of your kubeconfig)".into(),
        ));
    };
    if value.len() > MAX_TOKEN_BYTES {
        return Err(Decision::Unauthenticated(format!(
            "the Authorization header is longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    let text = value.to_str().map_err(|_| {
        Decision::Unauthenticated("the Authorization header is not visible ASCII".into())
    })?;
    let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Decision::Unauthenticated(
            "the Authorization header is not of the form Bearer <token>".into(),
        ));
    }
    Ok(token)
}

pub type TokenKey = [u8; 32];

pub fn token_key(token: &str) -> TokenKey {
    Sha256::digest(token.as_bytes()).into()
}

/// Recent decisions by token hash, bounded in size and age.
#[derive(Debug)]
pub struct DecisionCache {
    ttl: Duration,
    max: usize,
    map: HashMap<TokenKey, (Decision, Instant)>,
}

impl DecisionCache {
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max: max.max(1),
            map: HashMap::new(),
        }
    }

    pub fn get(&self, key: &TokenKey, now: Instant) -> Option<Decision> {
        self.map
            .get(key)
            .filter(|(_, expires)| now < *expires)
            .map(|(d, _)| d.clone())
    }

    /// Keeps `d` unless it is `Unavailable` (a passing fault, not an answer).
    pub fn put(&mut self, key: TokenKey, d: Decision, now: Instant) {
        if matches!(d, Decision::Unavailable(_)) {
            return;
        }
        if self.map.len() >= self.max && !self.map.contains_key(&key) {
            self.map.retain(|_, (_, expires)| now < *expires);
            if self.map.len() >= self.max {
                // Under a flood of distinct tokens forgetting is safe: it
                // only costs fresh reviews.
                self.map.clear();
            }
        }
        self.map.insert(key, (d, now + self.ttl));
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

pub fn token_review(token: &str) -> TokenReview {
    TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            audiences: None,
        },
        ..Default::default()
    }
}

/// The user a TokenReview answer names, or why it names none.
pub fn reviewed_user(review: &TokenReview) -> Result<UserInfo, Decision> {
    let status = review.status.as_ref();
    let authenticated = status.and_then(|s| s.authenticated).unwrap_or(false);
    let user = status.and_then(|s| s.user.clone());
    match (authenticated, user) {
        (true, Some(u)) if u.username.as_deref().is_some_and(|n| !n.is_empty()) => Ok(u),
        _ => {
            let why = status
                .and_then(|s| s.error.as_deref())
                .filter(|e| !e.is_empty())
                .unwrap_or("token not accepted");
            Err(Decision::Unauthenticated(format!(
                "the API server did not authenticate the token: {}",
                lvmpin_api::text::cut(why, 200)
            )))
        }
    }
}

pub fn access_review(user: &UserInfo) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username.clone(),
            uid: user.uid.clone(),
            groups: user.groups.clone(),
            extra: user.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some(REQUIRED_GROUP.into()),
                resource: Some(REQUIRED_RESOURCE.into()),
                verb: Some(REQUIRED_VERB.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The decision a SubjectAccessReview answer gives `user`.
pub fn access_decision(user: &str, review: &SubjectAccessReview) -> Decision {
    let allowed = review.status.as_ref().is_some_and(|s| s.allowed);
    if allowed {
        return Decision::Allowed {
            user: user.to_string(),
        };
    }
    let reason = review
        .status
        .as_ref()
        .and_then(|s| s.reason.as_deref())
        .filter(|r| !r.is_empty())
        .map(|r| format!(" ({})", lvmpin_api::text::cut(r, 200)))
        .unwrap_or_default();
    Decision::Forbidden(format!(
        "user {user:?} may not {REQUIRED_VERB} {REQUIRED_RESOURCE}.{REQUIRED_GROUP}{reason}; \
         bind the ClusterRole lvmpin-viewer to read the debug endpoints"
    ))
}

/// The reviewer: the extender's client and the decision cache.
pub struct Access {
    client: Option<Client>,
    cache: Mutex<DecisionCache>,
}

impl Access {
    /// None: no client (tests of the verbs), so every request is Unavailable.
    pub fn new(client: Option<Client>) -> Self {
        Self {
            client,
            cache: Mutex::new(DecisionCache::new(DECISION_TTL, CACHE_ENTRIES)),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, DecisionCache> {
        // A panic mid-insert leaves at worst a missing decision.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn check(&self, headers: &HeaderMap) -> Decision {
        let token = match bearer(headers) {
            Ok(t) => t,
            Err(d) => return d,
        };
        let key = token_key(token);
        if let Some(d) = self.cache().get(&key, Instant::now()) {
            return d;
        }
        let d = self.review(token).await;
        match &d {
            Decision::Allowed { user } => tracing::debug!(%user, "debug endpoint access allowed"),
            Decision::Forbidden(why) | Decision::Unauthenticated(why) => {
                tracing::info!(reason = %why, "debug endpoint access denied")
            }
            Decision::Unavailable(why) => tracing::warn!(error = %why, "cannot review access"),
        }
        self.cache().put(key, d.clone(), Instant::now());
        d
    }

    async fn review(&self, token: &str) -> Decision {
        let Some(client) = &self.client else {
            return Decision::Unavailable("this extender has no Kubernetes client".into());
        };
        let pp = PostParams::default();
        let tr = match Api::<TokenReview>::all(client.clone())
            .create(&pp, &token_review(token))
            .await
        {
            Ok(tr) => tr,
            Err(e) => return Decision::Unavailable(format!("TokenReview failed: {e}")),
        };
        let user = match reviewed_user(&tr) {
            Ok(u) => u,
            Err(d) => return d,
        };
        let name = user.username.clone().unwrap_or_default();
        match Api::<SubjectAccessReview>::all(client.clone())
            .create(&pp, &access_review(&user))
            .await
        {
            Ok(sar) => access_decision(&name, &sar),
            Err(e) => Decision::Unavailable(format!("SubjectAccessReview failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use k8s_openapi::api::authentication::v1::TokenReviewStatus;
    use k8s_openapi::api::authorization::v1::SubjectAccessReviewStatus;

    fn with_auth(v: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        h
    }

    #[test]
    fn bearer_table() {
        let long = format!("Bearer {}", "x".repeat(MAX_TOKEN_BYTES));
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"Bearer abc", Some("abc")),
            (b"bearer abc", Some("abc")),
            (b"Bearer  abc ", Some("abc")),
            (b"Basic abc", None),
            (b"Bearer", None),
            (b"Bearer ", None),
            (b"abc", None),
            (b"Bearer \xff", None),
            (long.as_bytes(), None),
        ];
        for (header, want) in cases {
            let h = with_auth(header);
            let got = bearer(&h).ok();
            assert_eq!(got, *want, "{}", String::from_utf8_lossy(header));
        }
        assert!(matches!(
            bearer(&HeaderMap::new()),
            Err(Decision::Unauthenticated(_))
        ));
    }

    #[test]
    fn denials_never_echo_the_token() {
        let h = with_auth(b"Basic s3cr3t-token");
        let Err(Decision::Unauthenticated(msg)) = bearer(&h) else {
            panic!("accepted");
        };
        assert!(!msg.contains("s3cr3t"), "{msg}");
    }

    #[test]
    fn cache_expires_bounds_and_skips_unavailable() {
        let now = Instant::now();
        let mut c = DecisionCache::new(Duration::from_secs(10), 3);
        let allowed = Decision::Allowed { user: "u".into() };
        c.put(token_key("a"), allowed.clone(), now);
        assert_eq!(c.get(&token_key("a"), now), Some(allowed.clone()));
        assert_eq!(c.get(&token_key("b"), now), None);
        assert_eq!(c.get(&token_key("a"), now + Duration::from_secs(10)), None);
        c.put(token_key("u"), Decision::Unavailable("down".into()), now);
        assert_eq!(c.get(&token_key("u"), now), None);
        for t in ["b", "c"] {
            c.put(token_key(t), Decision::Forbidden("no".into()), now);
        }
        assert_eq!(c.len(), 3);
        // Full: expired entries go first.
        let later = now + Duration::from_secs(11);
        c.put(token_key("d"), allowed.clone(), later);
        assert_eq!(c.len(), 1);
        // Full of live entries: all go.
        let mut c = DecisionCache::new(Duration::from_secs(10), 2);
        for t in ["a", "b", "c"] {
            c.put(token_key(t), allowed.clone(), now);
        }
        assert!(c.len() <= 2);
        assert_eq!(c.get(&token_key("c"), now), Some(allowed));
    }

    #[test]
    fn token_keys_differ_and_hide_the_token() {
        assert_ne!(token_key("a"), token_key("b"));
        let k = token_key("secret");
        assert!(!k.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn reviews_table() {
        let user = |name: &str| UserInfo {
            username: Some(name.into()),
            groups: Some(vec!["g".into()]),
            ..Default::default()
        };
        let tr = |auth: bool, u: Option<UserInfo>, err: Option<&str>| TokenReview {
            status: Some(TokenReviewStatus {
                authenticated: Some(auth),
                user: u,
                error: err.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            reviewed_user(&tr(true, Some(user("alice")), None)).map(|u| u.username),
            Ok(Some("alice".into()))
        );
        for bad in [
            tr(false, Some(user("alice")), Some("expired")),
            tr(true, None, None),
            tr(true, Some(user("")), None),
            TokenReview::default(),
        ] {
            assert!(matches!(
                reviewed_user(&bad),
                Err(Decision::Unauthenticated(_))
            ));
        }
        let sar = access_review(&user("alice"));
        let attrs = sar.spec.resource_attributes.as_ref().unwrap();
        assert_eq!(sar.spec.user.as_deref(), Some("alice"));
        assert_eq!(sar.spec.groups, Some(vec!["g".to_string()]));
        assert_eq!(attrs.verb.as_deref(), Some("get"));
        assert_eq!(attrs.resource.as_deref(), Some("lvmnodes"));
        assert_eq!(attrs.group.as_deref(), Some("lvmpin.io"));
        let answered = |allowed: bool| SubjectAccessReview {
            status: Some(SubjectAccessReviewStatus {
                allowed,
                reason: Some("RBAC: no binding".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            access_decision("alice", &answered(true)),
            Decision::Allowed {
                user: "alice".into()
            }
        );
        let Decision::Forbidden(msg) = access_decision("alice", &answered(false)) else {
            panic!("allowed");
        };
        assert!(
            msg.contains("lvmpin-viewer") && msg.contains("RBAC: no binding"),
            "{msg}"
        );
        assert!(matches!(
            access_decision("alice", &SubjectAccessReview::default()),
            Decision::Forbidden(_)
        ));
    }
}
