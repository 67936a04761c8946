//! What the per-lease-user issuers (`postgres`, `mysql`, `redis`,
//! `rabbitmq`) have in common: every one of them mints a user named by
//! [`naming::username`] that lives until the lease is revoked.
//!
//! Kept here so that the write-ahead handle and the check that a handle
//! names a planned user are the same for every target; the expiry cap,
//! shared with signed tokens, is [`crate::IssueRequest::credential_expiry`].
//! Engine-specific statements, error texts and pools stay in each issuer.

pub mod admin_login;
pub mod config;
pub mod uri;

use idmint_core::RevocationHandle;

use crate::{naming, IssueError, PlanRequest};

/// The revocation handle kind of a per-lease user: its user name.
pub const DB_USER_HANDLE: &str = "db_user";

/// The write-ahead handle for `plan`: the user name derived from the role,
/// the caller and the lease, at most `max_len` characters of `[a-z0-9_]`.
pub(crate) fn planned_user_handle(
    prefix: Option<&str>,
    plan: &PlanRequest<'_>,
    max_len: usize,
) -> RevocationHandle {
    RevocationHandle {
        kind: DB_USER_HANDLE.to_string(),
        value: naming::username(prefix, plan.role, plan.identity, plan.lease_id, max_len),
    }
}

/// The user name a handle names, refused unless it has the shape
/// [`planned_user_handle`] produces, so that a lease row written by another
/// issuer type, or altered, never reaches a statement or an API path.
/// `protected` is a name that must never be touched even if well formed
/// (the issuer's admin user), because a corrupted row must not get it
/// deleted. `kind`/`name` identify the issuer in the message.
pub(crate) fn planned_user<'h>(
    handle: &'h RevocationHandle,
    kind: &str,
    name: &str,
    max_len: usize,
    protected: Option<&str>,
) -> Result<&'h str, IssueError> {
    if handle.kind != DB_USER_HANDLE {
        return Err(IssueError::Internal(format!(
            "revocation handle of kind {:?} given to the {kind} issuer {name:?}, which plans \
             {DB_USER_HANDLE:?}",
            handle.kind
        )));
    }
    let user = handle.value.as_str();
    if !naming::is_derived_username(user, max_len) || protected == Some(user) {
        return Err(IssueError::Internal(format!(
            "revocation handle {user:?} is not a user name the {kind} issuer {name:?} plans \
             ([a-z][a-z0-9_]*, at most {max_len} characters); refusing to touch it"
        )));
    }
    Ok(user)
}

/// `err` with every occurrence of `secret` in a target's message replaced:
/// texts from the target may echo a statement or request that carried a
/// password.
pub(crate) fn redact(err: IssueError, secret: &str) -> IssueError {
    match err {
        IssueError::Target {
            target,
            message,
            retryable,
        } if !secret.is_empty() => IssueError::Target {
            target,
            message: message.replace(secret, "<redacted>"),
            retryable,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(kind: &str, value: &str) -> RevocationHandle {
        RevocationHandle {
            kind: kind.into(),
            value: value.into(),
        }
    }

    #[test]
    fn only_planned_user_names_are_accepted() {
        let ok = handle(DB_USER_HANDLE, "idm_r_s_0123456789ab");
        assert_eq!(
            planned_user(&ok, "redis", "cache", 32, Some("admin")).unwrap(),
            "idm_r_s_0123456789ab"
        );
        let too_long = format!("a_{}", "b".repeat(31));
        for h in [
            handle("token_id", "idm_r_s_0123456789ab"),
            handle(DB_USER_HANDLE, ""),
            handle(DB_USER_HANDLE, "admin"),
            handle(DB_USER_HANDLE, "Idm_x"),
            handle(DB_USER_HANDLE, "1dm_x"),
            handle(DB_USER_HANDLE, "idm_x'; DROP USER admin; --"),
            handle(DB_USER_HANDLE, &too_long),
        ] {
            let r = planned_user(&h, "redis", "cache", 32, None);
            assert!(matches!(r, Err(IssueError::Internal(_))), "{h:?}");
        }
        let admin = handle(DB_USER_HANDLE, "idm_admin");
        assert!(planned_user(&admin, "redis", "cache", 32, None).is_ok());
        let err = planned_user(&admin, "redis", "cache", 32, Some("idm_admin")).unwrap_err();
        assert!(err.to_string().contains("refusing"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_from_target_errors() {
        let e = IssueError::Target {
            target: "cache".into(),
            message: "ERR Error in ACL SETUSER modifier '>S3cr3tPw': x".into(),
            retryable: false,
        };
        let text = redact(e, "S3cr3tPw").to_string();
        assert!(
            !text.contains("S3cr3tPw") && text.contains("<redacted>"),
            "{text}"
        );
        let internal = redact(IssueError::Internal("S3cr3tPw".into()), "S3cr3tPw");
        assert!(matches!(internal, IssueError::Internal(_)));
    }
}
