//! Errors of the audit log.

use std::path::PathBuf;

/// Everything that can go wrong opening, writing, or reading an audit log.
///
/// The server maps [`AuditError::Unavailable`] and [`AuditError::Closed`]
/// from `append` to HTTP 503: without a durable audit event no credential may
/// be returned.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("invalid audit configuration: {0}")]
    Config(String),

    #[error(
        "cannot open audit log {}: {source}; check that the directory exists and is writable by the server user",
        .path.display()
    )]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "audit log {} is damaged: {reason}; refusing to extend it. Run `idmint audit verify {}` and move the file aside to start a new chain",
        .path.display(), .path.display()
    )]
    Corrupt { path: PathBuf, reason: String },

    #[error("the audit checkpoint signing key is unusable: {0}")]
    SigningKey(String),

    #[error(
        "audit log unavailable: {reason}; no credential may be issued until the audit sink is fixed and the server is restarted"
    )]
    Unavailable { reason: String },

    #[error("the audit log has been closed; no further events are accepted")]
    Closed,

    #[error("invalid audit event: {0}")]
    InvalidEvent(String),

    #[error(
        "invalid trace reference {0:?}: give a lease id (lse_…), token id (tok_…), request id (req_…), fingerprint (fp_…), SSH certificate serial, account, access key id or database user name"
    )]
    InvalidReference(String),

    #[error("cannot read audit log {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot start the audit writer thread: {0}")]
    Spawn(#[source] std::io::Error),
}

impl AuditError {
    pub(crate) fn unavailable(reason: impl Into<String>) -> Self {
        AuditError::Unavailable {
            reason: reason.into(),
        }
    }
}
