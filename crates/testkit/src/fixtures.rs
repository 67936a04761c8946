//! The policy most tests run against: a few roles and Cedar policies that
//! cover permit, forbid, TTL caps, a very short-lived role (for the
//! reaper) and an admin identity.

/// `roles.toml`:
/// - `demo-api`: 5 min default, 10 min max, scopes `orders:read orders:write`;
/// - `short-lived`: 2 s, so tests can watch the reaper expire it;
/// - `locked`: no policy permits it (policy-deny tests).
pub const ROLES: &str = r#"
[[role]]
name = "demo-api"
issuer = "oauth"
description = "Token for the demo orders API"
max_ttl = "10m"
default_ttl = "5m"
audiences = ["https://api.example.test"]
scopes = ["orders:read", "orders:write"]
labels = { env = "dev" }

[[role]]
name = "short-lived"
issuer = "oauth"
description = "Expires almost at once: for reaper tests"
max_ttl = "2s"
audiences = ["https://short.example.test"]
scopes = ["ping"]

[[role]]
name = "locked"
issuer = "oauth"
description = "No policy permits this role"
max_ttl = "5m"
audiences = ["https://locked.example.test"]
scopes = ["everything"]
"#;

/// Subject claim value (`actor`) of the admin identity in [`POLICY`].
pub const ADMIN_ACTOR: &str = "idmint-admin";

/// `test.cedar`: `acme/app` on `main` may get `demo-api` (capped at 10
/// min) and `short-lived`; pull requests never get anything; the identity
/// whose `actor` claim is [`ADMIN_ACTOR`] is an admin.
pub const POLICY: &str = r#"
@id("acme-app-main")
@ttl_cap("10m")
permit (principal, action == Action::"issue", resource == Role::"demo-api")
when { principal has repository && principal.repository == "acme/app"
       && principal has ref && principal.ref == "refs/heads/main" };

@id("short-lived-for-acme")
permit (principal, action == Action::"issue", resource == Role::"short-lived")
when { principal has repository && principal.repository == "acme/app" };

@id("no-pull-requests")
forbid (principal, action == Action::"issue", resource)
when { principal has event_name && principal.event_name == "pull_request" };

@id("admins")
permit (principal, action == Action::"admin", resource)
when { principal has actor && principal.actor == "idmint-admin" };
"#;
