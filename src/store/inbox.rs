//! The read side of the `message` collection: what the frontend shows.
//!
//! An account's messages newest first, a page at a time; its unread count;
//! marking one message or all of them read. Every query starts with
//! `accountId`, so the two indexes [`super::MessageStore::ensure_indexes`]
//! creates serve them: `{accountId, createdAt: -1}` the list,
//! `{accountId, isRead}` the count and mark-all.
//!
//! Pages are cut by a cursor, not an offset: the cursor names the last
//! message shown (its `createdAt` and `_id`), and the next page starts after
//! it. Messages that arrive meanwhile never shift a page or show twice.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use futures::TryStreamExt;
use herald_jobs::{AccountId, MessageStatus, UserId};
use mongodb::{
    bson::{doc, oid::ObjectId, Bson, DateTime, Document},
    Collection, Database,
};
use serde::Serialize;

use super::{StoreError, MESSAGE_COLLECTION};

/// Messages per page when the caller names no limit.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// The largest page a caller may ask for.
pub const MAX_PAGE_SIZE: u32 = 100;

/// Narrows an account's messages. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxFilter {
    /// Only read (`true`) or unread (`false`) messages.
    pub is_read: Option<bool>,
    /// Only messages of this status.
    pub status: Option<MessageStatus>,
    /// Only messages whose `to.id` is this id (a user, or the account for
    /// messages addressed to all of it).
    pub to: Option<ObjectId>,
    /// Only messages this user sees: those addressed to the whole account
    /// and those addressed to the user.
    pub for_user: Option<UserId>,
}

impl InboxFilter {
    /// This filter narrowed to unread messages (whatever `is_read` said).
    fn unread_only(&self) -> Self {
        Self {
            is_read: Some(false),
            ..self.clone()
        }
    }

    /// The query for `account`'s messages matching this filter.
    fn query(&self, account: AccountId) -> Document {
        let mut query = doc! { "accountId": account.object_id() };
        if let Some(is_read) = self.is_read {
            query.insert("isRead", is_read);
        }
        if let Some(status) = self.status {
            query.insert("status", status.as_str());
        }
        if let Some(to) = self.to {
            query.insert("to.id", to);
        }
        if let Some(user) = self.for_user {
            query.insert(
                "$or",
                vec![
                    Bson::Document(doc! { "to.target": "account" }),
                    Bson::Document(doc! { "to.target": "user", "to.id": user.object_id() }),
                ],
            );
        }
        query
    }
}

/// Where a page ends: the last message shown. Opaque to callers, who get it
/// as a string from [`InboxPage::next_cursor`] and hand it back unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    created_at: DateTime,
    id: ObjectId,
}

/// A cursor string that was not made by Herald.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a cursor returned by this API")]
pub struct BadCursor(pub String);

impl PageCursor {
    /// The cursor as the string callers pass back.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}:{}",
            self.created_at.timestamp_millis(),
            self.id.to_hex()
        ))
    }

    /// Reads a string made by [`PageCursor::encode`].
    pub fn decode(text: &str) -> Result<Self, BadCursor> {
        let bad = || BadCursor(text.to_owned());
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let plain = String::from_utf8(bytes).map_err(|_| bad())?;
        let (millis, id) = plain.split_once(':').ok_or_else(bad)?;
        Ok(Self {
            created_at: DateTime::from_millis(millis.parse().map_err(|_| bad())?),
            id: ObjectId::parse_str(id).map_err(|_| bad())?,
        })
    }

    /// Messages after this one in newest-first order.
    fn after(&self) -> Document {
        doc! { "$or": [
            { "createdAt": { "$lt": self.created_at } },
            { "createdAt": self.created_at, "_id": { "$lt": self.id } },
        ] }
    }
}

/// A message as the API shows it: the document's fields, ids as hex,
/// times as RFC 3339.
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
    /// Whether it was read.
    pub is_read: bool,
    /// When the worker stored it (RFC 3339, UTC).
    pub created_at: String,
    /// When it was first marked read (RFC 3339, UTC), or null.
    pub read_at: Option<String>,
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

/// One page of messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxPage {
    /// Newest first.
    pub messages: Vec<InboxMessage>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

fn id_text(value: Option<&Bson>) -> String {
    match value {
        Some(Bson::ObjectId(oid)) => oid.to_hex(),
        Some(Bson::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// `time` as RFC 3339 in UTC with exactly three fractional digits, so that
/// times compare correctly as strings.
pub fn rfc3339(time: DateTime) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(time.timestamp_millis())
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

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

impl From<&Document> for InboxMessage {
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
        }
    }
}

/// Read access to the `message` collection, and its read marks.
#[derive(Debug, Clone)]
pub struct Inbox {
    collection: Collection<Document>,
}

impl Inbox {
    /// The inbox over `database`'s `message` collection.
    pub fn new(database: &Database) -> Self {
        Self {
            collection: database.collection(MESSAGE_COLLECTION),
        }
    }

    /// A page of `account`'s messages matching `filter`, newest first,
    /// starting after `cursor`. `limit` is clamped to 1..=[`MAX_PAGE_SIZE`].
    pub async fn page(
        &self,
        account: AccountId,
        filter: &InboxFilter,
        cursor: Option<PageCursor>,
        limit: u32,
    ) -> Result<InboxPage, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        let mut query = filter.query(account);
        if let Some(cursor) = cursor {
            query = doc! { "$and": [query, cursor.after()] };
        }
        // One more than asked, to learn whether a next page exists.
        let mut documents: Vec<Document> = self
            .collection
            .find(query)
            .sort(doc! { "createdAt": -1, "_id": -1 })
            .limit(i64::from(limit) + 1)
            .await
            .map_err(StoreError::command("list messages"))?
            .try_collect()
            .await
            .map_err(StoreError::command("list messages"))?;
        let more = documents.len() > limit as usize;
        documents.truncate(limit as usize);
        let next_cursor = match documents.last() {
            Some(last) if more => Some(
                PageCursor {
                    created_at: last
                        .get_datetime("createdAt")
                        .copied()
                        .unwrap_or(DateTime::MIN),
                    id: last.get_object_id("_id").unwrap_or_default(),
                }
                .encode(),
            ),
            _ => None,
        };
        Ok(InboxPage {
            messages: documents.iter().map(InboxMessage::from).collect(),
            next_cursor,
        })
    }

    /// How many of `account`'s messages matching `filter` are unread
    /// (`filter.is_read` is ignored).
    pub async fn unread_count(
        &self,
        account: AccountId,
        filter: &InboxFilter,
    ) -> Result<u64, StoreError> {
        let filter = filter.unread_only();
        self.collection
            .count_documents(filter.query(account))
            .await
            .map_err(StoreError::command("count unread messages"))
    }

    /// Marks `account`'s message `id` read, keeping the first `readAt` if
    /// it was read before. `None` if the account has no such message.
    pub async fn mark_read(
        &self,
        account: AccountId,
        id: ObjectId,
    ) -> Result<Option<InboxMessage>, StoreError> {
        let mine = doc! { "_id": id, "accountId": account.object_id() };
        let mut unread = mine.clone();
        unread.insert("isRead", false);
        self.collection
            .update_one(
                unread,
                doc! { "$set": { "isRead": true, "readAt": DateTime::now() } },
            )
            .await
            .map_err(StoreError::command("mark a message read"))?;
        let document = self
            .collection
            .find_one(mine)
            .await
            .map_err(StoreError::command("read a message"))?;
        Ok(document.as_ref().map(InboxMessage::from))
    }

    /// Marks every unread message of `account` matching `filter` read
    /// (`filter.is_read` is ignored). Returns how many changed.
    pub async fn mark_all_read(
        &self,
        account: AccountId,
        filter: &InboxFilter,
    ) -> Result<u64, StoreError> {
        let filter = filter.unread_only();
        let result = self
            .collection
            .update_many(
                filter.query(account),
                doc! { "$set": { "isRead": true, "readAt": DateTime::now() } },
            )
            .await
            .map_err(StoreError::command("mark messages read"))?;
        Ok(result.modified_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_its_round_trip_and_strangers_are_refused() {
        let cursor = PageCursor {
            created_at: DateTime::from_millis(1_767_225_600_123),
            id: ObjectId::parse_str("65a1f0c2e4b0a1b2c3d4e5f6").unwrap(),
        };
        assert_eq!(PageCursor::decode(&cursor.encode()), Ok(cursor));
        for text in ["", "abc", "!!!", &URL_SAFE_NO_PAD.encode("12:nothex")] {
            assert!(PageCursor::decode(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn filters_become_one_query_starting_with_the_account() {
        let account = AccountId::parse("5f0c8a3e2b1d4c0012345678").unwrap();
        let user = UserId::parse("5f0c8a3e2b1d4c00aaaaaaaa").unwrap();
        let filter = InboxFilter {
            is_read: Some(false),
            status: Some(MessageStatus::Error),
            to: None,
            for_user: Some(user),
        };
        let query = filter.query(account);
        assert_eq!(query.keys().next().map(String::as_str), Some("accountId"));
        assert_eq!(query.get_bool("isRead"), Ok(false));
        assert_eq!(query.get_str("status"), Ok("error"));
        assert_eq!(query.get_array("$or").map(Vec::len), Ok(2));
        assert_eq!(InboxFilter::default().query(account).len(), 1);
    }

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
    }
}
