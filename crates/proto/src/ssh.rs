//! Wire types of SSH access: the client's session request, and the protocol
//! between the server and `idmint agent` on each SSH host.
//!
//! # Agent protocol (why it looks like this)
//!
//! The agent pulls, the server never connects to hosts: hosts sit behind
//! NAT and firewalls, and a pull keeps the server free of per-host state
//! that would have to survive restarts.
//!
//! * **Enrollment** — an admin creates a single-use join token for a host
//!   declared in the config (`POST /api/v1/ssh/hosts/{host}/join-token`). The
//!   agent generates an Ed25519 *agent key*, sends its public half with the
//!   join token and sshd's host public key ([`EnrollRequest`]) and gets back
//!   a host certificate for sshd and the user CA key sshd must trust
//!   ([`EnrollResponse`]). The server stores only public keys.
//! * **Authentication of every later request** — the agent signs it with
//!   the agent key ([`AGENT_AUTH_SCHEME`]); a signature covers method, path,
//!   time, a nonce and the body hash, so a captured request cannot be
//!   replayed or altered and no bearer secret exists to steal from the
//!   server.
//! * **Desired state, not commands** — `GET /api/v1/agent/grants` returns
//!   *every* live grant for the host ([`AgentGrants`]). The agent
//!   reconciles: it creates accounts for grants it has not seen and removes
//!   every `wl_` account that is no longer listed. A lost message or a
//!   restart of either side therefore converges instead of leaving an
//!   account behind. The request long-polls (`?since=REVISION&wait=SECS`):
//!   it returns at once when the revision moved past `since`, otherwise
//!   after `wait` seconds with the same revision.
//! * **Events** — the agent reports what happened to each grant
//!   ([`AgentEvent`]); the server audits each one, marks the lease active
//!   on [`AgentEventKind::AccountReady`] and revoked on
//!   [`AgentEventKind::AccountRemoved`].

use serde::{Deserialize, Serialize};

/// `Authorization` scheme of agent requests:
///
/// `Authorization: IdmintAgent host="web-1",ts="1732380000",nonce="<32 hex>",sig="<base64url>"`
///
/// `sig` is the Ed25519 signature (agent key) over [`agent_signing_input`].
/// The server accepts `ts` within [`AGENT_CLOCK_SKEW_SECS`] of its clock and
/// each `(host, nonce)` once in that window.
pub const AGENT_AUTH_SCHEME: &str = "IdmintAgent";

/// Allowed difference between the agent's and the server's clock.
pub const AGENT_CLOCK_SKEW_SECS: i64 = 60;

/// Domain separation for agent request signatures, so that a signature
/// can never be valid for any other protocol using the same key.
pub const AGENT_SIGNATURE_CONTEXT: &str = "idmint-agent-request-v1";

/// The exact bytes an agent signs for one request. `path_and_query` is the
/// request target as sent (e.g. `/api/v1/agent/grants?since=3&wait=25`),
/// `body_sha256_hex` the lowercase hex SHA-256 of the body (of the empty
/// string for GET).
pub fn agent_signing_input(
    method: &str,
    path_and_query: &str,
    host: &str,
    ts: i64,
    nonce: &str,
    body_sha256_hex: &str,
) -> String {
    format!(
        "{AGENT_SIGNATURE_CONTEXT}\n{method}\n{path_and_query}\n{host}\n{ts}\n{nonce}\n{body_sha256_hex}"
    )
}

/// Prefix of every just-in-time account name; the agent only ever removes
/// accounts with this prefix.
pub const ACCOUNT_PREFIX: &str = "wl_";

/// `POST /api/v1/ssh/sessions` (session token auth): ask for a one-time
/// certificate and a just-in-time account on `host`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SshSessionRequest {
    /// Host name as declared in the ssh issuer's config.
    pub host: String,
    /// Role to use; when absent the server picks the only `ssh` role the
    /// caller may use on that host, or refuses listing the candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The client's fresh public key, OpenSSH format (`ssh-ed25519 AAAA…`).
    pub public_key: String,
    /// Requested lifetime (`"5m"`); capped by role and policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshSessionResponse {
    pub lease_id: String,
    pub request_id: String,
    pub role: String,
    pub host: String,
    /// The just-in-time account (`wl_…`) the certificate is valid for.
    pub account: String,
    /// OpenSSH certificate line (`ssh-ed25519-cert-v01@openssh.com AAAA…`).
    pub certificate: String,
    /// Where to connect (from the host's config).
    pub address: String,
    pub port: u16,
    /// Unix seconds; the agent ends the session and removes the account then.
    pub expires_at: i64,
    /// `known_hosts` line(s) trusting the host CA for this host
    /// (`@cert-authority …`), so the client never trusts on first use.
    pub known_hosts: String,
    /// Sudo rules granted for the session (`ALL` or command lines).
    pub sudo: Vec<String>,
    pub policy_version: u64,
    /// Keyed fingerprint of the certificate, as audited.
    pub fingerprint: String,
}

/// `POST /api/v1/ssh/sign/{role}` (session token auth): a certificate for a
/// `mode = "certificate"` role's static principals; no agent, no account.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SshSignRequest {
    /// The public key to certify, OpenSSH format (`ssh-ed25519 AAAA…`).
    pub public_key: String,
    /// Requested lifetime (`"5m"`); capped by role and policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshSignResponse {
    pub lease_id: String,
    pub request_id: String,
    pub role: String,
    /// OpenSSH certificate line (`ssh-ed25519-cert-v01@openssh.com AAAA…`).
    pub certificate: String,
    pub principals: Vec<String>,
    pub serial: u64,
    /// Unix seconds (includes a 30 s allowance for clock skew).
    pub valid_after: i64,
    /// Unix seconds; the lease's expiry.
    pub valid_before: i64,
    pub policy_version: u64,
    /// Keyed fingerprint of the certificate, as audited.
    pub fingerprint: String,
    /// OpenSSH fingerprint of the certified public key (`SHA256:…`).
    pub key_fingerprint: String,
}

/// `GET /api/v1/ssh/ca` (public): the CA keys, for `idmint ssh known-hosts`
/// and `idmint agent install`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshCaKeys {
    /// One entry per ssh issuer.
    pub issuers: Vec<SshIssuerCa>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshIssuerCa {
    pub issuer: String,
    /// OpenSSH public key line sshd trusts (`TrustedUserCAKeys`).
    pub user_ca: String,
    /// OpenSSH public key line clients trust (`@cert-authority`).
    pub host_ca: String,
}

/// `POST /api/v1/ssh/hosts/{host}/join-token` (admin).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinTokenResponse {
    pub host: String,
    /// Single-use; shown once. Starts with `idm_join_`.
    pub join_token: String,
    pub expires_at: i64,
}

/// `POST /api/v1/agent/enroll` (join token in the body, no other auth).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub host: String,
    pub join_token: String,
    /// The agent's request-signing key, OpenSSH format `ssh-ed25519 AAAA…`.
    pub agent_public_key: String,
    /// sshd's host public key to certify, OpenSSH format.
    pub host_public_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub host: String,
    /// Host certificate for `host_public_key` (sshd `HostCertificate`).
    pub host_certificate: String,
    /// User CA public key line for sshd `TrustedUserCAKeys`.
    pub user_ca: String,
}

/// `GET /api/v1/agent/grants?since=R&wait=S` (agent auth): the full desired
/// state of the host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentGrants {
    /// Increases whenever the set of live grants for this host changes.
    pub revision: u64,
    pub grants: Vec<HostGrant>,
    /// Server time (Unix seconds), so the agent can detect clock skew.
    pub now: i64,
}

/// One live grant: an account that must exist until `expires_at`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostGrant {
    pub lease_id: String,
    /// `wl_` + lowercase hex; chosen by the server, never by the caller.
    pub account: String,
    /// Login shell (absolute path; validated against the role).
    pub shell: String,
    /// `["ALL"]`, absolute command lines, or empty for no sudo.
    pub sudo: Vec<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// For the agent's logs and events: `request id` + `subject`.
    pub key_id: String,
}

/// `POST /api/v1/agent/events` (agent auth).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentEvent {
    pub lease_id: String,
    pub account: String,
    /// Agent time (Unix seconds) when it happened.
    pub at: i64,
    pub kind: AgentEventKind,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEventKind {
    /// The account exists and its sudoers drop-in (if any) is installed.
    AccountReady { uid: u32, sudo_rules: usize },
    /// Creating the account failed; nothing is left of it.
    AccountFailed { reason: String },
    /// The first process of the account appeared (an SSH login).
    SessionStarted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
    /// The account's last process exited, or the agent ended the session.
    SessionEnded {
        duration_secs: u64,
        /// `logout`, `expired`, `revoked`.
        reason: String,
    },
    /// The account, its home, sudoers drop-in and processes are gone.
    AccountRemoved { residue: ResidueReport },
}

/// What the post-removal check found. `clean` is true only when nothing of
/// the account remained, or everything found was removed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ResidueReport {
    pub clean: bool,
    /// Things found after removal that were then removed (e.g. a file owned
    /// by the old uid in /tmp).
    pub removed: Vec<String>,
    /// Things that could not be removed; non-empty means `clean == false`.
    pub remaining: Vec<String>,
}

/// `POST /api/v1/agent/events` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentEventAck {
    pub accepted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_input_separates_every_field() {
        let a = agent_signing_input("GET", "/a", "h", 1, "n", "x");
        let b = agent_signing_input("GET", "/a\nh", "", 1, "n", "x");
        assert_ne!(a, b);
        assert!(a.starts_with(AGENT_SIGNATURE_CONTEXT));
    }

    #[test]
    fn event_kinds_are_tagged() {
        let e = AgentEvent {
            lease_id: "l".into(),
            account: "wl_1".into(),
            at: 5,
            kind: AgentEventKind::SessionEnded {
                duration_secs: 3,
                reason: "logout".into(),
            },
        };
        let v = serde_json::to_value(&e).unwrap_or_default();
        assert_eq!(v["kind"]["type"], "session_ended");
        let back: AgentEvent = serde_json::from_value(v).unwrap_or_else(|_| e.clone());
        assert_eq!(back, e);
    }
}
