//! The SQL idmint runs on a MySQL/MariaDB target, built from checked parts
//! only: the account from [`quoting::account`], the password from
//! [`quoting::string_literal`], grants from a parsed [`GrantTemplate`].
//!
//! Where MariaDB and MySQL differ:
//!
//! | step | MariaDB 10.4+ | MySQL 8 |
//! |---|---|---|
//! | make the granted role active at login | `SET DEFAULT ROLE r FOR 'u'@'%'` | `SET DEFAULT ROLE ALL TO 'u'@'%'` |
//! | roles active per session | one | several |
//!
//! which is why a template may name at most one `member_of` role (see
//! [`super::template`]). Everything else (`CREATE USER … IDENTIFIED BY`,
//! `GRANT`, `DROP USER IF EXISTS`, `KILL CONNECTION`, `ALTER USER 'u'@'h'
//! IDENTIFIED BY`) is spelled the same on both.
//!
//! Neither engine can expire an account at a point in time (MariaDB 10.11
//! and MySQL only have `PASSWORD EXPIRE INTERVAL n DAY`, which is
//! day-granular and only forces a password change), so the user is created
//! without any expiry and idmint's reaper drops it when the lease ends.

use super::pool::Flavor;
use super::quoting;
use super::template::GrantTemplate;
use zeroize::Zeroizing;

/// Everything one issuance runs, as one multi-statement batch (one round
/// trip): `CREATE USER`, the grants, the role and its activation. The
/// batch carries the password, so it is zeroized when dropped and must
/// never be logged or put into an error.
///
/// MySQL commits each of these statements on its own (DDL cannot be rolled
/// back), so a failure part-way leaves a partial user; the caller drops it
/// with [`drop_user`].
pub fn create_user(
    flavor: Flavor,
    account: &str,
    password_literal: &str,
    template: &GrantTemplate,
) -> Zeroizing<String> {
    let mut batch = Zeroizing::new(String::with_capacity(256));
    batch.push_str("CREATE USER ");
    batch.push_str(account);
    batch.push_str(" IDENTIFIED BY ");
    batch.push_str(password_literal);
    for grant in &template.grants {
        batch.push_str(";\n");
        batch.push_str(&grant.sql(account));
    }
    for role in &template.roles {
        let role = quoting::identifier(role);
        batch.push_str(&format!(";\nGRANT {role} TO {account}"));
        batch.push_str(&match flavor {
            Flavor::MariaDb => format!(";\nSET DEFAULT ROLE {role} FOR {account}"),
            Flavor::MySql => format!(";\nSET DEFAULT ROLE ALL TO {account}"),
        });
    }
    batch
}

/// Remove the account; no error when it is already gone.
pub fn drop_user(account: &str) -> String {
    format!("DROP USER IF EXISTS {account}")
}

/// End one session. The id comes from the server as an integer, so nothing
/// but digits reaches the statement.
pub fn kill_connection(id: u64) -> String {
    format!("KILL CONNECTION {id}")
}

/// Change the password of `account` (the admin's own, as `SELECT
/// CURRENT_USER()` names it, quoted with [`quoting::account_at`]).
///
/// Why not `ALTER USER CURRENT_USER() IDENTIFIED BY …`: on MariaDB 10.11.19
/// it answers OK and changes nothing (verified: the old password keeps
/// working, `mysql.global_priv` is unchanged, no warning). Naming the
/// account explicitly works on MariaDB and MySQL alike and keeps the
/// account's authentication plugin, unlike MariaDB's `SET PASSWORD =
/// PASSWORD('…')`, which MySQL 8 no longer has.
pub fn set_password(account: &str, password_literal: &str) -> Zeroizing<String> {
    let mut sql = Zeroizing::new(String::with_capacity(96));
    sql.push_str("ALTER USER ");
    sql.push_str(account);
    sql.push_str(" IDENTIFIED BY ");
    sql.push_str(password_literal);
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::template;
    use idmint_core::role::DatabaseTemplate;

    fn parsed(grants: &[&str], member_of: &[&str]) -> GrantTemplate {
        template::parse(&DatabaseTemplate {
            grants: grants.iter().map(|s| s.to_string()).collect(),
            member_of: member_of.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn batches_create_grants_and_the_role_per_flavor() {
        let t = parsed(&["SELECT ON app.orders", "INSERT ON app.*"], &["reader"]);
        let maria = create_user(Flavor::MariaDb, "'u'@'%'", "'pw'", &t);
        assert_eq!(
            maria.as_str(),
            "CREATE USER 'u'@'%' IDENTIFIED BY 'pw';\n\
             GRANT SELECT ON `app`.`orders` TO 'u'@'%';\n\
             GRANT INSERT ON `app`.* TO 'u'@'%';\n\
             GRANT `reader` TO 'u'@'%';\n\
             SET DEFAULT ROLE `reader` FOR 'u'@'%'"
        );
        let mysql = create_user(Flavor::MySql, "'u'@'%'", "'pw'", &t);
        assert!(
            mysql.ends_with("GRANT `reader` TO 'u'@'%';\nSET DEFAULT ROLE ALL TO 'u'@'%'"),
            "{}",
            *mysql
        );
        let no_roles = create_user(
            Flavor::MariaDb,
            "'u'@'%'",
            "'pw'",
            &parsed(&["SELECT ON a.b"], &[]),
        );
        assert!(!no_roles.contains("ROLE"), "{}", *no_roles);
    }

    #[test]
    fn small_statements() {
        assert_eq!(drop_user("'u'@'%'"), "DROP USER IF EXISTS 'u'@'%'");
        assert_eq!(kill_connection(42), "KILL CONNECTION 42");
        assert_eq!(
            set_password("'admin'@'%'", "'x'").as_str(),
            "ALTER USER 'admin'@'%' IDENTIFIED BY 'x'"
        );
    }
}
