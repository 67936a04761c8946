//! Vault-shaped errors: `{"errors": ["…"]}` with Vault's status codes.

use crate::error::ApiError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error of the Vault-compatible API.
///
/// Vault answers 403 (`permission denied`) for a missing, invalid, expired
/// or revoked token, where the native API says 401; clients such as hvac
/// map 403 to `Forbidden`, so the adapter keeps Vault's code.
#[derive(Debug)]
pub struct VaultError {
    pub status: StatusCode,
    pub errors: Vec<String>,
    /// The native error code, for the per-request audit event.
    pub code: String,
}

impl VaultError {
    /// An error raised by the adapter itself; its audit code follows the
    /// status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::BAD_REQUEST => "invalid_request",
            StatusCode::FORBIDDEN => "permission_denied",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            _ => "error",
        };
        Self {
            status,
            errors: vec![message.into()],
            code: code.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// An unknown path: Vault answers 404 with an empty list.
    pub fn no_handler() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            errors: vec![],
            code: "not_found".into(),
        }
    }
}

impl From<ApiError> for VaultError {
    fn from(e: ApiError) -> Self {
        let (status, message) = match e.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
                StatusCode::FORBIDDEN,
                format!("permission denied: {}", e.message),
            ),
            s => (s, e.message),
        };
        Self {
            status,
            errors: vec![message],
            code: e.code.to_string(),
        }
    }
}

/// The native error code of an error response, carried as a response
/// extension to the per-request audit event.
#[derive(Clone)]
pub struct ErrorCode(pub String);

impl IntoResponse for VaultError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "errors": self.errors });
        let mut resp = (self.status, axum::Json(body)).into_response();
        resp.extensions_mut().insert(ErrorCode(self.code));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_becomes_permission_denied() {
        let v = VaultError::from(ApiError::unauthorized("token_expired", "expired"));
        assert_eq!(v.status, StatusCode::FORBIDDEN);
        assert_eq!(v.errors, vec!["permission denied: expired".to_string()]);
        assert_eq!(v.code, "token_expired");
        let v = VaultError::from(ApiError::not_found("unknown_role", "nope"));
        assert_eq!(v.status, StatusCode::NOT_FOUND);
        assert_eq!(v.errors, vec!["nope".to_string()]);
    }
}
