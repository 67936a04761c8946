//! The whole agent (`run_agent`: long poll, reconcile thread, event queue)
//! against an in-test server that implements the agent protocol and
//! verifies every request signature, with accounts made for real inside a
//! private mount namespace (root only; TESTBED §3).

use crate::common;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::{account, grant, Lab};
use idmint_agent::proto::{
    agent_signing_input, AgentEvent, AgentEventAck, AgentEventKind, AgentGrants, EnrollRequest,
    EnrollResponse, HostGrant,
};
use idmint_agent::{enroll, run_agent, AgentConfig, ServerLink, StateDir};
use idmint_core::Secret;
use idmint_testkit::{poll_until, SshKey};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

const JOIN_TOKEN: &str = "idm_join_0123456789abcdef";
const LIMIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Fake {
    agent_key: Option<Vec<u8>>,
    grants: Vec<HostGrant>,
    revision: u64,
    events: Vec<AgentEvent>,
    down: bool,
    nonces: HashSet<String>,
    verified_requests: usize,
}

#[derive(Clone, Default)]
struct Server {
    fake: Arc<Mutex<Fake>>,
    changed: Arc<Notify>,
}

impl Server {
    fn set_grants(&self, grants: Vec<HostGrant>) {
        let mut f = self.fake.lock().unwrap();
        f.grants = grants;
        f.revision += 1;
        drop(f);
        self.changed.notify_waiters();
    }

    fn set_down(&self, down: bool) {
        self.fake.lock().unwrap().down = down;
    }

    fn event(&self, account: &str, pred: impl Fn(&AgentEventKind) -> bool) -> Option<AgentEvent> {
        self.fake
            .lock()
            .unwrap()
            .events
            .iter()
            .find(|e| e.account == account && pred(&e.kind))
            .cloned()
    }

    /// Check the `Authorization` header the way the real server must.
    fn verify(
        &self,
        headers: &HeaderMap,
        method: &str,
        uri: &Uri,
        body: &[u8],
    ) -> Result<(), StatusCode> {
        let header = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or(StatusCode::UNAUTHORIZED)?;
        let params = header
            .strip_prefix("IdmintAgent ")
            .ok_or(StatusCode::UNAUTHORIZED)?;
        let fields: HashMap<&str, &str> = params
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        let get = |k: &str| fields.get(k).copied().ok_or(StatusCode::UNAUTHORIZED);
        let ts: i64 = get("ts")?.parse().map_err(|_| StatusCode::UNAUTHORIZED)?;
        if (ts - common::now()).abs() > idmint_agent::proto::AGENT_CLOCK_SKEW_SECS {
            return Err(StatusCode::UNAUTHORIZED);
        }
        let body_hash =
            idmint_core::ids::hex(ring::digest::digest(&ring::digest::SHA256, body).as_ref());
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
        let input = agent_signing_input(method, path, get("host")?, ts, get("nonce")?, &body_hash);
        let sig = URL_SAFE_NO_PAD
            .decode(get("sig")?)
            .map_err(|_| StatusCode::UNAUTHORIZED)?;
        let mut f = self.fake.lock().unwrap();
        let key = f.agent_key.clone().ok_or(StatusCode::UNAUTHORIZED)?;
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
            .verify(input.as_bytes(), &sig)
            .map_err(|_| StatusCode::UNAUTHORIZED)?;
        if get("host")? != "web-1" || !f.nonces.insert(get("nonce")?.to_string()) {
            return Err(StatusCode::UNAUTHORIZED);
        }
        f.verified_requests += 1;
        Ok(())
    }
}

async fn enroll_route(
    State(s): State<Server>,
    Json(req): Json<EnrollRequest>,
) -> Result<Json<EnrollResponse>, StatusCode> {
    if !idmint_core::secret::ct_eq(req.join_token.as_bytes(), JOIN_TOKEN.as_bytes()) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let b64 = req
        .agent_public_key
        .strip_prefix("ssh-ed25519 ")
        .ok_or(StatusCode::BAD_REQUEST)?;
    let blob = STANDARD
        .decode(b64.split(' ').next().unwrap_or(""))
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let raw = blob
        .get(blob.len().saturating_sub(32)..)
        .ok_or(StatusCode::BAD_REQUEST)?;
    s.fake.lock().unwrap().agent_key = Some(raw.to_vec());
    Ok(Json(EnrollResponse {
        host: req.host,
        host_certificate: "ssh-ed25519-cert-v01@openssh.com AAAAfake host".into(),
        user_ca: "ssh-ed25519 AAAAfake user-ca".into(),
    }))
}

async fn grants_route(
    State(s): State<Server>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<AgentGrants>, StatusCode> {
    s.verify(&headers, "GET", &uri, b"")?;
    let since: u64 = q.get("since").and_then(|v| v.parse().ok()).unwrap_or(0);
    let wait: u64 = q.get("wait").and_then(|v| v.parse().ok()).unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let notified = s.changed.notified();
        {
            let f = s.fake.lock().unwrap();
            if f.down {
                return Err(StatusCode::SERVICE_UNAVAILABLE);
            }
            if f.revision != since || tokio::time::Instant::now() >= deadline {
                return Ok(Json(AgentGrants {
                    revision: f.revision,
                    grants: f.grants.clone(),
                    now: common::now(),
                }));
            }
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

async fn events_route(
    State(s): State<Server>,
    headers: HeaderMap,
    uri: Uri,
    body: axum::body::Bytes,
) -> Result<Json<AgentEventAck>, StatusCode> {
    if s.fake.lock().unwrap().down {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    s.verify(&headers, "POST", &uri, &body)?;
    let event: AgentEvent = serde_json::from_slice(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
    s.fake.lock().unwrap().events.push(event);
    Ok(Json(AgentEventAck { accepted: true }))
}

async fn start_server(server: Server) -> String {
    let app = Router::new()
        .route("/api/v1/agent/enroll", post(enroll_route))
        .route("/api/v1/agent/grants", get(grants_route))
        .route("/api/v1/agent/events", post(events_route))
        .with_state(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

async fn wait_event(
    server: &Server,
    account: &str,
    what: &str,
    pred: impl Fn(&AgentEventKind) -> bool,
) -> AgentEvent {
    poll_until(
        &format!("{what} for {account} at the server"),
        LIMIT,
        || async { Ok(server.event(account, &pred)) },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_agent_follows_the_server_and_enforces_expiry_while_it_is_down() {
    let lab = Lab::start();
    let server = Server::default();
    let url = start_server(server.clone()).await;
    let state = StateDir::open(lab.state_dir.path()).unwrap();
    let host_key = SshKey::generate("host").unwrap();
    let link = ServerLink::new(&url, None).unwrap();

    // A wrong join token is refused and nothing is recorded.
    let bad = enroll(
        &state,
        &link,
        "web-1",
        Secret::new("idm_join_wrong".into()),
        &host_key.public_key_path(),
    )
    .await;
    assert!(bad.unwrap_err().to_string().contains("401"));
    assert!(state.enrollment().unwrap().is_none());
    let outcome = enroll(
        &state,
        &link,
        "web-1",
        Secret::new(JOIN_TOKEN.into()),
        &host_key.public_key_path(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.host, "web-1");
    assert!(std::fs::read_to_string(&outcome.user_ca_path)
        .unwrap()
        .contains("user-ca"));
    assert_eq!(
        std::fs::metadata(state.agent_key_path()).unwrap().mode() & 0o777,
        0o600
    );

    let config = AgentConfig {
        state_dir: lab.state_dir.path().to_path_buf(),
        host: lab.host.clone(),
        uid_range: lab.range,
        tick: Duration::from_millis(200),
        long_poll: Duration::from_secs(2),
        ..AgentConfig::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(run_agent(config.clone(), async {
        let _ = stop_rx.await;
    }));

    let (a, b) = (account(), account());
    let ga = grant(&a, &["/usr/bin/true"], 300);
    let gb = grant(&b, &[], 6);
    server.set_grants(vec![ga.clone(), gb.clone()]);
    for name in [&a, &b] {
        let ready = wait_event(&server, name, "AccountReady", |k| {
            matches!(k, AgentEventKind::AccountReady { .. })
        })
        .await;
        assert!(lab.entry("/etc/passwd", name).is_some(), "{ready:?}");
    }
    assert!(lab.exists(&format!("/etc/sudoers.d/{a}")));

    // Revoked at the server: removed on the host, reported with its residue.
    server.set_grants(vec![gb.clone()]);
    let removed = wait_event(&server, &a, "AccountRemoved", |k| {
        matches!(k, AgentEventKind::AccountRemoved { .. })
    })
    .await;
    assert_eq!(removed.lease_id, ga.lease_id);
    let AgentEventKind::AccountRemoved { residue } = removed.kind else {
        unreachable!()
    };
    assert!(residue.clean, "{residue:?}");
    assert_eq!(lab.entry("/etc/passwd", &a), None);

    // The server goes away; b still expires on time, from the cache.
    server.set_down(true);
    poll_until(
        "b to be removed while the server is down",
        LIMIT,
        || async { Ok(lab.entry("/etc/passwd", &b).is_none().then_some(())) },
    )
    .await
    .unwrap();
    assert!(common::now() >= gb.expires_at, "removed before its expiry");
    assert!(server
        .event(&b, |k| matches!(k, AgentEventKind::AccountRemoved { .. }))
        .is_none());
    // The agent is stopped while the server is away: its undelivered
    // events stay in the outbox on disk and the next run delivers them, in
    // order.
    let _ = stop_tx.send(());
    tokio::time::timeout(LIMIT, agent)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        std::fs::read_to_string(lab.state_dir.path().join("outbox.json"))
            .unwrap()
            .contains(&b)
    );
    server.set_down(false);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(run_agent(config, async {
        let _ = stop_rx.await;
    }));
    wait_event(&server, &b, "AccountRemoved (queued)", |k| {
        matches!(k, AgentEventKind::AccountRemoved { .. })
    })
    .await;
    let kinds: Vec<String> = server
        .fake
        .lock()
        .unwrap()
        .events
        .iter()
        .filter(|e| e.account == b)
        .map(|e| {
            serde_json::to_value(&e.kind).unwrap()["type"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["account_ready", "account_removed"]);
    assert!(server.fake.lock().unwrap().verified_requests >= 5);

    let _ = stop_tx.send(());
    tokio::time::timeout(LIMIT, agent)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    lab.assert_host_untouched();
}
