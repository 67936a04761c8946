//! `POST /api/v1/auth/aws-iam/login`.

use super::{json_error, PeerAddr, ReqId};
use crate::aws_iam;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::{Extension, Json};
use idmint_proto::aws_iam::AwsIamLoginRequest;
use idmint_proto::LoginResponse;
use std::sync::Arc;

pub async fn login(
    State(state): State<Arc<AppState>>,
    Extension(ReqId(rid)): Extension<ReqId>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    body: Result<Json<AwsIamLoginRequest>, JsonRejection>,
) -> Result<Json<LoginResponse>, ApiError> {
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => {
            let event = super::login::login_event(&rid, peer.ip());
            return Err(super::login::login_failed(&state, &rid, event, json_error(e)).await);
        }
    };
    let (token, claims) = aws_iam::login(&state, &rid, peer.ip(), req).await?;
    Ok(Json(super::login::login_response(&token, &claims)))
}
