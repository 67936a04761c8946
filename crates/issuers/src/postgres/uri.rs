//! The ready-to-use connection URI handed to the caller.

use crate::target::uri::{percent_encode, uri_host};

/// `postgres://<user>:<password>@<host>:<port>/<database>` with user,
/// password and database percent-encoded (RFC 3986: everything but
/// unreserved characters), and an IPv6 host in brackets, so that libpq,
/// JDBC-style parsers and `psql "$DATABASE_URL"` read it back unchanged.
pub fn connection_uri(user: &str, password: &str, host: &str, port: u16, database: &str) -> String {
    format!(
        "postgres://{}:{}@{}:{port}/{}",
        percent_encode(user),
        percent_encode(password),
        uri_host(host),
        percent_encode(database)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_userinfo_and_database() {
        assert_eq!(
            connection_uri("idm_a_b_1", "Abc123", "db.example", 5432, "orders"),
            "postgres://idm_a_b_1:Abc123@db.example:5432/orders"
        );
        assert_eq!(
            connection_uri("u@x", "p:/?#[]@!$&'()*+,;= %é", "::1", 6432, "my db/x"),
            "postgres://u%40x:p%3A%2F%3F%23%5B%5D%40%21%24%26%27%28%29%2A%2B%2C%3B%3D%20%25%C3%A9@[::1]:6432/my%20db%2Fx"
        );
        assert_eq!(
            connection_uri("u", "p", "[::1]", 1, "d"),
            "postgres://u:p@[::1]:1/d"
        );
    }
}
