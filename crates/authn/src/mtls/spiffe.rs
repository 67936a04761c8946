//! SPIFFE IDs (`spiffe://trust-domain/path`), parsed strictly per the
//! SPIFFE-ID specification: lowercase scheme, trust domain of
//! `[a-z0-9._-]`, path segments of `[A-Za-z0-9._-]` that are neither empty
//! nor `.`/`..`, and no userinfo, port, query, fragment or %-encoding.
//! A lenient URL parser would normalise `spiffe://td/a/../b` into another
//! identity; this one refuses it, so the ID policy sees is the ID signed.

use thiserror::Error;

const SCHEME: &str = "spiffe://";
/// The spec's limit on the whole ID, in bytes.
const MAX_LEN: usize = 2048;
const MAX_TRUST_DOMAIN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeId {
    trust_domain: String,
    path: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpiffeIdError {
    #[error("SPIFFE ID is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("not a SPIFFE ID: it must start with lowercase \"spiffe://\"")]
    Scheme,
    #[error("SPIFFE ID has an empty trust domain")]
    EmptyTrustDomain,
    #[error("SPIFFE ID trust domain may only contain [a-z0-9._-] (no uppercase, userinfo '@', port ':', query '?', fragment '#' or %-encoding); found {0:?}")]
    TrustDomainChar(char),
    #[error("SPIFFE ID trust domain is longer than {MAX_TRUST_DOMAIN} bytes")]
    TrustDomainTooLong,
    #[error("SPIFFE ID path has an empty segment (\"//\" or a trailing \"/\")")]
    EmptySegment,
    #[error("SPIFFE ID path has a \".\" or \"..\" segment; IDs are never normalised")]
    DotSegment,
    #[error("SPIFFE ID path may only contain [A-Za-z0-9._-] in each segment (no query '?', fragment '#' or %-encoding); found {0:?}")]
    PathChar(char),
}

impl SpiffeId {
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.len() > MAX_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = s.strip_prefix(SCHEME).ok_or(SpiffeIdError::Scheme)?;
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        validate_trust_domain(td)?;
        if !path.is_empty() {
            validate_path(path)?;
        }
        Ok(Self {
            trust_domain: td.to_string(),
            path: path.to_string(),
        })
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The path, `""` or starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl std::fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SCHEME}{}{}", self.trust_domain, self.path)
    }
}

/// A trust domain name on its own (config values, `spiffe://` excluded).
pub fn validate_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::EmptyTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    if let Some(c) = td
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        return Err(SpiffeIdError::TrustDomainChar(c));
    }
    Ok(())
}

/// One path segment (no `/`): also used to check template values before
/// they are substituted into an ID.
pub fn validate_segment(seg: &str) -> Result<(), SpiffeIdError> {
    if seg.is_empty() {
        return Err(SpiffeIdError::EmptySegment);
    }
    if seg == "." || seg == ".." {
        return Err(SpiffeIdError::DotSegment);
    }
    if let Some(c) = seg
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_'))
    {
        return Err(SpiffeIdError::PathChar(c));
    }
    Ok(())
}

fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    // `path` starts with '/', so the first split item is "".
    path.split('/').skip(1).try_for_each(validate_segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_canonical_ids() {
        let id = SpiffeId::parse("spiffe://prod.example/ci/acme-app_1.x").unwrap();
        assert_eq!(id.trust_domain(), "prod.example");
        assert_eq!(id.path(), "/ci/acme-app_1.x");
        assert_eq!(id.to_string(), "spiffe://prod.example/ci/acme-app_1.x");
        assert_eq!(SpiffeId::parse("spiffe://td").unwrap().path(), "");
    }

    #[test]
    fn refuses_every_trick() {
        use SpiffeIdError::*;
        let cases = [
            ("SPIFFE://td/x", Scheme),
            ("Spiffe://td/x", Scheme),
            ("https://td/x", Scheme),
            ("spiffe:/td/x", Scheme),
            ("spiffe://td/../x", DotSegment),
            ("spiffe://td/a/./x", DotSegment),
            ("spiffe://td/a%2Fb", PathChar('%')),
            ("spiffe://user@td/x", TrustDomainChar('@')),
            ("spiffe://td:8443/x", TrustDomainChar(':')),
            ("spiffe://td/x?y=1", PathChar('?')),
            ("spiffe://td/x#frag", PathChar('#')),
            ("spiffe://TD/x", TrustDomainChar('T')),
            ("spiffe://td/x/", EmptySegment),
            ("spiffe://td//x", EmptySegment),
            ("spiffe:///x", EmptyTrustDomain),
            ("spiffe://td/ü", PathChar('ü')),
        ];
        for (input, want) in cases {
            assert_eq!(SpiffeId::parse(input), Err(want), "{input}");
        }
        let long = format!("spiffe://td/{}", "a".repeat(MAX_LEN));
        assert_eq!(SpiffeId::parse(&long), Err(TooLong));
        assert!(SpiffeIdError::PathChar('%')
            .to_string()
            .contains("%-encoding"));
    }
}
