//! Reading values out of the server's `/metrics` (OpenMetrics text).

/// The value of the sample `name{labels}` (labels exactly as rendered, e.g.
/// `auth="github"`; empty for none). `None` when absent or not a number.
pub fn metric_value(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(key.as_str())
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_samples_by_name_and_labels() {
        let text = "# HELP idmint_jwks_stale x\nidmint_jwks_stale{auth=\"a\"} 0\nidmint_jwks_stale{auth=\"b\"} 1\nidmint_policy_bundle_version 3\n";
        assert_eq!(
            metric_value(text, "idmint_jwks_stale", "auth=\"b\""),
            Some(1.0)
        );
        assert_eq!(
            metric_value(text, "idmint_policy_bundle_version", ""),
            Some(3.0)
        );
        assert_eq!(metric_value(text, "idmint_jwks_stale", "auth=\"c\""), None);
        assert_eq!(
            metric_value(text, "idmint_jwks", "auth=\"a\""),
            None,
            "no prefix matches"
        );
    }
}
