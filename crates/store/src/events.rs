//! Changes one server makes that the others sharing the store must apply.

use idmint_core::UnixTime;

/// One committed change, as announced by [`crate::Store::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// A session token was denied (logout, revocation) until `expires_at`.
    TokenDenied {
        token_id: String,
        expires_at: UnixTime,
    },
    /// A policy bundle version became active.
    BundleActivated { version: u64 },
    /// A blob (a signing key, a registration…) was written or deleted.
    BlobChanged { name: String },
    /// The feed was interrupted (the database connection was lost and is
    /// back): events may have been missed, so reload everything.
    Resync,
}
