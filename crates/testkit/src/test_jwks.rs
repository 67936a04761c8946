//! [`TestJwks`]: an in-process OIDC issuer that a test fully controls.
//!
//! It serves `/.well-known/openid-configuration` (with `issuer` = its own
//! URL) and `/jwks`, signs whatever header and claims a test asks for, and
//! can rotate keys, fail (HTTP 500), be slow, or disappear (connections
//! refused) on command. It counts every request, so tests can assert how
//! often idmint fetched keys — or that it never followed a `jku`.

use crate::error::{Result, TestkitError};
use crate::jws;
use crate::keys::{random_hex, KeyAlg, TestKey};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How the issuer answers key requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksMode {
    /// Normal service.
    Up,
    /// `500 Internal Server Error` for discovery and JWKS.
    Failing,
    /// Answer correctly, but only after this delay.
    Slow(Duration),
}

struct Shared {
    issuer: String,
    published: Mutex<Vec<TestKey>>,
    signing: Mutex<TestKey>,
    mode: Mutex<JwksMode>,
    jwks_fetches: AtomicU64,
    discovery_fetches: AtomicU64,
    requests: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread may poison a lock; the data is still valid.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// A controllable OIDC issuer on `http://127.0.0.1:<port>`.
pub struct TestJwks {
    addr: SocketAddr,
    shared: Arc<Shared>,
    running: Option<Running>,
}

impl std::fmt::Debug for TestJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestJwks")
            .field("issuer", &self.shared.issuer)
            .finish_non_exhaustive()
    }
}

impl TestJwks {
    /// Start with one RS256 key, published and used for signing.
    pub async fn start() -> Result<Self> {
        Self::start_with_key(TestKey::generate(KeyAlg::Rs256)?).await
    }

    /// Start with `key` published and used for signing.
    pub async fn start_with_key(key: TestKey) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| TestkitError::io("binding the test JWKS issuer", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| TestkitError::io("reading the test JWKS address", e))?;
        let shared = Arc::new(Shared {
            issuer: format!("http://{addr}"),
            published: Mutex::new(vec![key.clone()]),
            signing: Mutex::new(key),
            mode: Mutex::new(JwksMode::Up),
            jwks_fetches: AtomicU64::new(0),
            discovery_fetches: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        });
        let mut me = Self {
            addr,
            shared,
            running: None,
        };
        me.serve(listener);
        Ok(me)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .fallback(other)
            .with_state(self.shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        self.running = Some(Running { stop, task });
    }

    /// `http://127.0.0.1:<port>`: the `iss` of its tokens.
    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    /// `<issuer>/jwks`.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.shared.issuer)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Number of `/jwks` requests served (or refused with 500) so far.
    pub fn jwks_fetches(&self) -> u64 {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Number of discovery document requests so far.
    pub fn discovery_fetches(&self) -> u64 {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }

    /// Every request on any path.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    pub fn set_mode(&self, mode: JwksMode) {
        *lock(&self.shared.mode) = mode;
    }

    /// Stop listening: new connections are refused and open keep-alive
    /// connections are closed (graceful shutdown), as when an IdP is down.
    pub async fn go_offline(&mut self) -> Result<()> {
        let Some(running) = self.running.take() else {
            return Ok(());
        };
        let _ = running.stop.send(());
        // Requests in flight (a slow mode) finish first; bound the wait.
        match tokio::time::timeout(Duration::from_secs(15), running.task).await {
            Ok(_) => Ok(()),
            Err(_) => Err(TestkitError::Timeout {
                what: "the test JWKS issuer to shut down".into(),
                waited_ms: 15_000,
                detail: String::new(),
            }),
        }
    }

    /// Listen again on the same port after [`Self::go_offline`].
    pub async fn go_online(&mut self) -> Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .map_err(|e| {
                TestkitError::io(
                    format!("rebinding the test JWKS issuer on {}", self.addr),
                    e,
                )
            })?;
        self.serve(listener);
        Ok(())
    }

    /// The key [`Self::sign`] uses.
    pub fn signing_key(&self) -> TestKey {
        lock(&self.shared.signing).clone()
    }

    /// Publish `key` in the JWKS (in addition to the others).
    pub fn publish(&self, key: &TestKey) {
        let mut keys = lock(&self.shared.published);
        keys.retain(|k| k.kid() != key.kid());
        keys.push(key.clone());
    }

    /// Remove the key with `kid` from the JWKS.
    pub fn unpublish(&self, kid: &str) {
        lock(&self.shared.published).retain(|k| k.kid() != kid);
    }

    /// Kids currently published.
    pub fn published_kids(&self) -> Vec<String> {
        lock(&self.shared.published)
            .iter()
            .map(|k| k.kid().to_string())
            .collect()
    }

    /// Make `key` the signing key (it is not published by this).
    pub fn set_signing_key(&self, key: &TestKey) {
        *lock(&self.shared.signing) = key.clone();
    }

    /// Rotate: generate a key of `alg`, publish it, sign with it from now
    /// on, and (when `drop_old`) unpublish every other key.
    pub fn rotate(&self, alg: KeyAlg, drop_old: bool) -> Result<TestKey> {
        let key = TestKey::generate(alg)?;
        if drop_old {
            *lock(&self.shared.published) = vec![key.clone()];
        } else {
            self.publish(&key);
        }
        self.set_signing_key(&key);
        Ok(key)
    }

    /// A JWS of `claims` with exactly `header`, signed by the signing key
    /// (whatever `header.alg` or `header.kid` say).
    pub fn sign(&self, header: &Value, claims: &Value) -> Result<String> {
        jws::sign(header, claims, &self.signing_key())
    }

    /// A well-formed token: header `{alg, typ: JWT, kid}` of the signing key.
    pub fn sign_claims(&self, claims: &Value) -> Result<String> {
        let key = self.signing_key();
        jws::sign(&Self::header_for(&key), claims, &key)
    }

    /// [`Self::sign_claims`] with the signing key, which is RS256 unless a
    /// test changed it.
    pub fn sign_rs256(&self, claims: &Value) -> Result<String> {
        self.sign_claims(claims)
    }

    /// `{alg, typ: JWT, kid}` for `key`.
    pub fn header_for(key: &TestKey) -> Value {
        json!({"alg": key.alg().as_str(), "typ": "JWT", "kid": key.kid()})
    }

    /// Claims of a valid GitHub-Actions-like token from this issuer for
    /// subject `sub`: `iss`, `aud: "idmint"`, `iat`/`nbf` now, `exp` in 5
    /// minutes, a random `jti`, and the claims the `github-actions` preset
    /// requires (repository `acme/app`, ref `refs/heads/main`, event `push`,
    /// environment `production`…).
    pub fn standard_claims(&self, sub: &str) -> Result<Value> {
        let now = unix_now();
        Ok(json!({
            "iss": self.issuer(),
            "aud": "idmint",
            "sub": sub,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": random_hex(16)?,
            "repository": "acme/app",
            "repository_owner": "acme",
            "repository_id": "4242",
            "ref": "refs/heads/main",
            "ref_type": "branch",
            "sha": "0123456789abcdef0123456789abcdef01234567",
            "workflow": "release",
            "workflow_ref": "acme/app/.github/workflows/release.yml@refs/heads/main",
            "job_workflow_ref": "acme/app/.github/workflows/release.yml@refs/heads/main",
            "actor": "octocat",
            "event_name": "push",
            "run_id": "1001",
            "run_attempt": "1",
            "environment": "production",
        }))
    }

    /// A valid, freshly signed token for the default subject.
    pub fn valid_token(&self) -> Result<String> {
        self.sign_claims(&self.standard_claims("repo:acme/app:ref:refs/heads/main")?)
    }
}

impl Drop for TestJwks {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.task.abort();
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn apply_mode(shared: &Shared) -> Option<Response> {
    let mode = *lock(&shared.mode);
    match mode {
        JwksMode::Up => None,
        JwksMode::Failing => Some(
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "test issuer is failing on purpose",
            )
                .into_response(),
        ),
        JwksMode::Slow(d) => {
            tokio::time::sleep(d).await;
            None
        }
    }
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    shared.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = apply_mode(&shared).await {
        return r;
    }
    Json(json!({
        "issuer": shared.issuer,
        "jwks_uri": format!("{}/jwks", shared.issuer),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
    }))
    .into_response()
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = apply_mode(&shared).await {
        return r;
    }
    let keys: Vec<Value> = lock(&shared.published)
        .iter()
        .map(TestKey::public_jwk)
        .collect();
    Json(json!({ "keys": keys })).into_response()
}

async fn other(State(shared): State<Arc<Shared>>) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    (StatusCode::NOT_FOUND, "no such path on the test issuer").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(url: &str) -> reqwest::Result<reqwest::Response> {
        reqwest::Client::new().get(url).send().await
    }

    #[tokio::test]
    async fn serves_discovery_and_keys_and_counts() {
        let idp = TestJwks::start_with_key(TestKey::generate(KeyAlg::Es256).unwrap())
            .await
            .unwrap();
        let doc: Value = get(&format!(
            "{}/.well-known/openid-configuration",
            idp.issuer()
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(doc["issuer"], idp.issuer());
        assert_eq!(doc["jwks_uri"], idp.jwks_url());
        let set: Value = get(&idp.jwks_url()).await.unwrap().json().await.unwrap();
        let token = idp.valid_token().unwrap();
        let (_, claims) = jws::verify_jwt(&token, &set).unwrap();
        assert_eq!(claims["iss"], idp.issuer());
        assert_eq!(
            (idp.jwks_fetches(), idp.discovery_fetches(), idp.requests()),
            (1, 1, 2)
        );
        assert_eq!(
            get(&format!("{}/x5u", idp.issuer()))
                .await
                .unwrap()
                .status(),
            404
        );
        assert_eq!(idp.requests(), 3);
    }

    #[tokio::test]
    async fn rotates_fails_and_goes_offline() {
        let mut idp = TestJwks::start_with_key(TestKey::generate(KeyAlg::EdDsa).unwrap())
            .await
            .unwrap();
        let old = idp.signing_key();
        let new = idp.rotate(KeyAlg::Es256, true).unwrap();
        assert_eq!(idp.published_kids(), vec![new.kid().to_string()]);
        assert_ne!(old.kid(), new.kid());

        idp.set_mode(JwksMode::Failing);
        assert_eq!(get(&idp.jwks_url()).await.unwrap().status(), 500);
        idp.set_mode(JwksMode::Slow(Duration::from_millis(200)));
        let t = std::time::Instant::now();
        assert_eq!(get(&idp.jwks_url()).await.unwrap().status(), 200);
        assert!(t.elapsed() >= Duration::from_millis(200));
        idp.set_mode(JwksMode::Up);

        idp.go_offline().await.unwrap();
        let fresh = reqwest::Client::new();
        assert!(
            fresh.get(idp.jwks_url()).send().await.is_err(),
            "connection must be refused"
        );
        idp.go_online().await.unwrap();
        assert_eq!(
            fresh.get(idp.jwks_url()).send().await.unwrap().status(),
            200
        );
    }
}
