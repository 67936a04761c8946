//! The one error type of the store crate.
//!
//! Variants say *who* must act: `Backend` is transient or operational (the
//! database is unreachable, the disk is full), `Conflict`/`NotFound` are the
//! caller's business, `Corrupt`/`Migration` need an operator, `RootKey` is a
//! configuration mistake, `Seal`/`Unseal` concern secrets at rest.

/// Errors returned by every [`crate::Store`] backend and by [`crate::Envelope`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend could not run the operation (I/O error, lock timeout,
    /// writer stopped). Retrying later may succeed.
    #[error("store unavailable: {0}")]
    Backend(String),
    /// The write conflicts with existing data (e.g. a duplicate lease id).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The record the operation refers to does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Data read back from the store does not parse; an operator must look.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The schema could not be brought to the version this binary needs.
    /// The message is complete and says what to do.
    #[error("{0}")]
    Migration(String),
    /// The store is configured wrongly (a bad URL, an impossible pool size,
    /// TLS without a CA file). The message names the key and says what to
    /// change.
    #[error("{0}")]
    Config(String),
    /// The root key could not be loaded or created. The message names the
    /// file or variable and says how to fix it.
    #[error("{0}")]
    RootKey(String),
    /// Sealing a secret failed (the system random number generator failed).
    #[error("sealing a secret failed: {0}")]
    Seal(String),
    /// A sealed value did not open: wrong root key, wrong purpose, truncated
    /// or tampered with. Never says which, so it gives an attacker nothing.
    #[error("cannot open the sealed value for `{0}`: wrong root key, or the data was altered or copied from another purpose")]
    Unseal(String),
}
