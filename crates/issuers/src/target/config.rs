//! Checks and defaults shared by the `[[issuer.<target>]]` config entries.
//!
//! Each issuer keeps its own struct (so its TOML keys and docs stay with
//! it) and its own message prefix (`entry`); what a valid name, port, pool
//! size or host is, and the default connect timeout, are decided here once.

use idmint_core::Ttl;
use std::time::Duration;

/// How long opening a connection to a target may take when
/// `connect_timeout` is not set.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `connect_timeout` as configured, or [`DEFAULT_CONNECT_TIMEOUT`].
pub fn connect_timeout(configured: Option<Ttl>) -> Duration {
    configured
        .map(Ttl::as_duration)
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
}

/// `name` must be set: it is how roles, leases and messages refer to the
/// issuer. `section` is the table, e.g. `[[issuer.redis]]`.
pub fn check_name(section: &str, name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!("{section} needs a non-empty `name`"));
    }
    Ok(())
}

/// Port 0 would mean "any port" to a listener and nothing to a client.
pub fn check_port(entry: &str, field: &str, port: u16) -> Result<(), String> {
    if port == 0 {
        return Err(format!("{entry}: `{field}` must be 1-65535"));
    }
    Ok(())
}

/// `pool_size` as configured (1 to `max`), or `default`.
pub fn pool_size(
    entry: &str,
    configured: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, String> {
    let size = configured.unwrap_or(default);
    if !(1..=max).contains(&size) {
        return Err(format!("{entry}: `pool_size` must be 1-{max}, got {size}"));
    }
    Ok(size)
}

/// Whether `host` can be a host name or IP address: no scheme, port, path,
/// credentials or spaces that would break a URI or the connect.
pub fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(connect_timeout(None), Duration::from_secs(5));
        assert_eq!(
            connect_timeout(Some("2s".parse().unwrap())),
            Duration::from_secs(2)
        );
        assert_eq!(pool_size("e", None, 8, 256), Ok(8));
        assert_eq!(pool_size("e", Some(256), 8, 256), Ok(256));
        for bad in [0, 257] {
            let err = pool_size("[[issuer.x]] \"y\"", Some(bad), 8, 256).unwrap_err();
            assert!(err.starts_with("[[issuer.x]] \"y\": `pool_size`"), "{err}");
        }
        assert!(check_name("[[issuer.x]]", " ")
            .unwrap_err()
            .contains("`name`"));
        assert!(check_name("[[issuer.x]]", "x").is_ok());
        assert!(check_port("e", "amqp_port", 0)
            .unwrap_err()
            .contains("`amqp_port`"));
        assert!(check_port("e", "port", 1).is_ok());
    }

    #[test]
    fn hosts_are_names_or_addresses() {
        for ok in ["db.example", "10.0.0.5", "::1", "a_b-c"] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in ["", "h/x", "u@h", "a b", "[::1]", &"a".repeat(254)] {
            assert!(!valid_host(bad), "{bad}");
        }
    }
}
