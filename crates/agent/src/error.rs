//! The agent's error type: every variant names what failed and, where the
//! operator can do something, what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A name that is not `wl_` + 6..32 lowercase hex digits. Names come
    /// from the server and are checked before any command sees them.
    #[error(
        "refusing account name {name:?}: expected `wl_` followed by 6 to 32 lowercase hex digits"
    )]
    InvalidAccountName { name: String },

    /// A login shell that is not an absolute path to an executable file.
    #[error("refusing login shell {shell:?}: {why}")]
    InvalidShell { shell: String, why: String },

    /// A sudo rule that could widen what the drop-in grants.
    #[error("refusing sudo rule {rule:?}: {why}")]
    InvalidSudoRule { rule: String, why: String },

    /// A host name that cannot appear in the agent's `Authorization` header.
    #[error("refusing host name {host:?}: use letters, digits, `.`, `-` and `_` only (at most 253 characters)")]
    InvalidHostName { host: String },

    /// A program could not be started at all.
    #[error("could not run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    /// A program ran and failed.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },

    /// `visudo -cf` refused the generated drop-in; nothing was installed.
    #[error("visudo rejected the sudoers drop-in for {account}; nothing was installed: {stderr}")]
    SudoersRejected { account: String, stderr: String },

    /// A file operation failed.
    #[error("{what} ({}): {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A state file exists but cannot be understood.
    #[error("state file {} is unreadable: {message}; move it away to start over (enforcement of cached grants is lost)", .path.display())]
    CorruptState { path: PathBuf, message: String },

    /// Every uid of the configured range was handed out once already.
    #[error("no unused uid left in {start}..{end}: uids are never reused; widen the range with --uid-range")]
    UidRangeExhausted { start: u32, end: u32 },

    /// The agent has not been enrolled with a server yet.
    #[error("this host is not enrolled (no {}): run `idmint agent enroll --server URL --host NAME --join-token -` first", .path.display())]
    NotEnrolled { path: PathBuf },

    /// The agent key could not be created, read or used.
    #[error("agent key: {0}")]
    Key(String),

    /// The server could not be reached or the exchange failed on the way.
    #[error("{method} {url}: {message}")]
    Http {
        method: &'static str,
        url: String,
        message: String,
    },

    /// The server answered with an error status.
    #[error("{method} {url}: server answered {status}: {message}")]
    Server {
        method: &'static str,
        url: String,
        status: u16,
        message: String,
    },

    /// A configuration value is unusable.
    #[error("{0}")]
    Config(String),
}

impl AgentError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AgentError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// Whether retrying the same request later can succeed (network
    /// trouble, a server error, throttling, a clock-skew refusal), as
    /// opposed to a request the server will never accept.
    pub fn is_retryable(&self) -> bool {
        match self {
            AgentError::Http { .. } => true,
            AgentError::Server { status, .. } => {
                *status >= 500 || *status == 401 || *status == 408 || *status == 429
            }
            _ => false,
        }
    }
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;
