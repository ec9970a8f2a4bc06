//! A `send_message` payload that passed validation, in typed parts.

use bson::oid::ObjectId;

use super::{MessageStatus, Recipient, RecipientTarget, SendMessage, Sender, SenderFrom};
use crate::ids::{AccountId, MessageId, UserId};

/// A `send_message` payload that passed validation: every part is typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidMessage {
    /// The document's `_id`.
    pub id: MessageId,
    /// The owning account.
    pub account: AccountId,
    /// Non-blank title.
    pub title: String,
    /// Content within the size limit.
    pub content: String,
    /// Who sent it.
    pub sender: ValidSender,
    /// Who receives it.
    pub to: ValidRecipient,
    /// The status shown with it.
    pub status: MessageStatus,
    /// When to store and push it; `None`: at once.
    pub send_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the stored message is removed; `None`: kept (or for the
    /// worker's default).
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The label the inbox groups it by.
    pub category: Option<String>,
    /// Where it leads: an `https://` URL or a path of the app's site.
    pub action_url: Option<String>,
    /// The app's own small JSON object.
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
    /// The trace the enqueuing code was in, when it said (and said it in
    /// the W3C form).
    pub traceparent: Option<crate::TraceParent>,
}

impl ValidMessage {
    /// The `send_message` payload of this message, each field in its
    /// canonical spelling: what is enqueued for a message validated at the
    /// door, so it is not checked a second time on its way to the queue.
    /// Validating it again gives this message back.
    pub fn to_job(&self) -> SendMessage {
        SendMessage {
            message_id: self.id.to_hex(),
            account_id: self.account.to_hex(),
            title: self.title.clone(),
            content: self.content.clone(),
            sender: Sender {
                id: self.sender.id_string(),
                from: self.sender.from_kind().as_str().to_owned(),
            },
            to: Recipient {
                id: self.to.object_id().to_hex(),
                target: self.to.target().as_str().to_owned(),
            },
            status: self.status.as_str().to_owned(),
            send_at: self
                .send_at
                .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            expires_at: self
                .expires_at
                .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            category: self.category.clone(),
            action_url: self.action_url.clone(),
            data: self.data.clone().map(serde_json::Value::Object),
            traceparent: self.traceparent.map(|trace| trace.to_string()),
        }
    }

    /// When its job falls due, in whole Unix seconds rounded up (so it
    /// never runs before `sendAt`); 0, due at once, without `sendAt`.
    pub fn due_at(&self) -> u64 {
        self.send_at.map_or(0, |at| {
            let millis = at.timestamp_millis().max(0) as u64;
            millis.div_ceil(1000)
        })
    }
}

/// A validated sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidSender {
    /// The system, written `{"id": "system", "from": "system"}`.
    System,
    /// The system identified by an ObjectId, as some older producers write it.
    SystemWithId(ObjectId),
    /// A user of the account.
    User(UserId),
}

impl ValidSender {
    /// The `from` value of the model.
    pub fn from_kind(&self) -> SenderFrom {
        match self {
            ValidSender::System | ValidSender::SystemWithId(_) => SenderFrom::System,
            ValidSender::User(_) => SenderFrom::User,
        }
    }

    /// The `id` as a string: `"system"` or the hex ObjectId.
    pub fn id_string(&self) -> String {
        match self {
            ValidSender::System => super::SYSTEM_SENDER_ID.to_owned(),
            ValidSender::SystemWithId(oid) => oid.to_hex(),
            ValidSender::User(user) => user.to_hex(),
        }
    }
}

/// A validated recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidRecipient {
    /// Everyone in the account.
    Account(AccountId),
    /// One user.
    User(UserId),
}

impl ValidRecipient {
    /// The `target` value of the model.
    pub fn target(&self) -> RecipientTarget {
        match self {
            ValidRecipient::Account(_) => RecipientTarget::Account,
            ValidRecipient::User(_) => RecipientTarget::User,
        }
    }

    /// The recipient's ObjectId.
    pub fn object_id(&self) -> ObjectId {
        match self {
            ValidRecipient::Account(account) => account.object_id(),
            ValidRecipient::User(user) => user.object_id(),
        }
    }
}
