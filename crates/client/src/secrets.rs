//! Static secrets (`/api/v1/secrets`, admin only): values stored sealed in
//! idmint and delivered by `static` roles to `idmint proxy`. The server
//! never returns a stored value; these calls only store, list and delete.

use crate::client::{check_segment, Auth, IdmintClient};
use crate::error::ClientError;
use crate::response;
use crate::secret::SecretString;
use idmint_proto::secrets::{PutSecretRequest, SecretInfo, SecretList};
use reqwest::Method;
use zeroize::Zeroize;

impl IdmintClient {
    /// `PUT /api/v1/secrets/{name}`: store or replace `name`'s value.
    /// Returns the new version and the value's keyed fingerprint.
    pub async fn put_secret(
        &self,
        name: &str,
        value: &SecretString,
    ) -> Result<SecretInfo, ClientError> {
        let name = check_segment("secret name", name, name)?;
        let url = self.endpoint(&["api", "v1", "secrets", name])?;
        let mut req = PutSecretRequest {
            value: value.expose().to_string(),
        };
        let builder = self.request(Method::PUT, &url, Auth::Session)?.json(&req);
        // Our copy is wiped now; the encoded body belongs to the HTTP stack.
        req.value.zeroize();
        let raw = self.send(builder, &url).await?;
        response::json(&raw, &url)
    }

    /// `GET /api/v1/secrets`: names, fingerprints and versions, never values.
    pub async fn list_secrets(&self) -> Result<SecretList, ClientError> {
        self.get_json(&["api", "v1", "secrets"], &[], Auth::Session)
            .await
    }

    /// `DELETE /api/v1/secrets/{name}`. Roles that deliver it answer
    /// `static_secret_missing` afterwards.
    pub async fn delete_secret(&self, name: &str) -> Result<(), ClientError> {
        let name = check_segment("secret name", name, name)?;
        let url = self.endpoint(&["api", "v1", "secrets", name])?;
        let raw = self
            .send(self.request(Method::DELETE, &url, Auth::Session)?, &url)
            .await?;
        if raw.is_success() {
            Ok(())
        } else {
            Err(response::api_error(&raw))
        }
    }
}
