//! The grant template of a MySQL/MariaDB role, parsed against a whitelist.
//!
//! `roles.toml` is written by admins, but a template value is still never
//! pasted into SQL: each `grants` entry must match
//!
//! ```text
//! grant      = privileges "ON" target [ "WITH" "GRANT" "OPTION" ]
//! privileges = privilege { "," privilege }        (names from PRIVILEGES, any case)
//! target     = name "." name  |  name "." "*"  |  "*" "." "*"
//! name       = [A-Za-z0-9_$]+  |  "`" printable ASCII, "``" for "`" "`"
//! ```
//!
//! and is re-emitted from the parsed form with every name backquoted, so
//! what runs is exactly what was validated. `member_of` is at most one
//! plain role name (`[A-Za-z0-9_$]+`): MariaDB activates a single role per
//! session, so a second one would silently stay inactive there. Column-level and routine-level grants are
//! not supported.
//!
//! Dangerous grants (`ALL [PRIVILEGES]`, anything on `*.*`, `WITH GRANT
//! OPTION`, administrative privileges such as SUPER, FILE, PROCESS,
//! SHUTDOWN, RELOAD, CREATE USER, and any grant on the `mysql`,
//! `performance_schema`, `sys` or `information_schema` schemas, which hold
//! password hashes and other sessions' SQL) are refused unless the template
//! sets `allow_dangerous = true`.

use super::quoting::{self, QuoteError};
use idmint_core::role::DatabaseTemplate;

/// The narrowest level a privilege can be granted at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    /// `ON db.table`, `ON db.*` and `ON *.*`.
    Table,
    /// `ON db.*` and `ON *.*` only.
    Database,
    /// `ON *.*` only.
    Global,
}

/// One privilege a template may name.
#[derive(Debug, PartialEq, Eq)]
pub struct Privilege {
    /// Canonical spelling, as emitted.
    name: &'static str,
    scope: Scope,
    /// Needs `allow_dangerous`.
    dangerous: bool,
}

const fn p(name: &'static str, scope: Scope, dangerous: bool) -> Privilege {
    Privilege {
        name,
        scope,
        dangerous,
    }
}

/// Every privilege a template may name. Anything else is a parse error, so
/// a typo or a privilege idmint does not know about never reaches a GRANT.
/// `CREATE ROUTINE`/`ALTER ROUTINE` are dangerous because routines outlive
/// the user and may run with its (definer) rights; `DELETE HISTORY` erases
/// system-versioned history.
const PRIVILEGES: &[Privilege] = &[
    p("SELECT", Scope::Table, false),
    p("INSERT", Scope::Table, false),
    p("UPDATE", Scope::Table, false),
    p("DELETE", Scope::Table, false),
    p("CREATE", Scope::Table, false),
    p("DROP", Scope::Table, false),
    p("INDEX", Scope::Table, false),
    p("ALTER", Scope::Table, false),
    p("SHOW VIEW", Scope::Table, false),
    p("CREATE VIEW", Scope::Table, false),
    p("TRIGGER", Scope::Table, false),
    p("REFERENCES", Scope::Table, false),
    p("EXECUTE", Scope::Database, false),
    p("LOCK TABLES", Scope::Database, false),
    p("CREATE TEMPORARY TABLES", Scope::Database, false),
    p("EVENT", Scope::Database, false),
    // Dangerous: only with allow_dangerous = true.
    p("ALL", Scope::Table, true),
    p("ALL PRIVILEGES", Scope::Table, true),
    p("GRANT OPTION", Scope::Table, true),
    p("DELETE HISTORY", Scope::Table, true),
    p("CREATE ROUTINE", Scope::Database, true),
    p("ALTER ROUTINE", Scope::Database, true),
    p("SUPER", Scope::Global, true),
    p("FILE", Scope::Global, true),
    p("PROCESS", Scope::Global, true),
    p("SHUTDOWN", Scope::Global, true),
    p("RELOAD", Scope::Global, true),
    p("CREATE USER", Scope::Global, true),
    p("CREATE TABLESPACE", Scope::Global, true),
    p("SHOW DATABASES", Scope::Global, true),
    p("REPLICATION CLIENT", Scope::Global, true),
    p("REPLICATION SLAVE", Scope::Global, true),
    p("BINLOG ADMIN", Scope::Global, true),
    p("BINLOG MONITOR", Scope::Global, true),
    p("BINLOG REPLAY", Scope::Global, true),
    p("CONNECTION ADMIN", Scope::Global, true),
    p("FEDERATED ADMIN", Scope::Global, true),
    p("READ_ONLY ADMIN", Scope::Global, true),
    p("REPLICATION MASTER ADMIN", Scope::Global, true),
    p("REPLICATION SLAVE ADMIN", Scope::Global, true),
    p("REPLICA MONITOR", Scope::Global, true),
    p("SLAVE MONITOR", Scope::Global, true),
    p("SET USER", Scope::Global, true),
];

/// Schemas whose contents are the server's own: password hashes
/// (`mysql.user`, `mysql.global_priv`), other sessions' statements
/// (`performance_schema`, `sys`). Any grant on them is dangerous.
const SYSTEM_SCHEMAS: &[&str] = &["mysql", "information_schema", "performance_schema", "sys"];

/// Role names MySQL/MariaDB reserve; `GRANT none TO u` means something else.
const RESERVED_ROLE_NAMES: &[&str] = &["NONE", "PUBLIC", "CURRENT_ROLE", "CURRENT_USER", "ALL"];

/// What a grant applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `*.*`: the whole server.
    Global,
    /// `db.*`
    Database(String),
    /// `db.table`
    Table { database: String, table: String },
}

impl Target {
    fn scope(&self) -> Scope {
        match self {
            Target::Table { .. } => Scope::Table,
            Target::Database(_) => Scope::Database,
            Target::Global => Scope::Global,
        }
    }

    fn database(&self) -> Option<&str> {
        match self {
            Target::Global => None,
            Target::Database(d) | Target::Table { database: d, .. } => Some(d),
        }
    }

    fn sql(&self) -> String {
        match self {
            Target::Global => "*.*".to_string(),
            Target::Database(d) => format!("{}.*", quoting::database_pattern(d)),
            // Table-level grants take the database name literally: no
            // wildcard escaping (an escaped name would name another database).
            Target::Table { database, table } => {
                format!(
                    "{}.{}",
                    quoting::identifier(database),
                    quoting::identifier(table)
                )
            }
        }
    }
}

/// One parsed `grants` entry.
#[derive(Debug, PartialEq, Eq)]
pub struct GrantEntry {
    privileges: Vec<&'static Privilege>,
    target: Target,
    with_grant_option: bool,
}

impl GrantEntry {
    /// Why this grant is dangerous, if it is.
    fn danger(&self) -> Option<String> {
        if let Some(p) = self.privileges.iter().find(|p| p.dangerous) {
            return Some(format!(
                "privilege {} is administrative or unbounded",
                p.name
            ));
        }
        if self.target == Target::Global {
            return Some("`*.*` grants on every database of the server".into());
        }
        if self.with_grant_option {
            return Some("WITH GRANT OPTION lets the user hand its privileges on".into());
        }
        if let Some(db) = self.target.database() {
            if SYSTEM_SCHEMAS.iter().any(|s| s.eq_ignore_ascii_case(db)) {
                return Some(format!(
                    "schema {db} holds the server's own data (password hashes, other sessions' SQL)"
                ));
            }
        }
        None
    }

    /// `GRANT <privileges> ON <target> TO <account>[ WITH GRANT OPTION]`.
    /// `account` is already quoted ([`quoting::account`]).
    pub fn sql(&self, account: &str) -> String {
        let privileges: Vec<&str> = self.privileges.iter().map(|p| p.name).collect();
        format!(
            "GRANT {} ON {} TO {account}{}",
            privileges.join(", "),
            self.target.sql(),
            if self.with_grant_option {
                " WITH GRANT OPTION"
            } else {
                ""
            }
        )
    }
}

/// A role's template, parsed and checked: everything the issuer needs to
/// build the statements of one issuance.
#[derive(Debug, PartialEq, Eq)]
pub struct GrantTemplate {
    pub grants: Vec<GrantEntry>,
    /// `member_of`, validated role names (unquoted).
    pub roles: Vec<String>,
}

/// Why a template was refused. Every variant names the offending entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("grants entry {entry:?} does not parse: {message}")]
    Grant { entry: String, message: String },
    #[error(
        "grants entry {entry:?} is dangerous ({reason}); narrow it, or set allow_dangerous = true \
         in the role's [role.database] if this is really intended"
    )]
    Dangerous { entry: String, reason: String },
    #[error("member_of entry {entry:?} is not a valid role name: {message}")]
    Role { entry: String, message: String },
    #[error(
        "member_of names {0} roles, but MariaDB activates only one role per session; create one \
         role that is granted the others and name only that one"
    )]
    TooManyRoles(usize),
    #[error("the template grants nothing: add `grants` or `member_of` entries")]
    Empty,
}

/// Parse and check a role's `[role.database]` template.
pub fn parse(template: &DatabaseTemplate) -> Result<GrantTemplate, TemplateError> {
    let mut grants = Vec::with_capacity(template.grants.len());
    for entry in &template.grants {
        let grant = parse_grant(entry).map_err(|message| TemplateError::Grant {
            entry: entry.clone(),
            message,
        })?;
        if !template.allow_dangerous {
            if let Some(reason) = grant.danger() {
                return Err(TemplateError::Dangerous {
                    entry: entry.clone(),
                    reason,
                });
            }
        }
        grants.push(grant);
    }
    let mut roles = Vec::with_capacity(template.member_of.len());
    for entry in &template.member_of {
        check_role_name(entry).map_err(|message| TemplateError::Role {
            entry: entry.clone(),
            message,
        })?;
        if !roles.contains(entry) {
            roles.push(entry.clone());
        }
    }
    if roles.len() > 1 {
        return Err(TemplateError::TooManyRoles(roles.len()));
    }
    if grants.is_empty() && roles.is_empty() {
        return Err(TemplateError::Empty);
    }
    Ok(GrantTemplate { grants, roles })
}

fn check_role_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > quoting::MAX_IDENTIFIER_LEN {
        return Err(format!(
            "use 1 to {} characters",
            quoting::MAX_IDENTIFIER_LEN
        ));
    }
    if !name.bytes().all(is_word_byte) {
        return Err("use only letters, digits, `_` and `$`".into());
    }
    if RESERVED_ROLE_NAMES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(format!("{name} is reserved by MySQL/MariaDB"));
    }
    Ok(())
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    /// `[A-Za-z0-9_$]+`: a keyword, privilege word or unquoted name.
    Word(&'a str),
    /// A backquoted name, unescaped.
    Quoted(String),
    Dot,
    Star,
    Comma,
}

fn lex(entry: &str) -> Result<Vec<Token<'_>>, String> {
    let bytes = entry.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b' ' | b'\t' => i += 1,
            b'.' => {
                tokens.push(Token::Dot);
                i += 1;
            }
            b'*' => {
                tokens.push(Token::Star);
                i += 1;
            }
            b',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            b'`' => {
                let (name, next) = lex_quoted(entry, i + 1)?;
                tokens.push(Token::Quoted(name));
                i = next;
            }
            b if is_word_byte(b) => {
                let start = i;
                while bytes.get(i).is_some_and(|&b| is_word_byte(b)) {
                    i += 1;
                }
                tokens.push(Token::Word(entry.get(start..i).unwrap_or_default()));
            }
            _ => {
                let shown = entry.get(i..).and_then(|s| s.chars().next()).unwrap_or('?');
                return Err(format!(
                    "unexpected character {shown:?} at byte {i}; names with other characters must \
                     be backquoted"
                ));
            }
        }
    }
    Ok(tokens)
}

/// A backquoted name starting at byte `start` (just after the opening
/// quote). Returns the unescaped name and the index after the closing quote.
fn lex_quoted(entry: &str, start: usize) -> Result<(String, usize), String> {
    let bytes = entry.as_bytes();
    let mut name = String::new();
    let mut i = start;
    loop {
        match bytes.get(i) {
            None => {
                return Err(format!(
                    "unterminated backquoted name at byte {}",
                    start - 1
                ))
            }
            Some(b'`') if bytes.get(i + 1) == Some(&b'`') => {
                name.push('`');
                i += 2;
            }
            Some(b'`') => {
                i += 1;
                break;
            }
            Some(_) => {
                let c = entry.get(i..).and_then(|s| s.chars().next()).unwrap_or('?');
                name.push(c);
                i += c.len_utf8();
            }
        }
    }
    quoting::check_identifier(&name).map_err(|e: QuoteError| format!("name {name:?} {e}"))?;
    Ok((name, i))
}

fn parse_grant(entry: &str) -> Result<GrantEntry, String> {
    let tokens = lex(entry)?;
    let mut rest = tokens.iter();
    let mut privileges: Vec<&'static Privilege> = Vec::new();
    let mut words: Vec<&str> = Vec::new();
    loop {
        match rest.next() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("ON") => {
                add_privilege(&mut privileges, &words)?;
                break;
            }
            Some(Token::Word(w)) => words.push(w),
            Some(Token::Comma) => {
                add_privilege(&mut privileges, &words)?;
                words.clear();
            }
            Some(other) => {
                return Err(format!(
                    "expected a privilege name or ON, found {}",
                    describe(other)
                ))
            }
            None => return Err("missing `ON <database>.<table>` (or `ON <database>.*`)".into()),
        }
    }
    let target = parse_target(&mut rest)?;
    let with_grant_option = match (rest.next(), rest.next(), rest.next()) {
        (None, _, _) => false,
        (Some(Token::Word(a)), Some(Token::Word(b)), Some(Token::Word(c)))
            if a.eq_ignore_ascii_case("WITH")
                && b.eq_ignore_ascii_case("GRANT")
                && c.eq_ignore_ascii_case("OPTION") =>
        {
            true
        }
        (Some(t), _, _) => {
            return Err(format!(
                "unexpected {} after the target; only `WITH GRANT OPTION` may follow",
                describe(t)
            ))
        }
    };
    if let Some(t) = rest.next() {
        return Err(format!("unexpected {} at the end", describe(t)));
    }
    for privilege in &privileges {
        if privilege.scope > target.scope() {
            let hint = match privilege.scope {
                Scope::Global => "it can only be granted ON *.*",
                _ => "grant it ON <database>.*",
            };
            return Err(format!(
                "privilege {} cannot be granted on {}; {hint}",
                privilege.name,
                match target.scope() {
                    Scope::Table => "a single table",
                    _ => "a single database",
                }
            ));
        }
    }
    Ok(GrantEntry {
        privileges,
        target,
        with_grant_option,
    })
}

fn add_privilege(privileges: &mut Vec<&'static Privilege>, words: &[&str]) -> Result<(), String> {
    if words.is_empty() {
        return Err("a privilege name is missing (empty list or stray comma)".into());
    }
    let name = words.join(" ").to_ascii_uppercase();
    let privilege = PRIVILEGES.iter().find(|p| p.name == name).ok_or_else(|| {
        format!(
            "unknown privilege {name:?}; allowed: {}",
            PRIVILEGES
                .iter()
                .filter(|p| !p.dangerous)
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    if !privileges.contains(&privilege) {
        privileges.push(privilege);
    }
    Ok(())
}

fn parse_target<'t, 'a: 't>(
    rest: &mut impl Iterator<Item = &'t Token<'a>>,
) -> Result<Target, String> {
    let first = rest.next();
    let dot = rest.next();
    let second = rest.next();
    match (first, dot, second) {
        (Some(Token::Star), Some(Token::Dot), Some(Token::Star)) => Ok(Target::Global),
        (Some(db), Some(Token::Dot), Some(Token::Star)) => Ok(Target::Database(name_of(db)?)),
        (Some(db), Some(Token::Dot), Some(table)) => Ok(Target::Table {
            database: name_of(db)?,
            table: name_of(table)?,
        }),
        (Some(Token::Star), _, _) => Err(
            "`*` alone means the session's current database, which idmint's admin connection \
             does not have; write `<database>.*`"
                .into(),
        ),
        (Some(_), _, _) => {
            Err("the target must name the database: `<database>.<table>` or `<database>.*`".into())
        }
        (None, _, _) => {
            Err("nothing after ON; write `<database>.<table>` or `<database>.*`".into())
        }
    }
}

fn name_of(token: &Token<'_>) -> Result<String, String> {
    match token {
        Token::Word(w) => {
            quoting::check_identifier(w).map_err(|e| format!("name {w:?} {e}"))?;
            Ok((*w).to_string())
        }
        Token::Quoted(q) => Ok(q.clone()),
        other => Err(format!("expected a name, found {}", describe(other))),
    }
}

fn describe(token: &Token<'_>) -> String {
    match token {
        Token::Word(w) => format!("{w:?}"),
        Token::Quoted(q) => format!("`{q}`"),
        Token::Dot => "`.`".into(),
        Token::Star => "`*`".into(),
        Token::Comma => "`,`".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(grants: &[&str], member_of: &[&str], allow_dangerous: bool) -> DatabaseTemplate {
        DatabaseTemplate {
            grants: grants.iter().map(|s| s.to_string()).collect(),
            member_of: member_of.iter().map(|s| s.to_string()).collect(),
            allow_dangerous,
            ..Default::default()
        }
    }

    fn sql_of(entry: &str) -> String {
        parse(&template(&[entry], &[], false)).unwrap().grants[0].sql("'u'@'%'")
    }

    #[test]
    fn emits_canonical_backquoted_grants() {
        assert_eq!(
            sql_of("SELECT ON app.orders"),
            "GRANT SELECT ON `app`.`orders` TO 'u'@'%'"
        );
        assert_eq!(
            sql_of("select ,  insert,show   view on app.*"),
            "GRANT SELECT, INSERT, SHOW VIEW ON `app`.* TO 'u'@'%'"
        );
        assert_eq!(
            sql_of("SELECT ON `my db`.`we``ird`"),
            "GRANT SELECT ON `my db`.`we``ird` TO 'u'@'%'"
        );
        assert_eq!(
            sql_of("EXECUTE, LOCK TABLES ON my_app.*"),
            "GRANT EXECUTE, LOCK TABLES ON `my\\_app`.* TO 'u'@'%'"
        );
        assert_eq!(
            sql_of("SELECT ON on.on"),
            "GRANT SELECT ON `on`.`on` TO 'u'@'%'"
        );
        assert_eq!(
            sql_of("SELECT, SELECT ON a.b"),
            "GRANT SELECT ON `a`.`b` TO 'u'@'%'"
        );
    }

    #[test]
    fn refuses_what_does_not_parse() {
        for bad in [
            "",
            "SELECT",
            "ON app.*",
            "SELECT, ON app.*",
            "SELECT ON app",
            "SELECT ON *",
            "SELECT ON app.orders; DROP USER admin",
            "SELECT ON app.orders -- x",
            "SELECT ON app.orders /* x */",
            "SELECT ON app.orders TO 'x'@'%'",
            "SELECT (id) ON app.orders",
            "SELEKT ON app.*",
            "PROXY ON app.*",
            "SELECT ON 'app'.*",
            "SELECT ON \"app\".*",
            "SELECT ON `app.*",
            "SELECT ON `a\\b`.*",
            "SELECT ON `ä`.*",
            "SELECT ON app.orders.x",
            "SELECT ON app.orders WITH GRANT",
            "SELECT ON app.orders\0",
            "EXECUTE ON app.orders",
            "EVENT ON app.t",
        ] {
            let err = parse(&template(&[bad], &[], true)).unwrap_err();
            assert!(matches!(err, TemplateError::Grant { .. }), "{bad:?}: {err}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn refuses_dangerous_grants_unless_allowed() {
        for dangerous in [
            "ALL ON app.*",
            "ALL PRIVILEGES ON app.*",
            "SELECT ON *.*",
            "SELECT ON app.* WITH GRANT OPTION",
            "GRANT OPTION ON app.*",
            "SUPER ON *.*",
            "FILE ON *.*",
            "PROCESS ON *.*",
            "SHUTDOWN ON *.*",
            "RELOAD ON *.*",
            "CREATE USER ON *.*",
            "SELECT ON mysql.user",
            "SELECT ON MySQL.*",
            "SELECT ON performance_schema.*",
            "SELECT ON sys.*",
            "CREATE ROUTINE ON app.*",
        ] {
            let err = parse(&template(&[dangerous], &[], false)).unwrap_err();
            assert!(
                matches!(err, TemplateError::Dangerous { .. }),
                "{dangerous:?}: {err}"
            );
            assert!(err.to_string().contains("allow_dangerous"), "{err}");
            assert!(
                parse(&template(&[dangerous], &[], true)).is_ok(),
                "{dangerous:?}"
            );
        }
        let err = parse(&template(&["SUPER ON app.*"], &[], true)).unwrap_err();
        assert!(err.to_string().contains("ON *.*"), "{err}");
    }

    #[test]
    fn checks_role_names() {
        let t = parse(&template(&[], &["app_rw$2", "app_rw$2"], false)).unwrap();
        assert_eq!(t.roles, vec!["app_rw$2"]);
        assert_eq!(
            parse(&template(&[], &["a", "b"], false)),
            Err(TemplateError::TooManyRoles(2))
        );
        for bad in ["", "r o", "r'; DROP", "none", "PUBLIC", "r`", "ré"] {
            let err = parse(&template(&[], &[bad], false)).unwrap_err();
            assert!(matches!(err, TemplateError::Role { .. }), "{bad:?}: {err}");
        }
        assert_eq!(parse(&template(&[], &[], false)), Err(TemplateError::Empty));
    }
}
