//! `idmint agent enroll`: join the server once with a single-use token.

use crate::error::{AgentError, Result};
use crate::signing::{check_host_name, AgentKey};
use crate::state::{Enrollment, StateDir};
use crate::transport::ServerLink;
use idmint_core::{Secret, UnixTime};
use idmint_proto::ssh::EnrollRequest;
use std::path::{Path, PathBuf};

/// What enrollment produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EnrollOutcome {
    pub host: String,
    pub server: String,
    pub agent_public_key: String,
    pub host_certificate_path: PathBuf,
    pub user_ca_path: PathBuf,
}

/// Generate a fresh agent key, send its public half with the join token
/// and sshd's host public key, and store what comes back (host
/// certificate, user CA, enrollment record) in the state directory.
pub async fn enroll(
    state: &StateDir,
    link: &ServerLink,
    host: &str,
    join_token: Secret<String>,
    host_public_key: &Path,
) -> Result<EnrollOutcome> {
    check_host_name(host)?;
    let host_key_line = std::fs::read_to_string(host_public_key)
        .map_err(|e| AgentError::io("reading sshd's host public key", host_public_key, e))?;
    let host_key_line = host_key_line.trim().to_string();
    if !host_key_line.starts_with("ssh-") && !host_key_line.starts_with("ecdsa-") {
        return Err(AgentError::Config(format!(
            "{} is not an OpenSSH public key (pass the .pub file, e.g. /etc/ssh/ssh_host_ed25519_key.pub)",
            host_public_key.display()
        )));
    }
    let key = AgentKey::generate(state)?;
    let request = EnrollRequest {
        host: host.to_string(),
        join_token: join_token.expose().trim().to_string(),
        agent_public_key: key.openssh_public_key(),
        host_public_key: host_key_line,
    };
    let response = link.enroll(&request).await;
    // The token is single-use; drop our copy of it before anything else.
    drop(request);
    let response = response?;
    if response.host != host {
        return Err(AgentError::Config(format!(
            "the server enrolled host {:?}, not {host:?}; check --host",
            response.host
        )));
    }
    state.write(
        file_name(&state.host_cert_path()),
        format!("{}\n", response.host_certificate.trim()).as_bytes(),
        0o644,
    )?;
    state.write(
        file_name(&state.user_ca_path()),
        format!("{}\n", response.user_ca.trim()).as_bytes(),
        0o644,
    )?;
    state.save_enrollment(&Enrollment {
        server: link.base_url().to_string(),
        host: host.to_string(),
        host_public_key_path: host_public_key.to_path_buf(),
        enrolled_at: UnixTime::now().secs(),
    })?;
    Ok(EnrollOutcome {
        host: host.to_string(),
        server: link.base_url().to_string(),
        agent_public_key: key.openssh_public_key(),
        host_certificate_path: state.host_cert_path(),
        user_ca_path: state.user_ca_path(),
    })
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}
