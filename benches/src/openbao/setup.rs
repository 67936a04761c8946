//! Configuring OpenBao the way the comparison configures idmint: the same
//! CI tokens, the same PostgreSQL, comparable outputs.
//!
//! | idmint | OpenBao |
//! |---|---|
//! | `[[auth.oidc]]` with the bench issuer | `auth/jwt` with `jwt_validation_pubkeys` = the issuer's public key, `bound_issuer`, roles `role_type=jwt`, `user_claim=sub`, `bound_audiences`, `bound_claims` on repository and ref |
//! | sealed session token (stateless) | `token_type=batch` (role `ci-batch`, the comparable one) and `service` (role `ci-service`, OpenBao's default) |
//! | `POST /oauth/token` (RFC 8693) | login + `GET identity/oidc/token/bench-api` |
//! | `GET /api/v1/whoami` | `GET auth/token/lookup-self` |
//! | `[[issuer.postgres]]`, `member_of = ["readers"]` | `database/config/bench-pg`, `CREATE ROLE … IN ROLE readers` |
//! | `POST /api/v1/ssh/sign/{role}` | `ssh/sign/deploy`, ssh-ed25519 CA |
//!
//! The JWT auth method needs no network: keys are given inline.

use super::api::BaoApi;
use crate::error::{BenchError, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hyper::Method;
use idmint_testkit::{KeyAlg, TestKey};
use serde_json::json;

/// JWT role issuing batch tokens (stateless, like idmint's sessions).
pub const ROLE_BATCH: &str = "ci-batch";
/// JWT role issuing service tokens (stored, with a lease each).
pub const ROLE_SERVICE: &str = "ci-service";
/// `identity/oidc/role/<name>`: the peer of idmint's oauth role.
pub const OIDC_ROLE: &str = "bench-api";
/// `database/roles/<name>`.
pub const DB_ROLE: &str = "readers";
/// `ssh/roles/<name>`.
pub const SSH_ROLE: &str = "deploy";
/// The login every SSH certificate is for.
pub const SSH_USER: &str = "deploy";
/// Lifetime of database credentials: long enough that no lease of the run
/// expires during it (expiry would add the reaper's work to later runs).
pub const DB_TTL: &str = "1h";

/// The ACL policy every CI token gets.
const POLICY: &str = r#"
path "identity/oidc/token/bench-api" { capabilities = ["read"] }
path "database/creds/readers"        { capabilities = ["read"] }
path "ssh/sign/deploy"               { capabilities = ["create", "update"] }
"#;

/// What the PostgreSQL target looks like to OpenBao.
pub struct PgTarget<'a> {
    pub port: u16,
    pub admin_user: &'a str,
    pub admin_password: &'a str,
    pub database: &'a str,
    /// The group role issued users join.
    pub group: &'a str,
}

/// What OpenBao is configured to trust and issue.
pub struct BaoSetup<'a> {
    pub issuer: &'a str,
    pub key: &'a TestKey,
    /// `aud` of the CI tokens.
    pub audience: &'a str,
    /// The OIDC `aud` of issued identity tokens (idmint's role audience).
    pub token_audience: &'a str,
    /// The claim that names OpenBao's identity entity alias. OpenBao
    /// creates (and persists) an entity for every new value, so a claim
    /// that differs per token makes every login a storage write.
    pub user_claim: &'a str,
    pub pg: Option<PgTarget<'a>>,
}

/// Applies `setup` through `api` (a root connection).
pub async fn configure(api: &mut BaoApi, setup: &BaoSetup<'_>) -> Result<()> {
    api.call(
        Method::PUT,
        "sys/policies/acl/bench",
        Some(json!({ "policy": POLICY })),
    )
    .await?;

    api.write("sys/auth/jwt", json!({"type": "jwt"})).await?;
    api.write(
        "auth/jwt/config",
        json!({
            "jwt_validation_pubkeys": [public_key_pem(setup.key)?],
            "bound_issuer": setup.issuer,
        }),
    )
    .await?;
    for (role, token_type) in [(ROLE_BATCH, "batch"), (ROLE_SERVICE, "service")] {
        api.write(
            &format!("auth/jwt/role/{role}"),
            json!({
                "role_type": "jwt",
                "user_claim": setup.user_claim,
                "bound_audiences": [setup.audience],
                "bound_claims": {"repository": "acme/app", "ref": "refs/heads/main"},
                "token_type": token_type,
                "token_ttl": "10m",
                "token_policies": ["bench"],
            }),
        )
        .await?;
    }

    api.write(
        "identity/oidc/key/bench",
        json!({"algorithm": "ES256", "allowed_client_ids": "*"}),
    )
    .await?;
    api.write(
        &format!("identity/oidc/role/{OIDC_ROLE}"),
        json!({"key": "bench", "ttl": "5m", "client_id": setup.token_audience}),
    )
    .await?;

    api.write("sys/mounts/ssh", json!({"type": "ssh"})).await?;
    api.write(
        "ssh/config/ca",
        json!({"generate_signing_key": true, "key_type": "ssh-ed25519"}),
    )
    .await?;
    api.write(
        &format!("ssh/roles/{SSH_ROLE}"),
        json!({
            "key_type": "ca",
            "allow_user_certificates": true,
            "allowed_users": SSH_USER,
            "default_user": SSH_USER,
            "ttl": "5m",
        }),
    )
    .await?;

    if let Some(pg) = &setup.pg {
        api.write("sys/mounts/database", json!({"type": "database"}))
            .await?;
        api.write(
            "database/config/bench-pg",
            json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": format!(
                    "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/{}?sslmode=disable",
                    pg.port, pg.database
                ),
                "username": pg.admin_user,
                "password": pg.admin_password,
                "allowed_roles": DB_ROLE,
                // The default is 4; raising it did not change throughput
                // (TESTBED §7), and idmint's pool is 8: use the same.
                "max_open_connections": 8,
                "verify_connection": true,
            }),
        )
        .await?;
        api.write(
            &format!("database/roles/{DB_ROLE}"),
            json!({
                "db_name": "bench-pg",
                // Grant through the group role: per-user grants break
                // PostgreSQL after ~2.4k live users (TESTBED §7).
                "creation_statements": [format!(
                    "CREATE ROLE \"{{{{name}}}}\" WITH LOGIN PASSWORD '{{{{password}}}}' VALID UNTIL '{{{{expiration}}}}' IN ROLE \"{}\";",
                    pg.group
                )],
                "default_ttl": DB_TTL,
                "max_ttl": "2h",
            }),
        )
        .await?;
    }
    Ok(())
}

/// The public half of `key` as SubjectPublicKeyInfo PEM, which is what
/// `jwt_validation_pubkeys` takes.
pub fn public_key_pem(key: &TestKey) -> Result<String> {
    let der = match key.alg() {
        KeyAlg::Rs256 => {
            return key
                .rsa_public()
                .map(|r| r.spki_pem.clone())
                .ok_or_else(|| BenchError::openbao("JWT config", "the RSA key has no SPKI form"))
        }
        KeyAlg::Es256 => {
            let jwk = key.public_jwk();
            let coordinate = |name: &str| -> Result<Vec<u8>> {
                let text = jwk[name].as_str().ok_or_else(|| {
                    BenchError::openbao("JWT config", format!("the EC JWK has no {name}"))
                })?;
                let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|e| {
                    BenchError::openbao("JWT config", format!("the EC JWK's {name}: {e}"))
                })?;
                if bytes.len() != 32 {
                    return Err(BenchError::openbao(
                        "JWT config",
                        format!("the EC JWK's {name} is {} bytes, not 32", bytes.len()),
                    ));
                }
                Ok(bytes)
            };
            // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING 04||x||y }
            let mut der = vec![
                0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
                0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
            ];
            der.extend(coordinate("x")?);
            der.extend(coordinate("y")?);
            der
        }
        KeyAlg::EdDsa => {
            return Err(BenchError::openbao(
                "JWT config",
                "the comparison signs CI tokens with ES256 or RS256",
            ))
        }
    };
    Ok(pem("PUBLIC KEY", &der))
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// An OpenSSH `ssh-ed25519 AAAA…` public key line for `key` (an EdDSA
/// test key): the key the SSH scenarios ask to have signed.
pub fn openssh_ed25519(key: &TestKey) -> Result<String> {
    if key.alg() != KeyAlg::EdDsa {
        return Err(BenchError::openbao("SSH key", "not an Ed25519 key"));
    }
    let x = key.public_jwk()["x"]
        .as_str()
        .and_then(|x| URL_SAFE_NO_PAD.decode(x).ok())
        .filter(|b| b.len() == 32)
        .ok_or_else(|| BenchError::openbao("SSH key", "not an Ed25519 key"))?;
    let mut blob = Vec::with_capacity(51);
    for part in [b"ssh-ed25519".as_slice(), x.as_slice()] {
        blob.extend((part.len() as u32).to_be_bytes());
        blob.extend(part);
    }
    Ok(format!(
        "ssh-ed25519 {} bench@idmint",
        STANDARD.encode(blob)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn es256_keys_become_spki_pem() {
        let key = TestKey::generate(KeyAlg::Es256).unwrap();
        let text = public_key_pem(&key).unwrap();
        assert!(text.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(text.ends_with("-----END PUBLIC KEY-----\n"));
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(body).unwrap();
        assert_eq!(der.len(), 91);
        assert_eq!(&der[..2], &[0x30, 0x59]);
        assert!(text.lines().all(|l| l.len() <= 64));
    }

    #[test]
    fn ed25519_keys_become_openssh_lines() {
        let key = TestKey::generate(KeyAlg::EdDsa).unwrap();
        let line = openssh_ed25519(&key).unwrap();
        let mut parts = line.split(' ');
        assert_eq!(parts.next(), Some("ssh-ed25519"));
        let blob = STANDARD.decode(parts.next().unwrap()).unwrap();
        assert_eq!(blob.len(), 4 + 11 + 4 + 32);
        assert_eq!(&blob[4..15], b"ssh-ed25519");
        assert!(openssh_ed25519(&TestKey::generate(KeyAlg::Es256).unwrap()).is_err());
    }
}
