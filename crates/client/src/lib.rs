//! Rust client for idmint's HTTP API.
//!
//! [`IdmintClient`] wraps the native API (`/api/v1/`), the RFC 8693 token
//! endpoint (`/oauth/token`), health and discovery endpoints and, for
//! development servers, the built-in demo IdP. Request and response bodies
//! are the wire types of `idmint-proto`, so a field rename breaks the build
//! of server and client alike instead of failing at run time.
//!
//! [`ci`] finds the OIDC token a CI system hands to a job (GitHub Actions,
//! GitLab CI, Kubernetes), so `idmint login` works without flags in CI.
//!
//! Tokens never appear in `Debug`/`Display` output of anything in this crate:
//! they are held in [`SecretString`] and errors never echo request bodies.

mod anomaly;
pub mod ci;
mod client;
mod error;
mod governance;
mod params;
mod response;
mod secret;
mod secrets;
mod ssh;
mod ssh_key;
mod unix;

pub use client::{normalize_base_url, ClientOptions, IdmintClient, USER_AGENT};
pub use error::ClientError;
pub use params::{DemoTokenRequest, LeaseQuery, TokenExchangeParams, TokenType};
pub use secret::SecretString;
pub use ssh_key::SshKeyPair;
pub use unix::{unix_login, DEFAULT_SOCKET};

/// Wire types, re-exported so that users of the client need no second
/// dependency to name request and response bodies.
pub use idmint_proto as proto;

#[cfg(test)]
mod test_server;
