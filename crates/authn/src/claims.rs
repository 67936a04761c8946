//! Checks of the registered claims (RFC 7519 §4.1) and of required claims.
//!
//! These run only after the signature verified, on claims that are then
//! known to come from the issuer; they decide whether the issuer meant the
//! token for us, now.

use crate::error::{untrusted, untrusted_list, AuthnError};
use idmint_core::UnixTime;
use serde_json::{Map, Value};

/// What the registered claims are checked against (from one auth config).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimRules<'a> {
    pub auth: &'a str,
    pub issuer: &'a str,
    pub audiences: &'a [String],
    pub leeway_secs: u64,
    pub max_lifetime_secs: u64,
}

/// The token's validity window, after checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validity {
    pub expires_at: UnixTime,
}

/// Check `iss`, `aud`, `exp`, `nbf`, `iat` and the lifetime.
///
/// Audience: `aud` may be a string or an array of strings, and it is
/// accepted when it contains **at least one** configured audience, even if it
/// also lists other audiences. This is RFC 7519 §4.1.3 semantics and how
/// multi-audience tokens (and GitHub's custom audiences) work; an operator
/// who wants a dedicated audience should configure one no other relying
/// party uses.
///
/// Times: `exp` is required; `nbf` and `iat` are optional but checked when
/// present; all allow `leeway_secs` of clock skew. The lifetime
/// (`exp` minus `iat`, or minus `nbf`, or minus now when the token has
/// neither) must not exceed `max_lifetime_secs`, so a token minted to live
/// for years is refused even while fresh.
pub(crate) fn check_registered(
    claims: &Map<String, Value>,
    rules: &ClaimRules<'_>,
    now: UnixTime,
) -> Result<Validity, AuthnError> {
    check_issuer(claims, rules)?;
    check_audience(claims, rules)?;

    let leeway = rules.leeway_secs;
    let leeway_i = i64::try_from(leeway).unwrap_or(i64::MAX);
    let exp = numeric_date(claims, "exp", f64::floor)?.ok_or_else(|| AuthnError::MissingClaim {
        claim: "exp".into(),
        hint: "; idmint only accepts tokens that expire".into(),
    })?;
    if now.0 >= exp.saturating_add(leeway_i) {
        return Err(AuthnError::Expired {
            exp: UnixTime(exp),
            now,
            leeway,
        });
    }
    let nbf = numeric_date(claims, "nbf", f64::ceil)?;
    if let Some(nbf) = nbf {
        if now.0.saturating_add(leeway_i) < nbf {
            return Err(AuthnError::NotYetValid {
                nbf: UnixTime(nbf),
                now,
                leeway,
            });
        }
    }
    let iat = numeric_date(claims, "iat", f64::ceil)?;
    if let Some(iat) = iat {
        if iat > now.0.saturating_add(leeway_i) {
            return Err(AuthnError::IssuedInFuture {
                iat: UnixTime(iat),
                now,
                leeway,
            });
        }
    }
    let (start, from) = match (iat, nbf) {
        (Some(iat), _) => (iat, "iat"),
        (None, Some(nbf)) => (nbf, "nbf"),
        (None, None) => (now.0, "now"),
    };
    let lifetime = exp.saturating_sub(start);
    if lifetime > i64::try_from(rules.max_lifetime_secs).unwrap_or(i64::MAX) {
        return Err(AuthnError::LifetimeTooLong {
            lifetime_secs: lifetime,
            from,
            max_secs: rules.max_lifetime_secs,
            auth: rules.auth.to_string(),
        });
    }
    Ok(Validity {
        expires_at: UnixTime(exp),
    })
}

/// `iss` must equal the configured issuer exactly.
pub(crate) fn check_issuer(
    claims: &Map<String, Value>,
    rules: &ClaimRules<'_>,
) -> Result<(), AuthnError> {
    match claims.get("iss") {
        Some(Value::String(iss)) if iss == rules.issuer => Ok(()),
        Some(Value::String(iss)) => Err(AuthnError::IssuerMismatch {
            found: untrusted(iss),
            expected: rules.issuer.to_string(),
            auth: rules.auth.to_string(),
        }),
        Some(other) => Err(type_error("iss", "a string", other)),
        None => Err(AuthnError::MissingClaim {
            claim: "iss".into(),
            hint: String::new(),
        }),
    }
}

fn check_audience(claims: &Map<String, Value>, rules: &ClaimRules<'_>) -> Result<(), AuthnError> {
    let wanted = rules.audiences.first().cloned().unwrap_or_default();
    let configured = |aud: &str| rules.audiences.iter().any(|a| a == aud);
    let found: Vec<&str> = match claims.get("aud") {
        Some(Value::String(aud)) if configured(aud) => return Ok(()),
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(items)) => {
            let mut found = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(aud) if configured(aud) => return Ok(()),
                    Value::String(aud) => found.push(aud.as_str()),
                    _ => {
                        return Err(AuthnError::ClaimType {
                            claim: "aud".into(),
                            expected: "a string or an array of strings",
                            found: "an array holding a non-string",
                        })
                    }
                }
            }
            found
        }
        Some(other) => return Err(type_error("aud", "a string or an array of strings", other)),
        None => {
            return Err(AuthnError::MissingClaim {
                claim: "aud".into(),
                hint: format!("; request the token with audience {wanted:?}"),
            })
        }
    };
    Err(AuthnError::AudienceMismatch {
        found: untrusted_list(found),
        expected: format!("{:?}", rules.audiences),
        wanted,
    })
}

/// A NumericDate claim: a finite JSON number (integer or float) of seconds
/// since the epoch, rounded with `round` (down for `exp`, up for `nbf`/`iat`,
/// so rounding never extends validity). Strings and other types are errors.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &str,
    round: fn(f64) -> f64,
) -> Result<Option<i64>, AuthnError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let expected = "a NumericDate (seconds since the epoch as a JSON number)";
    let Value::Number(n) = value else {
        return Err(type_error(name, expected, value));
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    if n.as_u64().is_some() {
        return Ok(Some(i64::MAX));
    }
    match n.as_f64() {
        // `as` saturates for out-of-range floats, which is what we want.
        Some(f) if f.is_finite() => Ok(Some(round(f) as i64)),
        _ => Err(AuthnError::ClaimType {
            claim: name.into(),
            expected,
            found: "a non-finite number",
        }),
    }
}

/// A claim that must be a non-empty string. `why` explains, for the
/// missing-claim message, who requires it (built only on failure: this runs
/// for every required claim of every login).
pub(crate) fn required_string<'c>(
    claims: &'c Map<String, Value>,
    name: &str,
    why: impl FnOnce() -> String,
) -> Result<&'c str, AuthnError> {
    match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(AuthnError::ClaimType {
            claim: name.into(),
            expected: "a non-empty string",
            found: "an empty string",
        }),
        Some(other) => Err(type_error(name, "a string", other)),
        None => Err(AuthnError::MissingClaim {
            claim: name.into(),
            hint: format!("; {}", why()),
        }),
    }
}

pub(crate) fn type_error(claim: &str, expected: &'static str, found: &Value) -> AuthnError {
    AuthnError::ClaimType {
        claim: claim.into(),
        expected,
        found: value_kind(found),
    }
}

pub(crate) fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn rules(audiences: &[String]) -> ClaimRules<'_> {
        ClaimRules {
            auth: "test",
            issuer: "https://issuer.example",
            audiences,
            leeway_secs: 30,
            max_lifetime_secs: 3600,
        }
    }

    fn check(claims: Value) -> Result<Validity, AuthnError> {
        let auds = vec!["idmint".to_string()];
        let Value::Object(map) = claims else {
            panic!("object")
        };
        check_registered(&map, &rules(&auds), UnixTime(NOW))
    }

    fn base() -> Value {
        json!({"iss":"https://issuer.example","aud":"idmint","exp": NOW + 60, "iat": NOW - 10})
    }

    fn with(k: &str, v: Value) -> Value {
        let mut c = base();
        c[k] = v;
        c
    }

    fn without(k: &str) -> Value {
        let mut c = base();
        c.as_object_mut().unwrap().remove(k);
        c
    }

    #[test]
    fn valid_claims_pass() {
        assert_eq!(check(base()).unwrap().expires_at, UnixTime(NOW + 60));
        assert!(check(with("aud", json!(["other", "idmint"]))).is_ok());
        assert!(check(with("exp", json!((NOW + 60) as f64 + 0.75)))
            .is_ok_and(|v| v.expires_at == UnixTime(NOW + 60)));
        assert!(check(with("exp", json!(NOW - 10))).is_ok(), "inside leeway");
        assert!(check(with("nbf", json!(NOW + 10))).is_ok(), "inside leeway");
        assert!(check(without("iat")).is_ok());
    }

    #[test]
    fn invalid_claims_fail_with_specific_errors() {
        let cases: Vec<(Value, &str)> = vec![
            (with("exp", json!(NOW - 31)), "token expired at"),
            (with("exp", json!("1800000060")), "claim exp must be a NumericDate"),
            (without("exp"), "no exp claim"),
            (with("nbf", json!(NOW + 31)), "not valid before"),
            (with("iat", json!(NOW + 31)), "issued in the future"),
            (with("exp", json!(NOW + 3600)), "lifetime 3610s (from iat"),
            (
                {
                    let mut c = without("iat");
                    c["exp"] = json!(1e300);
                    c
                },
                "from now",
            ),
            (with("iss", json!("https://evil.example")), "does not match the issuer"),
            (without("iss"), "no iss claim"),
            (with("aud", json!("other")), "audience mismatch: token aud [\"other\"] does not contain any of [\"idmint\"]; request the token with audience \"idmint\""),
            (with("aud", json!([])), "audience mismatch"),
            (with("aud", json!(["x", 1])), "claim aud must be a string or an array of strings"),
            (without("aud"), "no aud claim; request the token with audience \"idmint\""),
        ];
        for (claims, expected) in cases {
            let err = check(claims.clone()).unwrap_err();
            assert!(err.to_string().contains(expected), "{claims}: {err}");
            assert_eq!(err.code(), "invalid_token");
        }
    }

    #[test]
    fn required_strings() {
        let Value::Object(c) = json!({"a":"x","e":"","n":1,"arr":[],"obj":{}}) else {
            panic!()
        };
        assert_eq!(required_string(&c, "a", || "why".into()).unwrap(), "x");
        for (name, expected) in [
            ("e", "must be a non-empty string, but it is an empty string"),
            ("n", "must be a string, but it is a number"),
            ("arr", "must be a string, but it is an array"),
            ("obj", "must be a string, but it is an object"),
            ("missing", "no missing claim; why"),
        ] {
            let err = required_string(&c, name, || "why".into()).unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
        }
    }
}
