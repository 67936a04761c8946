//! The `unix` authentication method: a local process proves who it is by
//! what the kernel says about it, not by a secret it holds.
//!
//! Two ways in, one matcher on the server (`[[auth.unix]]`):
//! - **Local socket**: `POST /api/v1/auth/unix/login` over the server's own
//!   Unix socket (`[server] unix_socket`). The server reads the peer's
//!   `SO_PEERCRED` and `/proc/<pid>` itself; the body only picks the auth
//!   config.
//! - **Attested by a host**: `POST /api/v1/agent/attest`, signed with an
//!   enrolled host's agent key (`Authorization: IdmintAgent …`, see
//!   [`crate::ssh`]). The host (its `idmint proxy` or agent) read the
//!   process facts from its own `/proc` and vouches for them; the server
//!   accepts them only from hosts the auth config trusts, and still decides
//!   the identity from its own bindings.

use serde::{Deserialize, Serialize};

/// Facts about one process, read from the kernel (`/proc/<pid>`), never
/// supplied by the process itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessAttestation {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot): with `pid`,
    /// names one process even after the pid is reused.
    pub start_time: u64,
    /// Effective uid and gid.
    pub uid: u32,
    pub gid: u32,
    /// `/proc/<pid>/exe`, resolved.
    pub exe: String,
    /// Lower-case hex SHA-256 of the executable's content.
    pub exe_sha256: String,
    /// cgroup v2 path (`/system.slice/billing.service`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

/// `POST /api/v1/auth/unix/login` (only over the server's Unix socket).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnixLoginRequest {
    /// Name of the `[[auth.unix]]` config; the only one when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
}

/// `POST /api/v1/agent/attest` (signed by an enrolled host's agent key).
/// Answered with a [`crate::LoginResponse`] for the process's identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestLoginRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    pub process: ProcessAttestation,
}
