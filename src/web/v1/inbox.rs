//! The read side for the frontend: a user's inbox, its unread count and
//! read marks, and the account's whole list for its back office.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/accounts/{accountId}/users/{userId}/messages` | the user's inbox, newest first, a page at a time |
//! | `GET .../users/{userId}/messages/unread-count` | what the user has not read |
//! | `GET .../users/{userId}/messages/unread-counts` | the same in all and per category, in one call |
//! | `POST .../users/{userId}/messages/{messageId}/read` | mark one read for the user |
//! | `POST .../users/{userId}/messages/read` | mark several read (`{"ids": [...]}` or `{"filter": {...}}`, [`super::inbox_actions`]) |
//! | `POST .../users/{userId}/messages/read-all` | mark all read for the user |
//! | `GET /v1/accounts/{accountId}/messages` | every message of the account (not for a user's inbox) |
//!
//! Archive, unarchive, delete and mark unread are [`super::inbox_actions`].
//!
//! A user's inbox is the account's messages to everyone and the messages to
//! that user, with that user's read state: one user reading a message to
//! the whole account leaves it unread for the others. Each mark that reads
//! something pushes `message_read` to the user's channel, with the ids (or
//! `"all"`) and the user's new unread count, so the user's other tabs and
//! devices update without asking.

use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    Json,
};
use herald_jobs::{ids::parse_object_id, AccountId, MessageStatus, QueueName, UserId};
use serde::{Deserialize, Serialize};

use super::{
    caller::Caller,
    problem::{NotThisAccount, Problem, ProblemBody, Unauthorized},
};
use crate::{
    push::job::PushJob,
    store::inbox::{
        AccountFilter, CountFilter, InboxFilter, InboxMessage, PageCursor, DEFAULT_PAGE_SIZE,
        MAX_PAGE_SIZE,
    },
    web::WebState,
};

/// Query parameters of a user's inbox, as sent (parsed with per-field errors).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InboxQuery {
    /// `true`: only what the user read; `false`: only what they have not.
    is_read: Option<String>,
    /// `warning`, `error` or `success`.
    status: Option<String>,
    /// Only messages of this category.
    category: Option<String>,
    /// Messages per page, 1 to 100 (default 20).
    limit: Option<String>,
    /// `nextCursor` of the previous page (empty: the first page).
    cursor: Option<String>,
    /// `true`: the user's archive instead of their inbox (default `false`).
    archived: Option<String>,
}

/// Query parameters of the unread count.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CountQuery {
    /// Only messages of this status: `warning`, `error` or `success`.
    status: Option<String>,
    /// Only messages of this category.
    category: Option<String>,
}

/// Query parameters of the account's whole list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccountQuery {
    /// `true` or `false`: the documents' own `isRead`.
    is_read: Option<String>,
    /// `warning`, `error` or `success`.
    status: Option<String>,
    /// Only messages whose `to.id` is this 24-hex id.
    to: Option<String>,
    /// Only messages of this category.
    category: Option<String>,
    /// Messages per page, 1 to 100 (default 20).
    limit: Option<String>,
    /// `nextCursor` of the previous page (empty: the first page).
    cursor: Option<String>,
}

/// Query parameters of the unread count and of mark-all-read.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// Only messages of this status: `warning`, `error` or `success`.
    status: Option<String>,
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
    /// Messages of the user's inbox the user has not read.
    pub unread: u64,
}

/// The unread count in all and per category.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnreadCounts {
    /// Messages of the user's inbox the user has not read.
    pub unread: u64,
    /// Of them, per category that has any.
    pub categories: std::collections::BTreeMap<String, u64>,
    /// Of them, those without a category.
    pub uncategorized: u64,
}

/// What a mark or another action changed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarkedRead {
    /// Messages whose state the action changed for the user.
    pub updated: u64,
    /// The user's unread count now.
    pub unread: u64,
}

/// A user's inbox query, parsed.
struct ParsedQuery {
    filter: InboxFilter,
    limit: u32,
    cursor: Option<PageCursor>,
}

/// Collects per-field errors while parsing query parameters.
#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Fields {
    fn fail(&mut self, field: &str, reason: String) {
        self.0.push((field.to_owned(), reason));
    }

    fn is_read(&mut self, value: Option<&str>) -> Option<bool> {
        self.boolean("isRead", value)
    }

    fn boolean(&mut self, field: &str, value: Option<&str>) -> Option<bool> {
        match value {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                self.fail(field, format!("'{other}' is not true or false"));
                None
            }
        }
    }

    fn category(&mut self, value: Option<&str>) -> Option<String> {
        let value = value?;
        if !herald_jobs::message::is_category(value) {
            self.fail(
                "category",
                format!("'{value}' must be 1 to 32 letters, digits, '_', '.' or '-'"),
            );
            return None;
        }
        Some(value.to_owned())
    }

    fn status(&mut self, value: Option<&str>) -> Option<MessageStatus> {
        value.and_then(|s| {
            s.parse::<MessageStatus>()
                .map_err(|e| self.fail("status", e))
                .ok()
        })
    }

    fn limit(&mut self, value: Option<&str>) -> u32 {
        match value.map(str::parse::<u32>) {
            None => DEFAULT_PAGE_SIZE,
            Some(Ok(n)) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            Some(_) => {
                self.fail(
                    "limit",
                    format!("must be a number from 1 to {MAX_PAGE_SIZE}"),
                );
                DEFAULT_PAGE_SIZE
            }
        }
    }

    /// An empty cursor is the first page, as if none was sent.
    fn cursor(&mut self, value: Option<&str>) -> Option<PageCursor> {
        value.filter(|c| !c.is_empty()).and_then(|c| {
            PageCursor::decode(c)
                .map_err(|e| self.fail("cursor", e.to_string()))
                .ok()
        })
    }

    fn done<T>(self, value: T) -> Result<T, Problem> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(Problem::invalid(self.0))
        }
    }
}

fn parse_inbox_query(query: InboxQuery) -> Result<ParsedQuery, Problem> {
    let mut fields = Fields::default();
    let filter = InboxFilter {
        is_read: fields.is_read(query.is_read.as_deref()),
        status: fields.status(query.status.as_deref()),
        category: fields.category(query.category.as_deref()),
        archived: fields
            .boolean("archived", query.archived.as_deref())
            .unwrap_or(false),
    };
    let limit = fields.limit(query.limit.as_deref());
    let cursor = fields.cursor(query.cursor.as_deref());
    fields.done(ParsedQuery {
        filter,
        limit,
        cursor,
    })
}

/// The account in the path, parsed.
fn account_of(text: &str) -> Result<AccountId, Problem> {
    parse_object_id("accountId", text)
        .map(AccountId::from)
        .map_err(|e| Problem::from_validation(vec![e]))
}

/// The account and user in the path, which the caller must reach.
pub(super) fn user_in_path(
    caller: &Caller,
    account: &str,
    user: &str,
) -> Result<(AccountId, UserId), Problem> {
    let account = account_of(account)?;
    let user = parse_object_id("userId", user)
        .map(UserId::from)
        .map_err(|e| Problem::from_validation(vec![e]))?;
    caller.check_user(account, user)?;
    Ok((account, user))
}

/// Query parameters, with unknown ones refused as a field error.
fn query_of<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    Ok(query?.0)
}

/// The status filter of a [`StatusQuery`].
fn status_of(query: StatusQuery) -> Result<Option<MessageStatus>, Problem> {
    let mut fields = Fields::default();
    let status = fields.status(query.status.as_deref());
    fields.done(status)
}

/// List every message of an account, newest first: the back office's view,
/// with each document's own `isRead`. A user's inbox is
/// `/v1/accounts/{accountId}/users/{userId}/messages`.
#[utoipa::path(
    get,
    path = "/v1/accounts/{accountId}/messages",
    tag = "inbox",
    params(("accountId" = String, Path, description = "The account, 24-hex"), AccountQuery),
    responses(
        (status = 200, description = "A page", body = MessagePage),
        (status = 400, description = "Invalid parameters", body = ProblemBody),
        Unauthorized,
        NotThisAccount,
    ),
    security(("token" = []))
)]
pub async fn account_list(
    State(state): State<WebState>,
    caller: Caller,
    Path(account): Path<String>,
    query: Result<Query<AccountQuery>, QueryRejection>,
) -> Result<Json<MessagePage>, Problem> {
    let account = account_of(&account)?;
    caller.check(account)?;
    let query = query_of(query)?;
    let mut fields = Fields::default();
    let filter = AccountFilter {
        is_read: fields.is_read(query.is_read.as_deref()),
        status: fields.status(query.status.as_deref()),
        to: query.to.as_deref().and_then(|t| {
            parse_object_id("to", t)
                .map_err(|e| fields.fail("to", e.reason))
                .ok()
        }),
        category: fields.category(query.category.as_deref()),
    };
    let limit = fields.limit(query.limit.as_deref());
    let cursor = fields.cursor(query.cursor.as_deref());
    fields.done(())?;
    let page = state
        .api
        .inbox
        .account_page(account, &filter, cursor, limit)
        .await?;
    Ok(Json(MessagePage {
        messages: page.messages,
        next_cursor: page.next_cursor,
    }))
}

/// List a user's inbox, newest first: the account's messages to everyone
/// and those to this user, with this user's read state.
#[utoipa::path(
    get,
    path = "/v1/accounts/{accountId}/users/{userId}/messages",
    tag = "inbox",
    params(
        ("accountId" = String, Path, description = "The account, 24-hex"),
        ("userId" = String, Path, description = "The user, 24-hex"),
        InboxQuery,
    ),
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
    Path((account, user)): Path<(String, String)>,
    query: Result<Query<InboxQuery>, QueryRejection>,
) -> Result<Json<MessagePage>, Problem> {
    let (account, user) = user_in_path(&caller, &account, &user)?;
    let query = parse_inbox_query(query_of(query)?)?;
    let page = state
        .api
        .inbox
        .user_page(account, user, &query.filter, query.cursor, query.limit)
        .await?;
    Ok(Json(MessagePage {
        messages: page.messages,
        next_cursor: page.next_cursor,
    }))
}

/// Count what a user has not read of their inbox.
#[utoipa::path(
    get,
    path = "/v1/accounts/{accountId}/users/{userId}/messages/unread-count",
    tag = "inbox",
    params(
        ("accountId" = String, Path, description = "The account, 24-hex"),
        ("userId" = String, Path, description = "The user, 24-hex"),
        CountQuery,
    ),
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
    Path((account, user)): Path<(String, String)>,
    query: Result<Query<CountQuery>, QueryRejection>,
) -> Result<Json<UnreadCount>, Problem> {
    let (account, user) = user_in_path(&caller, &account, &user)?;
    let query = query_of(query)?;
    let mut fields = Fields::default();
    let narrow = CountFilter {
        status: fields.status(query.status.as_deref()),
        category: fields.category(query.category.as_deref()),
    };
    let narrow = fields.done(narrow)?;
    let unread = state.api.inbox.unread_count(account, user, &narrow).await?;
    Ok(Json(UnreadCount { unread }))
}

/// What a user has not read, in all and per category, in one call.
#[utoipa::path(
    get,
    path = "/v1/accounts/{accountId}/users/{userId}/messages/unread-counts",
    tag = "inbox",
    params(
        ("accountId" = String, Path, description = "The account, 24-hex"),
        ("userId" = String, Path, description = "The user, 24-hex"),
    ),
    responses(
        (status = 200, description = "The unread count, in all and per category", body = UnreadCounts),
        (status = 400, description = "Invalid id", body = ProblemBody),
        Unauthorized,
        NotThisAccount,
    ),
    security(("token" = []))
)]
pub async fn unread_counts(
    State(state): State<WebState>,
    caller: Caller,
    Path((account, user)): Path<(String, String)>,
) -> Result<Json<UnreadCounts>, Problem> {
    let (account, user) = user_in_path(&caller, &account, &user)?;
    let counts = state.api.inbox.unread_by_category(account, user).await?;
    Ok(Json(UnreadCounts {
        unread: counts.unread,
        categories: counts.categories,
        uncategorized: counts.uncategorized,
    }))
}

/// Mark one message read for a user (`readAt` keeps the first time).
#[utoipa::path(
    post,
    path = "/v1/accounts/{accountId}/users/{userId}/messages/{messageId}/read",
    tag = "inbox",
    params(
        ("accountId" = String, Path, description = "The account, 24-hex"),
        ("userId" = String, Path, description = "The user, 24-hex"),
        ("messageId" = String, Path, description = "The message, 24-hex"),
    ),
    responses(
        (status = 200, description = "The message, now read for the user", body = InboxMessage),
        (status = 400, description = "Invalid id", body = ProblemBody),
        Unauthorized,
        NotThisAccount,
        (status = 404, description = "The user's inbox has no such message", body = ProblemBody),
    ),
    security(("token" = []))
)]
pub async fn mark_read(
    State(state): State<WebState>,
    caller: Caller,
    Path((account, user, message)): Path<(String, String, String)>,
) -> Result<Json<InboxMessage>, Problem> {
    let (account, user) = user_in_path(&caller, &account, &user)?;
    let id =
        parse_object_id("messageId", &message).map_err(|e| Problem::from_validation(vec![e]))?;
    let marking = state.api.inbox.mark_read(account, user, &[id]).await?;
    if !marking.newly_read.is_empty() {
        announce(&state, account, user, serde_json::json!(marking.newly_read)).await?;
    }
    marking
        .messages
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| {
            Problem::not_found(format!(
                "the inbox of user {user} in account {account} has no message {message}"
            ))
        })
}

/// Mark every message of a user's inbox read for them (`status` narrows).
#[utoipa::path(
    post,
    path = "/v1/accounts/{accountId}/users/{userId}/messages/read-all",
    tag = "inbox",
    params(
        ("accountId" = String, Path, description = "The account, 24-hex"),
        ("userId" = String, Path, description = "The user, 24-hex"),
        StatusQuery,
    ),
    responses(
        (status = 200, description = "How many changed, and the unread count now", body = MarkedRead),
        (status = 400, description = "Invalid parameters", body = ProblemBody),
        Unauthorized,
        NotThisAccount,
    ),
    security(("token" = []))
)]
pub async fn mark_all_read(
    State(state): State<WebState>,
    caller: Caller,
    Path((account, user)): Path<(String, String)>,
    query: Result<Query<StatusQuery>, QueryRejection>,
) -> Result<Json<MarkedRead>, Problem> {
    let (account, user) = user_in_path(&caller, &account, &user)?;
    let status = status_of(query_of(query)?)?;
    let updated = state.api.inbox.mark_all_read(account, user, status).await?;
    let unread = if updated > 0 {
        announce(&state, account, user, serde_json::json!("all")).await?
    } else {
        state
            .api
            .inbox
            .unread_count(account, user, &CountFilter::default())
            .await?
    };
    Ok(Json(MarkedRead { updated, unread }))
}

/// Pushes `message_read` (`read`: the ids, or `"all"`) to `user`'s channel
/// through the push queue, with the user's unread count now; returns that
/// count. The marks are made already, so a push that cannot be queued is
/// logged, not failed: the caller's answer carries the count, and the
/// user's other pages catch up at their next read.
async fn announce(
    state: &WebState,
    account: AccountId,
    user: UserId,
    read: serde_json::Value,
) -> Result<u64, Problem> {
    let unread = state
        .api
        .inbox
        .unread_count(account, user, &CountFilter::default())
        .await?;
    let mark = ulid::Ulid::generate().to_string();
    let job = PushJob::message_read(account, user, &state.api.users, read, unread, &mark);
    let mut producer = state.api.producer.clone();
    if let Err(error) = producer
        .enqueue_unchecked(
            QueueName::Push,
            account,
            &job,
            &job.idempotency_key,
            state.api.push_dedup,
        )
        .await
    {
        tracing::warn!(
            %error, account_id = %account, user_id = %user,
            "message_read not queued; the user's other pages update at their next read"
        );
    }
    Ok(unread)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbox_query(cursor: &str) -> InboxQuery {
        InboxQuery {
            cursor: Some(cursor.to_owned()),
            ..InboxQuery::default()
        }
    }

    #[test]
    fn an_empty_cursor_is_the_first_page_and_a_stranger_is_refused() {
        let first = parse_inbox_query(inbox_query("")).expect("an empty cursor");
        assert!(first.cursor.is_none());
        let cursor = "0000018bcfe568005f0c8a3e2b1d4c0012345678";
        let next = parse_inbox_query(inbox_query(cursor)).expect("a page's cursor");
        assert_eq!(next.cursor.map(|c| c.encode()).as_deref(), Some(cursor));
        let refused = parse_inbox_query(inbox_query("bm90LWEtY3Vyc29y"))
            .err()
            .expect("not a cursor");
        assert_eq!(refused.status(), axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(refused.message(), "the request has invalid fields");
    }
}
