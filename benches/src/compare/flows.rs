//! The operations the comparison times, for both systems, as
//! [`Workload`]s: a per-connection login (untimed) followed by either the
//! same request again and again ([`Repeat`]) or one request per pool item
//! ([`Consume`]: one CI token per login, one lease id per revocation).

use crate::error::{BenchError, Result};
use crate::http::{Connection, Outgoing, JSON};
use crate::tokens::TokenPool;
use crate::workload::{send_one, send_step, BoxFuture, Feed, Harvest, OpResult, Workload};
use serde_json::Value;
use std::sync::Arc;

/// How a connection gets the bearer token its requests carry.
#[derive(Clone)]
pub enum SessionSource {
    /// No token (health endpoints, logins).
    None,
    /// A token known in advance (OpenBao's root token for revocation).
    Fixed(idmint_core::Secret<String>),
    /// `POST /api/v1/login` with a CI token from the pool.
    IdmintLogin(Arc<TokenPool>),
    /// `POST /v1/auth/jwt/login` on the given role with a CI token.
    BaoLogin {
        role: &'static str,
        pool: Arc<TokenPool>,
    },
}

impl SessionSource {
    async fn open(&self, conn: &mut Connection) -> Result<Option<String>> {
        let (request, pointer, pool) = match self {
            SessionSource::None => return Ok(None),
            SessionSource::Fixed(token) => return Ok(Some(token.expose().clone())),
            SessionSource::IdmintLogin(pool) => (None, "/token", pool),
            SessionSource::BaoLogin { role, pool } => (Some(*role), "/auth/client_token", pool),
        };
        let token = pool.take().ok_or_else(|| BenchError::Preflight {
            scenario: "session",
            message: "the token pool has no token left to log in with; raise --tokens".into(),
        })?;
        let login = match request {
            None => idmint_login(token)?,
            Some(role) => bao_login(role, token)?,
        };
        let body = send_step(conn, login)
            .await
            .map_err(|end| session_failure(&end))?;
        let value: Value = serde_json::from_slice(&body)?;
        value
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(|t| Some(t.to_string()))
            .ok_or_else(|| BenchError::Preflight {
                scenario: "session",
                message: format!("the login answer has no {pointer}"),
            })
    }
}

fn session_failure(end: &OpResult) -> BenchError {
    BenchError::Preflight {
        scenario: "session",
        message: match end {
            OpResult::Rejected { status, body } => format!("login answered HTTP {status}: {body}"),
            OpResult::Transport(e) => format!("login failed: {e}"),
            other => format!("login failed: {other:?}"),
        },
    }
}

/// `POST /api/v1/login` with a CI token.
pub fn idmint_login(token: &str) -> Result<Outgoing> {
    crate::scenario::login_request(token)
}

/// `POST /v1/auth/jwt/login` with a CI token.
pub fn bao_login(role: &str, token: &str) -> Result<Outgoing> {
    let body = serde_json::to_string(&serde_json::json!({ "role": role, "jwt": token }))?;
    Ok(Outgoing::post("/v1/auth/jwt/login", JSON, body))
}

/// Builds the request of a [`Repeat`] from the connection's session token.
pub type MakeRequest = Arc<dyn Fn(Option<&str>) -> Result<Outgoing> + Send + Sync>;
/// Builds the request of a [`Consume`] from a pool item and the session.
pub type MakeItemRequest = Arc<dyn Fn(&str, Option<&str>) -> Result<Outgoing> + Send + Sync>;
/// A second request made from the first answer's body (OpenBao's identity
/// token after a login).
pub type FollowUp = Arc<dyn Fn(&[u8]) -> Result<Outgoing> + Send + Sync>;

/// The same request on every operation.
pub struct Repeat {
    pub session: SessionSource,
    pub make: MakeRequest,
    /// Where `lease_id` of each answer goes, when the run issues leases a
    /// later run revokes.
    pub harvest: Option<Harvest>,
}

struct RepeatFeed {
    request: Outgoing,
    harvest: Option<Harvest>,
}

impl Workload for Repeat {
    fn open<'a>(&'a self, conn: &'a mut Connection) -> BoxFuture<'a, Result<Box<dyn Feed>>> {
        Box::pin(async move {
            let session = self.session.open(conn).await?;
            let request = (self.make)(session.as_deref())?;
            Ok(Box::new(RepeatFeed {
                request,
                harvest: self.harvest.clone(),
            }) as Box<dyn Feed>)
        })
    }
}

impl Feed for RepeatFeed {
    fn op<'a>(&'a mut self, conn: &'a mut Connection) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            let Some(harvest) = &self.harvest else {
                return send_one(conn, self.request.clone()).await;
            };
            match send_step(conn, self.request.clone()).await {
                Ok(body) => match lease_id(&body) {
                    Some(id) => {
                        harvest.push(id);
                        OpResult::Status(200)
                    }
                    None => OpResult::Rejected {
                        status: 200,
                        body: "the answer has no lease_id".into(),
                    },
                },
                Err(end) => end,
            }
        })
    }
}

/// `lease_id` at the top of an answer: idmint's `CredsResponse` and
/// OpenBao's secret responses both put it there.
fn lease_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct WithLease {
        lease_id: String,
    }
    serde_json::from_slice::<WithLease>(body)
        .ok()
        .map(|w| w.lease_id)
        .filter(|id| !id.is_empty())
}

/// One pool item per operation.
pub struct Consume {
    pub session: SessionSource,
    pub pool: Arc<TokenPool>,
    pub make: MakeItemRequest,
    pub follow_up: Option<FollowUp>,
}

struct ConsumeFeed {
    pool: Arc<TokenPool>,
    session: Option<String>,
    make: MakeItemRequest,
    follow_up: Option<FollowUp>,
}

impl Workload for Consume {
    fn open<'a>(&'a self, conn: &'a mut Connection) -> BoxFuture<'a, Result<Box<dyn Feed>>> {
        Box::pin(async move {
            let session = self.session.open(conn).await?;
            Ok(Box::new(ConsumeFeed {
                pool: self.pool.clone(),
                session,
                make: self.make.clone(),
                follow_up: self.follow_up.clone(),
            }) as Box<dyn Feed>)
        })
    }
}

impl Feed for ConsumeFeed {
    fn op<'a>(&'a mut self, conn: &'a mut Connection) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            let Some(item) = self.pool.take() else {
                return OpResult::Exhausted;
            };
            let request = match (self.make)(item, self.session.as_deref()) {
                Ok(r) => r,
                Err(e) => return OpResult::Fatal(e),
            };
            let Some(follow_up) = &self.follow_up else {
                return send_one(conn, request).await;
            };
            let body = match send_step(conn, request).await {
                Ok(body) => body,
                Err(end) => return end,
            };
            match follow_up(&body) {
                Ok(next) => send_one(conn, next).await,
                Err(e) => OpResult::Rejected {
                    status: 200,
                    body: format!("the first answer cannot be followed up: {e}"),
                },
            }
        })
    }
}

/// The client token of an OpenBao login answer, as the bearer of `path`.
pub fn bao_follow_up(path: String) -> FollowUp {
    Arc::new(move |body: &[u8]| {
        #[derive(serde::Deserialize)]
        struct Auth {
            client_token: String,
        }
        #[derive(serde::Deserialize)]
        struct Login {
            auth: Auth,
        }
        let login: Login = serde_json::from_slice(body)?;
        Ok(Outgoing::get(path.clone()).with_bearer(login.auth.client_token))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ids_are_read_from_both_answer_shapes() {
        assert_eq!(
            lease_id(br#"{"lease_id":"lease_abc","role":"db/readers"}"#),
            Some("lease_abc".into())
        );
        assert_eq!(
            lease_id(br#"{"request_id":"x","lease_id":"database/creds/readers/Q","data":{}}"#),
            Some("database/creds/readers/Q".into())
        );
        assert_eq!(lease_id(br#"{"lease_id":""}"#), None);
        assert_eq!(lease_id(b"not json"), None);
    }

    #[test]
    fn the_follow_up_carries_the_login_token() {
        let follow = bao_follow_up("/v1/identity/oidc/token/bench-api".into());
        let next = follow(br#"{"auth":{"client_token":"b.AAA","accessor":""}}"#).unwrap();
        assert_eq!(next.path, "/v1/identity/oidc/token/bench-api");
        assert_eq!(next.bearer.as_deref(), Some("b.AAA"));
        assert!(follow(br#"{"auth":null}"#).is_err());
    }

    #[test]
    fn bao_logins_name_the_role() {
        let req = bao_login("ci-batch", "a.b.c").unwrap();
        let body: Value = serde_json::from_str(&req.body).unwrap();
        assert_eq!(body["role"], "ci-batch");
        assert_eq!(body["jwt"], "a.b.c");
        assert_eq!(req.path, "/v1/auth/jwt/login");
    }
}
