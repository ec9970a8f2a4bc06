//! A message as the API shows it: the document's fields, ids as hex,
//! times as RFC 3339.

use mongodb::bson::{Bson, DateTime, Document};
use serde::Serialize;

/// A message as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InboxMessage {
    /// `_id`, 24-hex.
    pub id: String,
    /// The account, 24-hex.
    pub account_id: String,
    /// Headline.
    pub title: String,
    /// Body, possibly HTML, as the producer gave it.
    pub content: String,
    /// Who sent it.
    pub sender: InboxSender,
    /// Who receives it.
    pub to: InboxRecipient,
    /// `warning`, `error` or `success`.
    pub status: String,
    /// Whether it was read: in a user's inbox, by that user; in the
    /// account's list, the document's `isRead` (see `docs/security.md`, "Read state per user").
    pub is_read: bool,
    /// When the worker stored it (RFC 3339, UTC).
    pub created_at: String,
    /// When it was read (RFC 3339, UTC), or null; in a user's inbox, when
    /// that user read it.
    pub read_at: Option<String>,
    /// When this user archived it (RFC 3339, UTC); absent while it is in
    /// their inbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<String>,
    /// When it will be removed (RFC 3339, UTC): its `expiresAt`, or
    /// `message.keep_days` after it was stored; absent when it is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Its category, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Where it leads when clicked, when it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_url: Option<String>,
    /// The producer's own JSON object, when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

/// `sender` of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InboxSender {
    /// 24-hex, or `"system"`.
    pub id: String,
    /// `system` or `user`.
    pub from: String,
}

/// `to` of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InboxRecipient {
    /// 24-hex: the account's id or the user's.
    pub id: String,
    /// `account` or `user`.
    pub target: String,
}

fn id_text(value: Option<&Bson>) -> String {
    match value {
        Some(Bson::ObjectId(oid)) => oid.to_hex(),
        Some(Bson::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

pub use crate::message::rfc3339;

fn time_text(value: Option<&Bson>) -> Option<String> {
    match value {
        Some(Bson::DateTime(time)) => rfc3339(*time),
        _ => None,
    }
}

/// `id` and the string field `kind` of the sub-document `name`.
fn party(document: &Document, name: &str, kind: &str) -> (String, String) {
    let inner = document.get_document(name).ok();
    (
        id_text(inner.and_then(|d| d.get("id"))),
        inner
            .and_then(|d| d.get_str(kind).ok())
            .unwrap_or_default()
            .to_owned(),
    )
}

impl InboxMessage {
    /// This message as archived at `archived_at` (`None`: in the inbox).
    pub(super) fn archived_as(mut self, archived_at: Option<DateTime>) -> Self {
        self.archived_at = archived_at.and_then(rfc3339);
        self
    }

    /// This message with the read state `read_at` (`None`: unread).
    pub(super) fn read_as(mut self, read_at: Option<DateTime>) -> Self {
        self.is_read = read_at.is_some();
        self.read_at = read_at.and_then(rfc3339);
        self
    }
}

impl From<&Document> for InboxMessage {
    /// The message with the document's own read state.
    fn from(document: &Document) -> Self {
        let text = |name: &str| document.get_str(name).unwrap_or_default().to_owned();
        Self {
            id: id_text(document.get("_id")),
            account_id: id_text(document.get("accountId")),
            title: text("title"),
            content: text("content"),
            sender: {
                let (id, from) = party(document, "sender", "from");
                InboxSender { id, from }
            },
            to: {
                let (id, target) = party(document, "to", "target");
                InboxRecipient { id, target }
            },
            status: text("status"),
            is_read: document.get_bool("isRead").unwrap_or(false),
            created_at: time_text(document.get("createdAt")).unwrap_or_default(),
            read_at: time_text(document.get("readAt")),
            archived_at: time_text(document.get("archivedAt")),
            expires_at: time_text(document.get("expiresAt")),
            category: document.get_str("category").ok().map(str::to_owned),
            action_url: document.get_str("actionUrl").ok().map(str::to_owned),
            data: document
                .get_document("data")
                .ok()
                .map(|data| Bson::Document(data.clone()).into_relaxed_extjson()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, oid::ObjectId};

    #[test]
    fn a_document_becomes_the_api_shape() {
        let id = ObjectId::new();
        let account = ObjectId::new();
        let document = doc! {
            "_id": id, "accountId": account, "title": "t", "content": "c",
            "sender": { "id": "system", "from": "system" },
            "to": { "id": account, "target": "account" },
            "status": "success", "isRead": false,
            "createdAt": DateTime::from_millis(0), "readAt": Bson::Null,
        };
        let message = InboxMessage::from(&document);
        assert_eq!(message.id, id.to_hex());
        assert_eq!(message.sender.from, "system");
        assert_eq!(message.to.id, account.to_hex());
        assert_eq!(message.created_at, "1970-01-01T00:00:00.000Z");
        assert_eq!(message.read_at, None);
        let read = message.read_as(Some(DateTime::from_millis(1_000)));
        assert!(read.is_read);
        assert_eq!(read.read_at.as_deref(), Some("1970-01-01T00:00:01.000Z"));
    }
}
