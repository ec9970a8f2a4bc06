//! `POST /v1/push/auth`: the signature a browser needs to join its
//! account's channel or its user's own.
//!
//! The browser asks the app's own server (its session is there); the app
//! forwards the socket id and channel name here with its token, adding the
//! signed-in user's id. Herald signs two kinds of channel, and nothing else
//! (403):
//!
//! - the account's (`presence-message-wm-global<accountId>`), for any user
//!   of an account the token reaches;
//! - a user's own (`push.user_channel`), only for that user: the request's
//!   `userId` must be the channel's user, and the token must reach them.
//!
//! A token bound to one user signs only for that user.

use axum::{extract::State, http::StatusCode, Json};
use herald_jobs::{AccountId, UserId};
use serde::Deserialize;

use super::{
    caller::Caller,
    problem::{ApiJson, Problem, ProblemBody, Unauthorized},
};
use crate::{
    push::{
        auth::{AuthError, Authorization},
        channels::channel_account,
    },
    store::TokenScope,
    web::WebState,
};

/// A subscription to sign.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushAuthRequest {
    /// The browser's socket id, as its client library gives it (`123.456`).
    #[schema(pattern = r"^[0-9]{1,20}\.[0-9]{1,20}$")]
    pub socket_id: String,
    /// The channel to join: the account's,
    /// `presence-message-wm-global<accountId>`, or the user's own
    /// (`push.user_channel`); ids are 24 lowercase hex.
    pub channel_name: String,
    /// The signed-in user, who appears as the presence member (1 to 128
    /// characters, not all blank).
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    pub user_id: String,
    /// Optional details other members see (`user_info`): at most
    /// [`MAX_USER_INFO_BYTES`] of JSON.
    #[serde(default)]
    pub user_info: Option<serde_json::Value>,
}

/// Largest `userInfo`, in bytes of JSON: what a presence member's details
/// need, far below what would make every member's join message heavy.
pub const MAX_USER_INFO_BYTES: usize = 1024;

/// Whose channel a subscription is for.
enum Owner {
    Account(AccountId),
    User(AccountId, UserId),
}

fn refused(message: String) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, message)
}

/// 403 unless `user_id`, the member the request signs for, is `user`.
fn must_be(user_id: &str, user: UserId, channel: &str) -> Result<(), Problem> {
    if user_id == user.to_hex() {
        Ok(())
    } else {
        Err(refused(format!(
            "{channel:?} is signed only for user {user}, not for the userId sent"
        )))
    }
}

/// Sign a browser's subscription to its account's channel or its user's own.
#[utoipa::path(
    post,
    path = "/v1/push/auth",
    tag = "push",
    request_body = PushAuthRequest,
    responses(
        (status = 200, description = "The provider's authorization answer, for the browser's client library", body = Authorization),
        (status = 400, description = "Invalid fields", body = ProblemBody),
        (status = 403, description = "Not a channel this token may sign for this user", body = ProblemBody),
        (status = 415, description = "Body is not JSON", body = ProblemBody),
        Unauthorized,
        (status = 501, description = "The configured provider's signature is not known (Tuisongbao)", body = ProblemBody),
    ),
    security(("token" = []))
)]
pub async fn authorize(
    State(state): State<WebState>,
    caller: Caller,
    ApiJson(request): ApiJson<PushAuthRequest>,
) -> Result<Json<Authorization>, Problem> {
    if let Some(info) = &request.user_info {
        let bytes = info.to_string().len();
        if bytes > MAX_USER_INFO_BYTES {
            return Err(Problem::invalid([(
                "userInfo".to_owned(),
                format!("is {bytes} bytes of JSON, over the limit of {MAX_USER_INFO_BYTES}"),
            )]));
        }
    }
    let channel = request.channel_name.as_str();
    let owner = if let Some(account) = channel_account(channel) {
        Owner::Account(account)
    } else if let Some((account, user)) = state.api.users.owner(channel) {
        Owner::User(account, user)
    } else {
        return Err(refused(format!(
            "{channel:?} is neither an account's channel (presence-message-wm-global<accountId>) nor a user's ({})",
            state.api.users.template()
        )));
    };
    let account = match owner {
        Owner::Account(account) => {
            match caller.0 {
                TokenScope::User(_, me) => {
                    caller.check_user(account, me)?;
                    must_be(&request.user_id, me, channel)?;
                }
                _ => caller.check(account)?,
            }
            account
        }
        Owner::User(account, user) => {
            caller.check_user(account, user)?;
            must_be(&request.user_id, user, channel)?;
            account
        }
    };
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
        // Debug form: the caller's text, with control characters escaped.
        user_id = ?request.user_id,
        "channel subscription signed"
    );
    Ok(Json(answer))
}
