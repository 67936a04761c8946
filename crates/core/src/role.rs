//! Roles: the named things a caller can get credentials for.

use crate::duration::Ttl;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A role as declared in `roles.toml`.
///
/// The role is the *maximum* a caller can get: requests may narrow the
/// lifetime, scopes and audience, never widen them (see [`Role::narrow`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Name of the issuer (an `[[issuer.*]]` entry in `idmint.toml`) that mints it.
    pub issuer: String,
    pub max_ttl: Ttl,
    /// Lifetime when the request names none; defaults to `max_ttl`.
    #[serde(default)]
    pub default_ttl: Option<Ttl>,
    /// `oauth`: audiences a token may be minted for; the first is the default.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// `oauth`: the scope template; a request gets a subset of it.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Free-form attributes visible to policy as `resource.labels`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Whether a lease of this role may be renewed (never past `max_ttl`
    /// from its creation, nor past the caller's proof).
    #[serde(default)]
    pub renewable: bool,
    /// `postgres` / `mysql` issuers: what the database user gets.
    #[serde(default)]
    pub database: Option<DatabaseTemplate>,
    /// `redis` issuer: the ACL of the Redis user.
    #[serde(default)]
    pub redis: Option<RedisTemplate>,
    /// `rabbitmq` issuer: the user's vhost permissions.
    #[serde(default)]
    pub rabbitmq: Option<RabbitmqTemplate>,
    /// `ssh` issuer: which hosts, which account and sudo rights a session
    /// gets. Validated by the ssh issuer when a bundle loads.
    #[serde(default)]
    pub ssh: Option<SshTemplate>,
    /// `aws` issuer: STS session, IAM user or web-identity token.
    #[serde(default)]
    pub aws: Option<AwsTemplate>,
    /// `azure` issuer: an application's client secret or a client assertion.
    #[serde(default)]
    pub azure: Option<AzureTemplate>,
    /// `x509` issuer: the SPIFFE ID (and DNS names) of an X.509-SVID.
    #[serde(default)]
    pub x509: Option<X509Template>,
    /// `static` issuer: which sealed secret the role delivers, and to whom
    /// (`static = { secret = "openai" }` in `roles.toml`).
    #[serde(default, rename = "static", skip_serializing_if = "Option::is_none")]
    pub static_secret: Option<StaticSecretTemplate>,
}

/// Who may receive the value of a `static` role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliverTo {
    /// Only `idmint proxy` (a `unix` identity a host attested), which
    /// injects the secret into upstream requests: no workload sees it.
    #[default]
    Proxy,
    /// Any caller the policy permits (the value reaches the workload).
    Any,
}

/// The template of a `static` role; checked by the static issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticSecretTemplate {
    /// Name of the secret stored with `idmint secret put NAME`.
    pub secret: String,
    #[serde(default)]
    pub deliver_to: DeliverTo,
}

/// The template of an `x509` role; checked by the x509 issuer.
/// `spiffe_id` may use `{subject}` and `{claims.NAME}` placeholders; each
/// substituted value must be a valid SPIFFE path segment
/// (`[A-Za-z0-9._-]`, not `.`/`..`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X509Template {
    pub spiffe_id: String,
    #[serde(default)]
    pub dns: Vec<String>,
}

/// How an `ssh` role grants access.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SshMode {
    /// A just-in-time account `wl_<id>` created by `idmint agent` on the
    /// host for this one session and removed afterwards.
    #[default]
    Jit,
    /// Only a certificate for the role's static `principals`; no agent, no
    /// account (hosts that manage accounts otherwise, like Vault's ssh/sign).
    Certificate,
}

/// The template of an `ssh` role (`ssh = { … }` in `roles.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshTemplate {
    #[serde(default)]
    pub mode: SshMode,
    /// Label selector: every label must match the host's; empty means any
    /// host of the issuer.
    #[serde(default)]
    pub hosts: BTreeMap<String, String>,
    /// `certificate` mode only: the login names the certificate is valid for.
    #[serde(default)]
    pub principals: Vec<String>,
    /// `jit` mode: sudo rules of the account: absolute command lines, or
    /// exactly `["ALL"]`; empty means no sudo.
    #[serde(default)]
    pub sudo: Vec<String>,
    /// `jit` mode: login shell (absolute path); `/bin/bash` when absent.
    #[serde(default)]
    pub shell: Option<String>,
    /// Certificate extensions (`permit-pty`, …); `["permit-pty"]` when absent.
    #[serde(default = "default_ssh_extensions")]
    pub extensions: Vec<String>,
    /// `force-command` critical option.
    #[serde(default)]
    pub force_command: Option<String>,
    /// Put the caller's address into the `source-address` critical option.
    #[serde(default)]
    pub bind_source_address: bool,
}

fn default_ssh_extensions() -> Vec<String> {
    vec!["permit-pty".to_string()]
}

impl SshTemplate {
    /// Login shell of just-in-time accounts when the role names none.
    pub const DEFAULT_SHELL: &'static str = "/bin/bash";

    pub fn shell(&self) -> &str {
        self.shell.as_deref().unwrap_or(Self::DEFAULT_SHELL)
    }

    /// The first selector label the host's labels do not satisfy, as
    /// `(key, wanted, found)`; `None` when the host matches.
    pub fn unmatched_label<'a>(
        &'a self,
        host_labels: &'a BTreeMap<String, String>,
    ) -> Option<(&'a str, &'a str, Option<&'a str>)> {
        self.hosts.iter().find_map(|(k, want)| {
            let found = host_labels.get(k).map(String::as_str);
            (found != Some(want.as_str())).then_some((k.as_str(), want.as_str(), found))
        })
    }
}

/// The grant template of a database role. idmint turns it into correctly
/// quoted SQL; values are parsed against a whitelist, never pasted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseTemplate {
    /// e.g. `"SELECT ON ALL TABLES IN SCHEMA reporting"`, `"SELECT, INSERT ON TABLE app.orders"`,
    /// `"USAGE ON SCHEMA reporting"`, `"CONNECT ON DATABASE orders"`; MySQL: `"SELECT ON app.*"`.
    #[serde(default)]
    pub grants: Vec<String>,
    /// Group roles the user joins (PostgreSQL `IN ROLE`, MySQL roles).
    #[serde(default)]
    pub member_of: Vec<String>,
    /// Username prefix; the rest is derived from role, subject and lease id
    /// and cut to the engine's limit (PostgreSQL 63, MySQL 32 characters).
    #[serde(default)]
    pub username_prefix: Option<String>,
    /// Generated password length (default 32, at least 16).
    #[serde(default)]
    pub password_length: Option<usize>,
    /// Allow grants of `ALL PRIVILEGES` or on everything (`*.*`); refused
    /// at config time otherwise.
    #[serde(default)]
    pub allow_dangerous: bool,
}

/// The ACL template of a Redis role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTemplate {
    /// Key patterns (`~` rules), e.g. `["app:*"]`.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Pub/sub channel patterns (`&` rules).
    #[serde(default)]
    pub channels: Vec<String>,
    /// Command rules, e.g. `["+@read", "+set", "-@dangerous"]`.
    #[serde(default)]
    pub commands: Vec<String>,
    #[serde(default)]
    pub username_prefix: Option<String>,
    #[serde(default)]
    pub password_length: Option<usize>,
    /// Allow `+@all`, `allkeys`, `~*`, `+@dangerous`, `+@admin`.
    #[serde(default)]
    pub allow_dangerous: bool,
}

/// The permissions template of a RabbitMQ role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitmqTemplate {
    pub vhost: String,
    /// Regular expressions, as in RabbitMQ's permission model.
    #[serde(default)]
    pub configure: String,
    #[serde(default)]
    pub write: String,
    #[serde(default)]
    pub read: String,
    /// User tags; `administrator` is refused unless `allow_dangerous`.
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub username_prefix: Option<String>,
    #[serde(default)]
    pub allow_dangerous: bool,
}

/// How an `aws` role's credential is minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AwsMode {
    /// STS `AssumeRole` by idmint: temporary keys with a session token.
    AssumedRole,
    /// An IAM user per lease with an access key, deleted at revocation.
    IamUser,
    /// An idmint-signed JWT (`aud = sts.amazonaws.com`) the caller trades
    /// for keys with `AssumeRoleWithWebIdentity` itself.
    Federated,
}

impl AwsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AwsMode::AssumedRole => "assumed_role",
            AwsMode::IamUser => "iam_user",
            AwsMode::Federated => "federated",
        }
    }
}

/// The audience of every web-identity token idmint mints for AWS.
pub const AWS_STS_AUDIENCE: &str = "sts.amazonaws.com";

/// The template of an `aws` role; checked by the aws issuer when the policy
/// bundle loads (ARNs, policy JSON, tag templates).
///
/// Narrowing: a request picks named `policies` through the role's `scopes`
/// (a subset only, so a session never gets more than the template) and,
/// for `assumed_role`, one of `role_arns` through its `audience`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsTemplate {
    pub mode: AwsMode,
    /// `assumed_role`: the roles idmint may assume (the first is the
    /// default); `federated`: the role the caller assumes with the token.
    #[serde(default)]
    pub role_arns: Vec<String>,
    /// Named IAM policy documents (JSON). `assumed_role`: the session
    /// policy; `iam_user`: the user's inline policy. A request gets the
    /// union of the statements of the policies its scopes name.
    #[serde(default)]
    pub policies: BTreeMap<String, String>,
    /// `assumed_role`: session tags, values templated from the identity,
    /// e.g. `repo = "{claims.repository}"`, `who = "{subject}"`.
    #[serde(default)]
    pub session_tags: BTreeMap<String, String>,
    /// `iam_user`: managed policies attached to the user.
    #[serde(default)]
    pub managed_policy_arns: Vec<String>,
    /// `iam_user`: user name prefix (the rest is derived, ≤ 64 characters).
    #[serde(default)]
    pub username_prefix: Option<String>,
}

/// How an `azure` role's credential is minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AzureMode {
    /// A client secret added to the application with Microsoft Graph
    /// `addPassword`, removed (`removePassword`) at revocation.
    ClientSecret,
    /// An idmint-signed JWT the caller presents as `client_assertion`
    /// (workload identity federation on the application).
    Federated,
}

impl AzureMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AzureMode::ClientSecret => "client_secret",
            AzureMode::Federated => "federated",
        }
    }
}

/// The audience Microsoft Entra ID expects in federated client assertions.
pub const AZURE_ASSERTION_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The template of an `azure` role; checked by the azure issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureTemplate {
    pub mode: AzureMode,
    /// The application (client) id callers authenticate as.
    pub client_id: String,
    /// `client_secret`: the application's object id, for Graph's
    /// `/applications/{id}/addPassword`.
    #[serde(default)]
    pub application_object_id: Option<String>,
}

/// The role file: `[[role]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    #[serde(default)]
    role: Vec<Role>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoleError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: role {role:?}: {message}")]
    Invalid {
        file: String,
        role: String,
        message: String,
    },
}

/// What a request asks for, before narrowing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantRequest {
    pub ttl: Option<Ttl>,
    pub scopes: Option<Vec<String>>,
    pub audience: Option<String>,
}

/// What will actually be minted: the request narrowed by the role and policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub ttl: Ttl,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    /// True when the requested TTL was longer than allowed and was cut down.
    pub ttl_clamped: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NarrowError {
    #[error("scope {0:?} is not in role {1:?}'s scope template; request a subset of: {2}")]
    ScopeNotAllowed(String, String, String),
    #[error("audience {0:?} is not allowed for role {1:?}; allowed: {2}")]
    AudienceNotAllowed(String, String, String),
    #[error("role {0:?} has no audience configured and the request named none")]
    NoAudience(String),
}

/// Roles are referenced by name in Cedar (`Role::"name"`) and in URLs, so the
/// name alphabet is restricted to what is unambiguous in both.
pub fn valid_role_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'/'))
        && !n.starts_with('/')
        && !n.contains("//")
}

impl Role {
    pub fn default_ttl(&self) -> Ttl {
        self.default_ttl.unwrap_or(self.max_ttl)
    }

    /// Parse and validate a `roles.toml`. `file` is used in error messages.
    pub fn parse_file(file: &str, text: &str) -> Result<BTreeMap<String, Role>, RoleError> {
        let parsed: RoleFile = toml::from_str(text).map_err(|e| RoleError::Parse {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        let mut roles = BTreeMap::new();
        for mut role in parsed.role {
            // An aws role's request narrowing reuses `audiences`: the role
            // ARN for `assumed_role`, the token audience for `federated`.
            if let Some(aws) = &role.aws {
                if role.audiences.is_empty() {
                    role.audiences = match aws.mode {
                        AwsMode::AssumedRole => aws.role_arns.clone(),
                        AwsMode::Federated => vec![AWS_STS_AUDIENCE.to_string()],
                        AwsMode::IamUser => Vec::new(),
                    };
                }
            }
            if let Some(az) = &role.azure {
                if role.audiences.is_empty() && az.mode == AzureMode::Federated {
                    role.audiences = vec![AZURE_ASSERTION_AUDIENCE.to_string()];
                }
            }
            let invalid = |message: String| RoleError::Invalid {
                file: file.to_string(),
                role: role.name.clone(),
                message,
            };
            if !valid_role_name(&role.name) {
                return Err(invalid(
                    "name must be 1-128 characters of [A-Za-z0-9-_./]".into(),
                ));
            }
            if let Some(d) = role.default_ttl {
                if d > role.max_ttl {
                    return Err(invalid(format!(
                        "default_ttl {d} exceeds max_ttl {}",
                        role.max_ttl
                    )));
                }
            }
            if roles.contains_key(&role.name) {
                return Err(invalid("declared twice".into()));
            }
            roles.insert(role.name.clone(), role);
        }
        Ok(roles)
    }

    /// Narrow a request to what this role allows.
    ///
    /// Documented decisions: a TTL longer than the cap is *clamped* (the
    /// response reports the effective TTL, as Vault does); a scope or audience
    /// outside the template is *refused*, because silently dropping a scope
    /// the caller relies on would fail later and far from the cause.
    /// `policy_cap` is the tightest `@ttl_cap` of the policies that permitted.
    pub fn narrow(
        &self,
        req: &GrantRequest,
        policy_cap: Option<Ttl>,
    ) -> Result<Grant, NarrowError> {
        let cap = match policy_cap {
            Some(p) if p < self.max_ttl => p,
            _ => self.max_ttl,
        };
        let wanted = req.ttl.unwrap_or_else(|| self.default_ttl());
        let (ttl, ttl_clamped) = if wanted > cap {
            (cap, req.ttl.is_some())
        } else {
            (wanted, false)
        };
        let scopes = match &req.scopes {
            None => self.scopes.clone(),
            Some(asked) => {
                let mut out: Vec<String> = Vec::new();
                for s in asked {
                    if !self.scopes.iter().any(|t| t == s) {
                        return Err(NarrowError::ScopeNotAllowed(
                            s.clone(),
                            self.name.clone(),
                            self.scopes.join(" "),
                        ));
                    }
                    if !out.contains(s) {
                        out.push(s.clone());
                    }
                }
                out
            }
        };
        let audience = match &req.audience {
            Some(a) => {
                if !self.audiences.iter().any(|t| t == a) {
                    return Err(NarrowError::AudienceNotAllowed(
                        a.clone(),
                        self.name.clone(),
                        self.audiences.join(", "),
                    ));
                }
                Some(a.clone())
            }
            None => self.audiences.first().cloned(),
        };
        Ok(Grant {
            ttl,
            scopes,
            audience,
            ttl_clamped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: &str = r#"
[[role]]
name = "orders-api"
issuer = "oauth"
max_ttl = "10m"
default_ttl = "5m"
audiences = ["https://orders.example", "https://orders-staging.example"]
scopes = ["orders:read", "orders:write"]
"#;

    fn role() -> Role {
        Role::parse_file("roles.toml", ROLES)
            .unwrap()
            .remove("orders-api")
            .unwrap()
    }

    #[test]
    fn narrows_never_widens() {
        let r = role();
        let g = r.narrow(&GrantRequest::default(), None).unwrap();
        assert_eq!(g.ttl.as_secs(), 300);
        assert_eq!(g.scopes, vec!["orders:read", "orders:write"]);
        assert_eq!(g.audience.as_deref(), Some("https://orders.example"));

        let req = GrantRequest {
            ttl: Some("1h".parse().unwrap()),
            scopes: Some(vec!["orders:read".into()]),
            audience: Some("https://orders-staging.example".into()),
        };
        let g = r.narrow(&req, None).unwrap();
        assert_eq!((g.ttl.as_secs(), g.ttl_clamped), (600, true));
        assert_eq!(g.scopes, vec!["orders:read"]);
        let g = r.narrow(&req, Some("2m".parse().unwrap())).unwrap();
        assert_eq!(g.ttl.as_secs(), 120);

        let wide = GrantRequest {
            scopes: Some(vec!["orders:admin".into()]),
            ..Default::default()
        };
        assert!(matches!(
            r.narrow(&wide, None),
            Err(NarrowError::ScopeNotAllowed(..))
        ));
        let aud = GrantRequest {
            audience: Some("https://evil".into()),
            ..Default::default()
        };
        assert!(matches!(
            r.narrow(&aud, None),
            Err(NarrowError::AudienceNotAllowed(..))
        ));
    }

    #[test]
    fn ssh_template_defaults_and_host_selector() {
        let roles = Role::parse_file(
            "roles.toml",
            "[[role]]\nname='web'\nissuer='ssh'\nmax_ttl='10m'\n\
             ssh = { hosts = { env = 'prod', role = 'web' }, sudo = ['/usr/bin/systemctl restart web'] }\n",
        )
        .unwrap();
        let t = roles["web"].ssh.clone().unwrap();
        assert_eq!(t.mode, SshMode::Jit);
        assert_eq!(t.shell(), "/bin/bash");
        assert_eq!(t.extensions, vec!["permit-pty"]);
        let prod_web = BTreeMap::from([
            ("env".to_string(), "prod".to_string()),
            ("role".to_string(), "web".to_string()),
        ]);
        assert_eq!(t.unmatched_label(&prod_web), None);
        let dev = BTreeMap::from([("env".to_string(), "dev".to_string())]);
        assert_eq!(t.unmatched_label(&dev), Some(("env", "prod", Some("dev"))));
        let e = Role::parse_file(
            "r.toml",
            "[[role]]\nname='x'\nissuer='ssh'\nmax_ttl='5m'\nssh = { mode = 'root' }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("root"), "{e}");
    }

    #[test]
    fn rejects_bad_files() {
        let e = Role::parse_file(
            "r.toml",
            "[[role]]\nname='x'\nissuer='oauth'\nmax_ttl='5m'\nbogus=1\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        assert!(e.to_string().contains("line"), "{e}");
        let e = Role::parse_file(
            "r.toml",
            "[[role]]\nname='x'\nissuer='oauth'\nmax_ttl='5m'\ndefault_ttl='1h'\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("exceeds max_ttl"), "{e}");
        let e = Role::parse_file(
            "r.toml",
            "[[role]]\nname='a b'\nissuer='oauth'\nmax_ttl='5m'\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("name must be"), "{e}");
    }
}
