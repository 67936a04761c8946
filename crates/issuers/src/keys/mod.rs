//! idmint's own signing keys: the keys that sign the JWTs the `oauth` issuer
//! mints, their public JWKS, and the OIDC discovery document that lets
//! clouds (AWS `AssumeRoleWithWebIdentity`, GCP workload identity
//! federation) trust idmint as an identity provider.

mod discovery;
mod keyring;
mod rsa_keygen;
pub(crate) mod signing;

pub use discovery::discovery_document;
pub use keyring::KeyRing;
pub use signing::{SigningAlg, SigningKey};
