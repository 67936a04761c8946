//! `POST /api/v1/auth/aws-iam/login`: a signed `sts:GetCallerIdentity`
//! request, presented (not sent) by the caller for idmint to forward.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The header that binds a signed request to one idmint deployment: it must
/// be present, equal `[[auth.aws_iam]] server_id`, and be in `SignedHeaders`,
/// so a request signed for another service cannot be replayed here.
pub const SERVER_ID_HEADER: &str = "x-idmint-server-id";
/// The only body idmint forwards.
pub const GET_CALLER_IDENTITY_BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";

/// A SigV4-signed `GetCallerIdentity` request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AwsIamLoginRequest {
    /// `[[auth.aws_iam]] name`.
    pub auth: String,
    /// Always `POST`.
    pub method: String,
    /// The STS URL the request was signed for, e.g.
    /// `https://sts.eu-west-1.amazonaws.com/`.
    pub url: String,
    /// Every header the request would carry (`authorization`, `x-amz-date`,
    /// `x-idmint-server-id`, …), names in any case.
    pub headers: BTreeMap<String, String>,
    /// The body, standard base64.
    pub body: String,
}
