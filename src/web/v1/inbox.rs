//! The read side for the frontend: an account's messages, its unread count,
//! and read marks.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/accounts/{accountId}/messages` | newest first, a page at a time |
//! | `GET /v1/accounts/{accountId}/messages/unread-count` | unread messages |
//! | `POST /v1/accounts/{accountId}/messages/{messageId}/read` | mark one read |
//! | `POST /v1/accounts/{accountId}/messages/read-all` | mark all read |
//!
//! Filters are query parameters: `isRead`, `status`, `to` (a recipient id)
//! and `forUser` (what one user sees: messages to the whole account and to
//! that user).

use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    http::StatusCode,
    Json,
};
use herald_jobs::{ids::parse_object_id, AccountId, MessageStatus, UserId};
use serde::{Deserialize, Serialize};

use super::{
    caller::Caller,
    problem::{NotThisAccount, Problem, ProblemBody, Unauthorized},
};
use crate::{
    store::inbox::{InboxFilter, InboxMessage, PageCursor, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE},
    web::WebState,
};

/// Query parameters of the list, as sent (parsed with per-field errors).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `true` for read messages only, `false` for unread only.
    is_read: Option<String>,
    /// `warning`, `error` or `success`.
    status: Option<String>,
    /// Only messages whose `to.id` is this 24-hex id.
    to: Option<String>,
    /// Only what this user (24-hex) sees: messages to the account and to them.
    for_user: Option<String>,
    /// Messages per page, 1 to 100 (default 20).
    limit: Option<String>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// A page of messages.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    /// Newest first.
    pub messages: Vec<InboxMessage>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The unread count.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnreadCount {
    /// Unread messages matching the filters.
    pub unread: u64,
}

/// How many messages a mark-all changed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MarkedRead {
    /// Messages that were unread and now are read.
    pub updated: u64,
}

/// What a list query asks for, parsed.
struct ParsedQuery {
    filter: InboxFilter,
    limit: u32,
    cursor: Option<PageCursor>,
}

fn parse_query(query: ListQuery) -> Result<ParsedQuery, Problem> {
    let mut errors: Vec<(String, String)> = Vec::new();
    let mut fail = |field: &str, reason: String| errors.push((field.to_owned(), reason));
    let is_read = match query.is_read.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            fail("isRead", format!("'{other}' is not true or false"));
            None
        }
    };
    let status = query.status.as_deref().and_then(|s| {
        s.parse::<MessageStatus>()
            .map_err(|e| fail("status", e))
            .ok()
    });
    let to = query.to.as_deref().and_then(|t| {
        parse_object_id("to", t)
            .map_err(|e| fail("to", e.reason))
            .ok()
    });
    let for_user = query.for_user.as_deref().and_then(|u| {
        parse_object_id("forUser", u)
            .map(UserId::from)
            .map_err(|e| fail("forUser", e.reason))
            .ok()
    });
    let limit = match query.limit.as_deref().map(str::parse::<u32>) {
        None => DEFAULT_PAGE_SIZE,
        Some(Ok(n)) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
        Some(_) => {
            fail(
                "limit",
                format!("must be a number from 1 to {MAX_PAGE_SIZE}"),
            );
            DEFAULT_PAGE_SIZE
        }
    };
    let cursor = query.cursor.as_deref().and_then(|c| {
        PageCursor::decode(c)
            .map_err(|e| fail("cursor", e.to_string()))
            .ok()
    });
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    Ok(ParsedQuery {
        filter: InboxFilter {
            is_read,
            status,
            to,
            for_user,
        },
        limit,
        cursor,
    })
}

/// The account in the path, which the caller must reach.
fn account_in_path(caller: &Caller, text: &str) -> Result<AccountId, Problem> {
    let account = parse_object_id("accountId", text)
        .map(AccountId::from)
        .map_err(|e| Problem::from_validation(vec![e]))?;
    caller.check(account)?;
    Ok(account)
}

/// Query parameters, with unknown ones refused as a field error.
fn query_of(query: Result<Query<ListQuery>, QueryRejection>) -> Result<ListQuery, Problem> {
    Ok(query?.0)
}

/// List an account's messages, newest first.
#[utoipa::path(
    get,
    path = "/v1/accounts/{accountId}/messages",
    tag = "inbox",
    params(("accountId" = String, Path, description = "The account, 24-hex"), ListQuery),
    responses(
        (status = 200, description = "A page", body = MessagePage),
        (status = 400, description = "Invalid parameters", body = ProblemBody),
        Unauthorized,
        NotThisAccount,
    ),
    security(("token" = []))
)]
pub async fn list(
    State(state): State<WebState>,
    caller: Caller,
    Path(account): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<MessagePage>, Problem> {
    let account = account_in_path(&caller, &account)?;
    let query = parse_query(query_of(query)?)?;
    let page = state
        .api
        .inbox
        .page(account, &query.filter, query.cursor, query.limit)
        .await?;
    Ok(Json(MessagePage {
        messages: page.messages,
        next_cursor: page.next_cursor,
    }))
}

/// Count an account's unread messages (`isRead`, `limit` and `cursor` do not apply).
#[utoipa::path(
    get,
    path = "/v1/accounts/{accountId}/messages/unread-count",
    tag = "inbox",
    params(("accountId" = String, Path, description = "The account, 24-hex"), ListQuery),
    responses(
        (status = 200, description = "The count", body = UnreadCount),
        (status = 400, description = "Invalid parameters", body = ProblemBody),
        Unauthorized,
        NotThisAccount,
    ),
    security(("token" = []))
)]
pub async fn unread_count(
    State(state): State<WebState>,
    caller: Caller,
    Path(account): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<UnreadCount>, Problem> {
    let account = account_in_path(&caller, &account)?;
    let query = parse_query(query_of(query)?)?;
    let unread = state.api.inbox.unread_count(account, &query.filter).await?;
    Ok(Json(UnreadCount { unread }))
}

/// Mark one message read (`readAt` keeps the first time).
#[utoipa::path(
    post,
    path = "/v1/accounts/{accountId}/messages/{messageId}/read",
    tag = "inbox",
    params(
        ("accountId" = String, Path, description = "The account, 24-hex"),
        ("messageId" = String, Path, description = "The message, 24-hex"),
    ),
    responses(
        (status = 200, description = "The message, now read", body = InboxMessage),
        (status = 400, description = "Invalid id", body = ProblemBody),
        Unauthorized,
        NotThisAccount,
        (status = 404, description = "The account has no such message", body = ProblemBody),
    ),
    security(("token" = []))
)]
pub async fn mark_read(
    State(state): State<WebState>,
    caller: Caller,
    Path((account, message)): Path<(String, String)>,
) -> Result<Json<InboxMessage>, Problem> {
    let account = account_in_path(&caller, &account)?;
    let id =
        parse_object_id("messageId", &message).map_err(|e| Problem::from_validation(vec![e]))?;
    match state.api.inbox.mark_read(account, id).await? {
        Some(message) => Ok(Json(message)),
        None => Err(Problem::not_found(format!(
            "account {account} has no message {message}"
        ))),
    }
}

/// Mark every unread message read (filters `status`, `to`, `forUser` apply).
#[utoipa::path(
    post,
    path = "/v1/accounts/{accountId}/messages/read-all",
    tag = "inbox",
    params(("accountId" = String, Path, description = "The account, 24-hex"), ListQuery),
    responses(
        (status = 200, description = "How many changed", body = MarkedRead),
        (status = 400, description = "Invalid parameters", body = ProblemBody),
        Unauthorized,
        NotThisAccount,
    ),
    security(("token" = []))
)]
pub async fn mark_all_read(
    State(state): State<WebState>,
    caller: Caller,
    Path(account): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<MarkedRead>), Problem> {
    let account = account_in_path(&caller, &account)?;
    let query = parse_query(query_of(query)?)?;
    let updated = state
        .api
        .inbox
        .mark_all_read(account, &query.filter)
        .await?;
    Ok((StatusCode::OK, Json(MarkedRead { updated })))
}
