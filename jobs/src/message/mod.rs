//! The `send_message` job: a notification to store and push.
//!
//! The payload on the wire is [`SendMessage`]: plain strings, exactly as a
//! producer in any language writes them. The worker never trusts it; it calls
//! [`SendMessage::validate`], which either returns a [`ValidMessage`] built from
//! typed parts or a [`ValidationError`] naming the field that is wrong.
//!
//! ```json
//! {
//!   "messageId": "65a1f0c2e4b0a1b2c3d4e5f6",
//!   "accountId": "5f0c8a3e2b1d4c0012345678",
//!   "title": "Export ready",
//!   "content": "<b>customers.csv</b> can be downloaded",
//!   "sender": { "id": "system", "from": "system" },
//!   "to": { "id": "5f0c8a3e2b1d4c0012345678", "target": "account" },
//!   "status": "success"
//! }
//! ```
//!
//! A producer may add `"sendAt"` (RFC 3339): the message is then scheduled,
//! stored and pushed at that time rather than at once ([`SendMessage::send_at`]).
//!
//! The enums of the model are in `kinds`, the typed result in `valid`.

mod kinds;
mod valid;

use bson::oid::ObjectId;
use serde::{Deserialize, Serialize};

pub use kinds::{MessageStatus, RecipientTarget, SenderFrom};
pub use valid::{ValidMessage, ValidRecipient, ValidSender};

use crate::{
    error::{keep, ValidationError},
    ids::{parse_object_id, AccountId, MessageId, UserId},
};

/// `sender.id` of a message from the system (beside the `from` value `system`).
pub const SYSTEM_SENDER_ID: &str = "system";

/// Default cap on `content`, in bytes of UTF-8: 64 KiB.
pub const DEFAULT_MAX_CONTENT_BYTES: usize = 64 * 1024;
/// Default cap on `title`, in bytes of UTF-8.
pub const DEFAULT_MAX_TITLE_BYTES: usize = 1024;

/// The `send_message` payload as it travels through Redis (camelCase JSON).
///
/// Every field is a string so that a malformed value from another language
/// still decodes and can be rejected with an error naming it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct SendMessage {
    /// `_id` of the message document, 24-hex. Chosen by the producer so that a
    /// retried job finds the document it already stored.
    pub message_id: String,
    /// The account the message belongs to, 24-hex.
    pub account_id: String,
    /// Short headline; must not be blank.
    pub title: String,
    /// Body; may hold HTML, stored as given.
    pub content: String,
    /// Who sent it.
    pub sender: Sender,
    /// Who receives it.
    pub to: Recipient,
    /// `warning`, `error` or `success`.
    pub status: String,
    /// When to store and push it, RFC 3339 (`2026-12-24T09:00:00Z`); absent:
    /// at once. A time already past means at once; one further ahead than
    /// [`MessageLimits::max_schedule_ahead`] is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<String>,
    /// When the stored message is removed, RFC 3339; absent: kept (or for
    /// the worker's `message.keep_days`). Must be after `sendAt`. A message
    /// whose time has passed before it is stored is neither stored nor
    /// pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// A short label the inbox groups and filters by (`billing`,
    /// `export`): 1 to 32 letters, digits or `_ . -`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Where the message leads when clicked: an `https://` URL or a path on
    /// the app's own site (`/exports/42`), at most 2,048 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_url: Option<String>,
    /// A small JSON object for the app's own use, stored and pushed as it
    /// is; at most [`MessageLimits::max_data_bytes`] of JSON, no key
    /// starting with `$`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// The W3C `traceparent` of the code that enqueued it
    /// ([`crate::TraceParent`]): the worker's spans continue that trace. One
    /// not of the W3C form is ignored (the job starts a trace of its own),
    /// never refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// What a `category` may be.
pub const CATEGORY_PATTERN: &str = "^[A-Za-z0-9_.-]{1,32}$";
/// What an `actionUrl` may be, as a regular expression; with
/// [`MAX_ACTION_URL_BYTES`], the rule of [`SendMessage::action_url`].
pub const ACTION_URL_PATTERN: &str =
    r#"^(https://[!"$-.0->A-\[\]-~][!-\[\]-~]*|/([!-.0-\[\]-~][!-\[\]-~]*)?)$"#;
/// Longest `actionUrl`, in bytes.
pub const MAX_ACTION_URL_BYTES: usize = 2048;
/// Default of [`MessageLimits::max_data_bytes`]: 4 KiB.
pub const DEFAULT_MAX_DATA_BYTES: usize = 4096;

/// `sender` on the wire: `{"id": "system" | HEX, "from": "system" | "user"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct Sender {
    /// `"system"` or a user's 24-hex id.
    pub id: String,
    /// `"system"` or `"user"`.
    pub from: String,
}

/// `to` on the wire: `{"id": HEX, "target": "account" | "user"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct Recipient {
    /// The account's or the user's 24-hex id.
    pub id: String,
    /// `"account"` or `"user"`.
    pub target: String,
}

crate::object_only!(SendMessage, "a send_message job (a JSON object)");
crate::object_only!(Sender, "a sender object {\"id\", \"from\"}");
crate::object_only!(Recipient, "a recipient object {\"id\", \"target\"}");

impl SendMessage {
    /// Starts a message from the system to a whole account, with status
    /// `success` and a freshly generated message id. Adjust it with the
    /// builder methods below, then enqueue it with [`crate::Producer`].
    pub fn new(account: AccountId, title: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            message_id: MessageId::generate().to_hex(),
            account_id: account.to_hex(),
            title: title.into(),
            content: content.into(),
            sender: Sender {
                id: SYSTEM_SENDER_ID.to_owned(),
                from: SenderFrom::System.as_str().to_owned(),
            },
            to: Recipient {
                id: account.to_hex(),
                target: RecipientTarget::Account.as_str().to_owned(),
            },
            status: MessageStatus::Success.as_str().to_owned(),
            send_at: None,
            expires_at: None,
            category: None,
            action_url: None,
            data: None,
            traceparent: None,
        }
    }

    /// Carries `trace` so the worker's spans continue it (see
    /// [`SendMessage::traceparent`]).
    pub fn traceparent(mut self, trace: &crate::TraceParent) -> Self {
        self.traceparent = Some(trace.to_string());
        self
    }

    /// Files the message under `category` (see [`SendMessage::category`]).
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// Makes the message lead to `url` (see [`SendMessage::action_url`]).
    pub fn action_url(mut self, url: impl Into<String>) -> Self {
        self.action_url = Some(url.into());
        self
    }

    /// Attaches `data`, a JSON object (see [`SendMessage::data`]).
    pub fn data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }

    /// Removes the stored message at `at` (see [`SendMessage::expires_at`]).
    pub fn expires_at(mut self, at: chrono::DateTime<chrono::Utc>) -> Self {
        self.expires_at = Some(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        self
    }

    /// Schedules the message: stored and pushed at `at` instead of at once.
    pub fn send_at(mut self, at: chrono::DateTime<chrono::Utc>) -> Self {
        self.send_at = Some(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        self
    }

    /// Sets the status shown with the message.
    pub fn status(mut self, status: MessageStatus) -> Self {
        self.status = status.as_str().to_owned();
        self
    }

    /// Addresses the message to one user of the account instead of all of it.
    pub fn to_user(mut self, user: UserId) -> Self {
        self.to = Recipient {
            id: user.to_hex(),
            target: RecipientTarget::User.as_str().to_owned(),
        };
        self
    }

    /// Marks the message as sent by a user rather than by the system.
    pub fn sent_by_user(mut self, user: UserId) -> Self {
        self.sender = Sender {
            id: user.to_hex(),
            from: SenderFrom::User.as_str().to_owned(),
        };
        self
    }

    /// Uses a given message id instead of the generated one.
    pub fn with_message_id(mut self, id: MessageId) -> Self {
        self.message_id = id.to_hex();
        self
    }

    /// Checks every field and returns the typed message, or the first error
    /// found, naming its field.
    pub fn validate(&self, limits: &MessageLimits) -> Result<ValidMessage, ValidationError> {
        self.validate_all(limits)
            .map_err(|mut errors| errors.remove(0))
    }

    /// Checks every field and returns the typed message, or every error
    /// found (at least one), each naming its field: what an API answers a
    /// producer with, so that one round trip shows all that is wrong.
    pub fn validate_all(
        &self,
        limits: &MessageLimits,
    ) -> Result<ValidMessage, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let id = keep(
            &mut errors,
            parse_object_id("messageId", &self.message_id).map(MessageId::from),
        );
        let account = keep(
            &mut errors,
            parse_object_id("accountId", &self.account_id).map(AccountId::from),
        );
        let title = keep(&mut errors, check_title(&self.title, limits));
        let content = keep(
            &mut errors,
            check_size("content", &self.content, limits.max_content_bytes),
        );
        let status = keep(
            &mut errors,
            self.status
                .parse::<MessageStatus>()
                .map_err(|reason| ValidationError::new("status", reason)),
        );
        let sender = keep(&mut errors, self.sender.validate());
        let to = keep(&mut errors, self.to.validate(account));
        let send_at = keep(
            &mut errors,
            check_send_at(self.send_at.as_deref(), limits, chrono::Utc::now()),
        );
        let expires_at = keep(
            &mut errors,
            check_expires_at(self.expires_at.as_deref(), send_at.flatten()),
        );
        let category = keep(&mut errors, check_category(self.category.as_deref()));
        let action_url = keep(&mut errors, check_action_url(self.action_url.as_deref()));
        let data = keep(&mut errors, check_data(self.data.as_ref(), limits));
        match (
            (id, account, title, content, status),
            (sender, to, send_at, expires_at),
            (category, action_url, data),
        ) {
            (
                (Some(id), Some(account), Some(()), Some(()), Some(status)),
                (Some(sender), Some(to), Some(send_at), Some(expires_at)),
                (Some(category), Some(action_url), Some(data)),
            ) if errors.is_empty() => Ok(ValidMessage {
                id,
                account,
                title: self.title.clone(),
                content: self.content.clone(),
                sender,
                to,
                status,
                send_at,
                expires_at,
                category,
                action_url,
                data,
                traceparent: self
                    .traceparent
                    .as_deref()
                    .and_then(|text| crate::TraceParent::parse(text).ok()),
            }),
            _ => Err(errors),
        }
    }
}

/// Whether `text` is a category: 1 to 32 of `A-Z a-z 0-9 _ . -`
/// ([`CATEGORY_PATTERN`]).
pub fn is_category(text: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    !text.is_empty() && text.len() <= 32 && text.chars().all(allowed)
}

/// `category`: 1 to 32 of `A-Z a-z 0-9 _ . -` ([`CATEGORY_PATTERN`]).
fn check_category(text: Option<&str>) -> Result<Option<String>, ValidationError> {
    let Some(text) = text else {
        return Ok(None);
    };
    if !is_category(text) {
        return Err(ValidationError::new(
            "category",
            format!("'{text}' must be 1 to 32 letters, digits, '_', '.' or '-'"),
        ));
    }
    Ok(Some(text.to_owned()))
}

/// `actionUrl`: `https://` and a host, or a path of the app's own site
/// (`/...`, not `//`, which a browser reads as another host); printable
/// ASCII only (anything else is percent-encoded in a URL), no space and no
/// backslash (which browsers read as `/`). [`ACTION_URL_PATTERN`] says the
/// same as a regular expression.
fn check_action_url(text: Option<&str>) -> Result<Option<String>, ValidationError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let refuse = |why: &str| Err(ValidationError::new("actionUrl", format!("'{text}' {why}")));
    if text.len() > MAX_ACTION_URL_BYTES {
        return Err(ValidationError::new(
            "actionUrl",
            format!(
                "is {} bytes, over the limit of {MAX_ACTION_URL_BYTES}",
                text.len()
            ),
        ));
    }
    if !text
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b'\\')
    {
        return refuse(
            "must be printable ASCII without spaces or backslashes (percent-encode the rest)",
        );
    }
    let host_follows = text
        .strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with(['/', '?', '#', '@']));
    let own_path = text.starts_with('/') && !text.starts_with("//");
    if host_follows || own_path {
        Ok(Some(text.to_owned()))
    } else {
        refuse("must be an https:// URL or a path starting with '/'")
    }
}

/// `data`: a JSON object of at most `limits.max_data_bytes` of JSON, two
/// levels deep: each value a scalar, an array of scalars, or an object of
/// scalars; no empty key, and none starting with `$`, which MongoDB
/// reserves. (The API's
/// schema states the same shape, so what one accepts the other does.)
fn check_data(
    value: Option<&serde_json::Value>,
    limits: &MessageLimits,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, ValidationError> {
    use serde_json::Value;
    let Some(value) = value else {
        return Ok(None);
    };
    let refuse = |why: String| Err(ValidationError::new("data", why));
    let Value::Object(object) = value else {
        return refuse("must be a JSON object".to_owned());
    };
    let size = serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len());
    if size > limits.max_data_bytes {
        return refuse(format!(
            "is {size} bytes of JSON, over the limit of {} bytes",
            limits.max_data_bytes
        ));
    }
    let scalar = |value: &Value| !matches!(value, Value::Array(_) | Value::Object(_));
    let reserved = |key: &String| key.is_empty() || key.starts_with('$');
    for (key, value) in object {
        if reserved(key) {
            return refuse(format!(
                "has the key '{key}'; keys must not be empty or start with '$'"
            ));
        }
        let fits = match value {
            Value::Array(items) => items.iter().all(scalar),
            Value::Object(inner) => {
                if let Some(key) = inner.keys().find(|key| reserved(key)) {
                    return refuse(format!(
                        "has the key '{key}'; keys must not be empty or start with '$'"
                    ));
                }
                inner.values().all(scalar)
            }
            _ => true,
        };
        if !fits {
            return refuse(format!(
                "'{key}' is nested too deep: a value is a scalar, an array of scalars or an \
                 object of scalars"
            ));
        }
    }
    Ok(Some(object.clone()))
}

/// `text` as an RFC 3339 time, or a refusal naming `field`.
fn rfc3339(
    field: &'static str,
    text: &str,
) -> Result<chrono::DateTime<chrono::Utc>, ValidationError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&chrono::Utc))
        .map_err(|_| {
            ValidationError::new(
                field,
                format!("'{text}' is not an RFC 3339 time like 2026-12-24T09:00:00Z"),
            )
        })
}

/// `expiresAt` as a time: `None` when absent; refused when it is not RFC
/// 3339 or not after `send_at`. Not compared with the clock: a job that
/// runs after it skips its message instead (the worker's handler), so a
/// late run is not a failure.
fn check_expires_at(
    text: Option<&str>,
    send_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ValidationError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let at = rfc3339("expiresAt", text)?;
    match send_at {
        Some(send_at) if at <= send_at => Err(ValidationError::new(
            "expiresAt",
            format!("'{text}' must be after sendAt"),
        )),
        _ => Ok(Some(at)),
    }
}

/// `sendAt` as a time: `None` when absent; refused when it is not RFC 3339
/// or lies further than `limits.max_schedule_ahead` after `now`. A time in
/// the past is kept (the message goes at once).
fn check_send_at(
    text: Option<&str>,
    limits: &MessageLimits,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ValidationError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let at = rfc3339("sendAt", text)?;
    let ahead = at.signed_duration_since(now);
    let limit =
        chrono::Duration::from_std(limits.max_schedule_ahead).unwrap_or(chrono::Duration::MAX);
    if ahead > limit {
        return Err(ValidationError::new(
            "sendAt",
            format!(
                "'{text}' is more than {} days ahead, the longest a message may be scheduled",
                limits.max_schedule_ahead.as_secs() / 86_400
            ),
        ));
    }
    Ok(Some(at))
}

fn check_title(title: &str, limits: &MessageLimits) -> Result<(), ValidationError> {
    if title.trim().is_empty() {
        return Err(ValidationError::new("title", "must not be empty"));
    }
    check_size("title", title, limits.max_title_bytes)
}

fn check_size(field: &'static str, value: &str, max_bytes: usize) -> Result<(), ValidationError> {
    if value.len() > max_bytes {
        return Err(ValidationError::new(
            field,
            format!(
                "is {} bytes, over the limit of {max_bytes} bytes",
                value.len()
            ),
        ));
    }
    Ok(())
}

impl Sender {
    fn validate(&self) -> Result<ValidSender, ValidationError> {
        let from = self
            .from
            .parse::<SenderFrom>()
            .map_err(|reason| ValidationError::new("sender.from", reason))?;
        match from {
            SenderFrom::User => Ok(ValidSender::User(UserId::from(parse_object_id(
                "sender.id",
                &self.id,
            )?))),
            SenderFrom::System if self.id == SYSTEM_SENDER_ID => Ok(ValidSender::System),
            SenderFrom::System => {
                // Older producers identify the system sender by an ObjectId.
                let oid = ObjectId::parse_str(&self.id).map_err(|_| {
                    ValidationError::new(
                        "sender.id",
                        format!(
                            "'{}' must be \"system\" or a 24-character hex ObjectId when sender.from is \"system\"",
                            self.id
                        ),
                    )
                })?;
                Ok(ValidSender::SystemWithId(oid))
            }
        }
    }
}

impl Recipient {
    /// The typed recipient; `account` is `None` when the payload's own
    /// account id was invalid (then only the shape of `to` is checked).
    fn validate(&self, account: Option<AccountId>) -> Result<ValidRecipient, ValidationError> {
        let target = self
            .target
            .parse::<RecipientTarget>()
            .map_err(|reason| ValidationError::new("to.target", reason))?;
        let id = parse_object_id("to.id", &self.id)?;
        match target {
            RecipientTarget::Account => match account {
                Some(account) if id == account.object_id() => Ok(ValidRecipient::Account(account)),
                Some(account) => Err(ValidationError::new(
                    "to.id",
                    format!(
                        "'{}' must equal accountId '{}' when to.target is \"account\"",
                        self.id, account
                    ),
                )),
                None => Ok(ValidRecipient::Account(AccountId::from(id))),
            },
            RecipientTarget::User => Ok(ValidRecipient::User(UserId::from(id))),
        }
    }
}

/// Size limits applied by [`SendMessage::validate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimits {
    /// Largest accepted `content`, in bytes.
    pub max_content_bytes: usize,
    /// Largest accepted `title`, in bytes.
    pub max_title_bytes: usize,
    /// Furthest ahead `sendAt` may be.
    pub max_schedule_ahead: std::time::Duration,
    /// Largest `data`, in bytes of JSON.
    pub max_data_bytes: usize,
}

/// Default of [`MessageLimits::max_schedule_ahead`]: 30 days.
pub const DEFAULT_MAX_SCHEDULE_AHEAD: std::time::Duration =
    std::time::Duration::from_secs(30 * 86_400);

impl Default for MessageLimits {
    fn default() -> Self {
        Self {
            max_content_bytes: DEFAULT_MAX_CONTENT_BYTES,
            max_title_bytes: DEFAULT_MAX_TITLE_BYTES,
            max_schedule_ahead: DEFAULT_MAX_SCHEDULE_AHEAD,
            max_data_bytes: DEFAULT_MAX_DATA_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "5f0c8a3e2b1d4c0012345678";
    const USER: &str = "5f0c8a3e2b1d4c00aaaaaaaa";

    fn account() -> AccountId {
        AccountId::parse(ACCOUNT).unwrap()
    }

    fn limits() -> MessageLimits {
        MessageLimits::default()
    }

    fn field_of(job: SendMessage) -> &'static str {
        job.validate(&limits()).unwrap_err().field
    }

    #[test]
    fn a_default_message_is_valid_and_addressed_to_the_account() {
        let job = SendMessage::new(account(), "Hello", "<p>world</p>");
        let valid = job.validate(&limits()).unwrap();
        assert_eq!(valid.account, account());
        assert_eq!(valid.to, ValidRecipient::Account(account()));
        assert_eq!(valid.sender, ValidSender::System);
        assert_eq!(valid.status, MessageStatus::Success);
        assert_eq!(valid.id.to_hex(), job.message_id);
    }

    #[test]
    fn builder_methods_set_user_sender_recipient_and_status() {
        let user = UserId::parse(USER).unwrap();
        let valid = SendMessage::new(account(), "t", "c")
            .to_user(user)
            .sent_by_user(user)
            .status(MessageStatus::Warning)
            .validate(&limits())
            .unwrap();
        assert_eq!(valid.to, ValidRecipient::User(user));
        assert_eq!(valid.sender, ValidSender::User(user));
        assert_eq!(valid.status, MessageStatus::Warning);
    }

    #[test]
    fn a_valid_message_becomes_a_job_that_validates_to_it_again() {
        let user = UserId::parse(USER).unwrap();
        let mut older = SendMessage::new(account(), " spaced title ", "");
        older.sender.id = USER.to_owned();
        for job in [
            SendMessage::new(account(), "Hello", "<p>world</p>"),
            SendMessage::new(account(), "t", "c")
                .to_user(user)
                .sent_by_user(user)
                .status(MessageStatus::Error),
            older,
        ] {
            let valid = job.validate(&limits()).unwrap();
            let again = valid.to_job();
            assert_eq!(again, job, "the canonical job is the job itself here");
            assert_eq!(again.validate(&limits()).unwrap(), valid);
        }
    }

    #[test]
    fn malformed_ids_name_their_field() {
        let mut job = SendMessage::new(account(), "t", "c");
        job.account_id = "xyz".into();
        let err = job.validate(&limits()).unwrap_err();
        assert_eq!(err.field, "accountId");
        assert_eq!(
            err.to_string(),
            "invalid job field `accountId`: 'xyz' is not a 24-character hex ObjectId"
        );

        let mut job = SendMessage::new(account(), "t", "c");
        job.message_id = "1234".into();
        assert_eq!(field_of(job), "messageId");

        let mut job = SendMessage::new(account(), "t", "c");
        job.sender = Sender {
            id: "nope".into(),
            from: "user".into(),
        };
        assert_eq!(field_of(job), "sender.id");

        let mut job = SendMessage::new(account(), "t", "c").to_user(UserId::parse(USER).unwrap());
        job.to.id = "00".into();
        assert_eq!(field_of(job), "to.id");
    }

    #[test]
    fn unknown_enum_values_are_refused_with_the_accepted_list() {
        let mut job = SendMessage::new(account(), "t", "c");
        job.status = "info".into();
        let err = job.validate(&limits()).unwrap_err();
        assert_eq!(err.field, "status");
        assert!(
            err.reason.contains("\"warning\", \"error\", \"success\""),
            "{err}"
        );

        let mut job = SendMessage::new(account(), "t", "c");
        job.sender.from = "robot".into();
        assert_eq!(field_of(job), "sender.from");

        let mut job = SendMessage::new(account(), "t", "c");
        job.to.target = "group".into();
        assert_eq!(field_of(job), "to.target");
    }

    #[test]
    fn blank_titles_are_refused() {
        for title in ["", "   ", "\n\t"] {
            assert_eq!(field_of(SendMessage::new(account(), title, "c")), "title");
        }
    }

    #[test]
    fn content_at_the_limit_passes_and_one_byte_more_fails() {
        let limits = MessageLimits {
            max_content_bytes: 10,
            ..MessageLimits::default()
        };
        assert!(SendMessage::new(account(), "t", "x".repeat(10))
            .validate(&limits)
            .is_ok());
        let err = SendMessage::new(account(), "t", "x".repeat(11))
            .validate(&limits)
            .unwrap_err();
        assert_eq!(err.field, "content");
        assert!(err.reason.contains("11 bytes"), "{err}");
    }

    #[test]
    fn the_content_limit_counts_bytes_not_characters() {
        let limits = MessageLimits {
            max_content_bytes: 6,
            ..MessageLimits::default()
        };
        // Three CJK characters are nine bytes of UTF-8.
        assert_eq!(
            SendMessage::new(account(), "t", "消息中")
                .validate(&limits)
                .unwrap_err()
                .field,
            "content"
        );
    }

    #[test]
    fn account_messages_must_target_their_own_account() {
        let mut job = SendMessage::new(account(), "t", "c");
        job.to.id = USER.into();
        let err = job.validate(&limits()).unwrap_err();
        assert_eq!(err.field, "to.id");
        assert!(err.reason.contains("must equal accountId"), "{err}");
    }

    #[test]
    fn system_sender_may_carry_an_object_id() {
        let mut job = SendMessage::new(account(), "t", "c");
        job.sender.id = USER.into();
        let valid = job.validate(&limits()).unwrap();
        assert!(matches!(valid.sender, ValidSender::SystemWithId(_)));
        assert_eq!(valid.sender.id_string(), USER);
    }

    #[test]
    fn the_wire_shape_is_camel_case() {
        let job = SendMessage::new(account(), "t", "c");
        let json = serde_json::to_value(&job).unwrap();
        let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "accountId",
                "content",
                "messageId",
                "sender",
                "status",
                "title",
                "to"
            ]
        );
        assert_eq!(
            json["sender"],
            serde_json::json!({"id": "system", "from": "system"})
        );
        assert_eq!(
            json["to"],
            serde_json::json!({"id": ACCOUNT, "target": "account"})
        );
    }

    #[test]
    fn validate_all_names_every_wrong_field_at_once() {
        let mut job = SendMessage::new(account(), " ", "c");
        job.account_id = "nope".into();
        job.status = "fine".into();
        job.sender.from = "robot".into();
        job.to.target = "group".into();
        let fields: Vec<&str> = job
            .validate_all(&limits())
            .unwrap_err()
            .iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            ["accountId", "title", "status", "sender.from", "to.target"]
        );
        // The first of them is what `validate` reports.
        assert_eq!(field_of(job), "accountId");
    }

    #[test]
    fn send_at_schedules_within_the_limit_and_a_past_time_sends_at_once() {
        let now = chrono::Utc::now();
        let ahead = now + chrono::Duration::hours(1);
        let valid = SendMessage::new(account(), "t", "c")
            .send_at(ahead)
            .validate(&limits())
            .unwrap();
        let at = valid.send_at.expect("scheduled");
        assert_eq!(at.timestamp_millis(), ahead.timestamp_millis());
        // Due at the whole second at or after it, never before.
        assert_eq!(
            valid.due_at(),
            (ahead.timestamp_millis() as u64).div_ceil(1000)
        );
        assert!(valid.due_at() as i64 * 1000 >= ahead.timestamp_millis());
        // Its job carries it in the canonical spelling and validates back.
        assert_eq!(valid.to_job().validate(&limits()).unwrap(), valid);
        // A past time is kept: the job is due at once.
        let past = SendMessage::new(account(), "t", "c")
            .send_at(now - chrono::Duration::days(400))
            .validate(&limits())
            .unwrap();
        assert!(past.send_at.is_some());
        // Without it: due at once, and the payload has no `sendAt`.
        let plain = SendMessage::new(account(), "t", "c");
        assert_eq!(plain.validate(&limits()).unwrap().due_at(), 0);
        assert!(serde_json::to_value(&plain)
            .unwrap()
            .get("sendAt")
            .is_none());
    }

    #[test]
    fn send_at_too_far_ahead_or_not_rfc3339_is_refused_naming_it() {
        let limits = MessageLimits {
            max_schedule_ahead: std::time::Duration::from_secs(86_400),
            ..MessageLimits::default()
        };
        let now = chrono::Utc::now();
        assert!(SendMessage::new(account(), "t", "c")
            .send_at(now + chrono::Duration::hours(23))
            .validate(&limits)
            .is_ok());
        let err = SendMessage::new(account(), "t", "c")
            .send_at(now + chrono::Duration::hours(25))
            .validate(&limits)
            .unwrap_err();
        assert_eq!(err.field, "sendAt");
        assert!(err.reason.contains("1 days ahead"), "{err}");
        for bad in ["tomorrow", "2026-12-24", "2026-12-24 09:00", ""] {
            let mut job = SendMessage::new(account(), "t", "c");
            job.send_at = Some(bad.to_owned());
            let err = job.validate(&limits).unwrap_err();
            assert_eq!(err.field, "sendAt", "{bad}");
            assert!(err.reason.contains("RFC 3339"), "{err}");
        }
        // Any offset is read as the instant it names.
        let mut job = SendMessage::new(account(), "t", "c");
        job.send_at = Some("2020-01-01T08:00:00+08:00".to_owned());
        let at = job.validate(&limits).unwrap().send_at.unwrap();
        assert_eq!(at.to_rfc3339(), "2020-01-01T00:00:00+00:00");
    }

    #[test]
    fn expires_at_is_kept_and_must_come_after_send_at() {
        let now = chrono::Utc::now();
        let valid = SendMessage::new(account(), "t", "c")
            .expires_at(now + chrono::Duration::days(7))
            .validate(&limits())
            .unwrap();
        assert!(valid.expires_at.is_some());
        assert_eq!(valid.to_job().validate(&limits()).unwrap(), valid);
        // A time already past is not refused: a late run skips the message.
        assert!(SendMessage::new(account(), "t", "c")
            .expires_at(now - chrono::Duration::days(1))
            .validate(&limits())
            .is_ok());
        let err = SendMessage::new(account(), "t", "c")
            .send_at(now + chrono::Duration::hours(2))
            .expires_at(now + chrono::Duration::hours(1))
            .validate(&limits())
            .unwrap_err();
        assert_eq!(err.field, "expiresAt");
        assert!(err.reason.contains("after sendAt"), "{err}");
        let mut job = SendMessage::new(account(), "t", "c");
        job.expires_at = Some("next week".to_owned());
        assert_eq!(job.validate(&limits()).unwrap_err().field, "expiresAt");
    }

    #[test]
    fn category_action_url_and_data_are_checked_each_naming_its_field() {
        let valid = SendMessage::new(account(), "t", "c")
            .category("billing.invoices")
            .action_url("https://app.example.com/invoices/42?tab=pay")
            .data(serde_json::json!({"invoice": 42, "skus": ["a", 2], "by": {"id": 7, "x": null}}))
            .validate(&limits())
            .unwrap();
        assert_eq!(valid.category.as_deref(), Some("billing.invoices"));
        assert_eq!(valid.data.as_ref().map(|d| d.len()), Some(3));
        assert_eq!(valid.to_job().validate(&limits()).unwrap(), valid);
        assert!(SendMessage::new(account(), "t", "c")
            .action_url("/exports/42#top")
            .validate(&limits())
            .is_ok());
        let field = |job: SendMessage| job.validate(&limits()).unwrap_err().field;
        for bad in ["", "has space", "x".repeat(33).as_str(), "é", "a/b"] {
            assert_eq!(
                field(SendMessage::new(account(), "t", "c").category(bad)),
                "category",
                "{bad}"
            );
        }
        for bad in [
            "http://app.example.com/",
            "javascript:alert(1)",
            "//evil.example.com/x",
            "https://",
            "https:///path",
            "https://@evil.example.com",
            "/a b",
            "/a\\b",
            "relative/path",
            &format!("/{}", "x".repeat(MAX_ACTION_URL_BYTES)),
        ] {
            assert_eq!(
                field(SendMessage::new(account(), "t", "c").action_url(bad)),
                "actionUrl",
                "{bad}"
            );
        }
        for bad in [
            serde_json::json!([1, 2]),
            serde_json::json!("text"),
            serde_json::json!({"$where": "1"}),
            serde_json::json!({"a": {"$set": 1}}),
            serde_json::json!({"": 1}),
            serde_json::json!({"a": [{"b": 1}]}),
            serde_json::json!({"a": {"b": {"c": 1}}}),
            serde_json::json!({"big": "x".repeat(DEFAULT_MAX_DATA_BYTES)}),
        ] {
            assert_eq!(
                field(SendMessage::new(account(), "t", "c").data(bad.clone())),
                "data",
                "{bad}"
            );
        }
        // Absent, they stay out of the payload.
        let plain = serde_json::to_value(SendMessage::new(account(), "t", "c")).unwrap();
        for name in ["category", "actionUrl", "data", "sendAt", "expiresAt"] {
            assert!(plain.get(name).is_none(), "{name}");
        }
    }
}
