//! Errors of the client, one variant per way a call can fail.

/// What went wrong talking to idmint.
///
/// No variant ever contains a token: API and OAuth errors carry only what the
/// server put in its error body, transport errors only the URL (which never
/// holds a secret: tokens travel in headers and bodies).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    /// The native API answered with an error body
    /// (`{"error": {"code", "message", "request_id"}}`).
    #[error("{message} ({code}, HTTP {status}{})", request_suffix(.request_id))]
    Api {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// `/oauth/token` refused the exchange (RFC 6749 §5.2 error body).
    #[error("token exchange refused: {error}{} (HTTP {status})", description_suffix(.description))]
    OAuth {
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// The server could not be reached, or the connection broke. The message
    /// names the URL and what to check.
    #[error("{0}")]
    Transport(String),
    /// The server answered 2xx with a body this client does not understand
    /// (usually a client/server version mismatch, or not an idmint server).
    #[error("{0}")]
    Decode(String),
    /// The client is misconfigured (bad server URL, unreadable CA file, no
    /// session token for a call that needs one).
    #[error("{0}")]
    Config(String),
    /// An argument cannot be sent as given (e.g. an empty role name).
    #[error("{0}")]
    InvalidArgument(String),
}

fn request_suffix(id: &Option<String>) -> String {
    id.as_deref()
        .map(|id| format!(", request {id}"))
        .unwrap_or_default()
}

fn description_suffix(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

impl ClientError {
    /// True when policy refused the request: HTTP 403 or `policy_denied` on
    /// the native API; 403, `access_denied` or `unauthorized_client` (what
    /// idmint answers when policy refuses an exchange) on `/oauth/token`.
    /// The CLI maps this to exit code 2 so scripts can tell "not allowed"
    /// from "something broke".
    pub fn is_denied(&self) -> bool {
        match self {
            ClientError::Api { status, code, .. } => *status == 403 || code == "policy_denied",
            ClientError::OAuth { status, error, .. } => {
                *status == 403 || error == "access_denied" || error == "unauthorized_client"
            }
            _ => false,
        }
    }

    /// True when the session token was missing, invalid or expired (HTTP 401):
    /// logging in again is the fix.
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            ClientError::Api { status: 401, .. } | ClientError::OAuth { status: 401, .. }
        )
    }

    /// The HTTP status, when the server answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::OAuth { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_display() {
        let e = ClientError::Api {
            status: 403,
            code: "policy_denied".into(),
            message: "no policy permits this request".into(),
            request_id: Some("req_1".into()),
        };
        assert_eq!(
            e.to_string(),
            "no policy permits this request (policy_denied, HTTP 403, request req_1)"
        );
        assert!(e.is_denied());
        let e = ClientError::Api {
            status: 401,
            code: "invalid_token".into(),
            message: "expired".into(),
            request_id: None,
        };
        assert_eq!(e.to_string(), "expired (invalid_token, HTTP 401)");
        assert!(!e.is_denied());
        assert!(e.is_unauthenticated());
    }

    #[test]
    fn oauth_error_display() {
        let e = ClientError::OAuth {
            status: 400,
            error: "invalid_target".into(),
            description: Some("audience not allowed".into()),
        };
        assert_eq!(
            e.to_string(),
            "token exchange refused: invalid_target: audience not allowed (HTTP 400)"
        );
        assert_eq!(e.status(), Some(400));
        let e = ClientError::OAuth {
            status: 403,
            error: "access_denied".into(),
            description: None,
        };
        assert_eq!(
            e.to_string(),
            "token exchange refused: access_denied (HTTP 403)"
        );
        assert!(e.is_denied());
        let e = ClientError::OAuth {
            status: 400,
            error: "unauthorized_client".into(),
            description: Some("policy denied issuing this role".into()),
        };
        assert!(e.is_denied());
        let e = ClientError::OAuth {
            status: 400,
            error: "invalid_target".into(),
            description: None,
        };
        assert!(!e.is_denied());
    }
}
