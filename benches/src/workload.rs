//! What a load task does: a [`Workload`] prepares each connection (not
//! timed) and hands back a [`Feed`], which performs one *operation* at a
//! time on it.
//!
//! An operation is what a caller wants done, not necessarily one HTTP
//! request: OpenBao's peer of idmint's one-request token exchange is a JWT
//! login followed by an identity-token read, and the two are timed as one.
//! The generator counts and times operations.

use crate::error::{BenchError, Result};
use crate::http::{Connection, Outgoing};
use crate::scenario::{open_session, RequestSource, Scenario};
use crate::tokens::TokenPool;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// A boxed future that may hold borrows for `'a`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How one operation ended.
#[derive(Debug)]
pub enum OpResult {
    /// Every step got a 2xx answer; the last one's status.
    Status(u16),
    /// A step got a non-2xx answer (the operation stops there): its status
    /// and the start of its body, for the report.
    Rejected { status: u16, body: String },
    /// No HTTP answer (connection reset, refused…): the task reconnects.
    Transport(BenchError),
    /// The feed has no input left (its pool is empty).
    Exhausted,
    /// The feed cannot go on (a bug or a broken setup): the task stops and
    /// reports it.
    Fatal(BenchError),
}

/// One connection's supply of operations.
pub trait Feed: Send {
    /// Performs the next operation on `conn`.
    fn op<'a>(&'a mut self, conn: &'a mut Connection) -> BoxFuture<'a, OpResult>;
}

/// A kind of load: per-connection preparation.
pub trait Workload: Send + Sync {
    /// Prepares `conn` (log in, …) and returns its feed. Not timed.
    fn open<'a>(&'a self, conn: &'a mut Connection) -> BoxFuture<'a, Result<Box<dyn Feed>>>;
}

/// Longest body excerpt a rejection keeps.
const REJECTION_EXCERPT: usize = 300;

/// Sends `request`: `Ok(body)` for a 2xx answer, else the [`OpResult`]
/// that ends the operation. The body is always read whole (the connection
/// is reused); keeping it costs one small copy.
pub async fn send_step(
    conn: &mut Connection,
    request: Outgoing,
) -> std::result::Result<Vec<u8>, OpResult> {
    match conn.send(request, true).await {
        Ok(answer) if (200..300).contains(&answer.status) => Ok(answer.body),
        Ok(answer) => Err(OpResult::Rejected {
            status: answer.status,
            body: String::from_utf8_lossy(&answer.body)
                .chars()
                .take(REJECTION_EXCERPT)
                .collect(),
        }),
        Err(e) => Err(OpResult::Transport(e)),
    }
}

/// A one-request operation.
pub async fn send_one(conn: &mut Connection, request: Outgoing) -> OpResult {
    match send_step(conn, request).await {
        Ok(_) => OpResult::Status(200),
        Err(end) => end,
    }
}

/// The existing scenarios of `login-exchange` and `memory`, as a workload.
pub struct ScenarioWorkload {
    scenario: Scenario,
    pool: Arc<TokenPool>,
}

impl ScenarioWorkload {
    pub fn new(scenario: Scenario, pool: Arc<TokenPool>) -> Arc<Self> {
        Arc::new(Self { scenario, pool })
    }
}

impl Workload for ScenarioWorkload {
    fn open<'a>(&'a self, conn: &'a mut Connection) -> BoxFuture<'a, Result<Box<dyn Feed>>> {
        Box::pin(async move {
            let source = match self.scenario {
                Scenario::Healthz => RequestSource::Healthz,
                Scenario::Login => RequestSource::Login(self.pool.clone()),
                Scenario::Exchange => RequestSource::Exchange(self.pool.clone()),
                Scenario::Creds => {
                    let token = self.pool.take().ok_or_else(|| BenchError::Preflight {
                        scenario: "creds",
                        message: "the token pool has no token left to log in with".into(),
                    })?;
                    RequestSource::Creds {
                        session_token: open_session(conn, token).await?,
                    }
                }
            };
            Ok(Box::new(source) as Box<dyn Feed>)
        })
    }
}

impl Feed for RequestSource {
    fn op<'a>(&'a mut self, conn: &'a mut Connection) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            match self.next() {
                None => OpResult::Exhausted,
                Some(Err(e)) => OpResult::Fatal(e),
                Some(Ok(request)) => send_one(conn, request).await,
            }
        })
    }
}

/// Values collected from answers by one run (lease ids of issued
/// credentials) for a later run to consume (revocation).
#[derive(Debug, Default, Clone)]
pub struct Harvest(Arc<Mutex<Vec<String>>>);

impl Harvest {
    pub fn push(&self, value: String) {
        if let Ok(mut v) = self.0.lock() {
            v.push(value);
        }
    }

    /// Everything collected so far; the harvest is empty afterwards.
    pub fn take_all(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.0.lock().map(|v| v.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harvest_hands_out_everything_once() {
        let h = Harvest::default();
        let clone = h.clone();
        clone.push("a".into());
        h.push("b".into());
        assert_eq!(h.len(), 2);
        assert_eq!(h.take_all(), vec!["a".to_string(), "b".to_string()]);
        assert!(clone.take_all().is_empty());
    }
}
