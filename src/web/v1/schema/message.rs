//! The schema of `POST /v1/messages`' body.

use herald_jobs::{
    ids::{IDEMPOTENCY_KEY_MAX_LEN, IDEMPOTENCY_KEY_PATTERN, OBJECT_ID_PATTERN},
    message::{ACTION_URL_PATTERN, CATEGORY_PATTERN, MAX_ACTION_URL_BYTES, SYSTEM_SENDER_ID},
    MessageLimits, MessageStatus, RecipientTarget, SenderFrom,
};
use utoipa::openapi::{
    schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type},
    Schema,
};

use super::{
    account_in_body, bytes_limited, choice, not_blank, object, object_id, one_of, string,
    MAX_JSON_BYTES_EXTENSION, MAX_SECONDS_AHEAD_EXTENSION,
};

/// A key of `data`: not empty, and not starting with `$`.
const DATA_KEY_PATTERN: &str = "^[^$]";

/// The body: the message's fields with its id named one way or the other,
/// `messageId` or `idempotencyKey` (each alternative lists only its own, and
/// no other property is allowed, so a body with both matches neither).
pub(super) fn message_request(limits: &MessageLimits) -> Schema {
    let with_id = message_fields(limits).property(
        "messageId",
        object_id(
            "`_id` of the document, 24-hex; only with a token that reaches every account \
             (any other is refused: it could take another account's id). Generated, \
             unpredictable, when neither it nor `idempotencyKey` is sent.",
        ),
    );
    let with_key = message_fields(limits).property(
        "idempotencyKey",
        string(&format!(
            "The caller's name for this message, unique within its account: a retried \
             request with the same key stores and pushes the message once. 1 to \
             {IDEMPOTENCY_KEY_MAX_LEN} letters, digits or `_ . : @ = -`."
        ))
        .pattern(Some(IDEMPOTENCY_KEY_PATTERN))
        .max_length(Some(IDEMPOTENCY_KEY_MAX_LEN)),
    );
    AnyOfBuilder::new()
        .description(Some(
            "A message to store and push. Its id: `messageId` (trusted callers only), \
             `idempotencyKey`, or neither (generated); not both. With `to.target` \
             `account`, `to.id` must equal `accountId` (a rule between two values, which \
             JSON Schema cannot state). An optional property is left out for its default: \
             `null` is refused with 400 naming it.",
        ))
        .item(with_id)
        .item(with_key)
        .into()
}

/// `data`: a JSON object of at most `message.max_data_bytes` of JSON, two
/// levels deep, whose keys are neither empty nor start with `$`.
fn data(limits: &MessageLimits) -> Schema {
    object()
        .description(Some(format!(
            "The app's own JSON object, stored and pushed with the message as it is: at most \
             {} bytes of JSON, two levels deep (each value a scalar, an array of scalars or \
             an object of scalars), no key empty or starting with `$` (else 400 naming \
             `data`)",
            limits.max_data_bytes
        )))
        .property_names(Some(string("A key").pattern(Some(DATA_KEY_PATTERN))))
        .additional_properties(Some(data_value()))
        .extensions(Some(
            [(
                MAX_JSON_BYTES_EXTENSION,
                serde_json::Value::from(limits.max_data_bytes),
            )]
            .into_iter()
            .collect(),
        ))
        .into()
}

/// A value inside `data`: a scalar, an array of scalars, or an object of
/// scalars whose keys are neither empty nor start with `$`.
fn data_value() -> Schema {
    let scalar = || {
        ObjectBuilder::new().schema_type(SchemaType::from_iter([
            Type::String,
            Type::Number,
            Type::Boolean,
            Type::Null,
        ]))
    };
    let inner_object = object()
        .property_names(Some(string("A key").pattern(Some(DATA_KEY_PATTERN))))
        .additional_properties(Some(scalar()));
    let array = utoipa::openapi::schema::ArrayBuilder::new().items(scalar());
    AnyOfBuilder::new()
        .item(scalar())
        .item(array)
        .item(inner_object)
        .into()
}

/// `sendAt`: a date-time at most `message.max_schedule_days` ahead.
fn send_at(limits: &MessageLimits) -> Schema {
    let ahead = limits.max_schedule_ahead.as_secs();
    string(&format!(
        "When to store and push the message, RFC 3339 (default: at once). A time already \
         past sends at once; one more than {} days ({ahead} seconds) after the server's \
         clock is refused with 400 naming `sendAt`. Until then the message can be recalled \
         (`POST /v1/accounts/{{accountId}}/messages/{{messageId}}/recall`).",
        ahead / 86_400
    ))
    .schema_type(SchemaType::new(Type::String))
    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
    .extensions(Some(
        [(MAX_SECONDS_AHEAD_EXTENSION, serde_json::Value::from(ahead))]
            .into_iter()
            .collect(),
    ))
    .into()
}

/// Every property of the body but the id's.
fn message_fields(limits: &MessageLimits) -> ObjectBuilder {
    let senders = SenderFrom::ALL.iter().map(|from| {
        let id = match from {
            SenderFrom::System => string("`system`, or an ObjectId some producers use for it")
                .pattern(Some(format!(
                    "^({SYSTEM_SENDER_ID}|{})$",
                    OBJECT_ID_PATTERN
                        .trim_start_matches('^')
                        .trim_end_matches('$')
                )))
                .into(),
            SenderFrom::User => object_id("The user, 24-hex"),
        };
        object()
            .property("id", id)
            .property("from", one_of([from.as_str()], "Who sent it"))
            .required("id")
            .required("from")
    });
    let recipients = RecipientTarget::ALL.iter().map(|target| {
        let id = match target {
            RecipientTarget::Account => object_id(
                "The account: must equal `accountId` (without it, the token's account); \
                 any other is refused with 400 naming `to.id`",
            ),
            RecipientTarget::User => object_id("The user, 24-hex"),
        };
        object()
            .property("id", id)
            .property("target", one_of([target.as_str()], "Who receives it"))
            .required("id")
            .required("target")
    });
    object()
        .property("accountId", account_in_body())
        .property(
            "title",
            bytes_limited(
                not_blank(&format!(
                    "Headline; not blank, at most {} bytes of UTF-8",
                    limits.max_title_bytes
                )),
                limits.max_title_bytes,
            ),
        )
        .property(
            "content",
            bytes_limited(
                string(&format!(
                    "Body, may hold HTML; at most {} bytes of UTF-8",
                    limits.max_content_bytes
                )),
                limits.max_content_bytes,
            ),
        )
        .property(
            "sender",
            choice(senders, "Who sent it (default: the system)"),
        )
        .property(
            "to",
            choice(
                recipients,
                "Who receives it (default: the whole account): a user of the account, or the \
                 account itself, whose `to.id` must then equal `accountId` (without it, the \
                 token's account). Left out for the default; `null` is refused.",
            ),
        )
        .property(
            "status",
            one_of(
                MessageStatus::ALL.iter().map(|s| s.as_str()),
                "Shown with the message (default `success`)",
            ),
        )
        .property("sendAt", send_at(limits))
        .property(
            "category",
            string(
                "A short label the inbox groups and filters by (`billing`, `export`): 1 to 32 \
                 letters, digits or `_ . -`",
            )
            .pattern(Some(CATEGORY_PATTERN)),
        )
        .property(
            "actionUrl",
            string(&format!(
                "Where the message leads when clicked: an `https://` URL, or a path of the \
                 app's own site starting with `/` (not `//`); printable ASCII without spaces \
                 or backslashes (percent-encode the rest), at most {MAX_ACTION_URL_BYTES} bytes"
            ))
            .pattern(Some(ACTION_URL_PATTERN))
            .max_length(Some(MAX_ACTION_URL_BYTES)),
        )
        .property("data", data(limits))
        .property(
            "expiresAt",
            string(
                "When to remove the stored message, with every user's read mark of it, RFC \
                 3339 (default: kept, or removed `message.keep_days` after it was stored). \
                 Must be after `sendAt`, else 400 naming `expiresAt`. A message whose time \
                 has passed before it is stored is neither stored nor pushed.",
            )
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .required("title")
        .required("content")
}
