//! Waiting for a condition with a deadline, by polling.
//!
//! Tests never sleep a fixed time to "let something happen": they poll the
//! observable effect until it shows or the deadline passes, so they are as
//! fast as the system allows and fail with a message instead of hanging.

use crate::error::{Result, TestkitError};
use std::future::Future;
use std::time::{Duration, Instant};

/// Default poll period of [`poll_until`].
pub const DEFAULT_POLL: Duration = Duration::from_millis(50);

/// Call `check` every `every` until it returns `Some(value)` or `limit`
/// elapses. `what` names the awaited condition in the timeout error;
/// `check` may also fail, which ends the wait with that error.
///
/// ```no_run
/// # async fn f(server: &idmint_testkit::IdmintServer) -> idmint_testkit::Result<()> {
/// use std::time::Duration;
/// let status = idmint_testkit::poll_until("readyz to answer 200", Duration::from_secs(10), || async {
///     let r = server.get("/readyz").await?;
///     Ok((r.status == 200).then_some(r.status))
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn poll_until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    poll_every(what, limit, DEFAULT_POLL, &mut check).await
}

/// [`poll_until`] with an explicit poll period.
pub async fn poll_every<T, F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    check: &mut F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let started = Instant::now();
    let mut last_error = String::new();
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            // Transient errors (a peer still starting) are retried; the last
            // one is reported if the deadline passes.
            Err(e) => last_error = e.to_string(),
        }
        if started.elapsed() >= limit {
            return Err(TestkitError::Timeout {
                what: what.to_string(),
                waited_ms: started.elapsed().as_millis(),
                detail: last_error,
            });
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_once_the_condition_holds() {
        let n = AtomicU32::new(0);
        let v = poll_every(
            "n to reach 3",
            Duration::from_secs(5),
            Duration::from_millis(1),
            &mut || async {
                let v = n.fetch_add(1, Ordering::SeqCst) + 1;
                Ok((v >= 3).then_some(v))
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn times_out_with_the_last_error() {
        let err = poll_every::<(), _, _>(
            "never",
            Duration::from_millis(30),
            Duration::from_millis(5),
            &mut || async { Err(TestkitError::Jwt("still broken".into())) },
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("never") && err.contains("still broken"),
            "{err}"
        );
    }
}
