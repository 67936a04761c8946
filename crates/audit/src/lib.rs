//! The tamper-evident audit log of idmint.
//!
//! Every decision and credential becomes one JSON line ([`AuditEvent`]) in an
//! append-only file. Lines are hash-chained (`prev` → `hash`, see [`chain`]),
//! and every `checkpoint_every` events the log appends a checkpoint signed
//! with Ed25519, so a rewrite of the file is detectable by anyone holding the
//! public key ([`verify`]). [`trace`] follows one lease, token, request or
//! fingerprint back to the login and policy decision that produced it.
//!
//! Writing is **fail-closed**: [`AuditLog::append`] resolves only after the
//! event is written and fdatasync'd; if that fails the caller gets an error
//! (and must not hand out the credential) and every later append fails too,
//! until a restart recovers the file. Concurrent appends share one write and
//! one fsync (group commit) on a dedicated writer thread.
//!
//! Credentials never enter the log: they are referred to by a keyed
//! [`Fingerprinter`] fingerprint.

mod batch;
pub mod chain;
mod checkpoint;
mod error;
mod event;
mod fingerprint;
pub mod forward;
mod line_view;
mod lines;
mod log;
mod recovery;
mod sink;
pub mod trace;
pub mod verify;
mod writer;

pub use checkpoint::generate_signing_key;
pub use error::AuditError;
pub use event::{
    detail_keys, kinds, outcomes, AuditDecision, AuditErrorInfo, AuditEvent, AuditIdentity,
    Receipt, SCHEMA_VERSION,
};
pub use fingerprint::{Fingerprinter, FINGERPRINT_PREFIX};
pub use forward::{SinkConfig, SinkStatus, StdoutConfig, SyslogConfig, WebhookConfig};
pub use log::{
    AuditConfig, AuditLog, AuditStats, DEFAULT_CHECKPOINT_EVERY, DEFAULT_MAX_BATCH, MAX_MAX_BATCH,
};
pub use recovery::Recovery;
