//! Domain types of idmint: identities, roles, leases, policy evaluation.
//!
//! This crate does no I/O. Everything here is a pure function of its inputs so
//! that the request path (proof → identity → decision → credential) can be
//! tested one step at a time. Crypto primitives that several crates share
//! (sealing, random ids) live here too because they are pure as well.

pub mod duration;
pub mod identity;
pub mod ids;
pub mod lease;
pub mod policy;
pub mod role;
pub mod seal;
pub mod secret;
pub mod session;
pub mod time;

pub use duration::Ttl;
pub use identity::{Identity, IdentityKind};
pub use ids::{LeaseId, RequestId, TokenId};
pub use lease::{Lease, LeaseState, RevocationHandle};
pub use policy::{Decision, HostContext, PolicyBundle, PolicyError, RequestContext};
pub use role::{DeliverTo, StaticSecretTemplate};
pub use role::{
    Grant, GrantRequest, NarrowError, Role, RoleError, SshMode, SshTemplate, X509Template,
};
pub use seal::{SealError, SealKey};
pub use secret::Secret;
pub use session::{SessionClaims, SessionError, SessionSealer};
pub use time::UnixTime;
