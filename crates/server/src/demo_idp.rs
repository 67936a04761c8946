//! The built-in demo OIDC issuer of `idmint server --dev`.
//!
//! Lets someone try the whole flow without a company IdP: it mints ES256
//! JWTs with GitHub-Actions-like claims for any subject asked for, and
//! publishes discovery + JWKS like a real IdP, so idmint verifies its tokens
//! through exactly the same code path as GitHub's or GitLab's. It exists only
//! in dev mode, which only listens on loopback.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use idmint_core::{TokenId, UnixTime};
use idmint_issuers::{SigningAlg, SigningKey};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub const PATH: &str = "/demo-idp";

pub struct DemoIdp {
    pub issuer: String,
    key: SigningKey,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoTokenRequest {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub claims: Map<String, Value>,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

impl DemoIdp {
    pub fn new(base_url: &str) -> Result<Self, idmint_issuers::IssueError> {
        let (key, _pkcs8) = SigningKey::generate(SigningAlg::ES256)?;
        Ok(Self {
            issuer: format!("{base_url}{PATH}"),
            key,
        })
    }

    /// Claims of a GitHub Actions job on `acme/app` main, overridable.
    /// Returns the token and its lifetime in seconds.
    pub fn mint(&self, req: DemoTokenRequest) -> Result<(String, i64), ApiError> {
        let now = UnixTime::now().secs();
        let ttl = req.ttl_seconds.unwrap_or(600).clamp(1, 3600) as i64;
        let jti = TokenId::generate().map_err(|e| ApiError::internal(e.to_string()))?;
        let mut claims = json!({
            "repository": "acme/app",
            "repository_owner": "acme",
            "ref": "refs/heads/main",
            "ref_type": "branch",
            "sha": "0123456789abcdef0123456789abcdef01234567",
            "workflow": "deploy",
            "job_workflow_ref": "acme/app/.github/workflows/deploy.yml@refs/heads/main",
            "actor": "octocat",
            "event_name": "push",
            "run_id": "1",
            "environment": "dev",
        });
        let obj = claims
            .as_object_mut()
            .ok_or_else(|| ApiError::internal("claims"))?;
        for (k, v) in req.claims {
            obj.insert(k, v);
        }
        let repo = obj
            .get("repository")
            .and_then(Value::as_str)
            .unwrap_or("acme/app")
            .to_string();
        let git_ref = obj
            .get("ref")
            .and_then(Value::as_str)
            .unwrap_or("refs/heads/main")
            .to_string();
        let subject = req
            .subject
            .unwrap_or_else(|| format!("repo:{repo}:ref:{git_ref}"));
        obj.insert("iss".into(), self.issuer.clone().into());
        obj.insert("sub".into(), subject.into());
        obj.insert(
            "aud".into(),
            req.audience.unwrap_or_else(|| "idmint".into()).into(),
        );
        obj.insert("iat".into(), now.into());
        obj.insert("nbf".into(), now.into());
        obj.insert("exp".into(), (now + ttl).into());
        obj.insert("jti".into(), jti.to_string().into());
        let token = self
            .key
            .sign_jwt(&claims)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok((token, ttl))
    }
}

fn demo(state: &AppState) -> Result<&DemoIdp, ApiError> {
    state.demo_idp.as_ref().ok_or_else(|| {
        ApiError::not_found(
            "not_found",
            "the demo IdP only exists in `idmint server --dev`",
        )
    })
}

pub async fn discovery(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let d = demo(&state)?;
    Ok(Json(json!({
        "issuer": d.issuer,
        "jwks_uri": format!("{}/jwks", d.issuer),
        "token_endpoint": format!("{}/token", d.issuer),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    })))
}

pub async fn jwks(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let d = demo(&state)?;
    Ok(Json(json!({ "keys": [d.key.public_jwk()] })))
}

pub async fn token(
    State(state): State<Arc<AppState>>,
    body: Result<Json<DemoTokenRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let d = demo(&state)?;
    let Json(req) = body.map_err(crate::routes::json_error)?;
    let (token, ttl) = d.mint(req)?;
    Ok(Json(json!({ "token": token, "expires_in": ttl })))
}
