//! The `static` issuer: secrets an admin stored sealed in idmint (an
//! upstream API key such as an OpenAI key), delivered to `idmint proxy`.
//!
//! Unlike every other issuer nothing is minted: the value is whatever the
//! admin stored with `idmint secret put NAME`. What idmint adds is where
//! the value may go. By default (`deliver_to = "proxy"`) only a caller that
//! came through a host's attestation of a local process (a `unix` identity
//! carrying the `attested_by` attribute, i.e. `idmint proxy`) receives it;
//! the proxy injects it into upstream requests, so no workload ever holds
//! it. Every other caller is refused with `static_secret_proxy_only`, even
//! when the policy permits the role. A role may opt out with
//! `deliver_to = "any"` (the value then reaches the workload).
//!
//! Nothing exists outside idmint, so there is nothing to revoke at lease
//! end; the lease records the secret's name (revocation handle) and the
//! keyed fingerprint of the value, the same fingerprint `idmint secret
//! list` and the `secret_put` audit event show for that version.

use crate::{IssueError, IssueRequest, Issuer, Minted, PlanRequest};
use idmint_core::{DeliverTo, Identity, RevocationHandle, Role, Secret, StaticSecretTemplate};
use idmint_proto::Credential;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The revocation handle kind this issuer plans: the secret's name.
pub const SECRET_HANDLE: &str = "static_secret";

/// API error code of a refused delivery.
pub const PROXY_ONLY_CODE: &str = "static_secret_proxy_only";

/// API error code when the role's secret is not stored.
pub const MISSING_CODE: &str = "static_secret_missing";

/// Authentication method of identities a host attested for a local process.
pub const UNIX_METHOD: &str = "unix";

/// Identity attribute naming the host that attested the process.
pub const ATTESTED_BY: &str = "attested_by";

/// Longest secret name.
pub const MAX_NAME_LEN: usize = 63;

/// Largest secret value, in bytes. Upstream API keys are tens of bytes and
/// a PEM private key a few KiB; anything larger is almost certainly a file
/// given by mistake.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// `[[issuer.static]]` in `idmint.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticIssuerConfig {
    pub name: String,
}

/// Checks a secret name: `[a-z0-9][a-z0-9._-]{0,62}`. Names become part of
/// store keys and URLs, so nothing else (no `/`, no `..` prefix, no
/// uppercase look-alikes) is accepted.
pub fn validate_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return Err("a secret name must not be empty".into());
    };
    if bytes.len() > MAX_NAME_LEN {
        return Err(format!(
            "a secret name has at most {MAX_NAME_LEN} characters, this one has {}",
            bytes.len()
        ));
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(
            "a secret name starts with a lowercase letter or a digit ([a-z0-9][a-z0-9._-]{0,62})"
                .into(),
        );
    }
    if let Some(bad) = bytes.iter().find(|b| {
        !(b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    }) {
        return Err(format!(
            "a secret name may only contain a-z, 0-9, '.', '_' and '-' (found {:?})",
            char::from(*bad).escape_default().to_string()
        ));
    }
    Ok(())
}

/// A stored secret as the issuer needs it (`Debug` shows no value).
#[derive(Debug)]
pub struct StoredSecret {
    pub value: Secret<String>,
    /// 1 for the first `put`, +1 for each replacement.
    pub version: u64,
}

/// Where the issuer reads secrets from: the server's sealed store. A trait
/// so that the issuer does not depend on the store crate, and so that its
/// logic is tested without one.
#[async_trait::async_trait]
pub trait SecretSource: Send + Sync {
    /// The current value of `name`; `None` when no secret has that name.
    /// Errors are the store's or the seal's, as text for the operator.
    async fn read(&self, name: &str) -> Result<Option<StoredSecret>, String>;
}

/// Whether `identity` came through a host's attestation of a local
/// process (`idmint proxy`): the `unix` method with a non-empty string
/// `attested_by` attribute.
pub fn is_attested_proxy(identity: &Identity) -> bool {
    identity.method == UNIX_METHOD
        && identity
            .attributes
            .get(ATTESTED_BY)
            .and_then(|v| v.as_str())
            .is_some_and(|s| !s.is_empty())
}

/// Refuses delivery of `role`'s secret to `identity` unless the role
/// allows any caller or the caller is an attested proxy.
pub fn check_delivery(
    role: &Role,
    t: &StaticSecretTemplate,
    identity: &Identity,
) -> Result<(), IssueError> {
    if t.deliver_to == DeliverTo::Any || is_attested_proxy(identity) {
        return Ok(());
    }
    Err(IssueError::Refused {
        code: PROXY_ONLY_CODE,
        message: format!(
            "role {:?} holds a static secret, which idmint only hands to `idmint proxy` (a `unix` identity attested by a host); \
             the proxy injects it into upstream requests so that no workload ever sees it. Send the workload's requests \
             through `idmint proxy` instead of asking for the secret (you authenticated with method {:?}); an admin who \
             really wants workloads to hold the value sets `deliver_to = \"any\"` on the role",
            role.name, identity.method
        ),
    })
}

/// Serves the secrets of a [`SecretSource`].
pub struct StaticSecretIssuer {
    name: String,
    source: Arc<dyn SecretSource>,
}

impl std::fmt::Debug for StaticSecretIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticSecretIssuer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl StaticSecretIssuer {
    pub fn new(
        cfg: &StaticIssuerConfig,
        source: Arc<dyn SecretSource>,
    ) -> Result<Self, IssueError> {
        if cfg.name.trim().is_empty() {
            return Err(IssueError::Config(
                "[[issuer.static]] needs a non-empty `name`".into(),
            ));
        }
        Ok(Self {
            name: cfg.name.clone(),
            source,
        })
    }

    fn template<'r>(&self, role: &'r Role) -> Result<&'r StaticSecretTemplate, String> {
        role.static_secret.as_ref().ok_or_else(|| {
            format!(
                "role {:?} uses the static issuer {:?} but has no `static = {{ secret = \"NAME\" }}` template",
                role.name, self.name
            )
        })
    }
}

#[async_trait::async_trait]
impl Issuer for StaticSecretIssuer {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "static"
    }

    /// Nothing is created anywhere: the lease is written once, after the
    /// value was read.
    fn mints_externally(&self) -> bool {
        false
    }

    fn validate_role(&self, role: &Role) -> Result<(), String> {
        let t = self.template(role)?;
        validate_name(&t.secret).map_err(|e| format!("static.secret {:?}: {e}", t.secret))?;
        if !role.scopes.is_empty() || !role.audiences.is_empty() {
            return Err(format!(
                "role {:?}: scopes and audiences mean nothing for a static secret; remove them",
                role.name
            ));
        }
        Ok(())
    }

    fn plan(&self, plan: &PlanRequest<'_>) -> Result<RevocationHandle, IssueError> {
        let t = self.template(plan.role).map_err(IssueError::Config)?;
        Ok(RevocationHandle {
            kind: SECRET_HANDLE.into(),
            value: t.secret.clone(),
        })
    }

    async fn issue(&self, req: &IssueRequest<'_>) -> Result<Minted, IssueError> {
        let t = self.template(req.role).map_err(IssueError::Config)?;
        // Before the value is even read: a refused caller learns nothing,
        // not even whether the secret is stored.
        check_delivery(req.role, t, req.identity)?;
        if req.revocation.kind != SECRET_HANDLE || req.revocation.value != t.secret {
            return Err(IssueError::Internal(format!(
                "revocation handle {:?}:{:?} given to the static issuer does not name the role's secret",
                req.revocation.kind, req.revocation.value
            )));
        }
        let expires_at = req.credential_expiry("the secret could be delivered")?;
        let stored = self
            .source
            .read(&t.secret)
            .await
            .map_err(|e| IssueError::Internal(format!("reading static secret {:?}: {e}", t.secret)))?
            .ok_or_else(|| IssueError::Missing {
                code: MISSING_CODE,
                message: format!(
                    "role {:?} delivers the static secret {:?}, which is not stored; an admin stores it with \
                     `idmint secret put {} --from-file FILE` (or --from-env VAR / --stdin)",
                    req.role.name, t.secret, t.secret
                ),
            })?;
        let material = Secret::new(stored.value.expose().as_bytes().to_vec());
        Ok(Minted {
            credential: Credential::StaticSecret {
                name: t.secret.clone(),
                value: stored.value.expose().clone(),
            },
            expires_at,
            secret_material: material,
        })
    }

    /// Nothing to remove: the value stays stored until an admin deletes or
    /// replaces it. The lease only ends.
    async fn revoke(&self, _handle: &RevocationHandle) -> Result<(), IssueError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idmint_core::{Grant, IdentityKind, LeaseId, RequestId, Ttl, UnixTime};
    use serde_json::{json, Map, Value};
    use std::collections::HashMap;

    struct MapSource(HashMap<String, (String, u64)>);

    #[async_trait::async_trait]
    impl SecretSource for MapSource {
        async fn read(&self, name: &str) -> Result<Option<StoredSecret>, String> {
            Ok(self.0.get(name).map(|(v, version)| StoredSecret {
                value: Secret::new(v.clone()),
                version: *version,
            }))
        }
    }

    struct BrokenSource;

    #[async_trait::async_trait]
    impl SecretSource for BrokenSource {
        async fn read(&self, _: &str) -> Result<Option<StoredSecret>, String> {
            Err("database is locked".into())
        }
    }

    fn role(toml_text: &str) -> Role {
        toml::from_str(toml_text).unwrap()
    }

    fn openai_role(deliver: &str) -> Role {
        role(&format!(
            "name = \"static/openai\"\nissuer = \"static\"\nmax_ttl = \"1h\"\n\
             static = {{ secret = \"openai\"{deliver} }}\n"
        ))
    }

    fn identity(method: &str, attrs: Value) -> Identity {
        let attributes: Map<String, Value> = match attrs {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        Identity {
            kind: IdentityKind::Workload,
            subject: "proc".into(),
            issuer: "https://idmint.test".into(),
            method: method.into(),
            auth: "a".into(),
            attributes,
            proof_id: "p".into(),
            expires_at: UnixTime::now().plus(std::time::Duration::from_secs(3600)),
        }
    }

    fn issuer(source: Arc<dyn SecretSource>) -> StaticSecretIssuer {
        StaticSecretIssuer::new(
            &StaticIssuerConfig {
                name: "static".into(),
            },
            source,
        )
        .unwrap()
    }

    fn source() -> Arc<dyn SecretSource> {
        Arc::new(MapSource(HashMap::from([(
            "openai".to_string(),
            ("sk-test-123".to_string(), 3),
        )])))
    }

    async fn issue(
        i: &StaticSecretIssuer,
        role: &Role,
        who: &Identity,
    ) -> Result<Minted, IssueError> {
        let lease_id = LeaseId::generate().unwrap();
        let request_id = RequestId::generate().unwrap();
        let revocation = i
            .plan(&PlanRequest {
                lease_id: &lease_id,
                role,
                identity: who,
            })
            .unwrap();
        let grant = Grant {
            ttl: Ttl::clamped(600),
            scopes: vec![],
            audience: None,
            ttl_clamped: false,
        };
        i.issue(&IssueRequest {
            lease_id: &lease_id,
            request_id: &request_id,
            identity: who,
            role,
            grant: &grant,
            policy_version: 1,
            now: UnixTime::now(),
            actor: None,
            revocation: &revocation,
            csr: None,
        })
        .await
    }

    #[test]
    fn names_are_validated() {
        for good in ["openai", "a", "0", "a.b_c-d", &"x".repeat(63)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../x",
            "..",
            ".hidden",
            "-x",
            "_x",
            "OpenAI",
            "a/b",
            "a b",
            "a\0b",
            "é",
            &"x".repeat(64),
            &"x".repeat(200),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn attested_proxy_needs_unix_and_a_string_attested_by() {
        assert!(is_attested_proxy(&identity(
            "unix",
            json!({"attested_by": "host-1"})
        )));
        assert!(!is_attested_proxy(&identity("unix", json!({}))));
        assert!(!is_attested_proxy(&identity(
            "unix",
            json!({"attested_by": ""})
        )));
        assert!(!is_attested_proxy(&identity(
            "unix",
            json!({"attested_by": 1})
        )));
        assert!(!is_attested_proxy(&identity(
            "unix",
            json!({"attested_by": ["h"]})
        )));
        assert!(!is_attested_proxy(&identity(
            "oidc",
            json!({"attested_by": "host-1"})
        )));
        assert!(!is_attested_proxy(&identity(
            "idmint",
            json!({"attested_by": "host-1"})
        )));
    }

    #[tokio::test]
    async fn the_proxy_gets_the_value_and_its_fingerprint_material() {
        let i = issuer(source());
        let r = openai_role("");
        let m = issue(&i, &r, &identity("unix", json!({"attested_by": "host-1"})))
            .await
            .unwrap();
        assert_eq!(
            m.credential,
            Credential::StaticSecret {
                name: "openai".into(),
                value: "sk-test-123".into()
            }
        );
        assert_eq!(m.secret_material.expose().as_slice(), b"sk-test-123");
    }

    #[tokio::test]
    async fn anyone_else_is_refused_unless_deliver_to_any() {
        let i = issuer(source());
        let oidc = identity("oidc", json!({"attested_by": "host-1"}));
        let err = issue(&i, &openai_role(""), &oidc).await.err().unwrap();
        assert_eq!(err.api_code(), Some(PROXY_ONLY_CODE));
        let msg = err.to_string();
        assert!(
            msg.contains("idmint proxy") && !msg.contains("sk-test"),
            "{msg}"
        );
        let explicit = openai_role(", deliver_to = \"proxy\"");
        assert!(issue(&i, &explicit, &oidc).await.is_err());

        let any = openai_role(", deliver_to = \"any\"");
        let m = issue(&i, &any, &oidc).await.unwrap();
        assert!(
            matches!(m.credential, Credential::StaticSecret { ref value, .. } if value == "sk-test-123")
        );
    }

    #[tokio::test]
    async fn a_refused_caller_does_not_learn_whether_the_secret_exists() {
        let i = issuer(Arc::new(BrokenSource));
        let err = issue(&i, &openai_role(""), &identity("oidc", json!({})))
            .await
            .err()
            .unwrap();
        assert_eq!(err.api_code(), Some(PROXY_ONLY_CODE));
    }

    #[tokio::test]
    async fn a_missing_secret_names_the_command_that_stores_it() {
        let i = issuer(Arc::new(MapSource(HashMap::new())));
        let err = issue(
            &i,
            &openai_role(""),
            &identity("unix", json!({"attested_by": "h"})),
        )
        .await
        .err()
        .unwrap();
        assert_eq!(err.api_code(), Some(MISSING_CODE));
        assert!(
            err.to_string().contains("idmint secret put openai"),
            "{err}"
        );

        let i = issuer(Arc::new(BrokenSource));
        let err = issue(
            &i,
            &openai_role(""),
            &identity("unix", json!({"attested_by": "h"})),
        )
        .await
        .err()
        .unwrap();
        assert!(
            matches!(err, IssueError::Internal(ref m) if m.contains("database is locked")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn revocation_is_a_no_op_and_the_handle_names_the_secret() {
        let i = issuer(source());
        let r = openai_role("");
        let who = identity("unix", json!({"attested_by": "h"}));
        let h = i
            .plan(&PlanRequest {
                lease_id: &LeaseId::generate().unwrap(),
                role: &r,
                identity: &who,
            })
            .unwrap();
        assert_eq!(
            (h.kind.as_str(), h.value.as_str()),
            (SECRET_HANDLE, "openai")
        );
        i.revoke(&h).await.unwrap();
        assert!(!i.mints_externally());
    }

    #[test]
    fn roles_are_validated() {
        let i = issuer(source());
        assert!(i.validate_role(&openai_role("")).is_ok());
        assert!(i
            .validate_role(&openai_role(", deliver_to = \"any\""))
            .is_ok());
        let no_template = role("name = \"s\"\nissuer = \"static\"\nmax_ttl = \"1h\"\n");
        assert!(i
            .validate_role(&no_template)
            .unwrap_err()
            .contains("template"));
        let bad_name = role(
            "name = \"s\"\nissuer = \"static\"\nmax_ttl = \"1h\"\nstatic = { secret = \"../etc\" }\n",
        );
        assert!(i.validate_role(&bad_name).unwrap_err().contains("../etc"));
        let scoped = role(
            "name = \"s\"\nissuer = \"static\"\nmax_ttl = \"1h\"\nscopes = [\"a\"]\nstatic = { secret = \"x\" }\n",
        );
        assert!(i.validate_role(&scoped).is_err());
        let bad_deliver: Result<Role, _> = toml::from_str(
            "name = \"s\"\nissuer = \"static\"\nmax_ttl = \"1h\"\nstatic = { secret = \"x\", deliver_to = \"everyone\" }\n",
        );
        assert!(bad_deliver.is_err());
        let unknown_key: Result<Role, _> = toml::from_str(
            "name = \"s\"\nissuer = \"static\"\nmax_ttl = \"1h\"\nstatic = { secret = \"x\", value = \"sk\" }\n",
        );
        assert!(
            unknown_key.is_err(),
            "a value in roles.toml must be refused"
        );
        assert!(
            StaticSecretIssuer::new(&StaticIssuerConfig { name: " ".into() }, source()).is_err()
        );
    }
}
