//! Policy governance: a policy change is a *draft* that becomes the active
//! bundle only when enough admins other than its author approve it (the
//! two-person rule), or, in an emergency, through a time-boxed break-glass
//! activation that reverts unless a second person confirms it.
//!
//! Who may draft and who may approve is itself policy: the Cedar actions
//! `Action::"policy::draft"` and `Action::"policy::approve"` on
//! `Server::"idmint"`, evaluated against the *active* bundle (never the
//! draft's own), the same way `Action::"admin"` is. The first bundle comes
//! from the configuration's policy directory, which therefore bootstraps
//! who governs.
//!
//! Drafts are stored as JSON blobs (`policy/draft/<id>`) so every backend
//! works without schema changes; activation goes through
//! [`idmint_store::Store::activate_bundle_if`], a compare-and-set on the
//! active version, so two servers approving at once yield exactly one new
//! version and a draft made against an older version can never activate.

pub mod activation;
pub mod config;
pub mod diff;
pub mod draft;
pub mod impact;
pub mod prune;
pub mod sync;

pub use config::GovernanceSection;

use crate::state::AppState;
use idmint_core::{Identity, RequestContext, UnixTime};

/// Cedar action that lets a principal create drafts and rollbacks.
pub const ACTION_DRAFT: &str = "policy::draft";
/// Cedar action that lets a principal approve or reject drafts.
pub const ACTION_APPROVE: &str = "policy::approve";

/// Governance configuration plus the lock that serialises read-modify-write
/// of draft blobs within this server.
///
/// Across servers two approvals of one draft can still race on the blob;
/// that can lose an approval record (the approver retries) but never
/// activates twice or activates a stale draft, because activation itself is
/// the store's compare-and-set.
pub struct Governance {
    pub config: GovernanceSection,
    pub drafts_lock: tokio::sync::Mutex<()>,
}

impl Governance {
    pub fn new(config: GovernanceSection) -> Self {
        Self {
            config,
            drafts_lock: tokio::sync::Mutex::new(()),
        }
    }
}

/// Whether the active policy permits `action` on `Server::"idmint"` for
/// `identity` (how `admin` is checked too).
pub fn permits(state: &AppState, identity: &Identity, action: &str) -> bool {
    let ctx = RequestContext {
        now: UnixTime::now().secs(),
        ..Default::default()
    };
    state
        .bundle
        .load()
        .evaluate(identity, action, None, &ctx)
        .allowed
}
