//! Pieces of the connection URIs handed to callers and of API paths.

/// Percent-encode everything but RFC 3986 unreserved characters, so a
/// value can be one URI component (userinfo, a path segment) and never add
/// a separator: `/` becomes `%2F`, `@` `%40`, `é` `%C3%A9`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `host` as it goes before `:port` in a URI: an IPv6 address in brackets.
pub fn uri_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_cannot_escape_their_place() {
        assert_eq!(percent_encode("/"), "%2F");
        assert_eq!(
            percent_encode("../users/admin?x#y"),
            "..%2Fusers%2Fadmin%3Fx%23y"
        );
        assert_eq!(percent_encode("é %"), "%C3%A9%20%25");
        assert_eq!(percent_encode("app-1.x_~"), "app-1.x_~");
    }

    #[test]
    fn ipv6_hosts_get_brackets_once() {
        assert_eq!(uri_host("::1"), "[::1]");
        assert_eq!(uri_host("[::1]"), "[::1]");
        assert_eq!(uri_host("db.example"), "db.example");
    }
}
