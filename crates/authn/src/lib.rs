//! Identity proofs for idmint: OIDC/JWT verification and the JWKS cache.
//!
//! A caller presents a JWT from its CI system, cluster or IdP; an
//! [`OidcVerifier`] checks it against one `[[auth.oidc]]` config and turns it
//! into an [`idmint_core::Identity`] built only from verified facts. The
//! [`OidcAuthenticator`] routes a token to the verifier of its issuer.
//!
//! Signatures are verified with `ring` directly (no JWT library) so that
//! header handling is fully under our control: strict compact parsing,
//! duplicate JSON keys refused, `none`/HMAC unrepresentable, `crit` refused,
//! and key-bearing headers (`jku`, `x5u`, `x5c`, `jwk`) ignored — keys come
//! only from the configured JWKS.
//!
//! Module map: `jws` (parsing) → `alg` + `jwk` (keys) → `jwks` (cache) →
//! `claims` + `preset` (checks) → `replay` → `oidc` (the public verifiers);
//! `config` and `error` hold the configuration and error types, `clock` the
//! injectable time source.

mod alg;
pub mod approle;
pub mod aws_iam;
mod claims;
mod clock;
mod config;
mod error;
mod jwk;
mod jwks;
mod jws;
pub mod mtls;
mod oidc;
mod preset;
mod replay;
pub mod unix;
pub mod userinfo;

pub use approle::{AppRoleConfig, AppRoleError, AppRoles};
pub use aws_iam::{AwsIamAuth, AwsIamConfig, AwsIamError};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{OidcConfig, Preset};
pub use error::{AuthnError, ConfigError};
pub use jwks::JwksStats;
pub use mtls::{MtlsConfig, MtlsError, MtlsMethods};
pub use oidc::{OidcAuthenticator, OidcVerifier};
pub use unix::{UnixConfig, UnixError, UnixMethods};
