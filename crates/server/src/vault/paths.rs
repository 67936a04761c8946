//! How Vault paths name idmint roles and leases.
//!
//! A Vault secrets mount maps to an idmint role-name prefix:
//!
//! | Vault path | idmint role tried first | then |
//! |---|---|---|
//! | `database/creds/NAME` | `db/NAME` | `NAME` |
//! | `aws/creds/NAME`, `aws/sts/NAME` | `aws/NAME` | `NAME` |
//! | `ssh/sign/NAME` | `ssh/NAME` | `NAME` |
//!
//! So `bao read database/creds/orders-readonly` gets role
//! `db/orders-readonly`, and a role named without the prefix is still
//! reachable by its own name. Vault lease ids are `PATH/LEASE`
//! (`database/creds/orders-readonly/lse_…`): the idmint lease id is the
//! last segment, and the path before it only serves `revoke-prefix`.

use crate::vault::error::VaultError;
use idmint_core::{LeaseId, PolicyBundle};

/// A Vault secrets mount idmint emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount {
    Database,
    Aws,
    Ssh,
}

impl Mount {
    /// The idmint role-name prefix of the mount.
    pub fn role_prefix(self) -> &'static str {
        match self {
            Mount::Database => "db/",
            Mount::Aws => "aws/",
            Mount::Ssh => "ssh/",
        }
    }

    fn from_path(mount: &str) -> Option<Self> {
        match mount {
            "database" => Some(Mount::Database),
            "aws" => Some(Mount::Aws),
            "ssh" => Some(Mount::Ssh),
            _ => None,
        }
    }
}

/// The idmint role a Vault role name means under `mount`: the prefixed
/// name if such a role exists, else the name itself (which may not exist
/// either; issuance then reports the unknown role).
pub fn resolve_role(bundle: &PolicyBundle, mount: Mount, name: &str) -> String {
    let prefixed = format!("{}{name}", mount.role_prefix());
    if bundle.role(&prefixed).is_some() {
        prefixed
    } else {
        name.to_string()
    }
}

/// The Vault lease id of an idmint lease issued at `path`.
pub fn vault_lease_id(path: &str, lease: &str) -> String {
    format!("{}/{lease}", path.trim_matches('/'))
}

/// The idmint lease id inside a Vault lease id (its last segment).
pub fn idmint_lease_id(vault_lease: &str) -> Result<LeaseId, VaultError> {
    let last = vault_lease
        .trim()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    LeaseId::parse(last).ok_or_else(|| {
        VaultError::bad_request(format!(
            "invalid lease id {:?}: expected MOUNT/…/LEASE as returned by idmint (e.g. database/creds/orders-readonly/lse_…)",
            vault_lease.chars().take(128).collect::<String>()
        ))
    })
}

/// The idmint role prefix that a Vault `revoke-prefix` path covers:
/// `database/` → `db/`; `database/creds/orders` → the role(s) that
/// `orders` resolves to (`db/orders…`, else `orders…`).
pub fn role_prefix(bundle: &PolicyBundle, vault_prefix: &str) -> Result<String, VaultError> {
    let trimmed = vault_prefix.trim_matches('/');
    let mut parts = trimmed.splitn(3, '/');
    let mount_name = parts.next().unwrap_or_default();
    let Some(mount) = Mount::from_path(mount_name) else {
        return Err(VaultError::bad_request(format!(
            "revoke-prefix {:?}: idmint serves the database/, aws/ and ssh/ mounts only",
            trimmed.chars().take(128).collect::<String>()
        )));
    };
    let _kind = parts.next();
    let Some(name) = parts.next().filter(|n| !n.is_empty()) else {
        return Ok(mount.role_prefix().to_string());
    };
    let prefixed = format!("{}{name}", mount.role_prefix());
    if bundle.roles.keys().any(|r| r.starts_with(&prefixed)) {
        Ok(prefixed)
    } else {
        Ok(name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ids_round_trip() {
        let Ok(id) = LeaseId::generate() else {
            panic!("id")
        };
        let v = vault_lease_id("database/creds/orders", id.as_str());
        assert_eq!(v, format!("database/creds/orders/{id}"));
        assert_eq!(
            idmint_lease_id(&v).map(|l| l.to_string()).ok(),
            Some(id.to_string())
        );
        assert!(idmint_lease_id("database/creds/orders/not-a-lease").is_err());
        assert!(idmint_lease_id("").is_err());
    }
}
