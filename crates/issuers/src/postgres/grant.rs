//! The grant grammar of PostgreSQL role templates.
//!
//! A role's `grants = ["SELECT ON ALL TABLES IN SCHEMA reporting", …]` come
//! from an administrator's `roles.toml`, yet they still never reach SQL as
//! text: each entry is parsed against the whitelist grammar below into a
//! [`GrantSpec`], and only that structure is rendered back, with every
//! identifier double-quoted by [`quote_ident`]. Anything the grammar does not
//! know (`WITH GRANT OPTION`, `;`, comments, column lists, `FUNCTION f(…)`)
//! is refused with a message naming the offending token.
//!
//! ```text
//! grant      := privileges ON object
//! privileges := privilege ("," privilege)* | ALL [PRIVILEGES]
//! privilege  := SELECT | INSERT | UPDATE | DELETE | TRUNCATE | REFERENCES | TRIGGER
//!             | USAGE | CREATE | CONNECT | TEMPORARY | TEMP | EXECUTE
//! object     := ALL (TABLES | SEQUENCES | FUNCTIONS) IN SCHEMA ident ("," ident)*
//!             | TABLE qname ("," qname)*   | SEQUENCE qname ("," qname)*
//!             | SCHEMA ident ("," ident)*  | DATABASE ident ("," ident)*
//! qname      := ident ["." ident]
//! ident      := [A-Za-z_][A-Za-z0-9_$]*  (folded to lower case, as PostgreSQL does)
//!             | "…" (kept as written; "" is a quote; no NUL or control characters)
//! ```
//!
//! Keywords are case-insensitive. Each privilege must apply to the object
//! kind (PostgreSQL would otherwise fail at issue time, far from the cause).

use std::fmt;

/// PostgreSQL's identifier limit (NAMEDATALEN - 1). Longer names are
/// silently truncated by the server, which could make two different
/// template entries mean the same object: refuse them instead.
const MAX_IDENT_BYTES: usize = 63;

/// A PostgreSQL identifier as the server stores it: unquoted input folded
/// to lower case, quoted input verbatim. Rendered only through
/// [`quote_ident`], never pasted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident(String);

impl Ident {
    /// The name as PostgreSQL stores it (for messages and comparisons).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parse one identifier (the whole string), e.g. a `member_of` entry or
    /// the target role of `reassign_owned_to:`.
    pub fn parse(text: &str) -> Result<Ident, String> {
        let tokens = tokenize(text)?;
        let mut p = Parser {
            tokens: &tokens,
            at: 0,
        };
        let ident = p.ident("a role name")?;
        p.end()?;
        Ok(ident)
    }

    /// Names PostgreSQL reserves for its own catalogs and predefined roles
    /// (`pg_catalog`, `pg_authid`, `pg_read_server_files`, …) and the SQL
    /// standard's `information_schema`.
    pub fn is_system(&self) -> bool {
        self.0.starts_with("pg_") || self.0 == "information_schema"
    }
}

impl fmt::Display for Ident {
    /// Quoted, exactly as it goes into SQL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&quote_ident(&self.0))
    }
}

/// `name` as a double-quoted SQL identifier: `"` doubled. Callers guarantee
/// there is no NUL (every [`Ident`] and every generated username is checked).
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `schema.name` or just `name` (resolved through the admin connection's
/// `search_path`, normally `public`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualifiedName {
    pub schema: Option<Ident>,
    pub name: Ident,
}

impl QualifiedName {
    fn is_system(&self) -> bool {
        match &self.schema {
            Some(s) => s.is_system(),
            // Unqualified `pg_authid` resolves to pg_catalog.pg_authid.
            None => self.name.is_system(),
        }
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// One privilege keyword of the whitelist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    Select,
    Insert,
    Update,
    Delete,
    Truncate,
    References,
    Trigger,
    Usage,
    Create,
    Connect,
    Temporary,
    Execute,
}

impl Privilege {
    fn from_keyword(word: &str) -> Option<Privilege> {
        Some(match word.to_ascii_uppercase().as_str() {
            "SELECT" => Privilege::Select,
            "INSERT" => Privilege::Insert,
            "UPDATE" => Privilege::Update,
            "DELETE" => Privilege::Delete,
            "TRUNCATE" => Privilege::Truncate,
            "REFERENCES" => Privilege::References,
            "TRIGGER" => Privilege::Trigger,
            "USAGE" => Privilege::Usage,
            "CREATE" => Privilege::Create,
            "CONNECT" => Privilege::Connect,
            "TEMPORARY" | "TEMP" => Privilege::Temporary,
            "EXECUTE" => Privilege::Execute,
            _ => return None,
        })
    }

    pub fn keyword(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Truncate => "TRUNCATE",
            Privilege::References => "REFERENCES",
            Privilege::Trigger => "TRIGGER",
            Privilege::Usage => "USAGE",
            Privilege::Create => "CREATE",
            Privilege::Connect => "CONNECT",
            Privilege::Temporary => "TEMPORARY",
            Privilege::Execute => "EXECUTE",
        }
    }
}

/// The privileges part of a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Privileges {
    /// `ALL` / `ALL PRIVILEGES`: dangerous, refused unless allowed.
    All,
    List(Vec<Privilege>),
}

/// The kinds of object `ALL … IN SCHEMA` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaMembers {
    Tables,
    Sequences,
    Functions,
}

/// The object part of a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    AllInSchema {
        members: SchemaMembers,
        schemas: Vec<Ident>,
    },
    Tables(Vec<QualifiedName>),
    Sequences(Vec<QualifiedName>),
    Schemas(Vec<Ident>),
    Databases(Vec<Ident>),
}

/// What kind of object a grant is on, for privilege checks and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjectKind {
    Table,
    Sequence,
    Function,
    Schema,
    Database,
}

impl ObjectKind {
    fn allows(self, p: Privilege) -> bool {
        use Privilege::*;
        match self {
            ObjectKind::Table => matches!(
                p,
                Select | Insert | Update | Delete | Truncate | References | Trigger
            ),
            ObjectKind::Sequence => matches!(p, Usage | Select | Update),
            ObjectKind::Function => matches!(p, Execute),
            ObjectKind::Schema => matches!(p, Usage | Create),
            ObjectKind::Database => matches!(p, Connect | Temporary | Create),
        }
    }

    fn allowed_list(self) -> &'static str {
        match self {
            ObjectKind::Table => "SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER",
            ObjectKind::Sequence => "USAGE, SELECT, UPDATE",
            ObjectKind::Function => "EXECUTE",
            ObjectKind::Schema => "USAGE, CREATE",
            ObjectKind::Database => "CONNECT, TEMPORARY, CREATE",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            ObjectKind::Table => "tables",
            ObjectKind::Sequence => "sequences",
            ObjectKind::Function => "functions",
            ObjectKind::Schema => "schemas",
            ObjectKind::Database => "databases",
        }
    }
}

impl Object {
    fn kind(&self) -> ObjectKind {
        match self {
            Object::AllInSchema { members, .. } => match members {
                SchemaMembers::Tables => ObjectKind::Table,
                SchemaMembers::Sequences => ObjectKind::Sequence,
                SchemaMembers::Functions => ObjectKind::Function,
            },
            Object::Tables(_) => ObjectKind::Table,
            Object::Sequences(_) => ObjectKind::Sequence,
            Object::Schemas(_) => ObjectKind::Schema,
            Object::Databases(_) => ObjectKind::Database,
        }
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list<T: fmt::Display>(items: &[T]) -> String {
            items
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
        match self {
            Object::AllInSchema { members, schemas } => {
                let m = match members {
                    SchemaMembers::Tables => "TABLES",
                    SchemaMembers::Sequences => "SEQUENCES",
                    SchemaMembers::Functions => "FUNCTIONS",
                };
                write!(f, "ALL {m} IN SCHEMA {}", list(schemas))
            }
            Object::Tables(t) => write!(f, "TABLE {}", list(t)),
            Object::Sequences(s) => write!(f, "SEQUENCE {}", list(s)),
            Object::Schemas(s) => write!(f, "SCHEMA {}", list(s)),
            Object::Databases(d) => write!(f, "DATABASE {}", list(d)),
        }
    }
}

/// A parsed grant template entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantSpec {
    pub privileges: Privileges,
    pub object: Object,
}

impl GrantSpec {
    /// Parse one `grants` entry. The error says which token is wrong and
    /// what was expected; callers prefix the role and entry.
    pub fn parse(text: &str) -> Result<GrantSpec, String> {
        let tokens = tokenize(text)?;
        let mut p = Parser {
            tokens: &tokens,
            at: 0,
        };
        let spec = p.grant()?;
        p.end()?;
        spec.check_privileges_fit()?;
        Ok(spec)
    }

    fn check_privileges_fit(&self) -> Result<(), String> {
        let kind = self.object.kind();
        if let Privileges::List(list) = &self.privileges {
            for p in list {
                if !kind.allows(*p) {
                    return Err(format!(
                        "{} does not apply to {}; use one of: {}",
                        p.keyword(),
                        kind.noun(),
                        kind.allowed_list()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Why this grant is dangerous, if it is. Decisions (documented in the
    /// module docs of `postgres`):
    /// - `ALL [PRIVILEGES]`: grants whatever exists now and later, including
    ///   TRUNCATE/TRIGGER/REFERENCES nobody asked for;
    /// - `CREATE ON DATABASE`: lets the user create schemas, whose objects
    ///   outlive the lease in other places than the admin expects;
    /// - anything on a system schema or catalog (`pg_*`,
    ///   `information_schema`), e.g. `SELECT ON TABLE pg_authid` would
    ///   expose every password hash.
    pub fn danger(&self) -> Option<String> {
        if self.privileges == Privileges::All {
            return Some(
                "ALL PRIVILEGES grants more than a template should; list the privileges".into(),
            );
        }
        if let (Privileges::List(list), Object::Databases(_)) = (&self.privileges, &self.object) {
            if list.contains(&Privilege::Create) {
                return Some(
                    "CREATE ON DATABASE lets the user create schemas in the database".into(),
                );
            }
        }
        let system = match &self.object {
            Object::AllInSchema { schemas, .. } | Object::Schemas(schemas) => schemas
                .iter()
                .find(|s| s.is_system())
                .map(|s| s.to_string()),
            Object::Tables(names) | Object::Sequences(names) => {
                names.iter().find(|n| n.is_system()).map(|n| n.to_string())
            }
            Object::Databases(_) => None,
        };
        system.map(|name| format!("{name} is a system catalog or schema"))
    }

    /// `GRANT <privileges> ON <object> TO <grantee>` with every name quoted.
    pub fn to_sql(&self, grantee: &str) -> String {
        let privileges = match &self.privileges {
            Privileges::All => "ALL PRIVILEGES".to_string(),
            Privileges::List(list) => list
                .iter()
                .map(|p| p.keyword())
                .collect::<Vec<_>>()
                .join(", "),
        };
        format!(
            "GRANT {privileges} ON {} TO {}",
            self.object,
            quote_ident(grantee)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An unquoted word: a keyword or an identifier, as written.
    Word(String),
    /// A double-quoted identifier, unescaped.
    Quoted(String),
    Comma,
    Dot,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("{w:?}"),
            Token::Quoted(q) => format!("quoted name {q:?}"),
            Token::Comma => "\",\"".into(),
            Token::Dot => "\".\"".into(),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            ' ' | '\t' => {}
            ',' => tokens.push(Token::Comma),
            '.' => tokens.push(Token::Dot),
            '"' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some((_, '"')) => {
                            if matches!(chars.peek(), Some((_, '"'))) {
                                chars.next();
                                name.push('"');
                            } else {
                                break;
                            }
                        }
                        Some((pos, ch)) if ch.is_control() => {
                            return Err(format!(
                                "control character {ch:?} at byte {pos} inside a quoted name"
                            ))
                        }
                        Some((_, ch)) => name.push(ch),
                        None => {
                            return Err(format!("unterminated quoted name starting at byte {at}"))
                        }
                    }
                }
                tokens.push(Token::Quoted(check_length(name)?));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut word = String::from(c);
                while let Some((_, n)) =
                    chars.next_if(|(_, n)| n.is_ascii_alphanumeric() || *n == '_' || *n == '$')
                {
                    word.push(n);
                }
                tokens.push(Token::Word(word));
            }
            other => {
                return Err(format!(
                    "unexpected character {other:?} at byte {at}; only keywords, names, \
                     \",\" and \".\" are allowed"
                ))
            }
        }
    }
    Ok(tokens)
}

fn check_length(name: String) -> Result<String, String> {
    if name.is_empty() {
        return Err("empty quoted name \"\"".into());
    }
    if name.len() > MAX_IDENT_BYTES {
        return Err(format!(
            "name {name:?} is longer than PostgreSQL's {MAX_IDENT_BYTES} bytes"
        ));
    }
    Ok(name)
}

struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<&Token> {
        let t = self.tokens.get(self.at);
        self.at += 1;
        t
    }

    fn found(&self) -> String {
        self.tokens
            .get(self.at)
            .map(Token::describe)
            .unwrap_or_else(|| "the end".into())
    }

    /// Consume the keyword `kw` if it comes next.
    fn eat(&mut self, kw: &str) -> bool {
        match self.peek() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw) => {
                self.at += 1;
                true
            }
            _ => false,
        }
    }

    fn expect(&mut self, kw: &str) -> Result<(), String> {
        if self.eat(kw) {
            Ok(())
        } else {
            Err(format!("expected {kw} but found {}", self.found()))
        }
    }

    fn end(&self) -> Result<(), String> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(format!(
                "unexpected {} after the end of the grant",
                t.describe()
            )),
        }
    }

    fn ident(&mut self, what: &str) -> Result<Ident, String> {
        let found = self.found();
        match self.next() {
            Some(Token::Word(w)) => Ok(Ident(check_length(w.to_ascii_lowercase())?)),
            Some(Token::Quoted(q)) => Ok(Ident(q.clone())),
            _ => Err(format!("expected {what} but found {found}")),
        }
    }

    fn comma_list<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
        let mut items = vec![item(self)?];
        while self.peek() == Some(&Token::Comma) {
            self.at += 1;
            items.push(item(self)?);
        }
        Ok(items)
    }

    fn qualified(&mut self) -> Result<QualifiedName, String> {
        let first = self.ident("a name")?;
        if self.peek() == Some(&Token::Dot) {
            self.at += 1;
            let name = self.ident("a name after \".\"")?;
            Ok(QualifiedName {
                schema: Some(first),
                name,
            })
        } else {
            Ok(QualifiedName {
                schema: None,
                name: first,
            })
        }
    }

    fn privileges(&mut self) -> Result<Privileges, String> {
        if self.eat("ALL") {
            self.eat("PRIVILEGES");
            return Ok(Privileges::All);
        }
        let list = self.comma_list(|p| {
            let found = p.found();
            match p.next() {
                Some(Token::Word(w)) => Privilege::from_keyword(w).ok_or_else(|| {
                    format!(
                        "unknown privilege {found}; allowed: SELECT, INSERT, UPDATE, DELETE, \
                         TRUNCATE, REFERENCES, TRIGGER, USAGE, CREATE, CONNECT, TEMPORARY, \
                         EXECUTE"
                    )
                }),
                _ => Err(format!("expected a privilege but found {found}")),
            }
        })?;
        let mut unique: Vec<Privilege> = Vec::with_capacity(list.len());
        for p in list {
            if !unique.contains(&p) {
                unique.push(p);
            }
        }
        Ok(Privileges::List(unique))
    }

    fn object(&mut self) -> Result<Object, String> {
        if self.eat("ALL") {
            let members = if self.eat("TABLES") {
                SchemaMembers::Tables
            } else if self.eat("SEQUENCES") {
                SchemaMembers::Sequences
            } else if self.eat("FUNCTIONS") {
                SchemaMembers::Functions
            } else {
                return Err(format!(
                    "expected TABLES, SEQUENCES or FUNCTIONS after ALL but found {}",
                    self.found()
                ));
            };
            self.expect("IN")?;
            self.expect("SCHEMA")?;
            let schemas = self.comma_list(|p| p.ident("a schema name"))?;
            return Ok(Object::AllInSchema { members, schemas });
        }
        if self.eat("TABLE") {
            return Ok(Object::Tables(self.comma_list(Self::qualified)?));
        }
        if self.eat("SEQUENCE") {
            return Ok(Object::Sequences(self.comma_list(Self::qualified)?));
        }
        if self.eat("SCHEMA") {
            return Ok(Object::Schemas(
                self.comma_list(|p| p.ident("a schema name"))?,
            ));
        }
        if self.eat("DATABASE") {
            return Ok(Object::Databases(
                self.comma_list(|p| p.ident("a database name"))?,
            ));
        }
        Err(format!(
            "expected the object kind (ALL TABLES|SEQUENCES|FUNCTIONS IN SCHEMA, TABLE, \
             SEQUENCE, SCHEMA or DATABASE) but found {}",
            self.found()
        ))
    }

    fn grant(&mut self) -> Result<GrantSpec, String> {
        if self.peek().is_none() {
            return Err("empty grant".into());
        }
        let privileges = self.privileges()?;
        self.expect("ON")?;
        let object = self.object()?;
        Ok(GrantSpec { privileges, object })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(text: &str) -> String {
        GrantSpec::parse(text).unwrap().to_sql("idm_u")
    }

    #[test]
    fn renders_the_supported_forms_quoted() {
        assert_eq!(
            sql("SELECT ON ALL TABLES IN SCHEMA reporting"),
            r#"GRANT SELECT ON ALL TABLES IN SCHEMA "reporting" TO "idm_u""#
        );
        assert_eq!(
            sql("select , insert on table App.Orders, \"Mixed Case\".\"t\"\"x\", plain"),
            r#"GRANT SELECT, INSERT ON TABLE "app"."orders", "Mixed Case"."t""x", "plain" TO "idm_u""#
        );
        assert_eq!(
            sql("usage, select on sequence s.seq"),
            r#"GRANT USAGE, SELECT ON SEQUENCE "s"."seq" TO "idm_u""#
        );
        assert_eq!(
            sql("EXECUTE ON ALL FUNCTIONS IN SCHEMA api, api2"),
            r#"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA "api", "api2" TO "idm_u""#
        );
        assert_eq!(
            sql("USAGE ON ALL SEQUENCES IN SCHEMA app"),
            r#"GRANT USAGE ON ALL SEQUENCES IN SCHEMA "app" TO "idm_u""#
        );
        assert_eq!(
            sql("USAGE, CREATE ON SCHEMA reporting"),
            r#"GRANT USAGE, CREATE ON SCHEMA "reporting" TO "idm_u""#
        );
        assert_eq!(
            sql("CONNECT, TEMP ON DATABASE orders"),
            r#"GRANT CONNECT, TEMPORARY ON DATABASE "orders" TO "idm_u""#
        );
        assert_eq!(
            sql("SELECT, select ON TABLE t$1"),
            r#"GRANT SELECT ON TABLE "t$1" TO "idm_u""#
        );
        assert_eq!(
            GrantSpec::parse("SELECT ON TABLE t")
                .unwrap()
                .to_sql("we\"ird"),
            r#"GRANT SELECT ON TABLE "t" TO "we""ird""#
        );
    }

    #[test]
    fn hostile_and_unknown_input_is_refused() {
        let cases = [
            ("", "empty grant"),
            (
                "SELECT ON TABLE t; DROP TABLE x",
                "unexpected character ';'",
            ),
            ("SELECT ON TABLE t -- comment", "unexpected character '-'"),
            ("SELECT ON TABLE t /* c */", "unexpected character '/'"),
            ("SELECT ON TABLE t TO evil", "unexpected \"TO\""),
            ("SELECT ON TABLE t WITH GRANT OPTION", "unexpected \"WITH\""),
            ("SELECT (col) ON TABLE t", "unexpected character '('"),
            ("SELECT ON t", "expected the object kind"),
            ("DROP ON TABLE t", "unknown privilege \"DROP\""),
            ("SUPERUSER ON DATABASE d", "unknown privilege"),
            ("SELECT ON TABLE 't'", "unexpected character '\\''"),
            ("SELECT ON TABLE \"unterminated", "unterminated quoted name"),
            ("SELECT ON TABLE \"a\0b\"", "control character"),
            ("SELECT ON TABLE \"\"", "empty quoted name"),
            ("SELECT ON TABLE a\\b", "unexpected character '\\\\'"),
            ("SELECT ON TABLE täble", "unexpected character 'ä'"),
            ("SELECT ON TABLE *", "unexpected character '*'"),
            ("SELECT ON TABLE a.", "expected a name after"),
            ("SELECT ON TABLE a,", "expected a name but found the end"),
            ("SELECT ON ALL TABLES schema x", "expected IN"),
            ("SELECT ON ALL VIEWS IN SCHEMA x", "expected TABLES"),
            ("EXECUTE ON TABLE t", "EXECUTE does not apply to tables"),
            ("SELECT ON SCHEMA s", "SELECT does not apply to schemas"),
            (
                "CONNECT ON ALL TABLES IN SCHEMA s",
                "CONNECT does not apply",
            ),
            ("SELECT ON SEQUENCE s, TABLE t", "unexpected \"t\""),
        ];
        for (text, want) in cases {
            let err = GrantSpec::parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let long = format!("SELECT ON TABLE {}", "a".repeat(64));
        assert!(GrantSpec::parse(&long).unwrap_err().contains("longer than"));
        let ok63 = format!("SELECT ON TABLE {}", "a".repeat(63));
        assert!(GrantSpec::parse(&ok63).is_ok());
    }

    #[test]
    fn quoted_names_keep_anything_safely_quoted() {
        let spec = GrantSpec::parse(r#"SELECT ON TABLE "x"";DROP TABLE y;--""#).unwrap();
        assert_eq!(
            spec.to_sql("u"),
            r#"GRANT SELECT ON TABLE "x"";DROP TABLE y;--" TO "u""#
        );
        assert_eq!(spec.danger(), None);
    }

    #[test]
    fn dangerous_grants_are_recognised() {
        for text in [
            "ALL ON ALL TABLES IN SCHEMA s",
            "all privileges on table t",
            "CREATE ON DATABASE d",
            "CONNECT, CREATE ON DATABASE d",
            "SELECT ON TABLE pg_authid",
            "SELECT ON TABLE PG_CATALOG.pg_authid",
            "SELECT ON ALL TABLES IN SCHEMA pg_catalog",
            "USAGE ON SCHEMA information_schema",
            "SELECT ON ALL TABLES IN SCHEMA ok, pg_toast",
        ] {
            assert!(GrantSpec::parse(text).unwrap().danger().is_some(), "{text}");
        }
        for text in [
            "SELECT ON ALL TABLES IN SCHEMA reporting",
            "CONNECT, TEMPORARY ON DATABASE d",
            "USAGE, CREATE ON SCHEMA s",
            "SELECT ON TABLE app.pg_like_name",
            "SELECT ON TABLE \"PG_x\"",
        ] {
            assert_eq!(GrantSpec::parse(text).unwrap().danger(), None, "{text}");
        }
    }

    #[test]
    fn single_identifiers() {
        assert_eq!(Ident::parse("ReadOnly").unwrap().as_str(), "readonly");
        assert_eq!(
            Ident::parse(" \"Read Only\" ").unwrap().as_str(),
            "Read Only"
        );
        assert!(Ident::parse("a b").is_err());
        assert!(Ident::parse("a;b").is_err());
        assert!(Ident::parse("").is_err());
        assert!(Ident::parse("pg_signal_backend").unwrap().is_system());
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
