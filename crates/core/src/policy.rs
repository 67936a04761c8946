//! The policy bundle and Cedar evaluation.
//!
//! Cedar model:
//! - principal: `Identity::"<issuer>|<subject>"`. Its attributes are the
//!   verified claims (so `principal.repository` works as in the GitHub
//!   Actions example) plus `subject`, `issuer`, `method`, `kind` and `auth`,
//!   which override claims of the same name because they are idmint's own
//!   verified facts.
//! - action: `Action::"issue"` (get a credential for a role), `Action::"admin"`
//!   (list/revoke all leases, trace the audit log).
//! - resource: `Role::"<name>"` with `name`, `issuer` and `labels`, or
//!   `Server::"idmint"` for admin actions.
//! - context: `ttl_seconds`, `scopes`, `audience`, `source_ip` (an `ip`
//!   value when known), `now` (Unix seconds), and for SSH sessions `host`
//!   (`{name, labels}`; test with `context has host` first).
//!
//! Default deny, forbid wins (Cedar semantics). A permit policy can carry an
//! obligation `@ttl_cap("5m")`; the tightest cap among the policies that
//! permitted is enforced at issuance.
//!
//! Claims are converted into Cedar values by hand rather than through Cedar's
//! JSON entity format: that format interprets `__entity`/`__extn` keys, and a
//! hostile claim must never be able to forge an entity reference.

use crate::duration::Ttl;
use crate::identity::Identity;
use crate::role::{Role, RoleError};
use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicyId, PolicySet, Request, RestrictedExpression,
};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{LazyLock, Mutex};

/// Claims nested deeper than this are dropped from policy attributes.
const MAX_CLAIM_DEPTH: usize = 6;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: line {line}: {message}")]
    Cedar {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: policy {id:?} is declared twice (check @id annotations)")]
    DuplicateId { file: String, id: String },
    #[error("{file}: line {line}: @ttl_cap({value:?}) is not a valid duration: {message}")]
    BadObligation {
        file: String,
        line: usize,
        value: String,
        message: String,
    },
    #[error("{file}: line {line}: @session_ttl({value:?}) is not a valid duration: {message}")]
    BadSessionTtl {
        file: String,
        line: usize,
        value: String,
        message: String,
    },
    #[error(transparent)]
    Roles(#[from] RoleError),
    #[error("the policy bundle has no roles.toml")]
    NoRoles,
}

/// One source file of a bundle, kept verbatim so that the bundle stored in
/// the database can be shown, diffed and re-parsed exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// Cedar policies + roles, with a version. Immutable once built: activation
/// swaps the whole bundle atomically, so a request sees one version only.
#[derive(Debug)]
pub struct PolicyBundle {
    pub version: u64,
    pub sources: Vec<SourceFile>,
    pub roles: BTreeMap<String, Role>,
    policies: PolicySet,
    /// `@ttl_cap` obligation per policy id.
    ttl_caps: HashMap<String, Ttl>,
    /// `@session_ttl` per policy id: on a policy permitting
    /// `Action::"login"`, the length of the session it grants.
    session_ttls: HashMap<String, Ttl>,
    authorizer: Authorizer,
}

/// Request parameters visible to policy as `context`.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub ttl_seconds: u64,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    pub source_ip: Option<std::net::IpAddr>,
    pub now: i64,
    /// The SSH host a session is requested for (`context.host`); `None`
    /// for every other request.
    pub host: Option<HostContext>,
}

/// An SSH host as policy sees it: `context.host.name` and
/// `context.host.labels.<key>` (from the issuer's `hosts` config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostContext {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// The outcome of one evaluation, with what is needed to explain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    /// Policies that determined the decision (permits on allow, forbids on
    /// an explicit deny; empty on default deny).
    pub policy_ids: Vec<String>,
    /// Evaluation errors (e.g. a policy read an attribute the identity lacks).
    /// Cedar skips a policy that errors, which is fail-closed for permits.
    pub errors: Vec<String>,
    pub bundle_version: u64,
    /// Tightest `@ttl_cap` among the permitting policies.
    #[serde(skip)]
    pub ttl_cap: Option<Ttl>,
}

impl Decision {
    /// Human explanation for error messages and `idmint policy test`.
    pub fn explain(&self) -> String {
        if self.allowed {
            format!(
                "permitted by {} (bundle v{})",
                self.policy_ids.join(", "),
                self.bundle_version
            )
        } else if self.policy_ids.is_empty() {
            format!(
                "no policy permits this request (default deny, bundle v{})",
                self.bundle_version
            )
        } else {
            format!(
                "forbidden by {} (bundle v{})",
                self.policy_ids.join(", "),
                self.bundle_version
            )
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map(|s| s.matches('\n').count() + 1)
        .unwrap_or(1)
}

impl PolicyBundle {
    /// Build a bundle from `*.cedar` files and one `roles.toml`.
    pub fn from_sources(version: u64, sources: Vec<SourceFile>) -> Result<Self, PolicyError> {
        let mut policies = PolicySet::new();
        let mut ttl_caps = HashMap::new();
        let mut session_ttls = HashMap::new();
        let mut roles = None;
        for src in &sources {
            if src.name.ends_with(".toml") {
                roles = Some(Role::parse_file(&src.name, &src.text)?);
                continue;
            }
            let set = PolicySet::from_str(&src.text).map_err(|e| PolicyError::Cedar {
                file: src.name.clone(),
                line: line_of(&src.text, first_offset(&e)),
                message: e.to_string(),
            })?;
            for p in set.policies() {
                // Policies keep their original text; locate it for the line.
                let line = src
                    .text
                    .find(p.to_string().trim())
                    .map(|o| line_of(&src.text, o))
                    .unwrap_or(1);
                let id = match p.annotation("id") {
                    Some(id) => id.to_string(),
                    None => format!("{}:{line}", src.name),
                };
                if let Some(cap) = p.annotation("ttl_cap") {
                    let ttl: Ttl = cap.parse().map_err(|e: crate::duration::TtlError| {
                        PolicyError::BadObligation {
                            file: src.name.clone(),
                            line,
                            value: cap.to_string(),
                            message: e.to_string(),
                        }
                    })?;
                    ttl_caps.insert(id.clone(), ttl);
                }
                if let Some(value) = p.annotation("session_ttl") {
                    let ttl: Ttl = value.parse().map_err(|e: crate::duration::TtlError| {
                        PolicyError::BadSessionTtl {
                            file: src.name.clone(),
                            line,
                            value: value.to_string(),
                            message: e.to_string(),
                        }
                    })?;
                    session_ttls.insert(id.clone(), ttl);
                }
                policies.add(p.new_id(PolicyId::new(&id))).map_err(|_| {
                    PolicyError::DuplicateId {
                        file: src.name.clone(),
                        id: id.clone(),
                    }
                })?;
            }
        }
        let roles = roles.ok_or(PolicyError::NoRoles)?;
        Ok(Self {
            version,
            sources,
            roles,
            policies,
            ttl_caps,
            session_ttls,
            authorizer: Authorizer::new(),
        })
    }

    /// The session length an allowing decision grants: the shortest
    /// `@session_ttl` among the policies that permitted it (`None` when it
    /// denied, or none of them carries the annotation). Used for
    /// `Action::"login"`, so session length changes only through the
    /// reviewed policy bundle.
    pub fn session_ttl(&self, decision: &Decision) -> Option<Ttl> {
        if !decision.allowed {
            return None;
        }
        decision
            .policy_ids
            .iter()
            .filter_map(|id| self.session_ttls.get(id))
            .min()
            .copied()
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// Number of Cedar policies, for status output.
    pub fn policy_count(&self) -> usize {
        self.policies.policies().count()
    }

    /// Evaluate `action` on `role` (or on the server when `role` is None).
    pub fn evaluate(
        &self,
        identity: &Identity,
        action: &str,
        role: Option<&Role>,
        ctx: &RequestContext,
    ) -> Decision {
        match self.evaluate_inner(identity, action, role, ctx) {
            Ok(d) => d,
            Err(message) => Decision {
                allowed: false,
                policy_ids: vec![],
                errors: vec![message],
                bundle_version: self.version,
                ttl_cap: None,
            },
        }
    }

    fn evaluate_inner(
        &self,
        identity: &Identity,
        action: &str,
        role: Option<&Role>,
        ctx: &RequestContext,
    ) -> Result<Decision, String> {
        let principal = uid("Identity", &identity.principal_key())?;
        let action = uid("Action", action)?;
        let mut attrs: HashMap<String, RestrictedExpression> = HashMap::new();
        for (k, v) in &identity.attributes {
            if let Some(e) = to_cedar(v, 0) {
                attrs.insert(k.clone(), e);
            }
        }
        for (k, v) in [
            ("subject", identity.subject.as_str()),
            ("issuer", identity.issuer.as_str()),
            ("method", identity.method.as_str()),
            ("kind", identity.kind.as_str()),
            ("auth", identity.auth.as_str()),
        ] {
            attrs.insert(k.into(), RestrictedExpression::new_string(v.to_string()));
        }
        let principal_entity =
            Entity::new(principal.clone(), attrs, HashSet::new()).map_err(|e| e.to_string())?;
        let (resource, resource_entity) = match role {
            Some(role) => {
                let r = uid("Role", &role.name)?;
                let labels = RestrictedExpression::new_record(
                    role.labels
                        .iter()
                        .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone()))),
                )
                .map_err(|e| e.to_string())?;
                let attrs = HashMap::from([
                    (
                        "name".to_string(),
                        RestrictedExpression::new_string(role.name.clone()),
                    ),
                    (
                        "issuer".to_string(),
                        RestrictedExpression::new_string(role.issuer.clone()),
                    ),
                    ("labels".to_string(), labels),
                ]);
                let e = Entity::new(r.clone(), attrs, HashSet::new()).map_err(|e| e.to_string())?;
                (r, e)
            }
            None => {
                let r = uid("Server", "idmint")?;
                (r.clone(), Entity::new_no_attrs(r, HashSet::new()))
            }
        };
        let mut pairs = vec![
            (
                "ttl_seconds".to_string(),
                RestrictedExpression::new_long(ctx.ttl_seconds.min(i64::MAX as u64) as i64),
            ),
            (
                "scopes".to_string(),
                RestrictedExpression::new_set(
                    ctx.scopes
                        .iter()
                        .map(|s| RestrictedExpression::new_string(s.clone())),
                ),
            ),
            (
                "audience".to_string(),
                RestrictedExpression::new_string(ctx.audience.clone().unwrap_or_default()),
            ),
            ("now".to_string(), RestrictedExpression::new_long(ctx.now)),
        ];
        if let Some(host) = &ctx.host {
            let labels = RestrictedExpression::new_record(
                host.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone()))),
            )
            .map_err(|e| e.to_string())?;
            let record = RestrictedExpression::new_record([
                (
                    "name".to_string(),
                    RestrictedExpression::new_string(host.name.clone()),
                ),
                ("labels".to_string(), labels),
            ])
            .map_err(|e| e.to_string())?;
            pairs.push(("host".to_string(), record));
        }
        if let Some(ip) = ctx.source_ip {
            pairs.push(("source_ip".to_string(), ip_expression(ip)));
        }
        let context = Context::from_pairs(pairs).map_err(|e| e.to_string())?;
        let entities = Entities::from_entities([principal_entity, resource_entity], None)
            .map_err(|e| e.to_string())?;
        let request =
            Request::new(principal, action, resource, context, None).map_err(|e| e.to_string())?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies, &entities);
        let allowed = response.decision() == CedarDecision::Allow;
        let policy_ids: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| id.to_string())
            .collect();
        let errors = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        let ttl_cap = if allowed {
            policy_ids
                .iter()
                .filter_map(|id| self.ttl_caps.get(id))
                .min()
                .copied()
        } else {
            None
        };
        Ok(Decision {
            allowed,
            policy_ids,
            errors,
            bundle_version: self.version,
            ttl_cap,
        })
    }
}

fn uid(ty: &str, id: &str) -> Result<EntityUid, String> {
    let t = type_name(ty)?;
    Ok(EntityUid::from_type_name_and_id(t, EntityId::new(id)))
}

/// The entity types of the model, parsed once. `EntityTypeName::from_str`
/// runs Cedar's full parser (building a fresh lexer DFA cache) on every
/// call, and every decision needs three of them.
static TYPE_NAMES: LazyLock<Result<[EntityTypeName; 4], String>> = LazyLock::new(|| {
    let parse = |t: &str| EntityTypeName::from_str(t).map_err(|e| e.to_string());
    Ok([
        parse("Identity")?,
        parse("Action")?,
        parse("Role")?,
        parse("Server")?,
    ])
});

fn type_name(ty: &str) -> Result<EntityTypeName, String> {
    let index = match ty {
        "Identity" => 0,
        "Action" => 1,
        "Role" => 2,
        "Server" => 3,
        other => return EntityTypeName::from_str(other).map_err(|e| e.to_string()),
    };
    match &*TYPE_NAMES {
        Ok(names) => Ok(names[index].clone()),
        Err(e) => Err(e.clone()),
    }
}

/// At most this many `ip` values are kept by [`ip_expression`].
const IP_EXPRESSION_CACHE: usize = 4096;

/// `context.source_ip` for `ip`. Cedar's `RestrictedExpression::new_ip`
/// parses the extension name `ip` with its full parser on every call, which
/// was the largest single cost of building a request (about 5 % of an SSH
/// certificate's CPU). Callers come from few addresses, so the finished
/// expression is kept per address; the map is cleared when it reaches
/// [`IP_EXPRESSION_CACHE`] entries, so hostile source addresses cost memory
/// bounded by that, never more.
fn ip_expression(ip: IpAddr) -> RestrictedExpression {
    static CACHE: LazyLock<Mutex<HashMap<IpAddr, RestrictedExpression>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    let Ok(mut cache) = CACHE.lock() else {
        return RestrictedExpression::new_ip(ip.to_string());
    };
    if let Some(e) = cache.get(&ip) {
        return e.clone();
    }
    if cache.len() >= IP_EXPRESSION_CACHE {
        cache.clear();
    }
    let e = RestrictedExpression::new_ip(ip.to_string());
    cache.insert(ip, e.clone());
    e
}

/// JSON claim → Cedar value. Floats and nulls have no Cedar equivalent and
/// are dropped (a policy reading them errors, which denies); integers beyond
/// i64 are dropped likewise.
fn to_cedar(v: &Value, depth: usize) -> Option<RestrictedExpression> {
    if depth > MAX_CLAIM_DEPTH {
        return None;
    }
    Some(match v {
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => RestrictedExpression::new_long(n.as_i64()?),
        Value::Array(a) => {
            RestrictedExpression::new_set(a.iter().filter_map(|x| to_cedar(x, depth + 1)))
        }
        Value::Object(o) => RestrictedExpression::new_record(
            o.iter()
                .filter_map(|(k, x)| to_cedar(x, depth + 1).map(|e| (k.clone(), e))),
        )
        .ok()?,
        Value::Null => return None,
    })
}

/// Cedar's parse errors carry source spans through `miette`: the first one
/// gives the line to report.
fn first_offset(e: &cedar_policy::ParseErrors) -> usize {
    use miette::Diagnostic;
    e.labels()
        .and_then(|mut l| l.next())
        .map(|l| l.offset())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityKind;
    use crate::time::UnixTime;

    fn bundle(cedar: &str) -> Result<PolicyBundle, PolicyError> {
        PolicyBundle::from_sources(
            7,
            vec![
                SourceFile {
                    name: "main.cedar".into(),
                    text: cedar.into(),
                },
                SourceFile {
                    name: "roles.toml".into(),
                    text:
                        "[[role]]\nname='api'\nissuer='oauth'\nmax_ttl='10m'\nlabels={env='prod'}\n"
                            .into(),
                },
            ],
        )
    }

    fn ident(claims: Value) -> Identity {
        Identity {
            kind: IdentityKind::Ci,
            subject: "repo:acme/app:ref:refs/heads/main".into(),
            issuer: "https://idp".into(),
            method: "oidc".into(),
            auth: "github".into(),
            attributes: claims.as_object().cloned().unwrap_or_default(),
            proof_id: "j1".into(),
            expires_at: UnixTime(0),
        }
    }

    const POLICY: &str = r#"
@id("main-deploys")
@ttl_cap("2m")
permit (principal, action == Action::"issue", resource == Role::"api")
when { principal.repository == "acme/app" && principal.ref == "refs/heads/main"
       && resource.labels.env == "prod" && context.ttl_seconds <= 600 };

forbid (principal, action, resource)
when { principal has actor && principal.actor == "mallory" };
"#;

    #[test]
    fn session_ttl_comes_from_the_permitting_login_policies() {
        let b = bundle(
            r#"
@id("people")
@session_ttl("2h")
permit (principal, action == Action::"login", resource == Server::"idmint");

@id("oncall")
@session_ttl("30m")
permit (principal, action == Action::"login", resource == Server::"idmint")
when { principal has actor && principal.actor == "pager" };

@id("plain")
permit (principal, action == Action::"admin", resource == Server::"idmint");
"#,
        )
        .unwrap();
        let ctx = RequestContext::default();
        let d = b.evaluate(&ident(serde_json::json!({})), "login", None, &ctx);
        assert_eq!(b.session_ttl(&d).map(Ttl::as_secs), Some(7200));
        let d = b.evaluate(
            &ident(serde_json::json!({"actor": "pager"})),
            "login",
            None,
            &ctx,
        );
        assert_eq!(
            b.session_ttl(&d).map(Ttl::as_secs),
            Some(1800),
            "shortest wins"
        );
        let d = b.evaluate(&ident(serde_json::json!({})), "admin", None, &ctx);
        assert_eq!(b.session_ttl(&d), None, "no annotation");
        let d = b.evaluate(&ident(serde_json::json!({})), "issue", b.role("api"), &ctx);
        assert_eq!(b.session_ttl(&d), None, "denied");
    }

    #[test]
    fn permit_forbid_default_deny() {
        let b = bundle(POLICY).unwrap();
        let role = b.role("api").unwrap().clone();
        let ctx = RequestContext {
            ttl_seconds: 300,
            ..Default::default()
        };
        let ok = ident(serde_json::json!({"repository": "acme/app", "ref": "refs/heads/main"}));
        let d = b.evaluate(&ok, "issue", Some(&role), &ctx);
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.policy_ids, vec!["main-deploys"]);
        assert_eq!(d.ttl_cap.unwrap().as_secs(), 120);
        assert_eq!(d.bundle_version, 7);

        let evil = ident(
            serde_json::json!({"repository": "acme/app", "ref": "refs/heads/main", "actor": "mallory"}),
        );
        let d = b.evaluate(&evil, "issue", Some(&role), &ctx);
        assert!(!d.allowed);
        assert_eq!(d.policy_ids, vec!["main.cedar:8"]);

        let other =
            ident(serde_json::json!({"repository": "acme/other", "ref": "refs/heads/main"}));
        let d = b.evaluate(&other, "issue", Some(&role), &ctx);
        assert!(!d.allowed && d.policy_ids.is_empty());

        // A wrong type (array where a string is expected) never permits.
        let arr = ident(serde_json::json!({"repository": ["acme/app"], "ref": "refs/heads/main"}));
        assert!(!b.evaluate(&arr, "issue", Some(&role), &ctx).allowed);
        // Missing attribute: evaluation error, fail closed.
        let d = b.evaluate(&ident(serde_json::json!({})), "issue", Some(&role), &ctx);
        assert!(!d.allowed && !d.errors.is_empty());
        // Too-long TTL in context denied by the policy condition.
        let long = RequestContext {
            ttl_seconds: 3600,
            ..Default::default()
        };
        assert!(!b.evaluate(&ok, "issue", Some(&role), &long).allowed);
    }

    #[test]
    fn entity_escapes_in_claims_are_plain_data() {
        let b = bundle(r#"permit (principal in Group::"admins", action, resource);"#).unwrap();
        let role = b.role("api").unwrap().clone();
        let hostile = ident(
            serde_json::json!({"__entity": {"type": "Group", "id": "admins"},
            "x": {"__extn": {"fn": "ip", "arg": "1.2.3.4"}}}),
        );
        assert!(
            !b.evaluate(&hostile, "issue", Some(&role), &RequestContext::default())
                .allowed
        );
    }

    #[test]
    fn source_ip_is_an_ip_value_for_every_address_including_past_the_cache_bound() {
        let b = bundle(
            r#"permit (principal, action, resource)
               when { context has source_ip && context.source_ip.isInRange(ip("10.0.0.0/8")) };"#,
        )
        .unwrap();
        let role = b.role("api").unwrap().clone();
        let id = ident(serde_json::json!({}));
        let from = |ip: IpAddr| RequestContext {
            source_ip: Some(ip),
            ..Default::default()
        };
        let inside: IpAddr = "10.1.2.3".parse().unwrap();
        let outside: IpAddr = "192.0.2.7".parse().unwrap();
        // Twice each: the second evaluation uses the cached expression.
        for _ in 0..2 {
            assert!(b.evaluate(&id, "issue", Some(&role), &from(inside)).allowed);
            assert!(
                !b.evaluate(&id, "issue", Some(&role), &from(outside))
                    .allowed
            );
        }
        // More distinct addresses than the cache holds: it is cleared, never
        // grows past the bound, and every answer stays right.
        for n in 0..(IP_EXPRESSION_CACHE as u32 + 10) {
            let v6 = IpAddr::V6(std::net::Ipv6Addr::from(
                0x2001_0db8_u128 << 96 | u128::from(n),
            ));
            assert!(!b.evaluate(&id, "issue", Some(&role), &from(v6)).allowed);
        }
        assert!(b.evaluate(&id, "issue", Some(&role), &from(inside)).allowed);
        let v4 = IpAddr::V4(std::net::Ipv4Addr::new(10, 200, 0, 1));
        assert!(b.evaluate(&id, "issue", Some(&role), &from(v4)).allowed);
    }

    #[test]
    fn host_is_in_context_for_ssh_requests() {
        let b = bundle(
            r#"permit (principal, action, resource)
               when { context has host && context.host.name == "web-1"
                      && context.host.labels.env == "prod" };"#,
        )
        .unwrap();
        let role = b.role("api").unwrap().clone();
        let id = ident(serde_json::json!({}));
        let host = |name: &str, env: &str| RequestContext {
            host: Some(HostContext {
                name: name.into(),
                labels: BTreeMap::from([("env".to_string(), env.to_string())]),
            }),
            ..Default::default()
        };
        assert!(
            b.evaluate(&id, "issue", Some(&role), &host("web-1", "prod"))
                .allowed
        );
        assert!(
            !b.evaluate(&id, "issue", Some(&role), &host("web-2", "prod"))
                .allowed
        );
        assert!(
            !b.evaluate(&id, "issue", Some(&role), &host("web-1", "dev"))
                .allowed
        );
        // No host (any non-SSH request): the guard keeps it a plain deny.
        let d = b.evaluate(&id, "issue", Some(&role), &RequestContext::default());
        assert!(!d.allowed && d.errors.is_empty(), "{d:?}");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e =
            bundle("permit (principal, action, resource);\n\npermit (principal, action resource);")
                .unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("main.cedar: line 3:"), "{s}");
        let e =
            bundle("@session_ttl(\"soon\")\npermit (principal, action, resource);").unwrap_err();
        assert!(e.to_string().contains("@session_ttl(\"soon\")"), "{e}");
        let e = bundle("@ttl_cap(\"forever\")\npermit (principal, action, resource);").unwrap_err();
        assert!(e.to_string().contains("ttl_cap"), "{e}");
    }
}
