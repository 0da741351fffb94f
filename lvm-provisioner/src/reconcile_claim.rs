//! Claim reconciler: decides whether a claim needs a volume (`provision`)
//! or a bigger one (`resize`), with one backoff per claim.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Resource;
use kube::runtime::controller::Action;
use tracing::{info, warn};

use crate::backend::VolumeBackend;
use crate::claim_plan::{ClaimDecision, claim_class_name, claim_key as key, decide};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::events;
use crate::provision::provision;
use crate::resize::resize;

const CLASS_WAIT: Duration = Duration::from_secs(5);

pub async fn reconcile<B: VolumeBackend>(
    pvc: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context<B>>,
) -> Result<Action> {
    let action = reconcile_inner(&pvc, &ctx).await?;
    ctx.backoff.reset(&key(&pvc));
    Ok(action)
}

pub fn error_policy<B: VolumeBackend>(
    pvc: Arc<PersistentVolumeClaim>,
    err: &Error,
    ctx: Arc<Context<B>>,
) -> Action {
    let delay = ctx.backoff.next(&key(&pvc), err.is_permanent());
    warn!(claim = %key(&pvc), error = %err, retry_in = ?delay, "claim reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_inner<B: VolumeBackend>(
    pvc: &PersistentVolumeClaim,
    ctx: &Context<B>,
) -> Result<Action> {
    let class = claim_class_name(pvc).and_then(|n| ctx.caches.class(n));
    let bound = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|v| !v.is_empty());
    if bound {
        return resize(pvc, class.as_deref(), ctx).await;
    }
    match decide(pvc, class.as_deref(), &ctx.config.node_name) {
        ClaimDecision::Ignore(_) => Ok(Action::await_change()),
        ClaimDecision::WaitForClass(name) => {
            info!(claim = %key(pvc), class = name, "storage class not cached yet");
            Ok(Action::requeue(CLASS_WAIT))
        }
        ClaimDecision::Refuse { reason, message } => {
            ctx.metrics.operation("provision", "refused");
            events::warn(
                &ctx.recorder,
                &pvc.object_ref(&()),
                reason,
                "Provisioning",
                message,
            )
            .await;
            Ok(Action::await_change())
        }
        ClaimDecision::Provision(spec) => {
            let Some(class) = class else {
                return Ok(Action::requeue(CLASS_WAIT));
            };
            provision(ctx, pvc, &class, &spec).await
        }
    }
}
