//! Request bodies as Vault clients send them: JSON objects whose values
//! may be strings or numbers (`ttl: "5m"` or `ttl: 300`), or no body at
//! all (`bao read` sends GET, hvac sometimes an empty POST).

use super::error::VaultError;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The body as `T`; an empty body is `T::default()`.
pub fn parse_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, VaultError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        VaultError::bad_request(format!("request body is not valid JSON for this path: {e}"))
    })
}

/// A duration field as idmint's TTL syntax: numbers are seconds.
pub fn duration_text(v: &Option<Value>) -> Result<Option<String>, VaultError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| VaultError::bad_request(format!("duration {n} must be whole seconds"))),
        Some(other) => Err(VaultError::bad_request(format!(
            "duration must be a string like \"5m\" or seconds, not {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            duration_text(&Some(Value::from(300))).ok(),
            Some(Some("300".into()))
        );
        assert_eq!(
            duration_text(&Some(Value::from("5m"))).ok(),
            Some(Some("5m".into()))
        );
        assert_eq!(duration_text(&Some(Value::from(0))).ok(), Some(None));
        assert!(duration_text(&Some(Value::from(-1))).is_err());
        assert!(duration_text(&Some(Value::Bool(true))).is_err());
    }

    #[test]
    fn empty_body_is_default() {
        let v: Result<std::collections::HashMap<String, String>, _> = parse_body(b"  ");
        assert!(v.is_ok_and(|m| m.is_empty()));
        let bad: Result<std::collections::HashMap<String, String>, _> = parse_body(b"{");
        assert!(bad.is_err());
    }
}
