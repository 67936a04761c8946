//! The STS actions idmint uses: `AssumeRole` (the `assumed_role` mode),
//! `AssumeRoleWithWebIdentity` (idmint's own web-identity credentials, and
//! the client side of the `federated` mode) and `GetCallerIdentity`.

use super::api::{CallError, Endpoint, QueryClient, Retry};
use super::credentials::{parse_rfc3339, AwsCredentials};
use super::xml::Element;

/// The STS Query API version.
pub const STS_VERSION: &str = "2011-06-15";

/// Temporary credentials and the identity they act as.
#[derive(Debug, Clone)]
pub struct StsSession {
    pub credentials: AwsCredentials,
    /// `AssumedRoleUser/Arn`, e.g. `arn:aws:sts::1:assumed-role/r/s`.
    pub assumed_role_arn: Option<String>,
}

/// What `AssumeRole` is asked for, beyond the role.
#[derive(Debug, Clone, Default)]
pub struct AssumeRoleInput<'a> {
    pub role_arn: &'a str,
    pub session_name: &'a str,
    pub duration_seconds: u64,
    /// Session policy JSON.
    pub policy: Option<&'a str>,
    pub tags: &'a [(String, String)],
    pub source_identity: Option<&'a str>,
    pub external_id: Option<&'a str>,
}

/// `AssumeRole`, signed with `creds`.
pub async fn assume_role(
    client: &QueryClient,
    sts: &Endpoint,
    creds: &AwsCredentials,
    input: &AssumeRoleInput<'_>,
) -> Result<StsSession, CallError> {
    let mut params: Vec<(&str, String)> = vec![
        ("RoleArn", input.role_arn.to_string()),
        ("RoleSessionName", input.session_name.to_string()),
        ("DurationSeconds", input.duration_seconds.to_string()),
    ];
    if let Some(p) = input.policy {
        params.push(("Policy", p.to_string()));
    }
    if let Some(s) = input.source_identity {
        params.push(("SourceIdentity", s.to_string()));
    }
    if let Some(e) = input.external_id {
        params.push(("ExternalId", e.to_string()));
    }
    let tag_keys: Vec<(String, String)> = (1..=input.tags.len())
        .map(|i| {
            (
                format!("Tags.member.{i}.Key"),
                format!("Tags.member.{i}.Value"),
            )
        })
        .collect();
    for ((k, v), (kn, vn)) in input.tags.iter().zip(&tag_keys) {
        params.push((kn.as_str(), k.clone()));
        params.push((vn.as_str(), v.clone()));
    }
    // Nothing persistent is created, so a repeat is harmless.
    let root = client
        .call(sts, Some(creds), "AssumeRole", &params, Retry::Idempotent)
        .await?;
    session_from(&root, "AssumeRoleResult")
}

/// `AssumeRoleWithWebIdentity`: unsigned, the token is the proof.
pub async fn assume_role_with_web_identity(
    client: &QueryClient,
    sts: &Endpoint,
    role_arn: &str,
    session_name: &str,
    token: &str,
    duration_seconds: Option<u64>,
) -> Result<StsSession, CallError> {
    let mut params: Vec<(&str, String)> = vec![
        ("RoleArn", role_arn.to_string()),
        ("RoleSessionName", session_name.to_string()),
        ("WebIdentityToken", token.to_string()),
    ];
    if let Some(d) = duration_seconds {
        params.push(("DurationSeconds", d.to_string()));
    }
    let root = client
        .call(
            sts,
            None,
            "AssumeRoleWithWebIdentity",
            &params,
            Retry::Idempotent,
        )
        .await?;
    session_from(&root, "AssumeRoleWithWebIdentityResult")
}

/// `GetCallerIdentity`: the ARN the credentials act as.
pub async fn get_caller_identity(
    client: &QueryClient,
    sts: &Endpoint,
    creds: &AwsCredentials,
) -> Result<String, CallError> {
    let root = client
        .call(
            sts,
            Some(creds),
            "GetCallerIdentity",
            &[],
            Retry::Idempotent,
        )
        .await?;
    root.text_at(&["GetCallerIdentityResult", "Arn"])
        .map(str::to_string)
        .ok_or_else(|| CallError::Malformed("GetCallerIdentity answer without Arn".into()))
}

fn session_from(root: &Element, result: &str) -> Result<StsSession, CallError> {
    let c = root
        .at(&[result, "Credentials"])
        .ok_or_else(|| CallError::Malformed(format!("{result} without Credentials")))?;
    let field = |name: &str| {
        c.text_at(&[name])
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| CallError::Malformed(format!("{result} credentials without {name}")))
    };
    let expires_at = parse_rfc3339(&field("Expiration")?).map_err(CallError::Malformed)?;
    Ok(StsSession {
        credentials: AwsCredentials::new(
            field("AccessKeyId")?,
            field("SecretAccessKey")?,
            Some(field("SessionToken")?),
            Some(expires_at),
        ),
        assumed_role_arn: root
            .text_at(&[result, "AssumedRoleUser", "Arn"])
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::xml;

    #[test]
    fn parses_assume_role_answers() {
        let doc = "<AssumeRoleResponse><AssumeRoleResult><AssumedRoleUser><Arn>arn:aws:sts::1:assumed-role/r/s</Arn></AssumedRoleUser>\
            <Credentials><AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>sk</SecretAccessKey><SessionToken>tok</SessionToken>\
            <Expiration>2026-11-23T18:00:00Z</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>";
        let s = session_from(&xml::parse(doc).unwrap(), "AssumeRoleResult").unwrap();
        assert_eq!(s.credentials.access_key_id(), "ASIA1");
        assert_eq!(s.credentials.session_token(), Some("tok"));
        assert_eq!(
            s.credentials.expires_at().unwrap().rfc3339(),
            "2026-11-23T18:00:00Z"
        );
        assert_eq!(
            s.assumed_role_arn.as_deref(),
            Some("arn:aws:sts::1:assumed-role/r/s")
        );
        let no_token = doc.replace("<SessionToken>tok</SessionToken>", "");
        assert!(session_from(&xml::parse(&no_token).unwrap(), "AssumeRoleResult").is_err());
    }
}
