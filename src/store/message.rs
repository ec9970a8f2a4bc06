//! The `message` collection: the notification documents the web app reads.
//!
//! The document shape is the product's contract (DESIGN.md 2.1): camelCase
//! names, ObjectIds for ids, BSON dates for times. Inserts go through
//! [`super::MessageBatcher`] and are idempotent by `_id`: the id is fixed
//! when the job is created, so a job that runs twice (a crash after the
//! insert, a redelivery) finds its document already there.

use herald_jobs::{ValidMessage, ValidSender};
use mongodb::{
    bson::{doc, Bson, DateTime, Document},
    error::{ErrorKind, WriteFailure},
    options::IndexOptions,
    Collection, Database, IndexModel,
};

use super::StoreError;

/// Name of the collection.
pub const MESSAGE_COLLECTION: &str = "message";

/// MongoDB's duplicate-key error code.
pub(crate) const DUPLICATE_KEY: i32 = 11000;

/// The `message` collection's indexes (documents are written by
/// [`super::MessageBatcher`]).
#[derive(Debug, Clone)]
pub struct MessageStore {
    collection: Collection<Document>,
    inbox: super::Inbox,
}

/// A message as it is in the database after [`super::MessageBatcher::insert`].
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// The message the job described.
    pub message: ValidMessage,
    /// `createdAt` of the stored document (the first run's, on a re-run).
    pub created_at: DateTime,
    /// False when the document was already there (a re-run of the job).
    pub newly_inserted: bool,
}

impl MessageStore {
    /// The store for `database`'s `message` collection.
    pub fn new(database: &Database) -> Self {
        Self {
            collection: database.collection(MESSAGE_COLLECTION),
            inbox: super::Inbox::new(database),
        }
    }

    /// Creates the indexes the read side needs (see [`super::inbox`]): an
    /// account's messages newest first; a recipient's (a user's, or the
    /// account's messages to everyone) newest first and unread; the
    /// account's unread documents, which the web app reading the
    /// collection itself may count; and the per-user read marks' own.
    /// Creating an existing index is a no-op.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let recipient = |last: &str, order: i32| {
            let name = format!("accountId_1_to.target_1_to.id_1_{last}_{order}");
            IndexModel::builder()
                .keys(doc! { "accountId": 1, "to.target": 1, "to.id": 1, last: order })
                .options(IndexOptions::builder().name(name).build())
                .build()
        };
        let indexes = [
            recipient("createdAt", -1),
            recipient("isRead", 1),
            IndexModel::builder()
                .keys(doc! { "accountId": 1, "createdAt": -1 })
                .options(
                    IndexOptions::builder()
                        .name("accountId_1_createdAt_-1".to_owned())
                        .build(),
                )
                .build(),
            IndexModel::builder()
                .keys(doc! { "accountId": 1, "isRead": 1 })
                .options(
                    IndexOptions::builder()
                        .name("accountId_1_isRead_1".to_owned())
                        .build(),
                )
                .build(),
        ];
        super::ensure_indexes(&self.collection, indexes, "createIndexes on message").await?;
        self.inbox.ensure_indexes().await
    }
}

/// The document for `message`, created at `created_at`.
pub fn to_document(message: &ValidMessage, created_at: DateTime) -> Document {
    let sender_id = match message.sender {
        ValidSender::System => Bson::String("system".to_owned()),
        ValidSender::SystemWithId(oid) => Bson::ObjectId(oid),
        ValidSender::User(user) => Bson::ObjectId(user.object_id()),
    };
    doc! {
        "_id": message.id.object_id(),
        "accountId": message.account.object_id(),
        "title": &message.title,
        "content": &message.content,
        "sender": { "id": sender_id, "from": message.sender.from_kind().as_str() },
        "to": { "id": message.to.object_id(), "target": message.to.target().as_str() },
        "status": message.status.as_str(),
        "isRead": false,
        "createdAt": created_at,
        "readAt": Bson::Null,
    }
}

/// Whether `err` is MongoDB's duplicate-key error.
pub(crate) fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_jobs::{AccountId, SendMessage, UserId};

    #[test]
    fn the_document_has_the_contract_fields_and_types() {
        let account = AccountId::parse("5f0c8a3e2b1d4c0012345678").unwrap();
        let user = UserId::parse("5f0c8a3e2b1d4c00aaaaaaaa").unwrap();
        let message = SendMessage::new(account, "Hi", "<b>x</b>")
            .sent_by_user(user)
            .validate(&Default::default())
            .unwrap();
        let now = DateTime::now();
        let doc = to_document(&message, now);
        let keys: Vec<&str> = doc.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "_id",
                "accountId",
                "title",
                "content",
                "sender",
                "to",
                "status",
                "isRead",
                "createdAt",
                "readAt"
            ]
        );
        assert_eq!(doc.get_object_id("accountId").unwrap(), account.object_id());
        assert_eq!(
            doc.get_document("sender")
                .unwrap()
                .get_object_id("id")
                .unwrap(),
            user.object_id()
        );
        assert_eq!(
            doc.get_document("to").unwrap().get_str("target").unwrap(),
            "account"
        );
        assert!(!doc.get_bool("isRead").unwrap());
        assert_eq!(doc.get_datetime("createdAt").unwrap(), &now);
        assert_eq!(doc.get("readAt"), Some(&Bson::Null));
    }
}
