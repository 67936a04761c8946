//! The SQL the PostgreSQL issuer sends, built from checked parts only.
//!
//! `CREATE ROLE … PASSWORD` cannot take a bind parameter, so the password
//! has to travel inside the statement. It never travels in clear: idmint
//! sends a SCRAM-SHA-256 verifier ([`scram_verifier`]), which PostgreSQL
//! stores as is. That keeps the password out of the server log
//! (`log_statement = ddl`), `pg_stat_activity` and `pg_stat_statements`,
//! and the verifier cannot be used to log in. Literals are quoted by
//! [`quote_literal`]; identifiers by [`quote_ident`]. Usernames are
//! generated (`[a-z0-9_]`) and still quoted.

use super::grant::{quote_ident, GrantSpec, Ident};
use idmint_core::ids::random_bytes;
use idmint_core::{Secret, UnixTime};
use ring::{digest, hmac, pbkdf2};
use std::num::NonZeroU32;

/// PBKDF2 rounds of the verifiers of issued (generated) passwords, unless
/// the issuer sets `scram_iterations`.
///
/// The count is also what each `CREATE ROLE … PASSWORD` costs the *server*:
/// PostgreSQL checks every new password against the empty one, which means
/// one PBKDF2 at the verifier's count — about 3 ms of server CPU at
/// PostgreSQL's default of 4096 (measured; the same for a clear-text
/// password), which alone caps issuance at a few hundred per second on two
/// cores. Rounds stretch *guessable* passwords; generated ones (≥ 16 random
/// alphanumerics, ≥ 95 bits) cannot be guessed at any count, so 256 rounds
/// lose nothing and make issuance (and each client login) ~16x cheaper.
/// libpq, pgjdbc (ongres scram) and tokio-postgres accept any count ≥ 1.
pub const DEFAULT_SCRAM_ITERATIONS: u32 = 256;

/// PBKDF2 rounds for the admin password, which a person may have chosen:
/// PostgreSQL's own default.
pub const ADMIN_SCRAM_ITERATIONS: u32 = 4096;
const SCRAM_SALT_LEN: usize = 16;

/// Key of the transaction-level advisory lock that serialises statements
/// changing object ACLs (per-user `GRANT`s, `DROP OWNED`). PostgreSQL
/// updates an object's ACL in place, and two transactions granting on the
/// same table at once fail with `tuple concurrently updated`; the lock
/// makes them queue instead. ASCII "idmintac".
pub const ACL_LOCK_KEY: i64 = 0x6964_6d69_6e74_6163;

/// Why a value cannot be put into a statement.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SqlTextError {
    #[error("the value contains a NUL byte, which PostgreSQL cannot store in text")]
    Nul,
    #[error(
        "the password contains characters outside printable ASCII; idmint pre-hashes \
         passwords with SCRAM-SHA-256 and supports only printable ASCII ones"
    )]
    NotPrintableAscii,
    #[error("the password is empty")]
    Empty,
    #[error("the operating system random number generator failed")]
    Random,
}

/// `value` as a SQL string literal: `'` doubled, and when it contains a
/// backslash the `E'…'` form with backslashes doubled, which means the same
/// whatever `standard_conforming_strings` says (PostgreSQL's own
/// `quote_literal` does the same). NUL cannot be represented and is refused.
pub fn quote_literal(value: &str) -> Result<String, SqlTextError> {
    if value.contains('\0') {
        return Err(SqlTextError::Nul);
    }
    let mut out = String::with_capacity(value.len() + 3);
    if value.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    Ok(out)
}

/// A SCRAM-SHA-256 verifier for `password` with a fresh random salt and
/// `iterations` PBKDF2 rounds (0 is taken as 1), in the
/// form PostgreSQL stores (`SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`).
///
/// PostgreSQL runs SASLprep on the password at login; for printable ASCII
/// SASLprep changes nothing, so only printable ASCII is accepted (generated
/// passwords are alphanumeric).
pub fn scram_verifier(password: &str, iterations: u32) -> Result<Secret<String>, SqlTextError> {
    let mut salt = [0u8; SCRAM_SALT_LEN];
    random_bytes(&mut salt).map_err(|_| SqlTextError::Random)?;
    scram_verifier_with(password, &salt, iterations)
}

fn scram_verifier_with(
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Result<Secret<String>, SqlTextError> {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    if password.is_empty() {
        return Err(SqlTextError::Empty);
    }
    if !password.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(SqlTextError::NotPrintableAscii);
    }
    let rounds = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    // Wiped on drop: the salted password is the one value from which a
    // client proof could be forged.
    let mut salted = zeroize::Zeroizing::new([0u8; digest::SHA256_OUTPUT_LEN]);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        password.as_bytes(),
        &mut salted[..],
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted[..]);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let server_key = hmac::sign(&key, b"Server Key");
    Ok(Secret::new(format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key.as_ref()),
        STANDARD.encode(server_key.as_ref()),
    )))
}

/// What a new per-lease user is created with.
pub struct NewUser<'a> {
    pub username: &'a str,
    /// From [`scram_verifier`].
    pub verifier: &'a Secret<String>,
    pub valid_until: UnixTime,
    pub member_of: &'a [Ident],
    pub grants: &'a [GrantSpec],
    /// Refuse (roll back) when `member_of` makes the user, directly or
    /// through nested groups, a member of a superuser-like or predefined
    /// `pg_*` role.
    pub guard_membership: bool,
}

/// The whole issuance as one multi-statement simple query. PostgreSQL runs
/// such a query as a single implicit transaction: all of it or none, and a
/// failure leaves the connection clean (no `ROLLBACK` needed). One round
/// trip per credential.
pub fn create_user(user: &NewUser<'_>) -> Result<Secret<String>, SqlTextError> {
    let name = quote_ident(user.username);
    let mut sql = String::with_capacity(512);
    if !user.grants.is_empty() {
        sql.push_str(&format!("SELECT pg_advisory_xact_lock({ACL_LOCK_KEY});\n"));
    }
    sql.push_str(&format!(
        "CREATE ROLE {name} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT \
         NOREPLICATION NOBYPASSRLS PASSWORD {} VALID UNTIL {}",
        quote_literal(user.verifier.expose())?,
        quote_literal(&user.valid_until.rfc3339())?,
    ));
    if !user.member_of.is_empty() {
        let groups: Vec<String> = user.member_of.iter().map(Ident::to_string).collect();
        sql.push_str(" IN ROLE ");
        sql.push_str(&groups.join(", "));
    }
    sql.push_str(";\n");
    for grant in user.grants {
        sql.push_str(&grant.to_sql(user.username));
        sql.push_str(";\n");
    }
    if user.guard_membership && !user.member_of.is_empty() {
        sql.push_str(&membership_guard(user.username)?);
    }
    Ok(Secret::new(sql))
}

/// SQLSTATE the membership guard raises (insufficient_privilege).
pub const GUARD_SQLSTATE: &str = "42501";

/// A `DO` block that raises when the user inherits a role with a dangerous
/// attribute or a predefined `pg_*` role. It walks up from the new user
/// through `pg_auth_members` by its `(member, roleid)` index, so its cost
/// depends on the depth of the group tree, not on how many users exist.
///
/// Both lookups are `LATERAL` subqueries behind `OFFSET 0`, a planner fence:
/// written as plain joins, PostgreSQL (whose catalog statistics lag behind
/// thousands of freshly created users) hash-joined a sequential scan of all
/// of `pg_auth_members` and of `pg_authid` on every issuance — 3.2 ms per
/// credential with 12 000 live users against 0.13 ms with the index scans
/// forced here, and the main reason PostgreSQL itself bounded issuance.
fn membership_guard(username: &str) -> Result<String, SqlTextError> {
    // regrole input is an identifier: quote it, then make that a literal.
    let user = quote_literal(&quote_ident(username))?;
    Ok(format!(
        "DO $idmint_guard$ DECLARE bad name; BEGIN \
         WITH RECURSIVE up(roleid) AS ( \
           SELECT m.roleid FROM pg_auth_members m WHERE m.member = {user}::regrole \
           UNION SELECT m.roleid FROM up CROSS JOIN LATERAL ( \
             SELECT a.roleid FROM pg_auth_members a WHERE a.member = up.roleid OFFSET 0) m) \
         SELECT r.rolname INTO bad FROM up CROSS JOIN LATERAL ( \
           SELECT p.rolname, p.rolsuper, p.rolcreaterole, p.rolcreatedb, p.rolreplication, \
                  p.rolbypassrls FROM pg_roles p WHERE p.oid = up.roleid OFFSET 0) r \
         WHERE r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication \
           OR r.rolbypassrls OR left(r.rolname, 3) = 'pg_' LIMIT 1; \
         IF bad IS NOT NULL THEN RAISE EXCEPTION USING ERRCODE = '{GUARD_SQLSTATE}', \
           MESSAGE = format('member_of would make the user a member of the privileged role %I', bad), \
           HINT = 'remove it from member_of or set allow_dangerous = true in the role template'; \
         END IF; END $idmint_guard$;\n"
    ))
}

/// How objects a revoked user owns in the configured database are handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnRevoke {
    /// `REASSIGN OWNED BY u TO CURRENT_USER` (the admin), then `DROP OWNED`.
    ReassignToAdmin,
    /// `REASSIGN OWNED BY u TO "<role>"`, then `DROP OWNED`.
    ReassignTo(Ident),
}

/// Hand over what the user owns, drop its remaining privileges and drop it,
/// as one implicit transaction. Takes the ACL lock only when the user holds
/// privileges or owns objects recorded in `pg_shdepend`, so revoking
/// group-only users never queues.
/// `REASSIGN OWNED`/`DROP OWNED` need the privileges of the role being
/// dropped, which a non-superuser admin (CREATEROLE) lacks until it is a
/// member: the batch grants the user to the admin first. The membership
/// vanishes with `DROP ROLE`. A user that no longer exists fails the batch
/// at the `GRANT` with "undefined role", which revocation treats as done.
pub fn drop_user(username: &str, on_revoke: &OnRevoke) -> Result<String, SqlTextError> {
    let name = quote_ident(username);
    let literal = quote_literal(username)?;
    let new_owner = match on_revoke {
        OnRevoke::ReassignToAdmin => "CURRENT_USER".to_string(),
        OnRevoke::ReassignTo(role) => role.to_string(),
    };
    Ok(format!(
        "SELECT pg_advisory_xact_lock({ACL_LOCK_KEY}) WHERE EXISTS ( \
           SELECT 1 FROM pg_shdepend d JOIN pg_roles r ON d.refobjid = r.oid \
           WHERE d.refclassid = 'pg_authid'::regclass AND r.rolname = {literal});\n\
         GRANT {name} TO CURRENT_USER;\n\
         REASSIGN OWNED BY {name} TO {new_owner};\n\
         DROP OWNED BY {name};\n\
         DROP ROLE IF EXISTS {name};\n"
    ))
}

/// Stop new logins at once (committed on its own, before sessions are
/// terminated, so no session can start between termination and the drop).
pub fn disable_login(username: &str) -> String {
    format!("ALTER ROLE {} NOLOGIN", quote_ident(username))
}

/// Terminate the user's sessions and wait up to `wait_ms` for each to end
/// (PostgreSQL 14+). `$1` is the username.
pub fn terminate_sessions(wait_ms: u64) -> String {
    format!("SELECT pg_terminate_backend(pid, {wait_ms}) FROM pg_stat_activity WHERE usename = $1")
}

/// Move the user's expiry.
pub fn set_valid_until(username: &str, until: UnixTime) -> Result<String, SqlTextError> {
    Ok(format!(
        "ALTER ROLE {} VALID UNTIL {}",
        quote_ident(username),
        quote_literal(&until.rfc3339())?
    ))
}

/// Change the connected admin's own password (pre-hashed).
pub fn set_own_password(verifier: &Secret<String>) -> Result<Secret<String>, SqlTextError> {
    Ok(Secret::new(format!(
        "ALTER ROLE CURRENT_USER PASSWORD {}",
        quote_literal(verifier.expose())?
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped() {
        assert_eq!(quote_literal("abc").unwrap(), "'abc'");
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert_eq!(quote_literal("''").unwrap(), "''''''");
        assert_eq!(quote_literal("a\\b").unwrap(), "E'a\\\\b'");
        assert_eq!(quote_literal("\\'; --").unwrap(), "E'\\\\''; --'");
        assert_eq!(quote_literal("é🦀").unwrap(), "'é🦀'");
        assert_eq!(quote_literal("").unwrap(), "''");
        assert_eq!(quote_literal("a\0b"), Err(SqlTextError::Nul));
    }

    #[test]
    fn scram_verifier_matches_an_independent_implementation() {
        // Computed with Python's hashlib/hmac (PBKDF2-HMAC-SHA256, RFC 5802
        // StoredKey/ServerKey) for password "pencil", salt 00..0f.
        let salt: Vec<u8> = (0u8..16).collect();
        let v = scram_verifier_with("pencil", &salt, 4096).unwrap();
        assert_eq!(
            v.expose(),
            "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$zHCdol2044/ZyWzPLi7oxApCkamKw9Z+E4U/QApd/5Y=:dd5peBOitVnLNFu7VmwP+HiDaaw4OUCv396eVCWhYiE="
        );
        let a = scram_verifier("pencil", 4096).unwrap();
        let b = scram_verifier("pencil", 4096).unwrap();
        assert_ne!(a.expose(), b.expose(), "salts must be random");
        assert!(a.expose().starts_with("SCRAM-SHA-256$4096:"));
        assert!(scram_verifier("pencil", 16)
            .unwrap()
            .expose()
            .starts_with("SCRAM-SHA-256$16:"));
        assert!(!a.expose().contains("pencil"));
        assert_eq!(
            scram_verifier("pässword", 4096).unwrap_err(),
            SqlTextError::NotPrintableAscii
        );
        assert_eq!(
            scram_verifier("a\0", 4096).unwrap_err(),
            SqlTextError::NotPrintableAscii
        );
        assert_eq!(scram_verifier("", 4096).unwrap_err(), SqlTextError::Empty);
    }

    #[test]
    fn create_user_is_one_quoted_batch() {
        let verifier = Secret::new("SCRAM-SHA-256$4096:x$y:z".to_string());
        let groups = [
            Ident::parse("readonly").unwrap(),
            Ident::parse("\"Odd\"\"G\"").unwrap(),
        ];
        let grants = [GrantSpec::parse("SELECT ON TABLE app.t").unwrap()];
        let sql = create_user(&NewUser {
            username: "idm_r_s_abc",
            verifier: &verifier,
            valid_until: UnixTime(1_700_000_000),
            member_of: &groups,
            grants: &grants,
            guard_membership: true,
        })
        .unwrap();
        let sql = sql.expose();
        assert!(sql.starts_with(&format!("SELECT pg_advisory_xact_lock({ACL_LOCK_KEY});\n")));
        assert!(sql.contains(
            "CREATE ROLE \"idm_r_s_abc\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT \
             NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:x$y:z' \
             VALID UNTIL '2023-11-14T22:13:20Z' IN ROLE \"readonly\", \"Odd\"\"G\";\n"
        ));
        assert!(sql.contains("GRANT SELECT ON TABLE \"app\".\"t\" TO \"idm_r_s_abc\";\n"));
        assert!(sql.contains("'\"idm_r_s_abc\"'::regrole"));
        assert!(sql.contains("$idmint_guard$"));

        let no_extras = create_user(&NewUser {
            username: "u",
            verifier: &verifier,
            valid_until: UnixTime(0),
            member_of: &[],
            grants: &[],
            guard_membership: true,
        })
        .unwrap();
        assert!(!no_extras.expose().contains("advisory"));
        assert!(!no_extras.expose().contains("IN ROLE"));
        assert!(!no_extras.expose().contains("DO "));
    }

    #[test]
    fn drop_user_reassigns_to_the_configured_owner() {
        let admin = drop_user("u1", &OnRevoke::ReassignToAdmin).unwrap();
        assert!(admin
            .contains("GRANT \"u1\" TO CURRENT_USER;\nREASSIGN OWNED BY \"u1\" TO CURRENT_USER;"));
        assert!(admin.contains("DROP OWNED BY \"u1\";"));
        assert!(admin.contains("DROP ROLE IF EXISTS \"u1\";"));
        assert!(admin.contains("r.rolname = 'u1'"));
        let other = drop_user("u1", &OnRevoke::ReassignTo(Ident::parse("Owner").unwrap())).unwrap();
        assert!(other.contains("REASSIGN OWNED BY \"u1\" TO \"owner\";"));
        assert_eq!(disable_login("u1"), "ALTER ROLE \"u1\" NOLOGIN");
        assert_eq!(
            set_valid_until("u1", UnixTime(0)).unwrap(),
            "ALTER ROLE \"u1\" VALID UNTIL '1970-01-01T00:00:00Z'"
        );
    }
}
