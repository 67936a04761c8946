//! Quoting values into MySQL/MariaDB statements that cannot take bound
//! parameters.
//!
//! `CREATE USER`, `GRANT` and `ALTER USER … IDENTIFIED BY` are not
//! preparable with placeholders for the account or the password (MariaDB
//! 10.11 answers `ER_PARSE_ERROR` to `PREPARE s FROM 'CREATE USER ? IDENTIFIED
//! BY ?'` and to a `?` in the `IDENTIFIED BY` position), so values are
//! written as literals. Two server settings change how literals are read:
//!
//! - `NO_BACKSLASH_ESCAPES` in `sql_mode` turns `\` from an escape into an
//!   ordinary character. A literal that is correct in one mode is wrong in
//!   the other as soon as it contains `\`, so `\` is refused outright and
//!   `'` is escaped by doubling, which means the same thing in both modes.
//! - The client character set. In GBK, Big5 or SJIS a multi-byte character
//!   may end in the byte of `\`, `'` or `` ` `` and swallow the quote that
//!   follows. Only printable ASCII is accepted, which every client character
//!   set the server allows encodes the same way, whatever the session's
//!   character set was forced to.
//!
//! idmint's generated passwords and usernames are `[A-Za-z0-9_]`, so the
//! restrictions only ever bite on admin-supplied values (the admin password,
//! quoted identifiers in a grant template), where a clear error is better
//! than a statement that means something else.

/// Why a value cannot be written into a statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    #[error("is empty")]
    Empty,
    #[error(
        "contains a backslash, which MySQL reads differently depending on NO_BACKSLASH_ESCAPES; \
         use a value without `\\`"
    )]
    Backslash,
    #[error(
        "contains a character outside printable ASCII (byte offset {0}); non-ASCII and control \
         characters are refused because their meaning depends on the session character set"
    )]
    NotPrintableAscii(usize),
    #[error("is longer than {0} characters")]
    TooLong(usize),
}

/// Printable ASCII without `\`: the only characters that mean the same in
/// every sql_mode and every client character set.
fn check_portable(value: &str) -> Result<(), QuoteError> {
    if value.is_empty() {
        return Err(QuoteError::Empty);
    }
    if let Some((at, _)) = value
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_graphic() || *c == ' '))
    {
        return Err(QuoteError::NotPrintableAscii(at));
    }
    if value.contains('\\') {
        return Err(QuoteError::Backslash);
    }
    Ok(())
}

/// `value` as a single-quoted string literal: `'` doubled, `\` and anything
/// but printable ASCII refused (see the module docs for why).
pub fn string_literal(value: &str) -> Result<String, QuoteError> {
    check_portable(value)?;
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    Ok(out)
}

/// Longest database, table or role name MySQL accepts.
pub const MAX_IDENTIFIER_LEN: usize = 64;

/// Check that `name` can be written as a backquoted identifier: printable
/// ASCII without `\`, at most [`MAX_IDENTIFIER_LEN`] characters, and no
/// trailing space (MySQL refuses names ending in a space).
pub fn check_identifier(name: &str) -> Result<(), QuoteError> {
    check_portable(name)?;
    if name.len() > MAX_IDENTIFIER_LEN {
        return Err(QuoteError::TooLong(MAX_IDENTIFIER_LEN));
    }
    if name.ends_with(' ') {
        return Err(QuoteError::NotPrintableAscii(name.len() - 1));
    }
    Ok(())
}

/// `name` as a backquoted identifier, `` ` `` doubled. The caller has
/// checked it with [`check_identifier`]; this only quotes.
pub fn identifier(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('`');
    for c in name.chars() {
        if c == '`' {
            out.push('`');
        }
        out.push(c);
    }
    out.push('`');
    out
}

/// A database name in a database-level grant (`ON db.*`), where MySQL reads
/// `_` and `%` as wildcards (`ON my_app.*` would also cover `myXapp`):
/// both are escaped with `\` so the grant covers exactly the named database.
///
/// Inside a backquoted identifier `\` is an ordinary character in every
/// sql_mode; it is the grant-pattern matcher that reads `\_` as a literal
/// `_`. (MySQL 8 with `partial_revokes=ON` takes the pattern literally, so
/// such a grant matches no database at all: it fails closed.)
pub fn database_pattern(name: &str) -> String {
    let mut escaped = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c == '_' || c == '%' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    identifier(&escaped)
}

/// The account `'user'@'%'` (any client host): idmint users are reached
/// through whatever network path the application has, and access is
/// bounded by the password and the lease instead.
pub fn account(user: &str) -> Result<String, QuoteError> {
    Ok(format!("{}@'%'", string_literal(user)?))
}

/// The account `'user'@'host'` as `CURRENT_USER()` reports it
/// (`user@host`; the host cannot contain `@`, the user can).
pub fn account_at(current_user: &str) -> Result<String, QuoteError> {
    let (user, host) = current_user.rsplit_once('@').unwrap_or((current_user, "%"));
    // An anonymous or host-less account still needs a (possibly empty) literal.
    let host = if host.is_empty() {
        "''".to_string()
    } else {
        string_literal(host)?
    };
    Ok(format!("{}@{host}", string_literal(user)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_double_quotes_and_refuse_mode_dependent_bytes() {
        assert_eq!(string_literal("abc").unwrap(), "'abc'");
        assert_eq!(string_literal("a'b").unwrap(), "'a''b'");
        assert_eq!(
            string_literal("';DROP USER x;--").unwrap(),
            "''';DROP USER x;--'"
        );
        assert_eq!(string_literal("a\\'b"), Err(QuoteError::Backslash));
        assert_eq!(
            string_literal("a\0b"),
            Err(QuoteError::NotPrintableAscii(1))
        );
        assert_eq!(string_literal("pä"), Err(QuoteError::NotPrintableAscii(1)));
        assert_eq!(
            string_literal("a\nb"),
            Err(QuoteError::NotPrintableAscii(1))
        );
        assert_eq!(string_literal(""), Err(QuoteError::Empty));
    }

    #[test]
    fn a_literal_never_ends_early() {
        // Whatever the input, the literal is one token: an opening quote,
        // pairs of quotes inside, and exactly one closing quote at the end.
        for input in ["'", "''", "x'", "'x", "a''b'''", "` ' \" ;"] {
            let lit = string_literal(input).unwrap();
            let inner = &lit[1..lit.len() - 1];
            assert_eq!(inner.replace("''", ""), input.replace('\'', ""), "{lit}");
            assert!(!inner.replace("''", "").contains('\''), "{lit}");
        }
    }

    #[test]
    fn identifiers_double_backquotes() {
        assert_eq!(identifier("app"), "`app`");
        assert_eq!(identifier("a`b"), "`a``b`");
        assert!(check_identifier("my db").is_ok());
        assert!(check_identifier("trailing ").is_err());
        assert!(check_identifier(&"x".repeat(65)).is_err());
        assert!(check_identifier("a\\b").is_err());
        assert!(check_identifier("ä").is_err());
    }

    #[test]
    fn database_patterns_escape_wildcards() {
        assert_eq!(database_pattern("my_app"), "`my\\_app`");
        assert_eq!(database_pattern("a%"), "`a\\%`");
        assert_eq!(database_pattern("x`y"), "`x``y`");
    }

    #[test]
    fn accounts_quote_the_user() {
        assert_eq!(account("idm_r_s_0123").unwrap(), "'idm_r_s_0123'@'%'");
        assert_eq!(account("o'hara").unwrap(), "'o''hara'@'%'");
        assert_eq!(account_at("admin@%").unwrap(), "'admin'@'%'");
        assert_eq!(account_at("a@b@10.0.0.%").unwrap(), "'a@b'@'10.0.0.%'");
        assert_eq!(account_at("admin@").unwrap(), "'admin'@''");
        assert!(account_at("x\\@%").is_err());
    }
}
