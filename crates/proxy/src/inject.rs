//! Credential injection: what the proxy adds to an allowed request.
//!
//! Before adding its credential the proxy removes whatever the workload sent
//! in the same place (its own `Authorization` header, the configured header,
//! or the query parameter), so a workload can neither override the injected
//! credential nor smuggle a second one next to it.

use crate::config::{check_header_text, invalid_key, ConfigError, NamedSecret, RawInject};
use crate::creds::{Material, Resolved};
use crate::sources::SecretSource;
use base64::Engine;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where the credential goes.
#[derive(Debug, Clone)]
pub enum InjectKind {
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `<name>: <prefix><secret>`.
    Header { name: HeaderName, prefix: String },
    /// `Authorization: Basic base64(<username>:<secret>)`.
    Basic { username: String },
    /// `?<name>=<secret>` appended to the query.
    Query { name: String },
    /// Re-sign the request with AWS Signature Version 4. Needs the whole
    /// body (see [`Injection::sign_aws`]).
    AwsSigV4 {
        keys: AwsKeySource,
        region: String,
        service: String,
    },
}

/// Where `aws_sigv4` takes its keys from.
#[derive(Debug, Clone)]
pub enum AwsKeySource {
    /// A fixed key id; the injection's secret is the secret access key.
    Static {
        access_key_id: String,
        session_token: Option<Arc<NamedSecret>>,
    },
    /// All three keys from the injection's secret, an `idmint` secret
    /// whose role returns AWS credentials (`credentials = "NAME"`).
    Minted,
}

/// A configured injection: a kind and the secret it uses.
#[derive(Debug, Clone)]
pub struct Injection {
    pub kind: InjectKind,
    secret: Arc<NamedSecret>,
}

#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("the request target `{0}` is not a valid URI after adding the query parameter")]
    BadTarget(String),
    #[error("the credential cannot be encoded as a header value")]
    BadHeaderValue,
    #[error("SigV4 signing needs the request body: use sign_aws")]
    NeedsBody,
    #[error("the resolved credential does not fit this injection")]
    WrongMaterial,
}

fn find_secret(
    key: &str,
    name: &str,
    secrets: &BTreeMap<String, Arc<NamedSecret>>,
) -> Result<Arc<NamedSecret>, ConfigError> {
    secrets.get(name).cloned().ok_or_else(|| {
        invalid_key(
            key,
            format!(
                "no [secrets.{name}] is configured (known: {})",
                secrets.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
    })
}

/// AWS names (regions, services, key ids): letters, digits and `-`.
fn check_aws_name(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty()
        || !value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-')
    {
        return Err(invalid_key(
            key,
            format!("`{}` is not a valid AWS name", value.escape_debug()),
        ));
    }
    Ok(())
}

impl Injection {
    pub(crate) fn from_config(
        key: &str,
        raw: RawInject,
        secrets: &BTreeMap<String, Arc<NamedSecret>>,
    ) -> Result<Self, ConfigError> {
        let secret_key = format!("{key}.secret");
        let (kind, secret) = match raw {
            RawInject::Bearer { secret } => (InjectKind::Bearer, secret),
            RawInject::Header {
                name,
                secret,
                prefix,
            } => {
                let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    invalid_key(
                        format!("{key}.name"),
                        format!("`{}` is not a valid header name", name.escape_debug()),
                    )
                })?;
                if is_hop_by_hop(&header) || header == hyper::header::HOST {
                    return Err(invalid_key(
                        format!("{key}.name"),
                        format!(
                            "`{header}` is a connection-level header and cannot carry a credential"
                        ),
                    ));
                }
                let prefix = prefix.unwrap_or_default();
                check_header_text(&prefix).map_err(|p| invalid_key(format!("{key}.prefix"), p))?;
                (
                    InjectKind::Header {
                        name: header,
                        prefix,
                    },
                    secret,
                )
            }
            RawInject::Basic { username, secret } => {
                check_header_text(&username)
                    .map_err(|p| invalid_key(format!("{key}.username"), p))?;
                if username.contains(':') {
                    return Err(invalid_key(
                        format!("{key}.username"),
                        "must not contain `:` (basic auth separates user and password with it)",
                    ));
                }
                (InjectKind::Basic { username }, secret)
            }
            RawInject::Query { name, secret } => {
                if name.is_empty() || !name.bytes().all(is_unreserved) {
                    return Err(invalid_key(
                        format!("{key}.name"),
                        "must be a non-empty query parameter name of letters, digits, `-._~`",
                    ));
                }
                (InjectKind::Query { name }, secret)
            }
            RawInject::AwsSigv4 {
                access_key_id,
                secret,
                session_token_secret,
                credentials,
                region,
                service,
            } => {
                check_aws_name(&format!("{key}.region"), &region)?;
                check_aws_name(&format!("{key}.service"), &service)?;
                let kind = |keys| InjectKind::AwsSigV4 {
                    keys,
                    region: region.clone(),
                    service: service.clone(),
                };
                match (credentials, access_key_id, secret) {
                    (Some(name), None, None) if session_token_secret.is_none() => {
                        let creds_key = format!("{key}.credentials");
                        let found = find_secret(&creds_key, &name, secrets)?;
                        match &found.source {
                            SecretSource::Idmint(src) if src.field.is_none() => {}
                            SecretSource::Idmint(_) => {
                                return Err(invalid_key(
                                    creds_key,
                                    format!(
                                        "[secrets.{name}] must not set `field`: aws_sigv4 uses \
                                         all three keys of the credential"
                                    ),
                                ))
                            }
                            _ => {
                                return Err(invalid_key(
                                    creds_key,
                                    format!(
                                        "[secrets.{name}] must be an idmint secret whose role \
                                         returns AWS credentials (idmint = {{ role = \"…\" }}); \
                                         for fixed keys use access_key_id and secret"
                                    ),
                                ))
                            }
                        }
                        return Ok(Self {
                            kind: kind(AwsKeySource::Minted),
                            secret: found,
                        });
                    }
                    (None, Some(access_key_id), Some(secret)) => {
                        check_aws_name(&format!("{key}.access_key_id"), &access_key_id)?;
                        let session_token = session_token_secret
                            .map(|name| {
                                find_secret(&format!("{key}.session_token_secret"), &name, secrets)
                            })
                            .transpose()?;
                        (
                            kind(AwsKeySource::Static {
                                access_key_id,
                                session_token,
                            }),
                            secret,
                        )
                    }
                    _ => {
                        return Err(invalid_key(
                            key,
                            "aws_sigv4 takes either `credentials` (an idmint secret whose role \
                             returns AWS keys) or `access_key_id` + `secret` (+ optional \
                             `session_token_secret`), not both and not neither",
                        ))
                    }
                }
            }
        };
        let secret = find_secret(&secret_key, &secret, secrets)?;
        Ok(Self { kind, secret })
    }

    /// The configured name of the secret (safe to log).
    pub fn secret_name(&self) -> &str {
        &self.secret.name
    }

    /// The main secret (for `aws_sigv4`: the secret access key, or the
    /// minted AWS credentials).
    pub fn secret(&self) -> &NamedSecret {
        &self.secret
    }

    /// The static `aws_sigv4` form's session-token secret.
    pub fn session_token_secret(&self) -> Option<&NamedSecret> {
        match &self.kind {
            InjectKind::AwsSigV4 {
                keys:
                    AwsKeySource::Static {
                        session_token: Some(t),
                        ..
                    },
                ..
            } => Some(t),
            _ => None,
        }
    }

    /// Whether the secret must resolve to whole AWS keys.
    pub fn wants_aws_keys(&self) -> bool {
        matches!(
            self.kind,
            InjectKind::AwsSigV4 {
                keys: AwsKeySource::Minted,
                ..
            }
        )
    }

    /// Every secret this injection reads.
    pub fn secrets(&self) -> Vec<&NamedSecret> {
        std::iter::once(self.secret())
            .chain(self.session_token_secret())
            .collect()
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            InjectKind::Bearer => "bearer",
            InjectKind::Header { .. } => "header",
            InjectKind::Basic { .. } => "basic",
            InjectKind::Query { .. } => "query",
            InjectKind::AwsSigV4 { .. } => "aws_sigv4",
        }
    }

    /// Remove what the workload sent in the credential's place, then add the
    /// credential. Returns the (possibly rewritten) path and query.
    pub fn apply(
        &self,
        resolved: &Resolved,
        headers: &mut HeaderMap,
        path_and_query: &str,
    ) -> Result<String, InjectError> {
        let Material::Text(secret) = &resolved.main else {
            return Err(InjectError::WrongMaterial);
        };
        let secret = secret.expose();
        match &self.kind {
            InjectKind::Bearer => {
                headers.remove(AUTHORIZATION);
                headers.insert(AUTHORIZATION, sensitive(&format!("Bearer {secret}"))?);
            }
            InjectKind::Header { name, prefix } => {
                headers.remove(AUTHORIZATION);
                headers.remove(name);
                headers.insert(name.clone(), sensitive(&format!("{prefix}{secret}"))?);
            }
            InjectKind::Basic { username } => {
                headers.remove(AUTHORIZATION);
                let pair = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{secret}"));
                headers.insert(AUTHORIZATION, sensitive(&format!("Basic {pair}"))?);
            }
            InjectKind::Query { name } => {
                headers.remove(AUTHORIZATION);
                return Ok(with_query_param(path_and_query, name, secret));
            }
            InjectKind::AwsSigV4 { .. } => return Err(InjectError::NeedsBody),
        }
        Ok(path_and_query.to_string())
    }

    /// Every form in which the credential could come back from an
    /// upstream that reflects the request: the secret itself, and the
    /// encoded forms this injection sends.
    pub(crate) fn reflections(&self, resolved: &Resolved) -> Vec<String> {
        let secret = resolved.secret_text();
        let mut out = vec![secret.to_string()];
        match &self.kind {
            InjectKind::Basic { username } => out.push(
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{secret}")),
            ),
            InjectKind::Query { .. } => out.push(percent_encode(secret)),
            _ => {}
        }
        if let Some(token) = &resolved.session_token {
            out.push(token.expose().clone());
        }
        if let Material::Aws(keys) = &resolved.main {
            if let Some(token) = &keys.session_token {
                out.push(token.expose().clone());
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Whether [`Injection::sign_aws`] (with the buffered body) must be
    /// used instead of [`Injection::apply`].
    pub fn needs_body(&self) -> bool {
        matches!(self.kind, InjectKind::AwsSigV4 { .. })
    }

    /// Replace whatever signature the workload sent by a SigV4 signature
    /// over the request as it will be sent: `host` is the `Host` header
    /// value, `path_and_query` the request target, `body` the whole body.
    /// `content-type` is signed too when present.
    pub fn sign_aws(
        &self,
        resolved: &Resolved,
        headers: &mut HeaderMap,
        method: &str,
        host: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<(), InjectError> {
        use idmint_issuers::aws::credentials::AwsCredentials;
        use idmint_issuers::aws::sigv4;
        let InjectKind::AwsSigV4 {
            keys,
            region,
            service,
        } = &self.kind
        else {
            return Err(InjectError::NeedsBody);
        };
        let creds = match (keys, &resolved.main) {
            (AwsKeySource::Static { access_key_id, .. }, Material::Text(secret)) => {
                AwsCredentials::new(
                    access_key_id.clone(),
                    secret.expose().clone(),
                    resolved.session_token.as_ref().map(|t| t.expose().clone()),
                    None,
                )
            }
            (AwsKeySource::Minted, Material::Aws(k)) => AwsCredentials::new(
                k.access_key_id.clone(),
                k.secret_access_key.expose().clone(),
                k.session_token.as_ref().map(|t| t.expose().clone()),
                None,
            ),
            _ => return Err(InjectError::WrongMaterial),
        };
        for name in [
            "authorization",
            "x-amz-date",
            "x-amz-security-token",
            "x-amz-content-sha256",
        ] {
            headers.remove(name);
        }
        let (path, query) = path_and_query
            .split_once('?')
            .map_or((path_and_query, ""), |(p, q)| (p, q));
        let decoded: Vec<(String, String)> = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        let query_refs: Vec<(&str, &str)> = decoded
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let content_type = headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let signed_extra: Vec<(&str, &str)> = content_type
            .as_deref()
            .map(|ct| vec![("content-type", ct)])
            .unwrap_or_default();
        let is_s3 = service == "s3";
        let signed = sigv4::sign(
            &sigv4::Request {
                method,
                host,
                path,
                query: &query_refs,
                headers: &signed_extra,
                payload: sigv4::Payload::Bytes(body),
            },
            &creds,
            &sigv4::Scope { region, service },
            idmint_core::UnixTime::now(),
            if is_s3 {
                sigv4::Options::S3
            } else {
                sigv4::Options::STANDARD
            },
        );
        for (name, value) in signed.headers() {
            headers.insert(HeaderName::from_static(name), sensitive(value)?);
        }
        Ok(())
    }
}

fn sensitive(text: &str) -> Result<HeaderValue, InjectError> {
    let mut v = HeaderValue::from_str(text).map_err(|_| InjectError::BadHeaderValue)?;
    v.set_sensitive(true);
    Ok(v)
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decode `%XX` escapes (a `+` stays a `+`: SigV4 signs it literally).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Replace every `name=` parameter in the query by `name=<value>`.
fn with_query_param(path_and_query: &str, name: &str, value: &str) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut parts: Vec<&str> = query
        .map(|q| {
            q.split('&')
                .filter(|kv| !kv.is_empty() && kv.split('=').next() != Some(name))
                .collect()
        })
        .unwrap_or_default();
    let injected = format!("{name}={}", percent_encode(value));
    parts.push(&injected);
    format!("{path}?{}", parts.join("&"))
}

/// Headers that describe one connection, never forwarded by a proxy.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "proxy-connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use idmint_core::Secret;

    fn injection(kind: InjectKind) -> Injection {
        Injection {
            kind,
            secret: Arc::new(NamedSecret {
                name: "k".into(),
                source: SecretSource::Static {
                    kind: "env",
                    value: Secret::new("s e/cret".into()),
                },
            }),
        }
    }

    fn resolved() -> Resolved {
        Resolved {
            main: Material::Text(Secret::new("s e/cret".into())),
            session_token: None,
            source_kind: "env",
            lease_id: None,
        }
    }

    #[test]
    fn workload_authorization_is_replaced_not_appended() {
        let mut h = HeaderMap::new();
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer mine"));
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer mine2"));
        injection(InjectKind::Bearer)
            .apply(&resolved(), &mut h, "/")
            .unwrap();
        let all: Vec<_> = h.get_all(AUTHORIZATION).iter().collect();
        assert_eq!(all, vec![&HeaderValue::from_static("Bearer s e/cret")]);
        assert!(all[0].is_sensitive());
    }

    #[test]
    fn query_parameter_replaces_workload_value() {
        let out = injection(InjectKind::Query { name: "key".into() })
            .apply(
                &resolved(),
                &mut HeaderMap::new(),
                "/v1?a=1&key=evil&key=x&b=2",
            )
            .unwrap();
        assert_eq!(out, "/v1?a=1&b=2&key=s%20e%2Fcret");
    }

    #[test]
    fn basic_encodes_user_and_secret() {
        let mut h = HeaderMap::new();
        injection(InjectKind::Basic {
            username: "u".into(),
        })
        .apply(&resolved(), &mut h, "/")
        .unwrap();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:s e/cret")
        );
        assert_eq!(h.get(AUTHORIZATION).unwrap(), expected.as_str());
    }
}
