//! Presets: what a token from a well-known issuer must carry, and the
//! identity kind it yields.
//!
//! A preset only adds requirements (and, for Kubernetes, derived
//! attributes); it never relaxes the generic checks.

use crate::claims::{required_string, type_error, value_kind};
use crate::error::AuthnError;
use idmint_core::IdentityKind;
use serde_json::{Map, Value};

/// A well-known token issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// GitHub Actions, issuer `https://token.actions.githubusercontent.com`
    /// (GHES: `https://HOST/_services/token`). Kind `ci`.
    ///
    /// Requires `repository`, `ref`, `sha`, `workflow`, `job_workflow_ref`,
    /// `actor`, `event_name` and `run_id` as strings (`run_id` is a string in
    /// real tokens). `environment` is **not** required by the preset: GitHub
    /// only puts it in tokens of jobs that declare an environment, so
    /// requiring it would lock out every other job. List it in
    /// `required_claims` when policy relies on it.
    GithubActions,
    /// GitLab CI (`CI_JOB_JWT_V2` / `id_tokens`), issuer `https://gitlab.com`
    /// or the self-managed instance URL. Kind `ci`.
    ///
    /// Requires `project_path`, `ref`, `ref_type`, `pipeline_source`,
    /// `namespace_path`, `pipeline_id` and `user_login` as strings.
    GitlabCi,
    /// CircleCI, issuer `https://oidc.circleci.com/org/<org-id>`. Kind `ci`.
    ///
    /// Requires `oidc.circleci.com/project-id`; `oidc.circleci.com/context-ids`
    /// is optional, but when present it must be an array of strings.
    Circleci,
    /// Kubernetes projected service account tokens; the issuer is the
    /// cluster's `--service-account-issuer` (e.g.
    /// `https://kubernetes.default.svc.cluster.local`, or the EKS/GKE/AKS
    /// OIDC issuer URL). Kind `workload`.
    ///
    /// Requires the `kubernetes.io` object claim with `namespace` and
    /// `serviceaccount.name`, and adds them as the attributes `namespace`
    /// and `service_account` so policy need not dig into the nested claim.
    Kubernetes,
    /// Any other OIDC issuer: nothing beyond the generic checks. Kind
    /// `workload`.
    Generic,
    /// People signing in through the company IdP (Okta, Entra ID, Keycloak,
    /// …) with `idmint login --sso`: ID tokens of the CLI's OIDC client.
    /// Kind `human`. The `groups` attribute is always a set of strings
    /// (from `groups_claim`, default `groups`; empty when the IdP sent
    /// none), so `principal.groups.contains("admins")` never errors.
    Human,
}

const GITHUB_ACTIONS: &[&str] = &[
    "repository",
    "ref",
    "sha",
    "workflow",
    "job_workflow_ref",
    "actor",
    "event_name",
    "run_id",
];
const GITLAB_CI: &[&str] = &[
    "project_path",
    "ref",
    "ref_type",
    "pipeline_source",
    "namespace_path",
    "pipeline_id",
    "user_login",
];
const CIRCLECI: &[&str] = &["oidc.circleci.com/project-id"];
const CIRCLECI_CONTEXT_IDS: &str = "oidc.circleci.com/context-ids";
const KUBERNETES_CLAIM: &str = "kubernetes.io";

impl Preset {
    /// The name used in `idmint.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::GithubActions => "github-actions",
            Preset::GitlabCi => "gitlab-ci",
            Preset::Circleci => "circleci",
            Preset::Kubernetes => "kubernetes",
            Preset::Generic => "generic",
            Preset::Human => "human",
        }
    }

    /// The identity kind when the config does not set `kind`.
    pub fn default_kind(self) -> IdentityKind {
        match self {
            Preset::GithubActions | Preset::GitlabCi | Preset::Circleci => IdentityKind::Ci,
            Preset::Kubernetes | Preset::Generic => IdentityKind::Workload,
            Preset::Human => IdentityKind::Human,
        }
    }

    /// Top-level claims that must be non-empty strings.
    pub fn required_claims(self) -> &'static [&'static str] {
        match self {
            Preset::GithubActions => GITHUB_ACTIONS,
            Preset::GitlabCi => GITLAB_CI,
            Preset::Circleci => CIRCLECI,
            Preset::Kubernetes | Preset::Generic | Preset::Human => &[],
        }
    }

    /// Checks beyond [`Self::required_claims`], and derived attributes.
    /// Runs on verified claims, which become the identity's attributes.
    pub(crate) fn check_and_derive(
        self,
        claims: &mut Map<String, Value>,
    ) -> Result<(), AuthnError> {
        match self {
            Preset::Circleci => match claims.get(CIRCLECI_CONTEXT_IDS) {
                None => Ok(()),
                Some(Value::Array(ids)) if ids.iter().all(Value::is_string) => Ok(()),
                Some(Value::Array(_)) => Err(AuthnError::ClaimType {
                    claim: CIRCLECI_CONTEXT_IDS.into(),
                    expected: "an array of strings",
                    found: "an array holding a non-string",
                }),
                Some(other) => Err(type_error(
                    CIRCLECI_CONTEXT_IDS,
                    "an array of strings",
                    other,
                )),
            },
            Preset::Kubernetes => {
                let (namespace, service_account) = kubernetes_identity(claims)?;
                claims.insert("namespace".into(), Value::String(namespace));
                claims.insert("service_account".into(), Value::String(service_account));
                Ok(())
            }
            Preset::GithubActions | Preset::GitlabCi | Preset::Generic | Preset::Human => Ok(()),
        }
    }
}

/// `kubernetes.io.namespace` and `kubernetes.io.serviceaccount.name`.
fn kubernetes_identity(claims: &Map<String, Value>) -> Result<(String, String), AuthnError> {
    let why = "the kubernetes preset requires it (is this a projected service account token?)";
    let k8s = match claims.get(KUBERNETES_CLAIM) {
        Some(Value::Object(k8s)) => k8s,
        Some(other) => return Err(type_error(KUBERNETES_CLAIM, "an object", other)),
        None => {
            return Err(AuthnError::MissingClaim {
                claim: KUBERNETES_CLAIM.into(),
                hint: format!("; {why}"),
            })
        }
    };
    let namespace = required_string(k8s, "namespace", || why.into())
        .map_err(|e| nested(e, "kubernetes.io.namespace"))?
        .to_string();
    let service_account = match k8s.get("serviceaccount") {
        Some(Value::Object(sa)) => required_string(sa, "name", || why.into())
            .map_err(|e| nested(e, "kubernetes.io.serviceaccount.name"))?
            .to_string(),
        Some(other) => {
            return Err(AuthnError::ClaimType {
                claim: "kubernetes.io.serviceaccount".into(),
                expected: "an object",
                found: value_kind(other),
            })
        }
        None => {
            return Err(AuthnError::MissingClaim {
                claim: "kubernetes.io.serviceaccount".into(),
                hint: format!("; {why}"),
            })
        }
    };
    Ok((namespace, service_account))
}

/// Rename the claim in an error about a nested member to its full path.
fn nested(err: AuthnError, path: &str) -> AuthnError {
    match err {
        AuthnError::MissingClaim { hint, .. } => AuthnError::MissingClaim {
            claim: path.into(),
            hint,
        },
        AuthnError::ClaimType {
            expected, found, ..
        } => AuthnError::ClaimType {
            claim: path.into(),
            expected,
            found,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn kinds_and_names() {
        assert_eq!(Preset::GithubActions.default_kind(), IdentityKind::Ci);
        assert_eq!(Preset::Kubernetes.default_kind(), IdentityKind::Workload);
        assert_eq!(Preset::Generic.default_kind(), IdentityKind::Workload);
        assert!(!Preset::GithubActions
            .required_claims()
            .contains(&"environment"));
        for p in [
            Preset::GithubActions,
            Preset::GitlabCi,
            Preset::Circleci,
            Preset::Kubernetes,
            Preset::Generic,
        ] {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
        }
    }

    #[test]
    fn kubernetes_claims_are_flattened() {
        let mut c = map(json!({"kubernetes.io": {"namespace": "prod",
            "serviceaccount": {"name": "web", "uid": "u"}, "pod": {"name": "p"}}}));
        Preset::Kubernetes.check_and_derive(&mut c).unwrap();
        assert_eq!(c["namespace"], "prod");
        assert_eq!(c["service_account"], "web");
    }

    #[test]
    fn kubernetes_claim_problems() {
        let cases = [
            (json!({}), "no kubernetes.io claim"),
            (
                json!({"kubernetes.io": "x"}),
                "kubernetes.io must be an object",
            ),
            (
                json!({"kubernetes.io": {"serviceaccount": {"name": "a"}}}),
                "no kubernetes.io.namespace claim",
            ),
            (
                json!({"kubernetes.io": {"namespace": ["a"], "serviceaccount": {"name": "a"}}}),
                "kubernetes.io.namespace must be a string, but it is an array",
            ),
            (
                json!({"kubernetes.io": {"namespace": "a"}}),
                "no kubernetes.io.serviceaccount claim",
            ),
            (
                json!({"kubernetes.io": {"namespace": "a", "serviceaccount": {"name": 3}}}),
                "kubernetes.io.serviceaccount.name must be a string",
            ),
        ];
        for (claims, expected) in cases {
            let err = Preset::Kubernetes
                .check_and_derive(&mut map(claims))
                .unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn circleci_context_ids_type() {
        let mut ok = map(json!({"oidc.circleci.com/context-ids": ["a", "b"]}));
        assert!(Preset::Circleci.check_and_derive(&mut ok).is_ok());
        let mut bad = map(json!({"oidc.circleci.com/context-ids": "a"}));
        let err = Preset::Circleci.check_and_derive(&mut bad).unwrap_err();
        assert!(
            err.to_string().contains("must be an array of strings"),
            "{err}"
        );
    }
}
