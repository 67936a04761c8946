//! `idmint policy test`: evaluate a request offline, exactly as the server
//! would, against a policy directory on disk. The server-side governance
//! commands (`draft`, `history`, `rollback`) live in `policy_drafts`.

use super::policy_drafts;
use super::{Exit, Format};
use crate::args::{GlobalArgs, PolicyCommand, PolicyTestArgs};
use crate::output::{emit, json};
use anyhow::{bail, Context, Result};
use idmint_core::policy::SourceFile;
use idmint_core::role::GrantRequest;
use idmint_core::{Decision, Identity, IdentityKind, PolicyBundle, RequestContext, Ttl, UnixTime};
use serde_json::{json, Map, Value};
use std::path::Path;

/// Largest policy or roles file read; real ones are a few KB.
const MAX_POLICY_FILE_BYTES: u64 = 4 << 20;

/// The file that declares roles in a policy directory.
const ROLES_FILE: &str = "roles.toml";

pub async fn run(global: &GlobalArgs, format: Format, cmd: PolicyCommand) -> Result<Exit> {
    match cmd {
        PolicyCommand::Test(args) => test(format, args),
        PolicyCommand::Draft(cmd) => policy_drafts::draft(global, format, cmd).await,
        PolicyCommand::History => policy_drafts::history(global, format).await,
        PolicyCommand::Rollback(args) => policy_drafts::rollback(global, format, args).await,
    }
}

fn test(format: Format, args: PolicyTestArgs) -> Result<Exit> {
    let sources = read_policy_dir(&args.policy_dir)?;
    let bundle = PolicyBundle::from_sources(0, sources)
        .with_context(|| format!("loading the policy in {}", args.policy_dir.display()))?;
    let identity = read_identity(&args.identity)?;
    let now = UnixTime::now().secs();

    let role = match (args.action.as_str(), &args.role) {
        ("issue", None) => bail!("--role is required for --action issue"),
        (_, Some(name)) => Some(bundle.role(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = bundle.roles.keys().map(String::as_str).collect();
            anyhow::anyhow!(
                "role {name:?} is not in {}/{ROLES_FILE}; known roles: {}",
                args.policy_dir.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })?),
        (_, None) => None,
    };
    let ttl: Option<Ttl> = match &args.ttl {
        Some(t) => Some(t.parse().map_err(|e| anyhow::anyhow!("--ttl: {e}"))?),
        None => None,
    };
    let request = GrantRequest {
        ttl,
        scopes: (!args.scopes.is_empty()).then(|| args.scopes.clone()),
        audience: args.audience.clone(),
    };
    // The same context the server builds: the request, with the role's
    // defaults filled in.
    let ctx = RequestContext {
        ttl_seconds: request
            .ttl
            .or_else(|| role.as_ref().map(|r| r.default_ttl()))
            .map(Ttl::as_secs)
            .unwrap_or(0),
        scopes: request
            .scopes
            .clone()
            .or_else(|| role.as_ref().map(|r| r.scopes.clone()))
            .unwrap_or_default(),
        audience: request
            .audience
            .clone()
            .or_else(|| role.as_ref().and_then(|r| r.audiences.first().cloned())),
        source_ip: None,
        now,
        host: None,
    };
    let decision = bundle.evaluate(&identity, &args.action, role.as_ref(), &ctx);
    // What would actually be minted, and whether narrowing would refuse it.
    let grant = match (&role, decision.allowed) {
        (Some(r), true) => Some(
            r.narrow(&request, decision.ttl_cap)
                .map_err(|e| e.to_string()),
        ),
        _ => None,
    };

    let out = PolicyTestOutcome {
        identity: &identity,
        action: &args.action,
        role: args.role.as_deref(),
        ctx: &ctx,
        decision: &decision,
        grant: grant.as_ref(),
    };
    match format {
        Format::Json => emit(&json(&out.to_json())?)?,
        Format::Text => emit(&out.to_text())?,
    }
    Ok(match (decision.allowed, &grant) {
        (true, Some(Err(_))) => Exit::Problems,
        (true, _) => Exit::Success,
        (false, _) => Exit::Denied,
    })
}

/// `*.cedar` files and `roles.toml` from `dir`, sorted by name so policy
/// ids derived from file names are stable. Other files are ignored
/// (READMEs, editor backups).
pub fn read_policy_dir(dir: &Path) -> Result<Vec<SourceFile>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "reading policy directory {} (pass --policy-dir DIR with *.cedar and {ROLES_FILE})",
            dir.display()
        )
    })?;
    let mut sources = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading policy directory {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.ends_with(".cedar") || name == ROLES_FILE) {
            continue;
        }
        let path = entry.path();
        let meta =
            std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        if !meta.is_file() {
            continue;
        }
        if meta.len() > MAX_POLICY_FILE_BYTES {
            bail!(
                "{} is {} bytes; policy files are limited to {MAX_POLICY_FILE_BYTES}",
                path.display(),
                meta.len()
            );
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (policy files must be UTF-8)", path.display()))?;
        sources.push(SourceFile { name, text });
    }
    if !sources.iter().any(|s| s.name == ROLES_FILE) {
        bail!("{} has no {ROLES_FILE}", dir.display());
    }
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(sources)
}

/// An identity file: an idmint [`Identity`], or a bare claims object.
fn read_identity(path: &Path) -> Result<Identity> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading identity file {}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    identity_from_json(value).with_context(|| format!("identity file {}", path.display()))
}

/// `value` is an [`Identity`] when it has `attributes` (claims objects
/// never do); otherwise its members are taken as verified claims.
pub fn identity_from_json(value: Value) -> Result<Identity> {
    let Value::Object(obj) = value else {
        bail!("expected a JSON object (an identity or a claims object)");
    };
    if obj.contains_key("attributes") {
        return serde_json::from_value(Value::Object(obj)).context(
            "has `attributes` but is not a valid idmint identity (needs kind, subject, issuer, method, auth, attributes, proof_id, expires_at)",
        );
    }
    Ok(identity_from_claims(obj))
}

fn identity_from_claims(claims: Map<String, Value>) -> Identity {
    let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
    Identity {
        kind: IdentityKind::Ci,
        subject: text("sub").unwrap_or_default(),
        issuer: text("iss").unwrap_or_default(),
        method: "oidc".into(),
        auth: "test".into(),
        proof_id: text("jti").unwrap_or_else(|| "policy-test".into()),
        expires_at: UnixTime(
            claims
                .get("exp")
                .and_then(Value::as_i64)
                .unwrap_or_else(|| UnixTime::now().secs().saturating_add(3600)),
        ),
        attributes: claims,
    }
}

struct PolicyTestOutcome<'a> {
    identity: &'a Identity,
    action: &'a str,
    role: Option<&'a str>,
    ctx: &'a RequestContext,
    decision: &'a Decision,
    grant: Option<&'a Result<idmint_core::Grant, String>>,
}

impl PolicyTestOutcome<'_> {
    fn to_text(&self) -> String {
        let d = self.decision;
        let mut s = format!(
            "{}: {}\n",
            if d.allowed { "ALLOWED" } else { "DENIED" },
            d.explain()
        );
        s.push_str(&format!(
            "  principal: Identity::\"{}\" (kind {})\n",
            self.identity.principal_key(),
            self.identity.kind.as_str()
        ));
        s.push_str(&format!(
            "  request:   action {}, resource {}, ttl {}s, scopes [{}], audience {}\n",
            self.action,
            self.role
                .map(|r| format!("Role::\"{r}\""))
                .unwrap_or_else(|| "Server::\"idmint\"".into()),
            self.ctx.ttl_seconds,
            self.ctx.scopes.join(" "),
            self.ctx.audience.as_deref().unwrap_or("-"),
        ));
        if let Some(cap) = d.ttl_cap {
            s.push_str(&format!("  ttl cap:   {cap} (@ttl_cap)\n"));
        }
        match self.grant {
            Some(Ok(g)) => s.push_str(&format!(
                "  grant:     ttl {}{}, scopes [{}], audience {}\n",
                g.ttl,
                if g.ttl_clamped { " (shortened)" } else { "" },
                g.scopes.join(" "),
                g.audience.as_deref().unwrap_or("-"),
            )),
            Some(Err(e)) => s.push_str(&format!("  but issuance would fail: {e}\n")),
            None => {}
        }
        for e in &d.errors {
            s.push_str(&format!("  error: {e}\n"));
        }
        s
    }

    fn to_json(&self) -> Value {
        let d = self.decision;
        json!({
            "allowed": d.allowed,
            "explanation": d.explain(),
            "policy_ids": d.policy_ids,
            "errors": d.errors,
            "bundle_version": d.bundle_version,
            "ttl_cap_seconds": d.ttl_cap.map(Ttl::as_secs),
            "principal": self.identity.principal_key(),
            "action": self.action,
            "role": self.role,
            "context": {
                "ttl_seconds": self.ctx.ttl_seconds,
                "scopes": self.ctx.scopes,
                "audience": self.ctx.audience,
                "now": self.ctx.now,
            },
            "grant": match self.grant {
                Some(Ok(g)) => json!({"ttl_seconds": g.ttl.as_secs(), "ttl_clamped": g.ttl_clamped,
                                      "scopes": g.scopes, "audience": g.audience}),
                Some(Err(e)) => json!({"error": e}),
                None => Value::Null,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: &str = "[[role]]\nname = \"demo-api\"\nissuer = \"oauth\"\nmax_ttl = \"10m\"\ndefault_ttl = \"5m\"\naudiences = [\"https://api.example.test\"]\nscopes = [\"orders:read\", \"orders:write\"]\n";
    const POLICY: &str = "@id(\"main\")\n@ttl_cap(\"2m\")\npermit (principal, action == Action::\"issue\", resource == Role::\"demo-api\")\nwhen { principal.repository == \"acme/app\" };\n";

    fn policy_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("roles.toml"), ROLES).unwrap();
        std::fs::write(dir.path().join("main.cedar"), POLICY).unwrap();
        std::fs::write(dir.path().join("README.md"), "ignored").unwrap();
        dir
    }

    fn args(dir: &Path, identity: &Path) -> PolicyTestArgs {
        PolicyTestArgs {
            identity: identity.to_path_buf(),
            role: Some("demo-api".into()),
            policy_dir: dir.to_path_buf(),
            action: "issue".into(),
            ttl: None,
            scopes: vec![],
            audience: None,
        }
    }

    #[test]
    fn reads_cedar_and_roles_only() {
        let dir = policy_dir();
        let names: Vec<String> = read_policy_dir(dir.path())
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, vec!["main.cedar", "roles.toml"]);
        std::fs::remove_file(dir.path().join("roles.toml")).unwrap();
        let e = read_policy_dir(dir.path()).unwrap_err();
        assert!(e.to_string().contains("has no roles.toml"), "{e}");
        let e = read_policy_dir(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("--policy-dir"), "{e}");
    }

    #[test]
    fn claims_and_identities_are_both_accepted() {
        let id = identity_from_json(
            json!({"sub": "repo:acme/app", "iss": "https://idp", "repository": "acme/app"}),
        )
        .unwrap();
        assert_eq!(
            (id.subject.as_str(), id.issuer.as_str(), id.auth.as_str()),
            ("repo:acme/app", "https://idp", "test")
        );
        assert_eq!(id.kind, IdentityKind::Ci);
        assert_eq!(id.attributes["repository"], "acme/app");
        let full = serde_json::to_value(&id).unwrap();
        assert_eq!(identity_from_json(full).unwrap(), id);
        let e = identity_from_json(json!({"attributes": {}})).unwrap_err();
        assert!(
            format!("{e:#}").contains("not a valid idmint identity"),
            "{e:#}"
        );
        assert!(identity_from_json(json!([1])).is_err());
    }

    #[test]
    fn allow_and_deny_exit_codes() {
        let dir = policy_dir();
        let good = dir.path().join("good.json");
        std::fs::write(
            &good,
            r#"{"sub": "s", "iss": "i", "repository": "acme/app"}"#,
        )
        .unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(
            &bad,
            r#"{"sub": "s", "iss": "i", "repository": "acme/other"}"#,
        )
        .unwrap();
        assert_eq!(
            test(Format::Json, args(dir.path(), &good)).unwrap(),
            Exit::Success
        );
        assert_eq!(
            test(Format::Json, args(dir.path(), &bad)).unwrap(),
            Exit::Denied
        );
        let mut wide = args(dir.path(), &good);
        wide.scopes = vec!["orders:admin".into()];
        assert_eq!(test(Format::Json, wide).unwrap(), Exit::Problems);
        let mut unknown = args(dir.path(), &good);
        unknown.role = Some("nope".into());
        let e = test(Format::Json, unknown).unwrap_err();
        assert!(e.to_string().contains("known roles: demo-api"), "{e}");
    }

    #[test]
    fn text_explains_the_decision() {
        let dir = policy_dir();
        let sources = read_policy_dir(dir.path()).unwrap();
        let bundle = PolicyBundle::from_sources(0, sources).unwrap();
        let id = identity_from_claims(
            json!({"sub": "s", "iss": "i", "repository": "acme/app"})
                .as_object()
                .cloned()
                .unwrap(),
        );
        let role = bundle.role("demo-api").cloned().unwrap();
        let ctx = RequestContext {
            ttl_seconds: 300,
            ..Default::default()
        };
        let d = bundle.evaluate(&id, "issue", Some(&role), &ctx);
        let grant = role
            .narrow(&GrantRequest::default(), d.ttl_cap)
            .map_err(|e| e.to_string());
        let out = PolicyTestOutcome {
            identity: &id,
            action: "issue",
            role: Some("demo-api"),
            ctx: &ctx,
            decision: &d,
            grant: Some(&grant),
        };
        let t = out.to_text();
        assert!(
            t.starts_with("ALLOWED: permitted by main (bundle v0)\n"),
            "{t}"
        );
        assert!(
            t.contains("ttl cap:   2m") && t.contains("grant:     ttl 2m"),
            "{t}"
        );
        let j = out.to_json();
        assert_eq!(j["policy_ids"][0], "main");
        assert_eq!(j["grant"]["ttl_seconds"], 120);
    }
}
