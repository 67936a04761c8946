//! [`FakeGraph`]: a **fake** Microsoft Entra ID token endpoint and the
//! Microsoft Graph application-credential endpoints, in process, for the
//! `azure` issuer's tests. It is not Azure: it implements only what idmint
//! calls, and checks each request against the shapes Microsoft documents
//! (Graph v1.0 `addPassword` / `removePassword` / `GET application`, the v2.0
//! `client_credentials` grant with a secret or a `client_assertion`), so a
//! malformed request fails here as it would there.
//!
//! - `POST /{tenant}/oauth2/v2.0/token` — form `client_id`, `scope`
//!   (`…/.default`), `grant_type=client_credentials` and exactly one of
//!   `client_secret` or `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
//!   with `client_assertion`. A secret must be a live password of the
//!   application; an assertion must match one of its federated identity
//!   credentials (issuer, subject, audience), be unexpired and carry a valid
//!   RS256 signature by a key in the issuer's JWKS (fetched through its
//!   discovery document, as Entra ID does). Errors use Entra's
//!   `{"error", "error_description": "AADSTS…"}`.
//! - `POST /v1.0/applications/{objectId}/addPassword`,
//!   `POST /v1.0/applications/{objectId}/removePassword`,
//!   `GET /v1.0/applications/{objectId}?$select=passwordCredentials` — need
//!   a bearer token issued to the admin application; errors use Graph's
//!   `{"error": {"code", "message"}}`.

use crate::error::{Result, TestkitError};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A federated identity credential of an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedCredential {
    pub issuer: String,
    pub subject: String,
    pub audience: String,
}

#[derive(Debug, Clone)]
struct Password {
    key_id: String,
    display_name: String,
    secret: String,
    end: i64,
}

#[derive(Debug, Clone, Default)]
struct App {
    app_id: String,
    object_id: String,
    passwords: Vec<Password>,
    federated: Vec<FederatedCredential>,
}

#[derive(Default)]
struct Tenant {
    tenant: String,
    admin_app_id: String,
    apps: Vec<App>,
    /// Graph access token → the client id it was issued to.
    tokens: HashMap<String, String>,
    /// `"METHOD path"` of every Graph call, for assertions.
    calls: Vec<String>,
}

type Shared = Arc<Mutex<Tenant>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Tenant> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn now() -> i64 {
    crate::test_jwks::unix_now()
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A fake Entra ID tenant with Graph; stops when dropped.
pub struct FakeGraph {
    url: String,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGraph {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGraph {
    /// Start a tenant whose admin application is `admin_app_id`.
    pub async fn start(tenant: &str, admin_app_id: &str) -> Result<Self> {
        let state: Shared = Arc::new(Mutex::new(Tenant {
            tenant: tenant.to_string(),
            admin_app_id: admin_app_id.to_string(),
            apps: vec![App {
                app_id: admin_app_id.to_string(),
                object_id: random_id(),
                ..Default::default()
            }],
            ..Default::default()
        }));
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/v1.0/applications/{id}/addPassword", post(add_password))
            .route(
                "/v1.0/applications/{id}/removePassword",
                post(remove_password),
            )
            .route("/v1.0/applications/{id}", get(get_application))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| TestkitError::io("binding the fake Graph", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| TestkitError::io("fake Graph address", e))?
            .port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url: format!("http://127.0.0.1:{port}"),
            state,
            task,
        })
    }

    /// Base URL: use as both `authority` and `graph`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Register an application; returns its object id.
    pub fn add_application(&self, app_id: &str) -> String {
        let object_id = random_id();
        lock(&self.state).apps.push(App {
            app_id: app_id.to_string(),
            object_id: object_id.clone(),
            ..Default::default()
        });
        object_id
    }

    /// Give the admin application a secret (as a portal user would).
    pub fn set_admin_secret(&self, secret: &str) {
        let mut t = lock(&self.state);
        let admin = t.admin_app_id.clone();
        if let Some(a) = t.apps.iter_mut().find(|a| a.app_id == admin) {
            a.passwords.push(Password {
                key_id: random_id(),
                display_name: "bootstrap".into(),
                secret: secret.to_string(),
                end: now() + 86_400,
            });
        }
    }

    /// Trust `cred` for the application `app_id`.
    pub fn add_federated_credential(&self, app_id: &str, cred: FederatedCredential) {
        if let Some(a) = lock(&self.state)
            .apps
            .iter_mut()
            .find(|a| a.app_id == app_id)
        {
            a.federated.push(cred);
        }
    }

    /// `(keyId, displayName)` of the application's secrets.
    pub fn passwords(&self, app_id: &str) -> Vec<(String, String)> {
        lock(&self.state)
            .apps
            .iter()
            .find(|a| a.app_id == app_id)
            .map(|a| {
                a.passwords
                    .iter()
                    .map(|p| (p.key_id.clone(), p.display_name.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every Graph call so far (`"POST /v1.0/applications/…/addPassword"`).
    pub fn calls(&self) -> Vec<String> {
        lock(&self.state).calls.clone()
    }

    /// Redeem credentials at the token endpoint as a client would: the
    /// access token, or the `error_description`.
    pub async fn client_credentials(
        &self,
        client_id: &str,
        secret: Option<&str>,
        assertion: Option<&str>,
    ) -> std::result::Result<String, String> {
        let tenant = lock(&self.state).tenant.clone();
        let mut form = vec![
            ("client_id", client_id.to_string()),
            ("scope", "https://management.azure.com/.default".to_string()),
            ("grant_type", "client_credentials".to_string()),
        ];
        if let Some(s) = secret {
            form.push(("client_secret", s.to_string()));
        }
        if let Some(a) = assertion {
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
            ));
            form.push(("client_assertion", a.to_string()));
        }
        let resp = reqwest::Client::new()
            .post(format!("{}/{tenant}/oauth2/v2.0/token", self.url))
            .form(&form)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
        v["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                v["error_description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
    }
}

fn entra_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn b64(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()
}

/// Validate a client assertion as Entra ID does for federated identity
/// credentials; `Err` is the AADSTS description.
async fn check_assertion(
    jwt: &str,
    trusted: &[FederatedCredential],
) -> std::result::Result<(), String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, c, sig] = parts.as_slice() else {
        return Err("AADSTS50027: JWT token is invalid or malformed.".into());
    };
    let header: Value = b64(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("AADSTS50027: bad header")?;
    let claims: Value = b64(c)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("AADSTS50027: bad claims")?;
    let iss = claims["iss"].as_str().unwrap_or_default();
    let sub = claims["sub"].as_str().unwrap_or_default();
    let aud_ok = |want: &str| match &claims["aud"] {
        Value::String(a) => a == want,
        Value::Array(a) => a.iter().any(|x| x == want),
        _ => false,
    };
    if !trusted
        .iter()
        .any(|f| f.issuer == iss && f.subject == sub && aud_ok(&f.audience))
    {
        return Err(format!(
            "AADSTS70021: No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'."
        ));
    }
    if claims["exp"].as_i64().unwrap_or(0) <= now() {
        return Err("AADSTS700024: Client assertion is not within its valid time range.".into());
    }
    if header["alg"] != "RS256" {
        return Err("AADSTS5002730: unsupported signing algorithm (the fake checks RS256)".into());
    }
    let discovery: Value = reqwest::get(format!(
        "{}/.well-known/openid-configuration",
        iss.trim_end_matches('/')
    ))
    .await
    .map_err(|e| format!("AADSTS50166: discovery: {e}"))?
    .json()
    .await
    .map_err(|e| format!("AADSTS50166: discovery: {e}"))?;
    let jwks: Value = reqwest::get(discovery["jwks_uri"].as_str().unwrap_or_default())
        .await
        .map_err(|e| format!("AADSTS50166: jwks: {e}"))?
        .json()
        .await
        .map_err(|e| format!("AADSTS50166: jwks: {e}"))?;
    let kid = header["kid"].as_str().unwrap_or_default();
    let key = jwks["keys"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["kid"] == kid))
        .ok_or("AADSTS700027: key was not found in the issuer's JWKS")?;
    let n = key["n"]
        .as_str()
        .and_then(b64)
        .ok_or("AADSTS700027: bad key")?;
    let e = key["e"]
        .as_str()
        .and_then(b64)
        .ok_or("AADSTS700027: bad key")?;
    let signature = b64(sig).ok_or("AADSTS700027: bad signature")?;
    ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            format!("{h}.{c}").as_bytes(),
            &signature,
        )
        .map_err(|_| "AADSTS700027: Client assertion failed signature validation.".to_string())
}

async fn token(
    State(s): State<Shared>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let (known_tenant, apps) = {
        let t = lock(&s);
        (t.tenant.clone(), t.apps.clone())
    };
    if tenant != known_tenant {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS90002: Tenant not found.",
        );
    }
    if field("grant_type") != Some("client_credentials") {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003: grant_type must be client_credentials",
        );
    }
    if !field("scope").is_some_and(|sc| sc.ends_with("/.default")) {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "AADSTS1002012: scope must end with /.default for client credentials",
        );
    }
    let Some(client_id) = field("client_id") else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS900144: The request body must contain the following parameter: 'client_id'.",
        );
    };
    let Some(app) = apps.iter().find(|a| a.app_id == client_id) else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "AADSTS700016: Application not found in the directory.",
        );
    };
    match (field("client_secret"), field("client_assertion_type"), field("client_assertion")) {
        (Some(secret), None, None) => {
            let ok = app.passwords.iter().any(|p| p.end > now() && p.secret == secret);
            if !ok {
                return entra_error(StatusCode::UNAUTHORIZED, "invalid_client", "AADSTS7000215: Invalid client secret provided.");
            }
        }
        (None, Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), Some(jwt)) => {
            if let Err(why) = check_assertion(jwt, &app.federated).await {
                return entra_error(StatusCode::UNAUTHORIZED, "invalid_client", &why);
            }
        }
        _ => {
            return entra_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "AADSTS7000218: The request body must contain exactly one of 'client_secret' or 'client_assertion' (with client_assertion_type jwt-bearer).",
            )
        }
    }
    let access_token = format!("fake-graph-{}", random_id());
    lock(&s)
        .tokens
        .insert(access_token.clone(), client_id.to_string());
    Json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": access_token})).into_response()
}

/// The admin check of every Graph call, and the call's record.
fn authorize(
    s: &Shared,
    headers: &HeaderMap,
    call: String,
) -> std::result::Result<(), Box<Response>> {
    let mut t = lock(s);
    t.calls.push(call);
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer.and_then(|b| t.tokens.get(b)) {
        Some(client) if *client == t.admin_app_id => Ok(()),
        Some(_) => Err(Box::new(graph_error(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        ))),
        None => Err(Box::new(graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty or invalid.",
        ))),
    }
}

fn not_found(id: &str) -> Response {
    graph_error(StatusCode::NOT_FOUND, "Request_ResourceNotFound", &format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."))
}

async fn add_password(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = authorize(
        &s,
        &headers,
        format!("POST /v1.0/applications/{id}/addPassword"),
    ) {
        return *r;
    }
    let json_body = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let Some(body) = serde_json::from_slice::<Value>(&body)
        .ok()
        .filter(|_| json_body)
    else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Empty or non-JSON payload.",
        );
    };
    let pc = &body["passwordCredential"];
    let extra_keys = body
        .as_object()
        .is_some_and(|o| o.keys().any(|k| k != "passwordCredential"));
    let display = pc["displayName"].as_str().unwrap_or_default();
    let end = pc["endDateTime"].as_str().and_then(humantime_free_parse);
    if !pc.is_object() || extra_keys || display.is_empty() || end.is_none() {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Expected {\"passwordCredential\": {\"displayName\", \"endDateTime\"}}.",
        );
    }
    let mut t = lock(&s);
    let Some(app) = t.apps.iter_mut().find(|a| a.object_id == id) else {
        return not_found(&id);
    };
    let p = Password {
        key_id: random_id(),
        display_name: display.to_string(),
        secret: format!("Fk8Q~{}", random_id().replace('-', "")),
        end: end.unwrap_or(0),
    };
    app.passwords.push(p.clone());
    Json(json!({
        "customKeyIdentifier": null,
        "displayName": p.display_name,
        "endDateTime": pc["endDateTime"],
        "hint": p.secret.get(..3),
        "keyId": p.key_id,
        "secretText": p.secret,
        "startDateTime": "2026-01-01T00:00:00Z"
    }))
    .into_response()
}

async fn remove_password(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = authorize(
        &s,
        &headers,
        format!("POST /v1.0/applications/{id}/removePassword"),
    ) {
        return *r;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(key_id) = body["keyId"].as_str().map(str::to_string) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Expected {\"keyId\"}.",
        );
    };
    let mut t = lock(&s);
    let Some(app) = t.apps.iter_mut().find(|a| a.object_id == id) else {
        return not_found(&id);
    };
    let before = app.passwords.len();
    app.passwords.retain(|p| p.key_id != key_id);
    if app.passwords.len() == before {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "CannotDeleteOrUpdateEnabledEntitlement",
            "No password credential found with keyId.",
        );
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn get_application(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&s, &headers, format!("GET /v1.0/applications/{id}")) {
        return *r;
    }
    let t = lock(&s);
    let Some(app) = t.apps.iter().find(|a| a.object_id == id) else {
        return not_found(&id);
    };
    let creds: Vec<Value> = app
        .passwords
        .iter()
        .map(|p| json!({"keyId": p.key_id, "displayName": p.display_name, "hint": p.secret.get(..3), "secretText": null}))
        .collect();
    if q.get("$select").map(String::as_str) == Some("passwordCredentials") {
        Json(json!({"passwordCredentials": creds})).into_response()
    } else {
        Json(json!({"id": app.object_id, "appId": app.app_id, "passwordCredentials": creds}))
            .into_response()
    }
}

/// `2026-11-23T18:00:00Z` (optionally with fractions) → unix seconds,
/// without pulling a date crate into the test kit.
fn humantime_free_parse(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<f64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let ([y, m, day], [hh, mm, ss]) = (d.as_slice(), t.as_slice()) else {
        return None;
    };
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if *m <= 2 { (y - 1, m + 9) } else { (*y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + (*hh as i64) * 3600 + (*mm as i64) * 60 + (*ss as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse() {
        assert_eq!(
            humantime_free_parse("2015-08-30T12:36:00Z"),
            Some(1_440_938_160)
        );
        assert_eq!(humantime_free_parse("1970-01-01T00:00:00.5Z"), Some(0));
        assert_eq!(humantime_free_parse("2015-08-30"), None);
    }

    #[tokio::test]
    async fn token_endpoint_and_graph_check_their_requests() {
        let g = FakeGraph::start("contoso", "11111111-1111-1111-1111-111111111111")
            .await
            .unwrap();
        g.set_admin_secret("s3cret");
        assert!(g
            .client_credentials("11111111-1111-1111-1111-111111111111", Some("s3cret"), None)
            .await
            .is_ok());
        let e = g
            .client_credentials("11111111-1111-1111-1111-111111111111", Some("nope"), None)
            .await
            .unwrap_err();
        assert!(e.starts_with("AADSTS7000215"), "{e}");
        let e = g
            .client_credentials(
                "11111111-1111-1111-1111-111111111111",
                Some("s3cret"),
                Some("a.b.c"),
            )
            .await
            .unwrap_err();
        assert!(e.starts_with("AADSTS7000218"), "{e}");
        let e = g
            .client_credentials("99999999-1111-1111-1111-111111111111", Some("s3cret"), None)
            .await
            .unwrap_err();
        assert!(e.starts_with("AADSTS700016"), "{e}");
        // Graph without a token.
        let r = reqwest::Client::new()
            .post(format!("{}/v1.0/applications/x/addPassword", g.url()))
            .json(&json!({"passwordCredential": {"displayName": "d", "endDateTime": "2030-01-01T00:00:00Z"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
}
