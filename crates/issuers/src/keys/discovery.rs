//! OIDC discovery for idmint acting as an identity provider.

use super::KeyRing;
use serde_json::{json, Value};

/// Claims idmint puts in the tokens it mints.
const CLAIMS_SUPPORTED: &[&str] = &[
    "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", "act", "idmint",
];

/// The OIDC discovery document (`/.well-known/openid-configuration`).
///
/// Clouds that federate with an OIDC provider (AWS
/// `AssumeRoleWithWebIdentity`, GCP workload identity federation) read it to
/// find the JWKS. `issuer` is echoed exactly as given because relying parties
/// compare it byte for byte with the tokens' `iss`; endpoint URLs are built
/// from it without a doubled slash.
pub fn discovery_document(issuer_url: &str, ring: &KeyRing) -> Value {
    let base = issuer_url.trim_end_matches('/');
    let algs: Vec<&str> = ring.algs().into_iter().map(|a| a.as_str()).collect();
    json!({
        "issuer": issuer_url,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}/oauth/token"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "grant_types_supported": [idmint_proto::token_types::GRANT_TOKEN_EXCHANGE],
        "claims_supported": CLAIMS_SUPPORTED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::signing::tests::test_key;
    use crate::SigningAlg;

    #[test]
    fn document_points_at_jwks_and_token_endpoint() {
        let ring = KeyRing::new(vec![
            test_key(SigningAlg::EdDSA),
            test_key(SigningAlg::ES256),
        ]);
        let doc = discovery_document("https://idmint.example/", &ring);
        assert_eq!(doc["issuer"], "https://idmint.example/");
        assert_eq!(
            doc["jwks_uri"],
            "https://idmint.example/.well-known/jwks.json"
        );
        assert_eq!(doc["token_endpoint"], "https://idmint.example/oauth/token");
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            json!(["EdDSA", "ES256"])
        );
        assert_eq!(
            doc["grant_types_supported"],
            json!(["urn:ietf:params:oauth:grant-type:token-exchange"])
        );
        assert_eq!(doc["response_types_supported"], json!(["id_token"]));
        assert_eq!(doc["subject_types_supported"], json!(["public"]));
        assert!(doc["claims_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("idmint")));

        let plain = discovery_document("https://idmint.example", &ring);
        assert_eq!(plain["issuer"], "https://idmint.example");
        assert_eq!(plain["jwks_uri"], doc["jwks_uri"]);
    }
}
