//! `/metrics` for `lvmpin-sim serve`, so scenarios driven over REST can read
//! the scheduler's retry and reschedule counters.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::error::{Error, Result};
use crate::informer::AbortOnDrop;
use crate::scheduler::SchedulerStats;

async fn metrics(State(reg): State<Arc<Registry>>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &reg) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encoding metrics failed: {e}"),
        ),
    }
}

/// Serve `/metrics` on `addr`; returns the bound address and the server task.
pub async fn serve(addr: SocketAddr, stats: &SchedulerStats) -> Result<(SocketAddr, AbortOnDrop)> {
    let mut reg = Registry::default();
    stats.register(&mut reg);
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(reg));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(addr.to_string(), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io(addr.to_string(), e))?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics server stopped");
        }
    });
    Ok((local, AbortOnDrop(task)))
}
