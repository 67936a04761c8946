//! Egress rules: default deny, and a refusal that says which rule is missing.

use crate::config::Rule;

/// What to do with a `CONNECT host:port`.
#[derive(Debug)]
pub enum ConnectPlan<'a> {
    /// Relay bytes untouched: no rule for this destination needs to see
    /// the requests.
    Tunnel,
    /// Terminate TLS with the local CA, then check and inject per request.
    Intercept { rules: Vec<&'a Rule> },
}

/// Why a destination or request was refused (shown to the workload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial(pub String);

fn rules_for<'a>(rules: &'a [Rule], identity: &str, host: &str, port: u16) -> Vec<&'a Rule> {
    rules
        .iter()
        .filter(|r| r.identity == identity && r.host == host && r.port == port)
        .collect()
}

fn no_rule(identity: &str, host: &str, port: u16) -> Denial {
    Denial(format!(
        "identity `{identity}` has no egress rule for {host}:{port}; add a [[rules]] entry \
         with identity = \"{identity}\", host = \"{host}\", port = {port}"
    ))
}

/// Decide a `CONNECT` (and the destination part of a plain HTTP request).
pub fn plan_connect<'a>(
    rules: &'a [Rule],
    identity: &str,
    host: &str,
    port: u16,
) -> Result<ConnectPlan<'a>, Denial> {
    let matching = rules_for(rules, identity, host, port);
    if matching.is_empty() {
        return Err(no_rule(identity, host, port));
    }
    if matching.iter().any(|r| r.needs_interception()) {
        Ok(ConnectPlan::Intercept { rules: matching })
    } else {
        Ok(ConnectPlan::Tunnel)
    }
}

fn path_only(path_and_query: &str) -> &str {
    path_and_query
        .split_once('?')
        .map_or(path_and_query, |(p, _)| p)
}

/// Whether a request path contains dot segments (`/../`, `/./`, or their
/// percent-encoded forms), which an upstream may normalise past a path
/// prefix; such paths are refused outright instead of being matched.
pub fn has_dot_segments(path_and_query: &str) -> bool {
    let path = path_only(path_and_query).to_ascii_lowercase();
    let path = path
        .replace("%2e", ".")
        .replace("%2f", "/")
        .replace("%5c", "/");
    path.split(['/', '\\']).any(|seg| seg == "." || seg == "..")
}

/// The first rule allowing `method path` for this identity and destination.
pub fn allow_request<'a>(
    rules: &'a [Rule],
    identity: &str,
    host: &str,
    port: u16,
    method: &str,
    path_and_query: &str,
) -> Result<&'a Rule, Denial> {
    let path = path_only(path_and_query);
    let candidates = rules_for(rules, identity, host, port);
    if let Some(rule) = candidates.iter().find(|r| {
        r.methods
            .as_ref()
            .is_none_or(|ms| ms.iter().any(|m| m == method))
            && r.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
    }) {
        return Ok(rule);
    }
    if candidates.is_empty() {
        return Err(no_rule(identity, host, port));
    }
    let allowed: Vec<String> = candidates
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.methods
                    .as_ref()
                    .map_or_else(|| "any method".to_string(), |m| m.join("|")),
                r.path_prefix.as_deref().unwrap_or("/")
            )
        })
        .collect();
    Err(Denial(format!(
        "identity `{identity}` may not {method} {host}:{port}{path}: its rules for this host \
         allow only [{}]; add a [[rules]] entry with identity = \"{identity}\", host = \
         \"{host}\", port = {port}, methods = [\"{method}\"], path_prefix = \"{path}\" (or a \
         shorter prefix)",
        allowed.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(methods: Option<&[&str]>, prefix: Option<&str>) -> Rule {
        Rule {
            identity: "w".into(),
            host: "api.test".into(),
            port: 443,
            methods: methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
            path_prefix: prefix.map(str::to_string),
            plaintext: false,
            inject: None,
        }
    }

    #[test]
    fn default_deny_names_the_missing_rule() {
        let rules = vec![rule(Some(&["GET"]), Some("/v1/"))];
        let err = plan_connect(&rules, "w", "other.test", 443).unwrap_err();
        assert!(err.0.contains("host = \"other.test\""), "{}", err.0);
        assert!(plan_connect(&rules, "x", "api.test", 443).is_err());
        let err = allow_request(&rules, "w", "api.test", 443, "POST", "/v1/x").unwrap_err();
        assert!(err.0.contains("methods = [\"POST\"]"), "{}", err.0);
        assert!(err.0.contains("GET /v1/"), "{}", err.0);
        assert!(allow_request(&rules, "w", "api.test", 443, "GET", "/v1/x?q=1").is_ok());
        assert!(allow_request(&rules, "w", "api.test", 443, "GET", "/admin?/v1/").is_err());
        assert!(allow_request(&rules, "w", "other.test", 443, "GET", "/v1/").is_err());
    }

    #[test]
    fn tunnels_only_when_nothing_needs_interception() {
        let open = vec![rule(None, None)];
        assert!(matches!(
            plan_connect(&open, "w", "api.test", 443),
            Ok(ConnectPlan::Tunnel)
        ));
        let limited = vec![rule(None, Some("/v1/"))];
        assert!(matches!(
            plan_connect(&limited, "w", "api.test", 443),
            Ok(ConnectPlan::Intercept { .. })
        ));
    }

    #[test]
    fn dot_segments_are_detected() {
        assert!(has_dot_segments("/v1/../admin"));
        assert!(has_dot_segments("/v1/%2E%2E/admin"));
        assert!(has_dot_segments("/v1/%2e%2e%2fadmin"));
        assert!(!has_dot_segments("/v1/file.txt?x=../y"));
    }
}
