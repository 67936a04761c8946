//! [`IdmintClient`]: one method per endpoint.

use crate::error::ClientError;
use crate::params::{DemoTokenRequest, LeaseQuery, TokenExchangeParams};
use crate::response::{self, RawResponse};
use crate::secret::SecretString;
use idmint_proto::{
    CredsRequest, CredsResponse, Health, LeaseInfo, LeaseList, LoginRequest, LoginResponse,
    RenewRequest, RevokePrefixRequest, RevokePrefixResponse, RotateAdminResponse,
    TokenExchangeResponse, TraceResponse, WhoAmI,
};
use reqwest::{Method, RequestBuilder, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Sent as `User-Agent`, so server logs show which client version called.
pub const USER_AGENT: &str = concat!("idmint/", env!("CARGO_PKG_VERSION"));

/// Whole-request timeout. Every idmint call is a short request/response;
/// a call still running after this is stuck, not slow.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How to build an [`IdmintClient`].
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// Extra trusted CA certificates (PEM, one or more), for servers whose
    /// certificate is not from a public CA. Added to the built-in roots.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// An `idm_…` session token for the calls that need one.
    pub token: Option<String>,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("ca_cert_pem", &self.ca_cert_pem.as_ref().map(|p| p.len()))
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// A client for one idmint server. Cheap to clone (the connection pool and
/// token are shared).
#[derive(Clone)]
pub struct IdmintClient {
    http: reqwest::Client,
    /// Normalized: http(s), no credentials, query or fragment.
    base: Url,
    token: Option<Arc<SecretString>>,
}

impl fmt::Debug for IdmintClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdmintClient")
            .field("base_url", &self.base_url())
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Check a server URL and return it in canonical form (no trailing slash),
/// the form used as the key of cached sessions.
pub fn normalize_base_url(base_url: &str) -> Result<String, ClientError> {
    parse_base_url(base_url).map(|u| url_without_trailing_slash(&u))
}

fn url_without_trailing_slash(u: &Url) -> String {
    u.as_str().trim_end_matches('/').to_string()
}

fn parse_base_url(base_url: &str) -> Result<Url, ClientError> {
    let bad = |why: &str| {
        ClientError::Config(format!(
            "invalid server URL {base_url:?}: {why}; use e.g. --server https://idmint.example.com:8710"
        ))
    };
    let url = Url::parse(base_url.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials in the URL are not supported (they would end up in logs)",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not have a query or fragment"));
    }
    Ok(url)
}

/// A path segment taken from user input: `path_segments_mut` silently drops
/// `.`/`..` and would collapse empty segments, which would send the request
/// to a different endpoint, so those are refused.
pub(crate) fn check_segment<'a>(
    what: &str,
    full: &str,
    segment: &'a str,
) -> Result<&'a str, ClientError> {
    if segment.is_empty() || segment == "." || segment == ".." {
        return Err(ClientError::InvalidArgument(format!(
            "{what} {full:?} is not valid: it must not be empty or contain empty, \".\" or \"..\" path segments"
        )));
    }
    Ok(segment)
}

/// Whether a request carries the session token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    None,
    Session,
}

impl IdmintClient {
    /// A client for the server at `base_url` (`http(s)://host:port`, with an
    /// optional path prefix when behind a reverse proxy).
    pub fn new(base_url: &str, opts: ClientOptions) -> Result<Self, ClientError> {
        let base = parse_base_url(base_url)?;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(USER_AGENT)
            .timeout(REQUEST_TIMEOUT);
        if let Some(pem) = &opts.ca_cert_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                ClientError::Config(format!(
                    "the CA certificate file is not valid PEM: {}",
                    response::error_chain(&e)
                ))
            })?;
            if certs.is_empty() {
                return Err(ClientError::Config(
                    "the CA certificate file holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)".into(),
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| {
            ClientError::Config(format!(
                "cannot set up the HTTP client: {}",
                response::error_chain(&e)
            ))
        })?;
        Ok(Self {
            http,
            base,
            token: opts.token.map(|t| Arc::new(SecretString::new(t))),
        })
    }

    /// The same client (sharing its connection pool) with another session
    /// token.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Self {
            token: Some(Arc::new(SecretString::new(token.into()))),
            ..self.clone()
        }
    }

    /// The server URL in canonical form (no trailing slash).
    pub fn base_url(&self) -> String {
        url_without_trailing_slash(&self.base)
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `POST /api/v1/login`: trade a proof (an OIDC JWT) for a session token.
    pub async fn login(&self, req: &LoginRequest) -> Result<LoginResponse, ClientError> {
        self.post_json_as(&["api", "v1", "login"], req, Auth::None)
            .await
    }

    /// `POST /api/v1/auth/approle/login`: trade an AppRole role id and
    /// secret id for a session token.
    pub async fn approle_login(
        &self,
        req: &idmint_proto::approle::AppRoleLoginRequest,
    ) -> Result<LoginResponse, ClientError> {
        self.post_json_as(&["api", "v1", "auth", "approle", "login"], req, Auth::None)
            .await
    }

    /// `POST /api/v1/auth/aws-iam/login`: a session for the AWS principal
    /// that signed `req` (a `GetCallerIdentity` request idmint forwards).
    pub async fn aws_iam_login(
        &self,
        req: &idmint_proto::aws_iam::AwsIamLoginRequest,
    ) -> Result<LoginResponse, ClientError> {
        self.post_json_as(&["api", "v1", "auth", "aws-iam", "login"], req, Auth::None)
            .await
    }

    /// `POST /api/v1/approle/{name}/secret-id` (admin): a new secret id,
    /// shown once.
    pub async fn approle_secret_id(
        &self,
        name: &str,
    ) -> Result<idmint_proto::approle::SecretIdResponse, ClientError> {
        let name = check_segment("AppRole name", name, name)?;
        self.post_json(
            &["api", "v1", "approle", name, "secret-id"],
            &serde_json::json!({}),
        )
        .await
    }

    /// `POST /api/v1/creds/{role}`: a credential for `role`. Role names may
    /// contain `/` (`db/orders`); each segment is percent-encoded.
    pub async fn creds(
        &self,
        role: &str,
        req: &CredsRequest,
    ) -> Result<CredsResponse, ClientError> {
        let mut segments = vec!["api", "v1", "creds"];
        for segment in role.split('/') {
            segments.push(check_segment("role name", role, segment)?);
        }
        self.post_json(&segments, req).await
    }

    /// `GET /api/v1/whoami`: the identity behind the session token.
    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.get_json(&["api", "v1", "whoami"], &[], Auth::Session)
            .await
    }

    /// `POST /api/v1/logout`: revoke the session token on the server.
    pub async fn logout(&self) -> Result<(), ClientError> {
        let url = self.endpoint(&["api", "v1", "logout"])?;
        let raw = self
            .send(self.request(Method::POST, &url, Auth::Session)?, &url)
            .await?;
        if raw.is_success() {
            Ok(())
        } else {
            Err(response::api_error(&raw))
        }
    }

    /// `GET /api/v1/leases`: the caller's leases, or everyone's with
    /// `all` (admin).
    pub async fn leases(&self, query: &LeaseQuery) -> Result<LeaseList, ClientError> {
        self.get_json(&["api", "v1", "leases"], &query.pairs(), Auth::Session)
            .await
    }

    /// `POST /api/v1/leases/{id}/revoke`: revoke a lease now.
    pub async fn revoke_lease(&self, id: &str) -> Result<LeaseInfo, ClientError> {
        let id = check_segment("lease id", id, id)?;
        let url = self.endpoint(&["api", "v1", "leases", id, "revoke"])?;
        let raw = self
            .send(self.request(Method::POST, &url, Auth::Session)?, &url)
            .await?;
        response::json(&raw, &url)
    }

    /// `POST /api/v1/leases/{id}/renew`: extend a lease. The server caps the
    /// extension at the role's `max_ttl` counted from the lease's creation
    /// and answers 400 `not_renewable` when the role or its issuer cannot
    /// extend a credential.
    pub async fn renew_lease(
        &self,
        id: &str,
        req: &RenewRequest,
    ) -> Result<LeaseInfo, ClientError> {
        let id = check_segment("lease id", id, id)?;
        self.post_json(&["api", "v1", "leases", id, "renew"], req)
            .await
    }

    /// `POST /api/v1/leases/revoke-prefix` (admin): revoke every live lease
    /// whose role name starts with `prefix`, for incident response.
    ///
    /// A blank prefix would match every lease on the server, so it is
    /// refused here before anything is sent.
    pub async fn revoke_prefix(&self, prefix: &str) -> Result<RevokePrefixResponse, ClientError> {
        if prefix.trim().is_empty() {
            return Err(ClientError::InvalidArgument(
                "the role prefix to revoke must not be empty or blank: it would match every lease; name a role or a role prefix such as db/orders-readonly".into(),
            ));
        }
        let req = RevokePrefixRequest {
            prefix: prefix.to_string(),
        };
        self.post_json(&["api", "v1", "leases", "revoke-prefix"], &req)
            .await
    }

    /// `POST /api/v1/targets/{name}/rotate-admin` (admin): replace the admin
    /// password idmint uses for a database target with a new random one
    /// that only idmint knows.
    pub async fn rotate_admin(&self, target: &str) -> Result<RotateAdminResponse, ClientError> {
        let target = check_segment("target name", target, target)?;
        let url = self.endpoint(&["api", "v1", "targets", target, "rotate-admin"])?;
        let raw = self
            .send(self.request(Method::POST, &url, Auth::Session)?, &url)
            .await?;
        response::json(&raw, &url)
    }

    /// `GET /api/v1/audit/trace/{ref}`: the audit events behind a lease id,
    /// request id, token id or fingerprint (admin).
    pub async fn trace(&self, reference: &str) -> Result<TraceResponse, ClientError> {
        let reference = check_segment("audit reference", reference, reference)?;
        self.get_json(
            &["api", "v1", "audit", "trace", reference],
            &[],
            Auth::Session,
        )
        .await
    }

    /// `POST /oauth/token`: RFC 8693 token exchange. Needs no session: the
    /// subject token is the proof. Refusals come back as
    /// [`ClientError::OAuth`].
    pub async fn token_exchange(
        &self,
        params: &TokenExchangeParams,
    ) -> Result<TokenExchangeResponse, ClientError> {
        let url = self.endpoint(&["oauth", "token"])?;
        let form = params.form_fields();
        let raw = self
            .send(
                self.request(Method::POST, &url, Auth::None)?.form(&form),
                &url,
            )
            .await?;
        if raw.is_success() {
            response::decode(&raw, &url)
        } else {
            Err(response::oauth_error(&raw))
        }
    }

    /// `GET /healthz`: liveness. A 503 with a health body is returned as
    /// `Ok` so callers can show its `problems`; check `status`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get_health("healthz").await
    }

    /// `GET /readyz`: readiness (store, policy, audit sink). Like
    /// [`IdmintClient::health`], a 503 with a body is `Ok`.
    pub async fn ready(&self) -> Result<Health, ClientError> {
        self.get_health("readyz").await
    }

    /// `GET /.well-known/jwks.json`: the keys idmint signs tokens with.
    pub async fn jwks(&self) -> Result<Value, ClientError> {
        self.get_json(&[".well-known", "jwks.json"], &[], Auth::None)
            .await
    }

    /// `GET /.well-known/openid-configuration`.
    pub async fn discovery(&self) -> Result<Value, ClientError> {
        self.get_json(&[".well-known", "openid-configuration"], &[], Auth::None)
            .await
    }

    /// `POST /demo-idp/token` (dev servers only): a signed test OIDC token
    /// from the built-in demo IdP, usable with [`IdmintClient::login`].
    pub async fn demo_token(&self, req: &DemoTokenRequest) -> Result<String, ClientError> {
        #[derive(Deserialize)]
        struct DemoTokenResponse {
            token: String,
        }
        let url = self.endpoint(&["demo-idp", "token"])?;
        let raw = self
            .send(
                self.request(Method::POST, &url, Auth::None)?.json(req),
                &url,
            )
            .await?;
        if raw.status == 404 {
            return Err(ClientError::Api {
                status: 404,
                code: "not_found".into(),
                message: format!(
                    "{} has no demo IdP: it is only served by `idmint server --dev`",
                    self.base_url()
                ),
                request_id: raw.request_id,
            });
        }
        let body: DemoTokenResponse = response::json(&raw, &url)?;
        Ok(body.token)
    }

    pub(crate) fn endpoint(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| {
                ClientError::Config(format!("server URL {} cannot have a path", self.base))
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    pub(crate) fn request(
        &self,
        method: Method,
        url: &Url,
        auth: Auth,
    ) -> Result<RequestBuilder, ClientError> {
        let req = self.http.request(method, url.clone());
        match (auth, &self.token) {
            (Auth::None, _) => Ok(req),
            // reqwest marks the header sensitive, which keeps it out of its
            // own debug output.
            (Auth::Session, Some(token)) => Ok(req.bearer_auth(token.expose())),
            (Auth::Session, None) => Err(ClientError::Config(format!(
                "{} needs a session token: log in first (`idmint login`) or set IDMINT_TOKEN",
                url.path()
            ))),
        }
    }

    pub(crate) async fn send(
        &self,
        req: RequestBuilder,
        url: &Url,
    ) -> Result<RawResponse, ClientError> {
        let resp = req
            .send()
            .await
            .map_err(|e| response::transport_error(url, e))?;
        response::read(resp, url).await
    }

    /// A session-authenticated `POST` with a JSON body, answered with JSON.
    /// POST `body` as JSON with the session token; decode the answer.
    pub(crate) async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> Result<T, ClientError> {
        self.post_json_as(segments, body, Auth::Session).await
    }

    /// POST `body` as JSON with `auth`; decode the answer.
    async fn post_json_as<B: Serialize, T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &B,
        auth: Auth,
    ) -> Result<T, ClientError> {
        let url = self.endpoint(segments)?;
        let raw = self
            .send(self.request(Method::POST, &url, auth)?.json(body), &url)
            .await?;
        response::json(&raw, &url)
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        auth: Auth,
    ) -> Result<T, ClientError> {
        let mut url = self.endpoint(segments)?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let raw = self
            .send(self.request(Method::GET, &url, auth)?, &url)
            .await?;
        response::json(&raw, &url)
    }

    async fn get_health(&self, path: &str) -> Result<Health, ClientError> {
        let url = self.endpoint(&[path])?;
        let raw = self
            .send(self.request(Method::GET, &url, Auth::None)?, &url)
            .await?;
        if raw.status == 503 {
            if let Ok(health) = serde_json::from_slice::<Health>(&raw.body) {
                return Ok(health);
            }
        }
        response::json(&raw, &url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> IdmintClient {
        IdmintClient::new(base, ClientOptions::default()).unwrap()
    }

    #[test]
    fn base_urls_are_normalized_and_checked() {
        assert_eq!(
            normalize_base_url("http://127.0.0.1:8710/").unwrap(),
            "http://127.0.0.1:8710"
        );
        assert_eq!(
            normalize_base_url("HTTPS://Idmint.Example/").unwrap(),
            "https://idmint.example"
        );
        assert_eq!(
            normalize_base_url("https://h/prefix/").unwrap(),
            "https://h/prefix"
        );
        for bad in [
            "ftp://h",
            "127.0.0.1:8710",
            "http://u:p@h",
            "http://h/?x=1",
            "nonsense",
        ] {
            let e = normalize_base_url(bad).unwrap_err();
            assert!(
                matches!(e, ClientError::Config(ref m) if m.contains("invalid server URL")),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn endpoints_encode_segments() {
        let c = client("http://h:1/");
        assert_eq!(
            c.endpoint(&["api", "v1", "whoami"]).unwrap().as_str(),
            "http://h:1/api/v1/whoami"
        );
        let c = client("http://h:1/idmint/");
        assert_eq!(
            c.endpoint(&["api", "v1", "creds", "db", "a b?#%"])
                .unwrap()
                .as_str(),
            "http://h:1/idmint/api/v1/creds/db/a%20b%3F%23%25"
        );
    }

    #[test]
    fn bad_segments_are_refused() {
        assert!(check_segment("role name", "a", "a").is_ok());
        for s in ["", ".", ".."] {
            assert!(matches!(
                check_segment("role name", s, s),
                Err(ClientError::InvalidArgument(_))
            ));
        }
    }

    #[tokio::test]
    async fn creds_rejects_bad_roles_before_sending() {
        let c = client("http://127.0.0.1:1").with_token("idm_x");
        for role in ["", "db//orders", "../admin", "db/"] {
            let e = c.creds(role, &CredsRequest::default()).await.unwrap_err();
            assert!(
                matches!(e, ClientError::InvalidArgument(_)),
                "{role}: {e:?}"
            );
        }
    }

    #[tokio::test]
    async fn session_calls_need_a_token() {
        let e = client("http://127.0.0.1:1").whoami().await.unwrap_err();
        assert!(
            matches!(e, ClientError::Config(ref m) if m.contains("idmint login")),
            "{e:?}"
        );
    }

    #[test]
    fn debug_never_shows_the_token() {
        let c = client("http://h:1").with_token("idm_topsecret");
        assert!(c.has_token());
        assert!(!format!("{c:?}").contains("topsecret"));
        let o = ClientOptions {
            token: Some("idm_topsecret".into()),
            ca_cert_pem: None,
        };
        assert!(!format!("{o:?}").contains("topsecret"));
    }

    #[test]
    fn bad_ca_pem_is_a_config_error() {
        let o = ClientOptions {
            ca_cert_pem: Some(b"not a certificate".to_vec()),
            token: None,
        };
        let e = IdmintClient::new("https://h", o).unwrap_err();
        assert!(
            matches!(e, ClientError::Config(ref m) if m.contains("CA certificate")),
            "{e:?}"
        );
    }

    use crate::params::{TokenExchangeParams, TokenType};
    use crate::test_server::{Canned, TestServer};

    const CREDS: &str = r#"{"lease_id":"lease_1","role":"db/orders","issuer":"oauth","expires_at":1,
        "ttl_seconds":300,"ttl_clamped":false,"policy_version":1,"fingerprint":"fp",
        "credential":{"type":"oauth_token","access_token":"a.b.c","token_type":"Bearer",
        "audience":null,"scopes":[],"token_id":"t1"}}"#;

    #[tokio::test]
    async fn creds_round_trip() {
        let server = TestServer::start(vec![
            Canned::json(200, CREDS),
            Canned::json(403, r#"{"error":{"code":"policy_denied","message":"no policy permits this request","request_id":"req_9"}}"#),
        ])
        .await;
        let c = client(server.base_url()).with_token("idm_abc");
        let req = CredsRequest {
            ttl: Some("5m".into()),
            ..Default::default()
        };
        let resp = c.creds("db/orders v2", &req).await.unwrap();
        assert_eq!(resp.lease_id, "lease_1");
        let e = c.creds("db/orders", &req).await.unwrap_err();
        assert!(e.is_denied());
        assert_eq!(
            e.to_string(),
            "no policy permits this request (policy_denied, HTTP 403, request req_9)"
        );

        let reqs = server.requests().await;
        assert_eq!(reqs[0].method, "POST");
        assert_eq!(reqs[0].target, "/api/v1/creds/db/orders%20v2");
        assert_eq!(reqs[0].header("authorization"), Some("Bearer idm_abc"));
        assert_eq!(reqs[0].header("user-agent"), Some(USER_AGENT));
        assert_eq!(reqs[0].body, r#"{"ttl":"5m"}"#);
    }

    #[tokio::test]
    async fn token_exchange_round_trip() {
        let server = TestServer::start(vec![
            Canned::json(200, r#"{"access_token":"x.y.z","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":300}"#),
            Canned::json(403, r#"{"error":"access_denied","error_description":"no policy permits this request"}"#),
        ])
        .await;
        let c = client(server.base_url()).with_token("idm_unused");
        let mut p = TokenExchangeParams::new(SecretString::new("sub.jwt".into()), TokenType::Jwt);
        p.audience = Some("https://api".into());
        let resp = c.token_exchange(&p).await.unwrap();
        assert_eq!(
            (resp.access_token.as_str(), resp.expires_in),
            ("x.y.z", 300)
        );
        let e = c.token_exchange(&p).await.unwrap_err();
        assert_eq!(
            e,
            ClientError::OAuth {
                status: 403,
                error: "access_denied".into(),
                description: Some("no policy permits this request".into()),
            }
        );
        let reqs = server.requests().await;
        assert_eq!(reqs[0].target, "/oauth/token");
        assert_eq!(
            reqs[0].header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        // The subject token is the proof: no session header is sent.
        assert_eq!(reqs[0].header("authorization"), None);
        assert!(
            reqs[0].body.contains("subject_token=sub.jwt"),
            "{}",
            reqs[0].body
        );
        assert!(
            reqs[0].body.contains("audience=https%3A%2F%2Fapi"),
            "{}",
            reqs[0].body
        );
    }

    #[tokio::test]
    async fn leases_query_and_unready_health() {
        let server = TestServer::start(vec![
            Canned::json(200, r#"{"leases":[]}"#),
            Canned::json(
                503,
                r#"{"status":"unready","problems":["audit sink down"]}"#,
            ),
            Canned::json(204, ""),
        ])
        .await;
        let c = client(server.base_url()).with_token("idm_abc");
        let q = LeaseQuery {
            all: true,
            role_prefix: Some("db/".into()),
            live: false,
            limit: Some(5),
        };
        assert!(c.leases(&q).await.unwrap().leases.is_empty());
        let h = c.ready().await.unwrap();
        assert_eq!((h.status.as_str(), h.problems.len()), ("unready", 1));
        c.logout().await.unwrap();
        let reqs = server.requests().await;
        assert_eq!(
            reqs[0].target,
            "/api/v1/leases?all=true&role_prefix=db%2F&limit=5"
        );
        assert_eq!(reqs[1].target, "/readyz");
        assert_eq!(
            (reqs[2].method.as_str(), reqs[2].target.as_str()),
            ("POST", "/api/v1/logout")
        );
    }

    const LEASE: &str = r#"{"id":"lease_1","role":"db/orders","issuer":"postgres",
        "principal":"iss|sub","state":"active","policy_version":2,"created_at":10,
        "expires_at":910}"#;

    #[tokio::test]
    async fn renew_round_trip() {
        let server = TestServer::start(vec![
            Canned::json(200, LEASE),
            Canned::json(200, LEASE),
            Canned::json(
                400,
                r#"{"error":{"code":"not_renewable","message":"role demo-api cannot be renewed"}}"#,
            ),
        ])
        .await;
        let c = client(server.base_url()).with_token("idm_abc");
        let req = RenewRequest {
            ttl: Some("15m".into()),
        };
        let lease = c.renew_lease("lease_1", &req).await.unwrap();
        assert_eq!((lease.id.as_str(), lease.expires_at), ("lease_1", 910));
        c.renew_lease("lease 2", &RenewRequest::default())
            .await
            .unwrap();
        let e = c.renew_lease("lease_3", &req).await.unwrap_err();
        assert!(
            matches!(e, ClientError::Api { status: 400, ref code, .. } if code == "not_renewable"),
            "{e:?}"
        );
        let reqs = server.requests().await;
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].target.as_str()),
            ("POST", "/api/v1/leases/lease_1/renew")
        );
        assert_eq!(reqs[0].header("authorization"), Some("Bearer idm_abc"));
        assert_eq!(reqs[0].body, r#"{"ttl":"15m"}"#);
        assert_eq!(reqs[1].target, "/api/v1/leases/lease%202/renew");
        assert_eq!(reqs[1].body, "{}");
    }

    #[tokio::test]
    async fn revoke_prefix_round_trip() {
        let server = TestServer::start(vec![Canned::json(
            200,
            &format!(r#"{{"revoked":["lease_a"],"failed":[{LEASE}]}}"#),
        )])
        .await;
        let c = client(server.base_url()).with_token("idm_abc");
        let resp = c.revoke_prefix("db/orders-readonly").await.unwrap();
        assert_eq!(resp.revoked, vec!["lease_a".to_string()]);
        assert_eq!(resp.failed.len(), 1);
        let reqs = server.requests().await;
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].target.as_str()),
            ("POST", "/api/v1/leases/revoke-prefix")
        );
        assert_eq!(reqs[0].body, r#"{"prefix":"db/orders-readonly"}"#);
    }

    #[tokio::test]
    async fn blank_prefixes_are_refused_before_sending() {
        // Nothing listens on port 1: a request that was sent would fail with
        // Transport, not InvalidArgument.
        let c = client("http://127.0.0.1:1").with_token("idm_x");
        for prefix in ["", " ", "\t\n"] {
            let e = c.revoke_prefix(prefix).await.unwrap_err();
            assert!(
                matches!(e, ClientError::InvalidArgument(ref m) if m.contains("every lease")),
                "{prefix:?}: {e:?}"
            );
        }
    }

    #[tokio::test]
    async fn rotate_admin_encodes_the_target() {
        let server = TestServer::start(vec![Canned::json(
            200,
            r#"{"target":"pg main/x","version":3}"#,
        )])
        .await;
        let c = client(server.base_url()).with_token("idm_abc");
        let resp = c.rotate_admin("pg main/x").await.unwrap();
        assert_eq!((resp.target.as_str(), resp.version), ("pg main/x", 3));
        let reqs = server.requests().await;
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].target.as_str()),
            ("POST", "/api/v1/targets/pg%20main%2Fx/rotate-admin")
        );
        assert_eq!(reqs[0].header("authorization"), Some("Bearer idm_abc"));
    }

    #[tokio::test]
    async fn bad_lease_ids_and_targets_are_refused_before_sending() {
        let c = client("http://127.0.0.1:1").with_token("idm_x");
        for bad in ["", ".", ".."] {
            let e = c
                .renew_lease(bad, &RenewRequest::default())
                .await
                .unwrap_err();
            assert!(matches!(e, ClientError::InvalidArgument(_)), "{bad}: {e:?}");
            let e = c.rotate_admin(bad).await.unwrap_err();
            assert!(matches!(e, ClientError::InvalidArgument(_)), "{bad}: {e:?}");
        }
    }

    #[tokio::test]
    async fn unreachable_server_names_the_url() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = client(&format!("http://127.0.0.1:{port}"))
            .health()
            .await
            .unwrap_err();
        let ClientError::Transport(msg) = e else {
            panic!("expected Transport, got {e:?}");
        };
        assert!(
            msg.contains(&format!("http://127.0.0.1:{port}/healthz")),
            "{msg}"
        );
        assert!(msg.contains("--server"), "{msg}");
    }
}
