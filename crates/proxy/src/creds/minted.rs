//! A credential minted by the idmint server, reduced to the fields the
//! proxy can inject, each held in a zeroizing [`Secret`].

use super::cache::FetchError;
use crate::config::check_header_text;
use crate::sources::CredentialField;
use idmint_core::Secret;
use idmint_proto::Credential;

/// One minted credential: its kind and its injectable fields.
#[derive(Debug)]
pub struct Minted {
    /// The credential's `type` (`oauth_token`, `static_secret`, `aws`…).
    pub kind: &'static str,
    fields: Vec<(CredentialField, Secret<String>)>,
    /// The server's lease for this credential: what the proxy's audit
    /// record carries so `idmint audit trace` can follow a proxied request
    /// back to the identity, the proof and the policy version.
    pub lease_id: Option<String>,
}

/// AWS keys for SigV4 signing.
#[derive(Debug, Clone)]
pub struct AwsKeys {
    pub access_key_id: String,
    pub secret_access_key: Secret<String>,
    pub session_token: Option<Secret<String>>,
}

impl Minted {
    /// Keep what can be injected; anything else the server may send
    /// (private keys, certificates) is dropped here.
    pub fn from_credential(credential: Credential, role: &str) -> Result<Self, FetchError> {
        use CredentialField as F;
        let (kind, fields) = match credential {
            Credential::OauthToken { access_token, .. } => {
                ("oauth_token", vec![(F::AccessToken, access_token)])
            }
            Credential::StaticSecret { value, .. } => ("static_secret", vec![(F::Value, value)]),
            Credential::Aws {
                access_key_id,
                secret_access_key,
                session_token,
                ..
            } => {
                let mut f = vec![
                    (F::AccessKeyId, access_key_id),
                    (F::SecretAccessKey, secret_access_key),
                ];
                if let Some(t) = session_token {
                    f.push((F::SessionToken, t));
                }
                ("aws", f)
            }
            Credential::DatabaseUser { password, .. } => {
                ("database_user", vec![(F::Password, password)])
            }
            Credential::AzureClientSecret { client_secret, .. } => (
                "azure_client_secret",
                vec![(F::ClientSecret, client_secret)],
            ),
            other => {
                let kind = match other {
                    Credential::AwsWebIdentity { .. } => "aws_web_identity",
                    Credential::AzureClientAssertion { .. } => "azure_client_assertion",
                    Credential::X509Svid { .. } => "x509_svid",
                    _ => "unknown",
                };
                return Err(FetchError::refused(
                    502,
                    format!(
                        "idmint role `{role}` returned a `{kind}` credential, which the proxy \
                         cannot inject (use a role of type oauth, static, aws, database or azure \
                         client_secret)"
                    ),
                ));
            }
        };
        Ok(Self {
            kind,
            fields: fields
                .into_iter()
                .map(|(f, v)| (f, Secret::new(v)))
                .collect(),
            lease_id: None,
        })
    }

    /// The field injected when the configuration names none.
    fn default_field(&self) -> Option<CredentialField> {
        match self.kind {
            "oauth_token" => Some(CredentialField::AccessToken),
            "static_secret" => Some(CredentialField::Value),
            "database_user" => Some(CredentialField::Password),
            "azure_client_secret" => Some(CredentialField::ClientSecret),
            _ => None,
        }
    }

    fn get(&self, field: CredentialField) -> Option<&Secret<String>> {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v)
    }

    /// The value to inject for `[secrets.NAME]` (`field` as configured).
    pub fn text(
        &self,
        field: Option<CredentialField>,
        name: &str,
        role: &str,
    ) -> Result<Secret<String>, FetchError> {
        let field = field.or_else(|| self.default_field()).ok_or_else(|| {
            FetchError::refused(
                502,
                format!(
                    "idmint role `{role}` returns `{}` credentials: set `field` on \
                     [secrets.{name}] (access_key_id, secret_access_key, session_token) or use \
                     it whole with `aws_sigv4 = {{ credentials = \"{name}\" }}`",
                    self.kind
                ),
            )
        })?;
        let value = self.get(field).ok_or_else(|| {
            FetchError::refused(
                502,
                format!(
                    "idmint role `{role}` returned a `{}` credential, which has no `{}` field \
                     (fix `field` on [secrets.{name}])",
                    self.kind,
                    field.name()
                ),
            )
        })?;
        check_header_text(value.expose()).map_err(|problem| {
            FetchError::refused(
                502,
                format!(
                    "the `{}` from idmint role `{role}` {problem}; refusing to inject it",
                    field.name()
                ),
            )
        })?;
        Ok(value.clone())
    }

    /// All three AWS keys (`aws_sigv4 = { credentials = … }`).
    pub fn aws(&self, role: &str) -> Result<AwsKeys, FetchError> {
        let not_aws = || {
            FetchError::refused(
                502,
                format!(
                    "aws_sigv4 needs AWS keys but idmint role `{role}` returned a `{}` credential",
                    self.kind
                ),
            )
        };
        if self.kind != "aws" {
            return Err(not_aws());
        }
        let access_key_id = self
            .get(CredentialField::AccessKeyId)
            .ok_or_else(not_aws)?
            .expose()
            .clone();
        if access_key_id.is_empty() || !access_key_id.bytes().all(|c| c.is_ascii_alphanumeric()) {
            return Err(FetchError::refused(
                502,
                format!("idmint role `{role}` returned a malformed AWS access key id"),
            ));
        }
        let secret_access_key = self
            .get(CredentialField::SecretAccessKey)
            .ok_or_else(not_aws)?
            .clone();
        let session_token = self.get(CredentialField::SessionToken).cloned();
        for v in std::iter::once(&secret_access_key).chain(session_token.as_ref()) {
            check_header_text(v.expose()).map_err(|problem| {
                FetchError::refused(
                    502,
                    format!("an AWS key from idmint role `{role}` {problem}; refusing to use it"),
                )
            })?;
        }
        Ok(AwsKeys {
            access_key_id,
            secret_access_key,
            session_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_per_kind_and_hostile_values() {
        let oauth = Minted::from_credential(
            Credential::OauthToken {
                access_token: "eyJ.a.b".into(),
                token_type: "Bearer".into(),
                audience: None,
                scopes: vec![],
                token_id: "t".into(),
            },
            "oauth/gh",
        )
        .unwrap();
        assert_eq!(
            oauth.text(None, "gh", "oauth/gh").unwrap().expose(),
            "eyJ.a.b"
        );
        let err = oauth
            .text(Some(CredentialField::Password), "gh", "oauth/gh")
            .unwrap_err();
        assert!(err.message.contains("no `password` field"), "{err}");
        assert!(oauth.aws("oauth/gh").is_err());

        let aws = Minted::from_credential(
            Credential::Aws {
                access_key_id: "ASIAX".into(),
                secret_access_key: "sk".into(),
                session_token: Some("tok".into()),
                expiration: "2026-01-01T00:00:00Z".into(),
                region: None,
                mode: "assumed_role".into(),
                arn: None,
            },
            "aws/deploy",
        )
        .unwrap();
        let err = aws.text(None, "deploy", "aws/deploy").unwrap_err();
        assert!(err.message.contains("credentials = \"deploy\""), "{err}");
        let keys = aws.aws("aws/deploy").unwrap();
        assert_eq!(keys.access_key_id, "ASIAX");
        assert_eq!(keys.session_token.unwrap().expose(), "tok");

        let evil = Minted::from_credential(
            Credential::StaticSecret {
                name: "k".into(),
                value: "abc\r\nX-Evil: 1".into(),
            },
            "static/k",
        )
        .unwrap();
        let err = evil.text(None, "k", "static/k").unwrap_err();
        assert!(err.message.contains("CR or LF"), "{err}");
        assert!(!err.message.contains("X-Evil"), "{err}");
    }
}
