//! Integration-test kit for idmint: every test starts its own real
//! processes and they all die with the test.
//!
//! - [`IdmintServer`]: the real `idmint` binary with a generated
//!   `idmint.toml` ([`ServerSpec`], [`OidcSpec`]) in a temp dir, on a free
//!   loopback port; stop/restart keep its data.
//! - [`Idp`]: the real OIDC provider (`oidc-provider` on Node) from
//!   `testbed/oidc-idp`, with per-test claims via dynamic registration.
//! - [`TestJwks`]: an in-process issuer the test fully controls (keys,
//!   rotation, outages, slowness, arbitrary — also hostile — tokens).
//! - [`Cli`]: the `idmint` CLI run hermetically with a deadline.
//! - [`poll_until`]: waiting by polling with a deadline, never by sleeping.
//! - [`JitNamespace`], [`Sshd`], [`SshKey`]: a private mount namespace for
//!   just-in-time account tests, the real sshd inside it, and test CAs and
//!   certificates (root only; TESTBED §3).
//!
//! Peers are foreground children ([`Peer`]) killed and reaped on drop, also
//! when a test panics; a failing test prints the server's output.

pub mod api;
pub mod audit;
pub mod aws_tap;
pub mod cli;
pub mod config;
pub mod error;
pub mod fake_graph;
pub mod fixtures;
pub mod idp;
pub mod jit_ns;
pub mod jws;
pub mod keys;
pub mod mariadb;
pub mod metrics;
pub mod moto;
pub mod openbao;
pub mod postgres;
pub mod process;
pub mod rabbitmq;
pub mod redis;
pub mod server;
pub mod small_disk;
pub mod sshd;
pub mod test_jwks;
pub mod upstream_cert;
pub mod wait;

pub use api::{ApiResponse, RawApi};
pub use cli::{Cli, CliOutput};
pub use config::{OidcSpec, ServerSpec};
pub use error::{Result, TestkitError};
pub use idp::{Idp, IdpOptions};
pub use jit_ns::JitNamespace;
pub use keys::{KeyAlg, TestKey};
pub use metrics::metric_value;
pub use openbao::OpenBao;
pub use process::{free_port, workspace_root, Peer};
pub use server::IdmintServer;
pub use small_disk::SmallDisk;
pub use sshd::{SshKey, Sshd, SshdOptions};
pub use test_jwks::{unix_now, JwksMode, TestJwks};
pub use upstream_cert::write_upstream_cert;
pub use wait::poll_until;

/// The TOML crate the specs are built with, for tests that set values.
pub use toml;
