//! The `ssh` issuer's building blocks: OpenSSH certificates signed by
//! idmint's Ed25519 CAs, the client's public key, role template checks and
//! just-in-time account names.
//!
//! The parts that need the server (the grant board the host agent pulls,
//! waiting for the agent, revocation through it) live in `idmint-server`;
//! everything here is pure and tested against the real `ssh-keygen`.

mod account;
mod authority;
mod ca;
mod certificate;
mod config;
mod public_key;
mod template;
mod wire;

pub use account::{account_for_lease, is_jit_account};
pub use authority::{
    IssuedCertificate, SshAuthority, UserCertRequest, CLOCK_SKEW_SECS, HOST_CERT_VALIDITY_SECS,
};
pub use ca::SshCaKey;
pub use certificate::{
    CertKind, CertificateError, CertificateSpec, SignedCertificate, ALLOWED_EXTENSIONS,
    CERT_TYPE_ED25519,
};
pub use config::{valid_host_name, SshHostConfig, SshIssuerConfig};
pub use public_key::{Ed25519PublicKey, PublicKeyError, ED25519, MAX_PUBLIC_KEY_LINE};
pub use template::{check_principal, check_sudo, check_sudo_rule, check_template};
pub use wire::WireError;

/// The revocation handle kind of ssh leases: `<host>/<account>` for
/// just-in-time sessions.
pub const SSH_ACCOUNT_HANDLE: &str = "ssh_account";

/// The revocation handle kind of certificate-mode leases: the serial.
pub const SSH_CERT_HANDLE: &str = "ssh_cert_serial";
