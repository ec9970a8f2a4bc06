//! `POST /v1/push/auth`: the signature a browser needs to join its
//! account's presence channel.
//!
//! The browser asks the app's own server (its session is there); the app
//! forwards the socket id and channel name here with its token, adding the
//! signed-in user's id. Herald signs only the channel of an account the
//! token reaches (`presence-message-wm-global<accountId>`): another
//! account's channel, or any other channel, is refused with 403.

use axum::{extract::State, http::StatusCode, Json};
use serde::Deserialize;

use super::{
    caller::Caller,
    problem::{ApiJson, Problem, ProblemBody},
};
use crate::{
    push::auth::{channel_account, AuthError, Authorization},
    web::WebState,
};

/// A subscription to sign.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushAuthRequest {
    /// The browser's socket id, as its client library gives it (`123.456`).
    #[schema(pattern = r"^[0-9]{1,20}\.[0-9]{1,20}$")]
    pub socket_id: String,
    /// The channel to join: `presence-message-wm-global<accountId>`, the
    /// account a 24-hex id.
    #[schema(pattern = "^presence-message-wm-global[0-9a-f]{24}$")]
    pub channel_name: String,
    /// The signed-in user, who appears as the presence member (1 to 128
    /// characters, not all blank).
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    pub user_id: String,
    /// Optional details other members see (`user_info`).
    #[serde(default)]
    pub user_info: Option<serde_json::Value>,
}

/// Sign a browser's subscription to its account's channel.
#[utoipa::path(
    post,
    path = "/v1/push/auth",
    tag = "push",
    request_body = PushAuthRequest,
    responses(
        (status = 200, description = "The provider's authorization answer, for the browser's client library", body = Authorization),
        (status = 400, description = "Invalid fields", body = ProblemBody),
        (status = 401, description = "No valid token", body = ProblemBody),
        (status = 403, description = "Not the channel of an account this token reaches", body = ProblemBody),
        (status = 415, description = "Body is not JSON", body = ProblemBody),
        (status = 501, description = "The configured provider's signature is not known (Tuisongbao)", body = ProblemBody),
    ),
    security(("token" = []))
)]
pub async fn authorize(
    State(state): State<WebState>,
    caller: Caller,
    ApiJson(request): ApiJson<PushAuthRequest>,
) -> Result<Json<Authorization>, Problem> {
    let account = channel_account(&request.channel_name).ok_or_else(|| {
        Problem::new(
            StatusCode::FORBIDDEN,
            format!(
                "{:?} is not an account's channel; Herald signs only presence-message-wm-global<accountId>",
                request.channel_name
            ),
        )
    })?;
    caller.check(account)?;
    let answer = state
        .api
        .channels
        .authorize(
            &request.socket_id,
            &request.channel_name,
            Some(&request.user_id),
            request.user_info.as_ref(),
        )
        .map_err(|e| match e {
            AuthError::InvalidSocketId(_) => {
                Problem::invalid([("socketId".to_owned(), e.to_string())])
            }
            AuthError::InvalidUser => Problem::invalid([("userId".to_owned(), e.to_string())]),
            AuthError::Unsupported(reason) => Problem::new(StatusCode::NOT_IMPLEMENTED, reason),
        })?;
    tracing::info!(
        account_id = %account,
        channel = %request.channel_name,
        user_id = %request.user_id,
        "channel subscription signed"
    );
    Ok(Json(answer))
}
