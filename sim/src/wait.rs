//! Waiting for a condition with a deadline: the only way tests and the demo wait.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Poll `check` every `every` until it yields `Some`, or fail after `timeout`.
pub async fn until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                after: timeout,
            });
        }
        tokio::time::sleep(every).await;
    }
}
