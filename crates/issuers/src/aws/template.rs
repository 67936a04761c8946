//! What an `aws` role asks for, checked when the policy bundle loads and
//! turned into STS/IAM parameters at issuance.
//!
//! Hostile-input rules (documented in `docs/aws.md`):
//! - session tag values, the session name and `SourceIdentity` come from
//!   the caller's claims; they are **sanitised, never refused**: every
//!   character outside a conservative ASCII subset of AWS's allowed set
//!   (quotes, newlines, NUL, all non-ASCII) becomes `_`, and values are cut
//!   to AWS's limits, so no claim can make AWS reject the call or change
//!   its meaning. A claim the template names but the token lacks (or that
//!   is a list/object) is refused: an ABAC tag silently empty would be
//!   worse than an error.
//! - the session policy is the union of the statements of the named
//!   policies the request picked; a request can only pick a subset of the
//!   role's policies (its `scopes`), never supply JSON of its own.

use idmint_core::role::{AwsMode, AwsTemplate};
use idmint_core::{Identity, Role};
use serde_json::{json, Value};

/// AWS limits.
const MAX_TAG_KEY: usize = 128;
const MAX_TAG_VALUE: usize = 256;
const MAX_TAGS: usize = 50;
pub const MAX_SESSION_NAME: usize = 64;
/// Packed session policies are limited to 2048 characters by STS.
pub const MAX_SESSION_POLICY: usize = 2048;
/// Inline user policies are limited to 2048 characters (non-whitespace).
pub const MAX_USER_POLICY: usize = 2048;

/// Whether `c` may appear in a tag key or value as idmint writes it: the
/// ASCII part of AWS's `[\p{L}\p{Z}\p{N}_.:/=+\-@]`.
fn tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '.' | ':' | '/' | '=' | '+' | '-' | '@')
}

/// Whether `c` may appear in a role session name or `SourceIdentity`:
/// `[\w+=,.@-]`.
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '=' | ',' | '.' | '@' | '-')
}

/// Every character outside `allowed` replaced by `_`, at most `max`
/// characters (the end is kept: the distinctive part of a subject such as
/// `repo:acme/app:ref:refs/heads/main` is its tail).
fn sanitize_tail(s: &str, allowed: fn(char) -> bool, max: usize) -> String {
    let mapped: Vec<char> = s
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .collect();
    let skip = mapped.len().saturating_sub(max);
    mapped.into_iter().skip(skip).collect()
}

/// One piece of a tag template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Subject,
    Claim(String),
}

/// Parse `"repo-{claims.repository}"`: literal text with `{subject}` and
/// `{claims.NAME}` placeholders (NAME: `[A-Za-z0-9_-]`, dots for nested
/// claims). Anything else in braces is an error.
fn parse_template(t: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    // `{` and `}` are ASCII, so splitting at them keeps UTF-8 boundaries.
    while let Some(open) = rest.find(['{', '}']) {
        let (literal, from_brace) = rest.split_at(open);
        let Some(after) = from_brace.strip_prefix('{') else {
            return Err(format!("{t:?}: unmatched `}}`"));
        };
        if !literal.is_empty() {
            out.push(Piece::Literal(literal.to_string()));
        }
        let (name, from_close) = after
            .split_once('}')
            .ok_or_else(|| format!("{t:?}: unclosed `{{`"))?;
        if name == "subject" {
            out.push(Piece::Subject);
        } else if let Some(claim) = name.strip_prefix("claims.") {
            let ok = !claim.is_empty()
                && claim.split('.').all(|p| {
                    !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
                });
            if !ok {
                return Err(format!(
                    "{t:?}: `{{{name}}}` is not a claim name ([A-Za-z0-9_-], dots for nesting)"
                ));
            }
            out.push(Piece::Claim(claim.to_string()));
        } else {
            return Err(format!(
                "{t:?}: unknown placeholder `{{{name}}}`; use {{subject}} or {{claims.NAME}}"
            ));
        }
        rest = from_close;
    }
    if !rest.is_empty() {
        out.push(Piece::Literal(rest.to_string()));
    }
    Ok(out)
}

fn claim_value(identity: &Identity, path: &str) -> Result<String, String> {
    let mut parts = path.split('.');
    let first = parts.next().unwrap_or_default();
    let mut v = identity
        .attributes
        .get(first)
        .ok_or_else(|| format!("the caller's token has no claim {path:?}"))?;
    for p in parts {
        v = v
            .get(p)
            .ok_or_else(|| format!("the caller's token has no claim {path:?}"))?;
    }
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("claim {path:?} is not a string, number or boolean")),
    }
}

/// Whether `arn` looks like `arn:PARTITION:iam::ACCOUNT:KIND/NAME`.
fn valid_iam_arn(arn: &str, kind: &str, allow_aws_account: bool) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [a, partition, service, region, account, resource] = parts.as_slice() else {
        return false;
    };
    let account_ok = (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
        || (allow_aws_account && *account == "aws");
    *a == "arn"
        && partition.starts_with("aws")
        && *service == "iam"
        && region.is_empty()
        && account_ok
        && resource
            .strip_prefix(kind)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|name| {
                !name.is_empty()
                    && !name.ends_with('/')
                    && name.chars().all(|c| name_char(c) || c == '/')
            })
}

/// The statements of a policy document, checked.
fn statements(name: &str, doc: &str) -> Result<Vec<Value>, String> {
    let v: Value =
        serde_json::from_str(doc).map_err(|e| format!("policy {name:?} is not JSON: {e}"))?;
    let stmts = match v.get("Statement") {
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => return Err(format!("policy {name:?} needs a non-empty \"Statement\"")),
    };
    for s in &stmts {
        let effect = s.get("Effect").and_then(Value::as_str);
        if !matches!(effect, Some("Allow" | "Deny")) {
            return Err(format!(
                "policy {name:?}: every statement needs \"Effect\": \"Allow\" or \"Deny\""
            ));
        }
    }
    Ok(stmts)
}

/// Config-time check of an aws role (see [`crate::Issuer::validate_role`]).
pub fn validate(role: &Role, t: &AwsTemplate) -> Result<(), String> {
    match t.mode {
        AwsMode::AssumedRole | AwsMode::Federated => {
            if t.role_arns.is_empty() {
                return Err(format!("mode {} needs `role_arns`", t.mode.as_str()));
            }
            if !t.managed_policy_arns.is_empty() || t.username_prefix.is_some() {
                return Err(
                    "`managed_policy_arns` and `username_prefix` only apply to mode iam_user"
                        .into(),
                );
            }
        }
        AwsMode::IamUser => {
            if !t.role_arns.is_empty() || !t.session_tags.is_empty() {
                return Err("`role_arns` and `session_tags` do not apply to mode iam_user".into());
            }
            if t.policies.is_empty() && t.managed_policy_arns.is_empty() {
                return Err("mode iam_user needs `policies` or `managed_policy_arns` (a user without a policy can do nothing)".into());
            }
        }
    }
    if t.mode == AwsMode::Federated && (!t.policies.is_empty() || !t.session_tags.is_empty()) {
        return Err("mode federated takes no `policies` or `session_tags`: the caller calls AssumeRoleWithWebIdentity itself; scope the IAM role instead".into());
    }
    for arn in &t.role_arns {
        if !valid_iam_arn(arn, "role", false) {
            return Err(format!(
                "{arn:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)"
            ));
        }
    }
    if t.mode == AwsMode::AssumedRole && role.audiences != t.role_arns {
        return Err("for mode assumed_role leave `audiences` unset: a request picks one of `role_arns` as its audience".into());
    }
    for arn in &t.managed_policy_arns {
        if !valid_iam_arn(arn, "policy", true) {
            return Err(format!(
                "{arn:?} is not an IAM policy ARN (arn:aws:iam::aws:policy/NAME)"
            ));
        }
    }
    for (name, doc) in &t.policies {
        statements(name, doc)?;
    }
    if !t.policies.is_empty() {
        let names: Vec<&String> = t.policies.keys().collect();
        let scopes: Vec<&String> = role.scopes.iter().collect();
        let mut sorted = scopes.clone();
        sorted.sort();
        sorted.dedup();
        if sorted != names {
            return Err(format!(
                "`scopes` must list exactly the policy names ({}): a request narrows by picking some of them",
                t.policies.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if t.session_tags.len() > MAX_TAGS {
        return Err(format!("at most {MAX_TAGS} session tags"));
    }
    for (key, value) in &t.session_tags {
        if key.is_empty()
            || key.len() > MAX_TAG_KEY
            || !key.chars().all(tag_char)
            || key.to_ascii_lowercase().starts_with("aws:")
        {
            return Err(format!(
                "session tag key {key:?} must be 1-{MAX_TAG_KEY} characters of [A-Za-z0-9 _.:/=+-@], not starting with aws:"
            ));
        }
        parse_template(value).map_err(|e| format!("session tag {key:?}: {e}"))?;
    }
    if let Some(p) = &t.username_prefix {
        if p.is_empty()
            || p.len() > 8
            || !p
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err("`username_prefix` must be 1-8 characters of [a-z0-9]".into());
        }
    }
    Ok(())
}

/// The policy document for the policies named by `scopes`: one document
/// holding all their statements. `None` when the role has no policies.
pub fn policy_document(t: &AwsTemplate, scopes: &[String]) -> Result<Option<String>, String> {
    if t.policies.is_empty() {
        return Ok(None);
    }
    if scopes.is_empty() {
        return Err(
            "the request picked no policy (empty scopes); pick at least one of the role's scopes"
                .into(),
        );
    }
    let mut all = Vec::new();
    for s in scopes {
        let doc = t
            .policies
            .get(s)
            .ok_or_else(|| format!("scope {s:?} names no policy of the role"))?;
        all.extend(statements(s, doc)?);
    }
    Ok(Some(
        json!({"Version": "2012-10-17", "Statement": all}).to_string(),
    ))
}

/// The session tags for `identity`, sanitised (see the module docs).
pub fn session_tags(t: &AwsTemplate, identity: &Identity) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::with_capacity(t.session_tags.len());
    for (key, template) in &t.session_tags {
        let mut value = String::new();
        for piece in parse_template(template).map_err(|e| format!("session tag {key:?}: {e}"))? {
            match piece {
                Piece::Literal(l) => value.push_str(&l),
                Piece::Subject => value.push_str(&identity.subject),
                Piece::Claim(c) => value.push_str(
                    &claim_value(identity, &c).map_err(|e| format!("session tag {key:?}: {e}"))?,
                ),
            }
        }
        let clean: String = value
            .chars()
            .map(|c| if tag_char(c) { c } else { '_' })
            .take(MAX_TAG_VALUE)
            .collect();
        out.push((key.clone(), clean));
    }
    Ok(out)
}

/// `SourceIdentity`: the subject in `[\w+=,.@-]`, 2-64 characters.
pub fn source_identity(identity: &Identity) -> String {
    let s = sanitize_tail(&identity.subject, name_char, MAX_SESSION_NAME);
    if s.len() < 2 {
        format!("idmint-{s}")
    } else {
        s
    }
}

/// `RoleSessionName`: the subject's tail and the lease id's first 12 hex
/// digits (unique per lease, and how an operator finds the lease from
/// CloudTrail), at most 64 characters of `[\w+=,.@-]`.
pub fn session_name(identity: &Identity, lease_suffix: &str) -> String {
    let suffix: String = lease_suffix
        .chars()
        .filter(|c| name_char(*c))
        .take(24)
        .collect();
    let room = MAX_SESSION_NAME.saturating_sub(suffix.len() + 1);
    let head = sanitize_tail(&identity.subject, name_char, room);
    let head = if head.is_empty() {
        "idmint".to_string()
    } else {
        head
    };
    format!("{head}-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use idmint_core::{IdentityKind, UnixTime};

    const POLICY_S3: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
    const POLICY_IAM: &str =
        r#"{"Statement":{"Effect":"Allow","Action":"iam:ListUsers","Resource":"*"}}"#;

    fn identity(subject: &str, attrs: Value) -> Identity {
        Identity {
            kind: IdentityKind::Ci,
            subject: subject.into(),
            issuer: "https://idp".into(),
            method: "oidc".into(),
            auth: "gh".into(),
            attributes: attrs.as_object().cloned().unwrap_or_default(),
            proof_id: "p".into(),
            expires_at: UnixTime(0),
        }
    }

    fn role(aws: &str, extra: &str) -> Role {
        Role::parse_file(
            "r.toml",
            &format!(
                "[[role]]\nname='aws/x'\nissuer='aws'\nmax_ttl='1h'\n{extra}\n[role.aws]\n{aws}\n"
            ),
        )
        .unwrap()
        .remove("aws/x")
        .unwrap()
    }

    fn check(aws: &str, extra: &str) -> Result<(), String> {
        let r = role(aws, extra);
        validate(&r, r.aws.as_ref().unwrap())
    }

    #[test]
    fn config_time_checks() {
        let arn = "role_arns = ['arn:aws:iam::123456789012:role/deploy/prod']";
        let pols = format!("[role.aws.policies]\ns3 = '{POLICY_S3}'\niam = '{POLICY_IAM}'");
        check(&format!("mode='assumed_role'\n{arn}\nsession_tags={{repo='{{claims.repository}}', who='x-{{subject}}'}}\n{pols}"), "scopes=['s3','iam']").unwrap();
        let r = role(&format!("mode='assumed_role'\n{arn}"), "");
        assert_eq!(r.audiences, ["arn:aws:iam::123456789012:role/deploy/prod"]);
        let f = role(&format!("mode='federated'\n{arn}"), "");
        assert_eq!(f.audiences, ["sts.amazonaws.com"]);
        check(&format!("mode='federated'\n{arn}"), "").unwrap();
        check("mode='iam_user'\nmanaged_policy_arns=['arn:aws:iam::aws:policy/ReadOnlyAccess']\nusername_prefix='ci'", "").unwrap();

        for (aws, extra, needle) in [
            ("mode='assumed_role'", "", "role_arns"),
            ("mode='assumed_role'\nrole_arns=['arn:aws:iam::123:role/x']", "", "not an IAM role ARN"),
            ("mode='assumed_role'\nrole_arns=['arn:aws:s3:::bucket']", "", "not an IAM role ARN"),
            ("mode='assumed_role'\nrole_arns=['arn:aws:iam::123456789012:role/a b']", "", "not an IAM role ARN"),
            (&format!("mode='assumed_role'\n{arn}"), "audiences=['arn:aws:iam::123456789012:role/other']", "audiences"),
            (&format!("mode='assumed_role'\n{arn}\n[role.aws.policies]\np='{{not json'"), "scopes=['p']", "not JSON"),
            (&format!("mode='assumed_role'\n{arn}\n[role.aws.policies]\np='{{\"Statement\":[]}}'"), "scopes=['p']", "Statement"),
            (&format!("mode='assumed_role'\n{arn}\n[role.aws.policies]\np='{{\"Statement\":[{{\"Action\":\"*\"}}]}}'"), "scopes=['p']", "Effect"),
            (&format!("mode='assumed_role'\n{arn}\n{pols}"), "scopes=['s3']", "exactly the policy names"),
            (&format!("mode='assumed_role'\n{arn}\nsession_tags={{repo='{{claims.repo'}}"), "", "unclosed"),
            (&format!("mode='assumed_role'\n{arn}\nsession_tags={{repo='{{env.HOME}}'}}"), "", "unknown placeholder"),
            (&format!("mode='assumed_role'\n{arn}\nsession_tags={{repo='{{claims.a b}}'}}"), "", "not a claim name"),
            (&format!("mode='assumed_role'\n{arn}\nsession_tags={{'aws:x'='y'}}"), "", "tag key"),
            (&format!("mode='assumed_role'\n{arn}\nsession_tags={{'a\"b'='y'}}"), "", "tag key"),
            ("mode='iam_user'", "", "needs `policies`"),
            ("mode='iam_user'\nmanaged_policy_arns=['arn:aws:iam::aws:role/x']", "", "policy ARN"),
            (&format!("mode='federated'\n{arn}\n{pols}"), "scopes=['s3','iam']", "federated"),
        ] {
            let e = check(aws, extra).unwrap_err();
            assert!(e.contains(needle), "{aws}: {e}");
        }
    }

    #[test]
    fn policies_are_a_union_of_the_picked_subset() {
        let r = role(
            &format!("mode='assumed_role'\nrole_arns=['arn:aws:iam::123456789012:role/r']\n[role.aws.policies]\ns3 = '{POLICY_S3}'\niam = '{POLICY_IAM}'"),
            "scopes=['s3','iam']",
        );
        let t = r.aws.as_ref().unwrap();
        let one: Value =
            serde_json::from_str(&policy_document(t, &["s3".into()]).unwrap().unwrap()).unwrap();
        assert_eq!(one["Statement"].as_array().unwrap().len(), 1);
        assert_eq!(one["Statement"][0]["Action"], "s3:*");
        let both: Value = serde_json::from_str(
            &policy_document(t, &["s3".into(), "iam".into()])
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(both["Statement"].as_array().unwrap().len(), 2);
        assert!(policy_document(t, &[]).unwrap_err().contains("no policy"));
        assert!(policy_document(t, &["admin".into()]).is_err());
    }

    #[test]
    fn hostile_claims_are_sanitised_in_tags_and_names() {
        let r = role(
            "mode='assumed_role'\nrole_arns=['arn:aws:iam::123456789012:role/r']\nsession_tags={repo='{claims.repository}', n='{claims.run.id}', who='{subject}'}",
            "",
        );
        let t = r.aws.as_ref().unwrap();
        let hostile = "a\"b'c\nd\0e\u{e9}\u{1F980}<f>;g$(h)";
        let id = identity(hostile, json!({"repository": hostile, "run": {"id": 42}}));
        let tags = session_tags(t, &id).unwrap();
        assert_eq!(tags[0], ("n".to_string(), "42".to_string()));
        assert_eq!(tags[1].1, "a_b_c_d_e___f__g__h_");
        assert_eq!(tags[2].1, tags[1].1);
        let long = identity(
            "x",
            json!({"repository": "r".repeat(1000), "run": {"id": 1}}),
        );
        assert_eq!(session_tags(t, &long).unwrap()[1].1.len(), 256);
        let e = session_tags(t, &identity("x", json!({"run": {"id": 1}}))).unwrap_err();
        assert!(e.contains("no claim \"repository\""), "{e}");
        let e = session_tags(
            t,
            &identity("x", json!({"repository": ["a"], "run": {"id": 1}})),
        )
        .unwrap_err();
        assert!(e.contains("not a string"), "{e}");

        let name = session_name(
            &identity(
                &format!("repo:acme/app:ref:refs/heads/{}", "m".repeat(100)),
                json!({}),
            ),
            "0123456789ab",
        );
        assert!(
            name.len() <= 64 && name.ends_with("mmm-0123456789ab"),
            "{name}"
        );
        assert!(name.chars().all(name_char), "{name}");
        let name = session_name(&identity(hostile, json!({})), "0123456789ab");
        assert_eq!(name, "a_b_c_d_e___f__g__h_-0123456789ab");
        assert_eq!(session_name(&identity("", json!({})), "ab"), "idmint-ab");
        assert_eq!(
            source_identity(&identity("repo:acme/app", json!({}))),
            "repo_acme_app"
        );
        assert_eq!(source_identity(&identity("x", json!({}))), "idmint-x");
    }
}
