//! What a user does to the messages of their inbox besides reading them:
//! archive, unarchive, delete and mark unread, one message or many.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/accounts/{accountId}/users/{userId}/messages/{messageId}/archive` | archive one (it is read) |
//! | `POST .../users/{userId}/messages/{messageId}/unarchive` | back to the inbox |
//! | `POST .../users/{userId}/messages/{messageId}/unread` | mark one unread (back to the inbox) |
//! | `DELETE .../users/{userId}/messages/{messageId}` | delete one for the user |
//! | `POST .../users/{userId}/messages/{archive,unarchive,unread,delete}` | the same for `{"ids": [...]}` or `{"filter": {...}}` |
//!
//! Each action is the user's own, as read state is: archiving a message to
//! the whole account archives it for this user alone
//! ([`crate::store::inbox::InboxAction`] has the rules). Each one that
//! changes something pushes `inbox_changed` to the user's channel, with
//! the action, the ids (or `"all"` for a filter) and the user's unread
//! count, so the user's other pages follow.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use herald_jobs::{ids::parse_object_id, MessageStatus, QueueName};
use mongodb::bson::{oid::ObjectId, DateTime};
use serde::Deserialize;

use super::{
    caller::Caller,
    fields::not_null,
    inbox::{user_in_path, MarkedRead},
    problem::{ApiJson, BodyRefused, NotThisAccount, Problem, ProblemBody, Unauthorized},
};
use crate::{
    push::job::PushJob,
    store::inbox::{
        ActionFilter, CountFilter, InboxAction, InboxMessage, Selection, MAX_ACTION_IDS,
    },
    web::WebState,
};

/// The messages an action applies to: `ids`, or every message matching
/// `filter`; exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct SelectionRequest {
    /// 1 to 100 message ids, 24-hex.
    #[serde(default, deserialize_with = "not_null")]
    pub ids: Option<Vec<String>>,
    /// Every message of the user's inbox matching all of these.
    #[serde(default, deserialize_with = "not_null")]
    pub filter: Option<FilterRequest>,
}

herald_jobs::object_only!(
    deserialize SelectionRequest,
    "an object {\"ids\": [...]} or {\"filter\": {...}}"
);

/// The filter of a [`SelectionRequest`], as sent.
#[derive(Debug, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterRequest {
    #[serde(default, deserialize_with = "not_null")]
    status: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    category: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    is_read: Option<bool>,
    #[serde(default, deserialize_with = "not_null")]
    archived: Option<bool>,
    #[serde(default, deserialize_with = "not_null")]
    older_than: Option<String>,
}

herald_jobs::object_only!(deserialize FilterRequest, "an object of filter fields");

impl SelectionRequest {
    /// The selection, or a 400 naming each field that is wrong.
    pub fn parse(self) -> Result<Selection, Problem> {
        match (self.ids, self.filter) {
            (Some(ids), None) => parse_ids(&ids).map(Selection::Ids),
            (None, Some(filter)) => filter.parse().map(Selection::Filter),
            (ids, filter) => {
                let reason = if ids.is_some() && filter.is_some() {
                    "give ids or filter, not both"
                } else {
                    "give ids or filter"
                };
                Err(Problem::invalid(
                    ["ids", "filter"].map(|field| (field.to_owned(), reason.to_owned())),
                ))
            }
        }
    }
}

/// 1 to [`MAX_ACTION_IDS`] ids, each 24-hex.
fn parse_ids(ids: &[String]) -> Result<Vec<ObjectId>, Problem> {
    if ids.is_empty() || ids.len() > MAX_ACTION_IDS {
        return Err(Problem::invalid([(
            "ids".to_owned(),
            format!("must name 1 to {MAX_ACTION_IDS} messages"),
        )]));
    }
    ids.iter()
        .map(|id| parse_object_id("ids", id))
        .collect::<Result<Vec<ObjectId>, _>>()
        .map_err(|e| Problem::from_validation(vec![e]))
}

impl FilterRequest {
    fn parse(self) -> Result<ActionFilter, Problem> {
        let mut errors = Vec::new();
        let status = self.status.and_then(|s| {
            s.parse::<MessageStatus>()
                .map_err(|e| errors.push(("filter.status".to_owned(), e)))
                .ok()
        });
        let category = self.category.and_then(|c| {
            if herald_jobs::message::is_category(&c) {
                Some(c)
            } else {
                errors.push((
                    "filter.category".to_owned(),
                    format!("'{c}' must be 1 to 32 letters, digits, '_', '.' or '-'"),
                ));
                None
            }
        });
        let older_than =
            self.older_than
                .and_then(|text| match chrono::DateTime::parse_from_rfc3339(&text) {
                    Ok(at) => Some(DateTime::from_millis(at.timestamp_millis())),
                    Err(_) => {
                        errors.push((
                            "filter.olderThan".to_owned(),
                            format!("'{text}' is not an RFC 3339 time like 2026-12-24T09:00:00Z"),
                        ));
                        None
                    }
                });
        if !errors.is_empty() {
            return Err(Problem::invalid(errors));
        }
        Ok(ActionFilter {
            status,
            category,
            is_read: self.is_read,
            archived: self.archived,
            older_than,
        })
    }
}

/// Applies `action` to `selection` for the user in the path, announces
/// what changed, and answers how many changed and the unread count now.
async fn act(
    state: &WebState,
    caller: &Caller,
    (account, user): (String, String),
    action: InboxAction,
    selection: Selection,
) -> Result<(MarkedRead, Vec<ObjectId>), Problem> {
    let (account, user) = user_in_path(caller, &account, &user)?;
    let inbox = &state.api.inbox;
    let changed = inbox.apply(account, user, action, &selection).await?;
    let unread = inbox
        .unread_count(account, user, &CountFilter::default())
        .await?;
    if changed.count > 0 {
        let ids = match selection {
            Selection::Ids(_) => {
                serde_json::json!(changed.ids.iter().map(|id| id.to_hex()).collect::<Vec<_>>())
            }
            Selection::Filter(_) => serde_json::json!("all"),
        };
        let mark = ulid::Ulid::generate().to_string();
        let job = match action {
            InboxAction::Read => {
                PushJob::message_read(account, user, &state.api.users, ids, unread, &mark)
            }
            _ => PushJob::inbox_changed(
                account,
                user,
                &state.api.users,
                action.as_str(),
                ids,
                unread,
                &mark,
            ),
        };
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
                %error, account_id = %account, user_id = %user, action = action.as_str(),
                "inbox change not announced; the user's other pages update at their next read"
            );
        }
    }
    Ok((
        MarkedRead {
            updated: changed.count,
            unread,
        },
        changed.ids,
    ))
}

/// Applies `action` to the one message in the path; answers the message
/// as the user now sees it, or 404.
async fn act_on_one(
    state: &WebState,
    caller: &Caller,
    (account, user, message): (String, String, String),
    action: InboxAction,
) -> Result<Option<InboxMessage>, Problem> {
    let (parsed_account, parsed_user) = user_in_path(caller, &account, &user)?;
    let id =
        parse_object_id("messageId", &message).map_err(|e| Problem::from_validation(vec![e]))?;
    let inbox = &state.api.inbox;
    if inbox
        .user_messages(parsed_account, parsed_user, &[id])
        .await?
        .is_empty()
    {
        return Err(Problem::not_found(format!(
            "the inbox of user {user} in account {account} has no message {message}"
        )));
    }
    act(
        state,
        caller,
        (account, user),
        action,
        Selection::Ids(vec![id]),
    )
    .await?;
    Ok(inbox
        .user_messages(parsed_account, parsed_user, &[id])
        .await?
        .into_iter()
        .next())
}

/// The one message after an action that leaves it in the user's inbox.
fn shown(message: Option<InboxMessage>) -> Result<Json<InboxMessage>, Problem> {
    message
        .map(Json)
        .ok_or_else(|| Problem::not_found("the message is no longer in the user's inbox"))
}

/// The routes acting on one message that answer it as the user now sees
/// it: one handler per action.
macro_rules! one_route {
    ($name:ident, $action:expr, $segment:literal, $doc:literal, $what:literal) => {
        #[doc = $doc]
        #[utoipa::path(
            post,
            path = concat!("/v1/accounts/{accountId}/users/{userId}/messages/{messageId}/", $segment),
            tag = "inbox",
            params(
                ("accountId" = String, Path, description = "The account, 24-hex"),
                ("userId" = String, Path, description = "The user, 24-hex"),
                ("messageId" = String, Path, description = "The message, 24-hex"),
            ),
            responses(
                (status = 200, description = $what, body = InboxMessage),
                (status = 400, description = "Invalid id", body = ProblemBody),
                Unauthorized,
                NotThisAccount,
                (status = 404, description = "The user's inbox has no such message", body = ProblemBody),
            ),
            security(("token" = []))
        )]
        pub async fn $name(
            State(state): State<WebState>,
            caller: Caller,
            Path(path): Path<(String, String, String)>,
        ) -> Result<Json<InboxMessage>, Problem> {
            shown(act_on_one(&state, &caller, path, $action).await?)
        }
    };
}

one_route!(
    archive,
    InboxAction::Archive,
    "archive",
    "Archive one message for a user: out of their inbox, read.",
    "The message, now archived and read for the user"
);
one_route!(
    unarchive,
    InboxAction::Unarchive,
    "unarchive",
    "Move one archived message back into a user's inbox (it stays read).",
    "The message, back in the user's inbox"
);
one_route!(
    mark_unread,
    InboxAction::Unread,
    "unread",
    "Mark one message unread for a user; an archived one goes back to the inbox.",
    "The message, now unread for the user"
);

/// Delete one message from a user's inbox: gone for them for good; a
/// message to the whole account stays for its other users.
#[utoipa::path(
    delete,
    path = "/v1/accounts/{accountId}/users/{userId}/messages/{messageId}",
    tag = "inbox",
    params(
        ("accountId" = String, Path, description = "The account, 24-hex"),
        ("userId" = String, Path, description = "The user, 24-hex"),
        ("messageId" = String, Path, description = "The message, 24-hex"),
    ),
    responses(
        (status = 204, description = "Deleted for the user"),
        (status = 400, description = "Invalid id", body = ProblemBody),
        Unauthorized,
        NotThisAccount,
        (status = 404, description = "The user's inbox has no such message", body = ProblemBody),
    ),
    security(("token" = []))
)]
pub async fn delete(
    State(state): State<WebState>,
    caller: Caller,
    Path(path): Path<(String, String, String)>,
) -> Result<StatusCode, Problem> {
    act_on_one(&state, &caller, path, InboxAction::Delete).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The bulk routes: one handler per action, the same body.
macro_rules! bulk_route {
    ($name:ident, $action:expr, $segment:literal, $doc:literal, $what:literal) => {
        #[doc = $doc]
        #[utoipa::path(
                    post,
                    path = concat!("/v1/accounts/{accountId}/users/{userId}/messages/", $segment),
                    tag = "inbox",
                    params(
                        ("accountId" = String, Path, description = "The account, 24-hex"),
                        ("userId" = String, Path, description = "The user, 24-hex"),
                    ),
                    request_body = SelectionRequest,
                    responses(
                        (status = 200, description = $what, body = MarkedRead),
                        (status = 400, description = "Invalid ids or filter", body = ProblemBody),
                        Unauthorized,
                        NotThisAccount,
                        BodyRefused,
                    ),
                    security(("token" = []))
                )]
        pub async fn $name(
            State(state): State<WebState>,
            caller: Caller,
            Path(path): Path<(String, String)>,
            ApiJson(request): ApiJson<SelectionRequest>,
        ) -> Result<Json<MarkedRead>, Problem> {
            let selection = request.parse()?;
            let (answer, _) = act(&state, &caller, path, $action, selection).await?;
            Ok(Json(answer))
        }
    };
}

bulk_route!(
    mark_several_read,
    InboxAction::Read,
    "read",
    "Mark several messages read for a user: by ids, or every one matching a filter.",
    "How many became read, and the unread count now"
);
bulk_route!(
    archive_several,
    InboxAction::Archive,
    "archive",
    "Archive several messages for a user: by ids, or every one matching a filter.",
    "How many were archived, and the unread count now"
);
bulk_route!(
    unarchive_several,
    InboxAction::Unarchive,
    "unarchive",
    "Move several archived messages back into a user's inbox.",
    "How many came back, and the unread count now"
);
bulk_route!(
    mark_several_unread,
    InboxAction::Unread,
    "unread",
    "Mark several messages unread for a user (archived ones go back to the inbox).",
    "How many became unread, and the unread count now"
);
bulk_route!(
    delete_several,
    InboxAction::Delete,
    "delete",
    "Delete several messages from a user's inbox, for that user.",
    "How many were deleted, and the unread count now"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::v1::fields::decoded;

    async fn selection(body: &str) -> Result<Selection, (StatusCode, serde_json::Value)> {
        let request: SelectionRequest = decoded(body).await?;
        request.parse().map_err(|problem| {
            let status = problem.status();
            (status, serde_json::json!(problem.message()))
        })
    }

    #[tokio::test]
    async fn a_selection_is_ids_or_a_filter_never_both_or_neither() {
        let id = ObjectId::new().to_hex();
        assert!(matches!(
            selection(&format!(r#"{{"ids": ["{id}"]}}"#)).await,
            Ok(Selection::Ids(ids)) if ids.len() == 1
        ));
        let filter = selection(
            r#"{"filter": {"status": "error", "category": "billing", "isRead": true,
                "archived": false, "olderThan": "2026-12-01T00:00:00+08:00"}}"#,
        )
        .await;
        let Ok(Selection::Filter(filter)) = filter else {
            panic!("a filter: {filter:?}")
        };
        assert_eq!(filter.status, Some(MessageStatus::Error));
        let expected = chrono::DateTime::parse_from_rfc3339("2026-11-30T16:00:00Z")
            .expect("a time")
            .timestamp_millis();
        assert_eq!(filter.older_than, Some(DateTime::from_millis(expected)));
        assert!(matches!(
            selection(r#"{"filter": {}}"#).await,
            Ok(Selection::Filter(f)) if f == ActionFilter::default()
        ));
        for body in [
            "{}".to_owned(),
            format!(r#"{{"ids": ["{id}"], "filter": {{}}}}"#),
            r#"{"ids": []}"#.to_owned(),
            r#"{"ids": ["nope"]}"#.to_owned(),
            r#"{"filter": {"olderThan": "yesterday"}}"#.to_owned(),
            r#"{"filter": {"category": "no spaces"}}"#.to_owned(),
            r#"{"filter": {"status": "fine"}}"#.to_owned(),
            r#"{"filter": {"unknown": 1}}"#.to_owned(),
            r#"{"filter": null}"#.to_owned(),
            "[]".to_owned(),
        ] {
            let refused = selection(&body).await.expect_err(&body);
            assert_eq!(refused.0, StatusCode::BAD_REQUEST, "{body}: {refused:?}");
        }
    }
}
