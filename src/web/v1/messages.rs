//! `POST /v1/messages`: enqueue a `send_message` job over HTTP.
//!
//! The body is the job contract with conveniences for callers: `sender`
//! defaults to the system, `to` to the whole account, `status` to
//! `success`, and `accountId` to the account of an account-bound token.
//! The answer is 202 with the message id, the `_id` the document will have.
//!
//! `sendAt` (RFC 3339) schedules the message: it is stored and pushed at
//! that time, and until then `POST
//! /v1/accounts/{accountId}/messages/{messageId}/recall` takes it back
//! ([`recall`]).
//!
//! The id: a caller that retries a request sends the same `idempotencyKey`,
//! from which the id is derived within its account
//! ([`MessageId::from_idempotency_key`]), so the message is stored and
//! pushed once and no other account can reach that id. Without a key the
//! id is generated, unpredictable. Only a token that reaches every account
//! (a trusted backend) may name the id itself (`messageId`): a tenant's
//! token could otherwise take the id of another account's message first.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use herald_jobs::{
    ids::parse_object_id, AccountId, IdempotencyKey, MessageId, Recall, Recipient, RecipientTarget,
    SendMessage, Sender, SenderFrom, ValidationError,
};
use serde::{Deserialize, Serialize};

use super::{
    caller::Caller,
    fields::not_null,
    problem::{ApiJson, BodyRefused, NotThisAccount, Problem, ProblemBody, Unauthorized},
};
use crate::web::WebState;

/// A message to store and push. An optional property is left out for its
/// default; `null` is refused ([`not_null`]).
///
/// Its schema in the OpenAPI document is built from the rules the server
/// checks ([`super::schema`]).
#[derive(Debug, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageRequest {
    /// `_id` for the document, 24-hex; only with a token that reaches every
    /// account. Sending the same id again does not create a second message.
    #[serde(default, deserialize_with = "not_null")]
    pub message_id: Option<String>,
    /// The caller's name for this message, unique within its account: a
    /// retry with the same key stores and pushes the message once.
    #[serde(default, deserialize_with = "not_null")]
    pub idempotency_key: Option<String>,
    /// The account, 24-hex; may be left out with an account-bound token.
    #[serde(default, deserialize_with = "not_null")]
    pub account_id: Option<String>,
    /// Headline; must not be blank.
    pub title: String,
    /// Body; may hold HTML.
    pub content: String,
    /// Who sent it (default: the system).
    #[serde(default, deserialize_with = "not_null")]
    pub sender: Option<SenderBody>,
    /// Who receives it (default: the whole account).
    #[serde(default, deserialize_with = "not_null")]
    pub to: Option<RecipientBody>,
    /// `warning`, `error` or `success` (default).
    #[serde(default, deserialize_with = "not_null")]
    pub status: Option<String>,
    /// When to store and push it, RFC 3339 (default: at once).
    #[serde(default, deserialize_with = "not_null")]
    pub send_at: Option<String>,
    /// When to remove the stored message, RFC 3339 (default: kept, or for
    /// `message.keep_days`).
    #[serde(default, deserialize_with = "not_null")]
    pub expires_at: Option<String>,
    /// A short label the inbox groups and filters by.
    #[serde(default, deserialize_with = "not_null")]
    pub category: Option<String>,
    /// Where the message leads: `https://...` or a path of the app's site.
    #[serde(default, deserialize_with = "not_null")]
    pub action_url: Option<String>,
    /// The app's own small JSON object.
    #[serde(default, deserialize_with = "not_null")]
    pub data: Option<serde_json::Value>,
}

herald_jobs::object_only!(deserialize MessageRequest, "a message object");

/// `sender`: `{"id": "system" | HEX, "from": "system" | "user"}`.
#[derive(Debug, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct SenderBody {
    /// `"system"` or a user's 24-hex id.
    pub id: String,
    /// `system` or `user`.
    pub from: String,
}

herald_jobs::object_only!(deserialize SenderBody, "a sender object {\"id\", \"from\"}");

/// `to`: `{"id": HEX, "target": "account" | "user"}`.
#[derive(Debug, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct RecipientBody {
    /// The account's or the user's 24-hex id.
    pub id: String,
    /// `account` or `user`.
    pub target: String,
}

herald_jobs::object_only!(deserialize RecipientBody, "a recipient object {\"id\", \"target\"}");

/// The answer to an accepted message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageAccepted {
    /// The message's id: `_id` of its document.
    pub message_id: String,
    /// When it will be stored and pushed, for a message scheduled ahead
    /// (RFC 3339, UTC); absent when it goes at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_at: Option<String>,
}

/// The answer to a recalled message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageRecalled {
    /// The message's id; it will never be stored nor pushed.
    pub message_id: String,
}

/// The message's id: the one a trusted caller named, the one derived from
/// the idempotency key, or a fresh one (see the module docs). A request
/// that may not name its id is refused at once; an invalid key is a field
/// error, reported with the body's others.
fn message_id(
    caller: &Caller,
    request: &MessageRequest,
    account: AccountId,
) -> Result<Result<String, ValidationError>, Problem> {
    match (&request.message_id, &request.idempotency_key) {
        (Some(_), Some(_)) => Err(Problem::invalid([(
            "messageId".to_owned(),
            "send messageId or idempotencyKey, not both".to_owned(),
        )])),
        (Some(_), None) if !caller.may_choose_message_ids() => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "this token may not choose messageId (only a token that reaches every account \
             may); send idempotencyKey to make a retried request safe",
        )),
        (Some(id), None) => Ok(Ok(id.clone())),
        (None, Some(key)) => Ok(IdempotencyKey::parse("idempotencyKey", key)
            .map(|key| MessageId::from_idempotency_key(account, &key).to_hex())),
        (None, None) => Ok(Ok(MessageId::generate().to_hex())),
    }
}

/// The job for `request`, for `account`, with the id `message_id`.
fn job(request: MessageRequest, account: AccountId, message_id: String) -> SendMessage {
    let account_hex = account.to_hex();
    SendMessage {
        message_id,
        account_id: account_hex.clone(),
        title: request.title,
        content: request.content,
        sender: request.sender.map_or_else(
            || Sender {
                id: "system".to_owned(),
                from: SenderFrom::System.as_str().to_owned(),
            },
            |s| Sender {
                id: s.id,
                from: s.from,
            },
        ),
        to: request.to.map_or_else(
            || Recipient {
                id: account_hex,
                target: RecipientTarget::Account.as_str().to_owned(),
            },
            |r| Recipient {
                id: r.id,
                target: r.target,
            },
        ),
        status: request.status.unwrap_or_else(|| "success".to_owned()),
        send_at: request.send_at,
        expires_at: request.expires_at,
        category: request.category,
        action_url: request.action_url,
        data: request.data,
        traceparent: crate::web::request::trace().map(|trace| trace.to_string()),
    }
}

/// The account a request names, parsed; `Ok(None)` when it names none.
pub(super) fn named_account(
    field: &'static str,
    text: Option<&str>,
) -> Result<Option<AccountId>, Problem> {
    text.map(|t| {
        parse_object_id(field, t)
            .map(AccountId::from)
            .map_err(|e| Problem::from_validation(vec![e]))
    })
    .transpose()
}

/// Enqueue a message.
#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "messages",
    request_body = MessageRequest,
    responses(
        (status = 202, description = "Enqueued", body = MessageAccepted),
        (status = 400, description = "Invalid fields", body = ProblemBody),
        Unauthorized,
        NotThisAccount,
        BodyRefused,
    ),
    security(("token" = []))
)]
pub async fn enqueue(
    State(state): State<WebState>,
    caller: Caller,
    ApiJson(request): ApiJson<MessageRequest>,
) -> Result<(StatusCode, Json<MessageAccepted>), Problem> {
    let account = caller.account_for(named_account("accountId", request.account_id.as_deref())?)?;
    let (id, mut errors) = match message_id(&caller, &request, account)? {
        Ok(id) => (id, Vec::new()),
        // Stands in for the id while the rest of the body is checked.
        Err(invalid) => (MessageId::generate().to_hex(), vec![invalid]),
    };
    let job = job(request, account, id);
    let valid = match job.validate_all(&state.api.message_limits) {
        Ok(valid) if errors.is_empty() => valid,
        Ok(_) => return Err(Problem::from_validation(errors)),
        Err(more) => {
            errors.extend(more);
            return Err(Problem::from_validation(errors));
        }
    };
    let mut producer = state.api.producer.clone();
    producer
        .enqueue_valid_message(&valid)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    let scheduled = valid.send_at.filter(|at| *at > chrono::Utc::now());
    tracing::info!(
        message_id = %valid.id,
        account_id = %valid.account,
        queue = "send_message",
        send_at = scheduled.map(|at| at.to_rfc3339()),
        "message enqueued over HTTP"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(MessageAccepted {
            message_id: valid.id.to_hex(),
            send_at: scheduled.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        }),
    ))
}

/// Recall a scheduled message before it is sent.
///
/// A message enqueued with `sendAt` can be recalled until its job starts:
/// then it is never stored nor pushed (200). Once its job has started it
/// goes on: the answer is 409, and the stored message stays in the users'
/// inboxes, from which each user may delete it
/// (`DELETE /v1/accounts/{accountId}/users/{userId}/messages/{messageId}`). A message sent at once is never recallable; schedule it a few
/// seconds ahead to keep an undo window.
#[utoipa::path(
    post,
    path = "/v1/accounts/{accountId}/messages/{messageId}/recall",
    tag = "messages",
    params(
        ("accountId" = String, Path, description = "The account, 24-hex"),
        ("messageId" = String, Path, description = "The message, 24-hex"),
    ),
    responses(
        (status = 200, description = "Recalled: it will never be stored nor pushed", body = MessageRecalled),
        (status = 400, description = "Invalid id", body = ProblemBody),
        Unauthorized,
        NotThisAccount,
        (status = 404, description = "The account has no scheduled message of this id", body = ProblemBody),
        (status = 409, description = "The message is being sent or was sent; each user may delete it from their inbox", body = ProblemBody),
    ),
    security(("token" = []))
)]
pub async fn recall(
    State(state): State<WebState>,
    caller: Caller,
    Path((account, message)): Path<(String, String)>,
) -> Result<Json<MessageRecalled>, Problem> {
    let parse = |field, text: &str| {
        parse_object_id(field, text).map_err(|e| Problem::from_validation(vec![e]))
    };
    let account = AccountId::from(parse("accountId", &account)?);
    let id = MessageId::from(parse("messageId", &message)?);
    caller.check(account)?;
    let mut producer = state.api.producer.clone();
    let outcome = producer
        .recall_message(account, id)
        .await
        .map_err(|e| Problem::unavailable(&e))?;
    tracing::info!(
        message_id = %id,
        account_id = %account,
        queue = "send_message",
        outcome = ?outcome,
        "message recall asked over HTTP"
    );
    let sent = || {
        Problem::new(
            StatusCode::CONFLICT,
            format!(
                "message {id} is being sent or was sent; it can no longer be recalled. Once \
                 stored, each user removes it from their inbox with DELETE \
                 /v1/accounts/{account}/users/{{userId}}/messages/{id}"
            ),
        )
    };
    match outcome {
        Recall::Recalled => Ok(Json(MessageRecalled {
            message_id: id.to_hex(),
        })),
        Recall::Started => Err(sent()),
        Recall::Absent if state.api.inbox.account_has(account, id.object_id()).await? => {
            Err(sent())
        }
        Recall::Absent => Err(Problem::not_found(format!(
            "account {account} has no scheduled message {id}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::web::v1::fields::{assert_null_refused, decoded};

    fn message() -> Value {
        json!({"accountId": "5f0c8a3e2b1d4c0012345678", "title": "t", "content": "c"})
    }

    #[tokio::test]
    async fn an_optional_property_sent_as_null_is_refused_naming_it() {
        for name in [
            "to",
            "sender",
            "status",
            "idempotencyKey",
            "messageId",
            "accountId",
        ] {
            let mut body = message();
            body[name] = Value::Null;
            let answer = decoded::<MessageRequest>(&body.to_string())
                .await
                .expect_err(name);
            assert_null_refused(answer, name);
        }
        // Left out, each is its default.
        let request = decoded::<MessageRequest>(&message().to_string())
            .await
            .expect("a message");
        assert!(request.to.is_none() && request.sender.is_none() && request.status.is_none());
    }

    #[tokio::test]
    async fn to_id_must_be_the_account_for_the_whole_account() {
        let mut body = message();
        body["to"] = json!({"id": "5f0c8a3e2b1d4c0087654321", "target": "account"});
        let request = decoded::<MessageRequest>(&body.to_string())
            .await
            .expect("decodes");
        let account = AccountId::parse("5f0c8a3e2b1d4c0012345678").expect("an account");
        let errors = job(request, account, MessageId::generate().to_hex())
            .validate_all(&Default::default())
            .expect_err("another account's id");
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["to.id"]);
        assert!(
            errors[0].reason.contains("must equal accountId"),
            "{}",
            errors[0].reason
        );
    }
}
