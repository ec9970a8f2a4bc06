//! The `message` collection: its indexes and the errors of writing it. The
//! document itself is [`crate::message::document`]'s. Inserts go through
//! [`super::MessageBatcher`] and are idempotent by `_id`: the id is fixed
//! when the job is created, so a job that runs twice (a crash after the
//! insert, a redelivery) finds its document already there.

pub use crate::message::{StoredMessage, MESSAGE_COLLECTION};
use mongodb::{
    bson::{doc, Document},
    error::{ErrorKind, WriteFailure},
    options::IndexOptions,
    Collection, Database, IndexModel,
};

use super::StoreError;

/// MongoDB's duplicate-key error code.
pub(crate) const DUPLICATE_KEY: i32 = 11000;

/// The `message` collection's indexes (documents are written by
/// [`super::MessageBatcher`]).
#[derive(Debug, Clone)]
pub struct MessageStore {
    collection: Collection<Document>,
    inbox: super::Inbox,
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
    /// collection itself may count; the messages that expire (sparse:
    /// only those with `expiresAt`, see [`super::expiry`]); and the
    /// per-user read marks' own.
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
            IndexModel::builder()
                .keys(doc! { "expiresAt": 1 })
                .options(
                    IndexOptions::builder()
                        .name("expiresAt_1".to_owned())
                        .sparse(true)
                        .build(),
                )
                .build(),
        ];
        super::ensure_indexes(&self.collection, indexes, "createIndexes on message").await?;
        self.inbox.ensure_indexes().await
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
