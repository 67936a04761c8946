//! Usernames and passwords for per-lease users (databases, Redis, RabbitMQ).
//!
//! Usernames are derived, not templated: `<prefix>_<role>_<subject>_<id>`,
//! each part reduced to `[a-z0-9]` so no identity claim (a repository name
//! with quotes, semicolons, backslashes, NUL, Unicode) can reach a statement
//! as anything but letters and digits, and cut so the whole fits the
//! engine's limit. The last part comes from the lease id, which keeps names
//! unique and lets an operator map a user back to its lease.

use idmint_core::ids::random_bytes;
use idmint_core::{Identity, LeaseId, Role, Secret};

use crate::IssueError;

/// Longest identifier per engine.
pub const POSTGRES_MAX_NAME: usize = 63;
pub const MYSQL_MAX_NAME: usize = 32;
pub const REDIS_MAX_NAME: usize = 64;

const DEFAULT_PASSWORD_LEN: usize = 32;
const MIN_PASSWORD_LEN: usize = 16;
const MAX_PASSWORD_LEN: usize = 128;

fn squash(s: &str, max: usize) -> String {
    s.chars()
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_ascii_alphanumeric())
        .take(max)
        .collect()
}

/// The lease id's random hex, shortened: 12 hex digits = 48 bits, unique
/// among live users with overwhelming probability and still short enough
/// for MySQL's 32 characters.
fn lease_suffix(lease_id: &LeaseId) -> String {
    lease_id.random_suffix(12).to_string()
}

/// A username for `role`/`identity`, at most `max_len` characters of
/// `[a-z0-9_]`, starting with a letter.
pub fn username(
    prefix: Option<&str>,
    role: &Role,
    identity: &Identity,
    lease_id: &LeaseId,
    max_len: usize,
) -> String {
    let prefix = squash(prefix.unwrap_or("idm"), 8);
    let prefix = if prefix.starts_with(|c: char| c.is_ascii_alphabetic()) {
        prefix
    } else {
        format!("i{prefix}")
    };
    let suffix = lease_suffix(lease_id);
    // Budget: prefix _ role _ subject _ suffix
    let fixed = prefix.len() + suffix.len() + 3;
    let room = max_len.saturating_sub(fixed);
    let role_part = squash(&role.name, room / 2);
    let subject_tail: String = {
        // The end of a subject is the distinctive part (`…:ref:refs/heads/main`
        // → `main`), so keep the tail when cutting.
        let all = squash(&identity.subject, usize::MAX);
        let keep = room.saturating_sub(role_part.len());
        all.chars().skip(all.len().saturating_sub(keep)).collect()
    };
    let mut name = format!("{prefix}_{role_part}_{subject_tail}_{suffix}");
    name.truncate(max_len);
    name
}

/// Whether `name` has the shape [`username`] gives every name it derives
/// with `max_len`: 1 to `max_len` characters of `[a-z0-9_]`, starting with
/// a letter, with the `_` that separates its parts. Issuers check a
/// revocation handle with this before putting it into a statement.
pub fn is_derived_username(name: &str, max_len: usize) -> bool {
    name.len() <= max_len
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.contains('_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A random password of `len` characters from `[A-Za-z0-9]` (no quoting
/// trouble in URIs, shells or SQL), rejection-sampled so every character is
/// uniform.
pub fn password(len: Option<usize>) -> Result<Secret<String>, IssueError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let len = len
        .unwrap_or(DEFAULT_PASSWORD_LEN)
        .clamp(MIN_PASSWORD_LEN, MAX_PASSWORD_LEN);
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        random_bytes(&mut buf).map_err(|e| IssueError::Internal(e.to_string()))?;
        for b in buf {
            // 62 * 4 = 248: bytes >= 248 would bias the first letters.
            if b < 248 && out.len() < len {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    Ok(Secret::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use idmint_core::{IdentityKind, UnixTime};

    fn ident(subject: &str) -> Identity {
        Identity {
            kind: IdentityKind::Ci,
            subject: subject.into(),
            issuer: "https://idp".into(),
            method: "oidc".into(),
            auth: "gh".into(),
            attributes: Default::default(),
            proof_id: "p".into(),
            expires_at: UnixTime(0),
        }
    }

    fn role(name: &str) -> Role {
        Role::parse_file(
            "r.toml",
            &format!("[[role]]\nname='{name}'\nissuer='pg'\nmax_ttl='1h'\n"),
        )
        .unwrap()
        .remove(name)
        .unwrap()
    }

    #[test]
    fn usernames_are_safe_bounded_and_unique() {
        let hostile = "repo:a'b\";DROP ROLE x;--\\\0é🦀:ref:refs/heads/main";
        for max in [MYSQL_MAX_NAME, POSTGRES_MAX_NAME, REDIS_MAX_NAME] {
            let l1 = LeaseId::generate().unwrap();
            let l2 = LeaseId::generate().unwrap();
            let a = username(
                Some("v"),
                &role("db/orders-readonly"),
                &ident(hostile),
                &l1,
                max,
            );
            let b = username(
                Some("v"),
                &role("db/orders-readonly"),
                &ident(hostile),
                &l2,
                max,
            );
            assert!(a.len() <= max, "{a}");
            assert!(
                a.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{a}"
            );
            assert!(a.starts_with('v'));
            assert!(a.ends_with(&lease_suffix(&l1)));
            assert!(is_derived_username(&a, max), "{a}");
            assert!(!is_derived_username(&a, a.len() - 1), "{a}");
            assert_ne!(a, b);
        }
        let n = username(
            Some("9'; --"),
            &role("r"),
            &ident("x"),
            &LeaseId::generate().unwrap(),
            32,
        );
        assert!(n.starts_with("i9_"), "{n}");
        assert!(is_derived_username(&n, 32), "{n}");
        for bad in ["", "admin", "9_x", "_x", "Idm_x", "idm_x;", "idm x"] {
            assert!(!is_derived_username(bad, 32), "{bad}");
        }
    }

    #[test]
    fn passwords_are_alphanumeric_and_sized() {
        let p = password(None).unwrap();
        assert_eq!(p.expose().len(), 32);
        assert!(p.expose().chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(password(Some(4)).unwrap().expose().len(), 16);
        assert_ne!(password(None).unwrap().expose(), p.expose());
    }
}
