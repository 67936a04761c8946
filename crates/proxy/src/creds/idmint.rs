//! Credentials from the idmint server, obtained as this host for the
//! calling process.
//!
//! The proxy signs `POST /api/v1/agent/attest` with the host's enrolled
//! agent key (`idmint agent enroll`), vouching for the process facts it
//! read from `/proc`. The server maps those facts to a subject with its own
//! `[[auth.unix]]` bindings and answers with a session; the proxy refuses
//! the session unless its subject is the identity the proxy's own
//! `[[bindings]]` chose (two configurations that disagree must not let a
//! process act as someone else). With the session it calls
//! `POST /api/v1/creds/{role}`, under the server's policy for that subject.
//!
//! Sessions are cached per *process class* (identity, uid, gid,
//! executable, its hash, cgroup): everything the server's bindings can
//! select on. A short-lived `curl` run every minute therefore reuses the
//! session of the previous run instead of logging in each time; pid and
//! start time in the attestation are those of the first process of the
//! class. Credentials are cached per process class and role.

use super::cache::{refresh_in, CredentialCache, FetchError, Fetched};
use super::minted::Minted;
use crate::peer::ProcessInfo;
use crate::sources::IdmintSettings;
use idmint_agent::{AgentError, AgentKey, ServerLink, StateDir};
use idmint_core::Secret;
use idmint_proto::unix::{AttestLoginRequest, ProcessAttestation};
use idmint_proto::CredsRequest;
use std::sync::Arc;
use std::time::Duration;

/// Why the idmint link could not be set up at startup.
#[derive(Debug, thiserror::Error)]
pub enum IdmintSetupError {
    #[error(
        "[idmint] agent_state_dir {dir} does not exist: enroll this host first \
         (`idmint agent enroll --server URL --host NAME --join-token -`), or point \
         agent_state_dir at the enrolled agent's state directory"
    )]
    NoStateDir { dir: std::path::PathBuf },
    #[error("[idmint] cannot use the enrolled agent in {dir}: {source}")]
    Agent {
        dir: std::path::PathBuf,
        source: AgentError,
    },
}

/// Everything the server's `[[auth.unix]]` bindings can select on, plus
/// the identity the proxy chose: one session per distinct value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProcessClass {
    pub identity: String,
    pub uid: u32,
    pub gid: u32,
    pub exe: String,
    pub exe_sha256: String,
    pub cgroup: String,
}

/// A session for one process class.
#[derive(Debug)]
pub struct Session {
    token: Secret<String>,
}

/// The proxy's link to the idmint server.
pub struct IdmintLink {
    link: ServerLink,
    key: AgentKey,
    host: String,
    auth: Option<String>,
    refresh_before: Duration,
    sessions: CredentialCache<ProcessClass, Session>,
    credentials: CredentialCache<(ProcessClass, String), Minted>,
}

impl std::fmt::Debug for IdmintLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdmintLink")
            .field("server", &self.link.base_url())
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// Seconds from now until the server's `expires_at` (unix seconds).
fn lifetime_until(expires_at: i64) -> Duration {
    let now = idmint_core::UnixTime::now().secs();
    Duration::from_secs(u64::try_from(expires_at.saturating_sub(now)).unwrap_or(0))
}

/// Outages may be bridged with a cached value; refusals may not.
fn classify(what: &str, e: AgentError) -> FetchError {
    match e {
        AgentError::Http { .. } => {
            FetchError::unavailable(format!("cannot reach the idmint server ({what}): {e}"))
        }
        AgentError::Server { status, .. } if status >= 500 || status == 429 || status == 408 => {
            FetchError::unavailable(format!("the idmint server failed ({what}): {e}"))
        }
        AgentError::Server {
            status: 401 | 403, ..
        } => FetchError::refused(403, format!("the idmint server refused ({what}): {e}")),
        other => FetchError::refused(502, format!("idmint ({what}): {other}")),
    }
}

impl IdmintLink {
    /// Load the enrolled agent's key and enrollment (`server` defaults to
    /// the enrolled one).
    pub fn new(settings: &IdmintSettings) -> Result<Self, IdmintSetupError> {
        let dir = settings.agent_state_dir.clone();
        if !dir.is_dir() {
            return Err(IdmintSetupError::NoStateDir { dir });
        }
        let agent = |source| IdmintSetupError::Agent {
            dir: dir.clone(),
            source,
        };
        let state = StateDir::open(&dir).map_err(agent)?;
        let enrollment = state.require_enrollment().map_err(agent)?;
        let key = AgentKey::load(&state).map_err(agent)?;
        let server = settings
            .server
            .clone()
            .unwrap_or_else(|| enrollment.server.clone());
        let link = ServerLink::new(&server, settings.ca_file.as_deref()).map_err(agent)?;
        Ok(Self {
            link,
            key,
            host: enrollment.host,
            auth: settings.auth.clone(),
            refresh_before: settings.refresh_before,
            sessions: CredentialCache::new(settings.retry_after),
            credentials: CredentialCache::new(settings.retry_after),
        })
    }

    /// Attest calls made so far (tests).
    pub fn session_fetches(&self) -> u64 {
        self.sessions.fetch_count()
    }

    /// Credential fetches made so far (tests).
    pub fn credential_fetches(&self) -> u64 {
        self.credentials.fetch_count()
    }

    /// The credential of `role` for the process, from the cache or the
    /// server.
    pub async fn credential(
        &self,
        identity: &str,
        process: &ProcessInfo,
        role: &str,
    ) -> Result<Arc<Minted>, FetchError> {
        let Some(exe_sha256) = process.exe_sha256.clone() else {
            return Err(FetchError::refused(
                403,
                format!(
                    "the executable of process {} ({}) could not be hashed, so the process \
                     cannot be attested to the idmint server",
                    process.pid,
                    process.exe.display()
                ),
            ));
        };
        let attestation = process.attestation(exe_sha256);
        let class = ProcessClass {
            identity: identity.to_string(),
            uid: attestation.uid,
            gid: attestation.gid,
            exe: attestation.exe.clone(),
            exe_sha256: attestation.exe_sha256.clone(),
            cgroup: process.cgroup.clone(),
        };
        let key = (class.clone(), role.to_string());
        self.credentials
            .get(&key, role, || {
                self.fetch_credential(&class, attestation, role)
            })
            .await
    }

    async fn session(
        &self,
        class: &ProcessClass,
        attestation: ProcessAttestation,
    ) -> Result<Arc<Session>, FetchError> {
        let what = format!("session for {}", class.identity);
        self.sessions
            .get(class, &what, || async {
                let request = AttestLoginRequest {
                    auth: self.auth.clone(),
                    process: attestation,
                };
                let pid = request.process.pid;
                let response = self
                    .link
                    .attest(&self.key, &self.host, &request)
                    .await
                    .map_err(|e| classify("attesting the process", e))?;
                let token = Secret::new(response.token);
                let subject = response.identity.subject;
                if subject != class.identity {
                    return Err(FetchError::refused(
                        403,
                        format!(
                            "subject mismatch: the idmint server maps process {pid} ({}, uid {}) \
                             to subject `{}`, but this proxy's [[bindings]] give it identity \
                             `{}`; the proxy's bindings and the server's [[auth.unix]] bindings \
                             disagree, fix one of them",
                            class.exe,
                            class.uid,
                            subject.escape_debug(),
                            class.identity
                        ),
                    ));
                }
                let lifetime = lifetime_until(response.expires_at);
                if lifetime.is_zero() {
                    return Err(FetchError::unavailable(
                        "the idmint server returned a session that has already expired \
                         (check both clocks)",
                    ));
                }
                Ok(Fetched {
                    value: Session { token },
                    refresh_in: refresh_in(lifetime, self.refresh_before),
                    expires_in: lifetime,
                })
            })
            .await
    }

    async fn fetch_credential(
        &self,
        class: &ProcessClass,
        attestation: ProcessAttestation,
        role: &str,
    ) -> Result<Fetched<Minted>, FetchError> {
        let request = CredsRequest::default();
        let session = self.session(class, attestation.clone()).await?;
        let mut result = self
            .link
            .creds(session.token.expose(), role, &request)
            .await;
        if matches!(result, Err(AgentError::Server { status: 401, .. })) {
            // The session was revoked or expired early: log in again once.
            self.sessions.invalidate(class).await;
            let session = self.session(class, attestation).await?;
            result = self
                .link
                .creds(session.token.expose(), role, &request)
                .await;
        }
        let response =
            result.map_err(|e| classify(&format!("minting a credential of role `{role}`"), e))?;
        let lifetime = lifetime_until(response.expires_at);
        if lifetime.is_zero() {
            return Err(FetchError::unavailable(format!(
                "the idmint server returned an already expired credential for role `{role}` \
                 (check both clocks)"
            )));
        }
        let mut value = Minted::from_credential(response.credential, role)?;
        value.lease_id = Some(response.lease_id);
        Ok(Fetched {
            value,
            refresh_in: refresh_in(lifetime, self.refresh_before),
            expires_in: lifetime,
        })
    }
}
