//! Showing what is inside a JWT. Display only: nothing here verifies a
//! signature, so nothing here may be used to trust a token.

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

/// The payload (claims) of a compact JWS, unverified.
pub fn unverified_claims(token: &str) -> Result<Value> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        bail!("not a JWT (expected three dot-separated parts)");
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .context("JWT payload is not base64url")?;
    let claims: Value = serde_json::from_slice(&bytes).context("JWT payload is not JSON")?;
    if !claims.is_object() {
        bail!("JWT payload is not a JSON object");
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_payload() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"x","aud":"api"}"#);
        let c = unverified_claims(&format!("e30.{payload}.sig")).unwrap();
        assert_eq!(c["sub"], "x");
        assert!(unverified_claims("idm_abc").is_err());
        assert!(unverified_claims("a.!!!.c").is_err());
        assert!(unverified_claims(&format!("a.{}.c", URL_SAFE_NO_PAD.encode(b"[1]"))).is_err());
    }
}
