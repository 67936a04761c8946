//! The one error type every issuer returns.

/// Why an issuer could not plan, mint or revoke a credential.
///
/// The variants map onto how the server answers: `Config` and `Internal` are
/// idmint's own fault (500, fix the configuration or report a bug), `Target`
/// is the downstream system's fault (502/503 naming it, retried by the
/// reaper when `retryable`).
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The issuer or the role is configured in a way that cannot work.
    #[error("issuer configuration error: {0}")]
    Config(String),
    /// The target system (cloud, database, host) failed or refused.
    #[error("target {target:?} failed: {message}")]
    Target {
        /// Name of the target, as the operator knows it (config name or host).
        target: String,
        message: String,
        /// True when trying again later may succeed (timeouts, 5xx, throttling).
        retryable: bool,
    },
    /// A bug or an environment failure inside idmint (RNG, serialization).
    #[error("internal issuer error: {0}")]
    Internal(String),
    /// The issuer will not hand this credential to this caller, whatever
    /// the policy says (a static secret asked for by anything but `idmint
    /// proxy`). Answered 403 with `code`; retrying does not help.
    #[error("{message}")]
    Refused {
        /// The API error code, e.g. `static_secret_proxy_only`.
        code: &'static str,
        message: String,
    },
    /// What the credential is made of does not exist (a static secret no
    /// admin has stored yet). Answered 503 with `code`; an admin must act.
    #[error("{message}")]
    Missing {
        /// The API error code, e.g. `static_secret_missing`.
        code: &'static str,
        message: String,
    },
}

impl IssueError {
    /// The API error code of [`IssueError::Refused`] and
    /// [`IssueError::Missing`]; `None` for the others.
    pub fn api_code(&self) -> Option<&'static str> {
        match self {
            IssueError::Refused { code, .. } | IssueError::Missing { code, .. } => Some(code),
            IssueError::Config(_) | IssueError::Target { .. } | IssueError::Internal(_) => None,
        }
    }

    /// Whether the same call may succeed if retried later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            IssueError::Target {
                retryable: true,
                ..
            }
        )
    }
}

/// `err`'s message followed by its causes (`a: b: c`). HTTP and database
/// clients often say only "error sending request" at the top; the cause
/// (e.g. "connection refused") is what an operator can act on.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
