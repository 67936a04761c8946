//! The one error type of the test kit.
//!
//! Every variant says which peer or step failed and carries what a person
//! debugging a red CI run needs (the command, the URL, the log tail), so a
//! failing integration test explains itself without a rerun.

use std::path::PathBuf;

/// What went wrong while starting, driving or stopping a test peer.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A peer process exited while it was expected to run.
    #[error("{peer} exited early ({status}); last output:\n{log_tail}")]
    EarlyExit {
        peer: String,
        status: String,
        log_tail: String,
    },
    /// A wait with a deadline ran out.
    #[error("timed out after {waited_ms} ms waiting for {what}{}", detail_suffix(.detail))]
    Timeout {
        what: String,
        waited_ms: u128,
        detail: String,
    },
    /// An HTTP exchange with a peer failed or answered unexpectedly.
    #[error("HTTP {method} {url}: {message}")]
    Http {
        method: &'static str,
        url: String,
        message: String,
    },
    /// A peer answered with something that is not what its protocol says.
    #[error("{peer}: unexpected answer: {message}")]
    Protocol { peer: String, message: String },
    /// A key could not be generated or used.
    #[error("key material: {0}")]
    Key(String),
    /// A JWT could not be built, parsed or verified.
    #[error("JWT: {0}")]
    Jwt(String),
    /// Something the test kit needs is missing on this machine.
    #[error("{what} is missing at {}: {hint}", .path.display())]
    Missing {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    /// A configuration could not be rendered.
    #[error("rendering {what}: {message}")]
    Render { what: &'static str, message: String },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl TestkitError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        TestkitError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn http(
        method: &'static str,
        url: impl Into<String>,
        message: impl std::fmt::Display,
    ) -> Self {
        TestkitError::Http {
            method,
            url: url.into(),
            message: message.to_string(),
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = TestkitError> = std::result::Result<T, E>;
