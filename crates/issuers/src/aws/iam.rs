//! The IAM actions of the `iam_user` mode: a user per lease, its policies
//! and its access key; and the teardown that revokes them.
//!
//! Every teardown step treats `NoSuchEntity` as done, so a revocation that
//! was interrupted can simply run again.

use super::api::{CallError, Endpoint, QueryClient, Retry};
use super::credentials::AwsCredentials;

/// The IAM Query API version.
pub const IAM_VERSION: &str = "2010-05-08";

/// An IAM API bound to an endpoint and the credentials it is called with.
pub struct Iam<'a> {
    pub client: &'a QueryClient,
    pub endpoint: &'a Endpoint,
    pub creds: &'a AwsCredentials,
}

/// A created access key.
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// `Ok(None)` when IAM answered `NoSuchEntity`.
fn absent_ok<T>(r: Result<T, CallError>) -> Result<Option<T>, CallError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.code() == Some("NoSuchEntity") => Ok(None),
        Err(e) => Err(e),
    }
}

impl Iam<'_> {
    async fn call(
        &self,
        action: &str,
        params: &[(&str, String)],
        retry: Retry,
    ) -> Result<super::xml::Element, CallError> {
        self.client
            .call(self.endpoint, Some(self.creds), action, params, retry)
            .await
    }

    /// `CreateUser` under `path`, tagged with the lease. Returns the ARN.
    pub async fn create_user(
        &self,
        user: &str,
        path: &str,
        lease_id: &str,
    ) -> Result<String, CallError> {
        let root = self
            .call(
                "CreateUser",
                &[
                    ("UserName", user.to_string()),
                    ("Path", path.to_string()),
                    ("Tags.member.1.Key", "idmint-lease".to_string()),
                    ("Tags.member.1.Value", lease_id.to_string()),
                ],
                // A repeat fails with EntityAlreadyExists, never makes two.
                Retry::Idempotent,
            )
            .await?;
        Ok(root
            .text_at(&["CreateUserResult", "User", "Arn"])
            .unwrap_or_default()
            .to_string())
    }

    /// The user's path, `None` if it does not exist.
    pub async fn user_path(&self, user: &str) -> Result<Option<String>, CallError> {
        let root = absent_ok(
            self.call(
                "GetUser",
                &[("UserName", user.to_string())],
                Retry::Idempotent,
            )
            .await,
        )?;
        Ok(root.map(|r| {
            r.text_at(&["GetUserResult", "User", "Path"])
                .unwrap_or_default()
                .to_string()
        }))
    }

    pub async fn put_user_policy(
        &self,
        user: &str,
        name: &str,
        document: &str,
    ) -> Result<(), CallError> {
        self.call(
            "PutUserPolicy",
            &[
                ("UserName", user.to_string()),
                ("PolicyName", name.to_string()),
                ("PolicyDocument", document.to_string()),
            ],
            Retry::Idempotent,
        )
        .await
        .map(|_| ())
    }

    pub async fn attach_user_policy(&self, user: &str, policy_arn: &str) -> Result<(), CallError> {
        self.call(
            "AttachUserPolicy",
            &[
                ("UserName", user.to_string()),
                ("PolicyArn", policy_arn.to_string()),
            ],
            Retry::Idempotent,
        )
        .await
        .map(|_| ())
    }

    /// `CreateAccessKey`: not repeated when the outcome is unknown (a
    /// second key would be created); revocation deletes every key anyway.
    pub async fn create_access_key(&self, user: &str) -> Result<AccessKey, CallError> {
        let root = self
            .call(
                "CreateAccessKey",
                &[("UserName", user.to_string())],
                Retry::OnlyWhenRefused,
            )
            .await?;
        let key = root
            .at(&["CreateAccessKeyResult", "AccessKey"])
            .ok_or_else(|| {
                CallError::Malformed("CreateAccessKey answer without AccessKey".into())
            })?;
        let field = |n: &str| {
            key.text_at(&[n])
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| CallError::Malformed(format!("CreateAccessKey answer without {n}")))
        };
        Ok(AccessKey {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: field("SecretAccessKey")?,
        })
    }

    /// Delete the user and everything that would stop `DeleteUser`: its
    /// access keys first (so the credential stops working at once), then
    /// inline and attached policies. Already gone is success.
    pub async fn delete_user_completely(&self, user: &str) -> Result<(), CallError> {
        let name = || ("UserName", user.to_string());
        if let Some(root) = absent_ok(
            self.call("ListAccessKeys", &[name()], Retry::Idempotent)
                .await,
        )? {
            let ids: Vec<String> = root
                .at(&["ListAccessKeysResult", "AccessKeyMetadata"])
                .map(|m| {
                    m.children
                        .iter()
                        .filter_map(|k| k.text_at(&["AccessKeyId"]).map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            for id in ids {
                absent_ok(
                    self.call(
                        "DeleteAccessKey",
                        &[name(), ("AccessKeyId", id)],
                        Retry::Idempotent,
                    )
                    .await,
                )?;
            }
        }
        if let Some(root) = absent_ok(
            self.call("ListUserPolicies", &[name()], Retry::Idempotent)
                .await,
        )? {
            let names: Vec<String> = root
                .at(&["ListUserPoliciesResult", "PolicyNames"])
                .map(|m| {
                    m.children
                        .iter()
                        .map(|p| p.text.trim().to_string())
                        .collect()
                })
                .unwrap_or_default();
            for policy in names {
                absent_ok(
                    self.call(
                        "DeleteUserPolicy",
                        &[name(), ("PolicyName", policy)],
                        Retry::Idempotent,
                    )
                    .await,
                )?;
            }
        }
        if let Some(root) = absent_ok(
            self.call("ListAttachedUserPolicies", &[name()], Retry::Idempotent)
                .await,
        )? {
            let arns: Vec<String> = root
                .at(&["ListAttachedUserPoliciesResult", "AttachedPolicies"])
                .map(|m| {
                    m.children
                        .iter()
                        .filter_map(|p| p.text_at(&["PolicyArn"]).map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            for arn in arns {
                absent_ok(
                    self.call(
                        "DetachUserPolicy",
                        &[name(), ("PolicyArn", arn)],
                        Retry::Idempotent,
                    )
                    .await,
                )?;
            }
        }
        absent_ok(self.call("DeleteUser", &[name()], Retry::Idempotent).await)?;
        Ok(())
    }
}
