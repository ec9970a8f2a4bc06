//! Who has read which account-wide message.
//!
//! A message to one user keeps that user's read state in its own document
//! (`isRead`, `readAt`: the contract's meaning). A message to the whole
//! account is read by each of its users on their own, and the account's
//! users are not known to Herald, so their read state lives beside the
//! messages, in two collections:
//!
//! - `inbox_state`, one document per user (`_id` `<accountId>:<userId>`):
//!   `readAllBefore`, the newest account-wide message's `createdAt` when
//!   the user last marked everything read, and `readAllAt`, when that was.
//!   Every account-wide message up to `readAllBefore` is read for them.
//!   Marking all read is one write, however many messages the account has.
//! - `message_read`, one document per user and message read one by one
//!   after that (`_id` `<userId>:<messageId>`), with the message's
//!   `createdAt` and `status`, so an unread count is three index counts
//!   (see `super::Inbox::unread_count`) and never a join. Marks at or
//!   before `readAllBefore` say nothing the watermark does not; marking
//!   all read removes them.

use std::collections::HashMap;

use futures::TryStreamExt;
use herald_jobs::{AccountId, MessageStatus, UserId};
use mongodb::{
    bson::{doc, oid::ObjectId, DateTime, Document},
    error::{ErrorKind, InsertManyError},
    options::{IndexOptions, UpdateOptions},
    Collection, Database, IndexModel,
};

use crate::store::{message::DUPLICATE_KEY, StoreError};

/// Name of the per-user read marks' collection.
pub const READ_COLLECTION: &str = "message_read";
/// Name of the per-user inbox state's collection.
pub const STATE_COLLECTION: &str = "inbox_state";

/// What one user marked read of their account's account-wide messages at
/// once: every one up to `before`, marked at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReadAll {
    /// The newest message's `createdAt` when everything was marked read.
    pub before: DateTime,
    /// When that was.
    pub at: DateTime,
}

/// An account-wide message a user marks read.
#[derive(Debug, Clone)]
pub(super) struct Marked {
    pub id: ObjectId,
    pub created_at: DateTime,
    pub status: String,
}

/// The two collections of per-user read state.
#[derive(Debug, Clone)]
pub(super) struct ReadState {
    marks: Collection<Document>,
    states: Collection<Document>,
}

fn state_id(account: AccountId, user: UserId) -> String {
    format!("{account}:{user}")
}

fn mark_id(user: UserId, message: ObjectId) -> String {
    format!("{user}:{}", message.to_hex())
}

impl ReadState {
    pub(super) fn new(database: &Database) -> Self {
        Self {
            marks: database.collection(READ_COLLECTION),
            states: database.collection(STATE_COLLECTION),
        }
    }

    /// The index that counts a user's marks after a time.
    pub(super) async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let index = IndexModel::builder()
            .keys(doc! { "accountId": 1, "userId": 1, "createdAt": -1 })
            .options(
                IndexOptions::builder()
                    .name("accountId_1_userId_1_createdAt_-1".to_owned())
                    .build(),
            )
            .build();
        crate::store::ensure_indexes(&self.marks, [index], "createIndexes on message_read").await
    }

    /// When `user` last marked everything read, if ever.
    pub(super) async fn read_all(
        &self,
        account: AccountId,
        user: UserId,
    ) -> Result<Option<ReadAll>, StoreError> {
        let state = self
            .states
            .find_one(doc! { "_id": state_id(account, user) })
            .await
            .map_err(StoreError::command("read inbox_state"))?;
        Ok(state.and_then(|s| {
            Some(ReadAll {
                before: *s.get_datetime("readAllBefore").ok()?,
                at: *s.get_datetime("readAllAt").ok()?,
            })
        }))
    }

    /// Records that `user` read everything up to `before`, at `at`; an
    /// earlier `before` than the one recorded changes nothing.
    pub(super) async fn mark_all(
        &self,
        account: AccountId,
        user: UserId,
        before: DateTime,
        at: DateTime,
    ) -> Result<(), StoreError> {
        let id = state_id(account, user);
        self.states
            .update_one(
                doc! { "_id": &id, "$or": [
                    { "readAllBefore": { "$lt": before } },
                    { "readAllBefore": { "$exists": false } },
                ] },
                doc! { "$set": {
                    "accountId": account.object_id(), "userId": user.object_id(),
                    "readAllBefore": before, "readAllAt": at,
                } },
            )
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await
            .or_else(|e| {
                // The state exists with a later `readAllBefore`: the
                // upsert's insert collides on `_id`, and nothing is to do.
                if crate::store::is_duplicate_key(&e) {
                    Ok(Default::default())
                } else {
                    Err(e)
                }
            })
            .map_err(StoreError::command("update inbox_state"))?;
        // Marks up to the watermark say nothing more; best effort.
        let _ = self
            .marks
            .delete_many(doc! {
                "accountId": account.object_id(), "userId": user.object_id(),
                "createdAt": { "$lte": before },
            })
            .await;
        Ok(())
    }

    /// When `user` read each of `ids` one by one (those they did).
    pub(super) async fn marks_of(
        &self,
        user: UserId,
        ids: &[ObjectId],
    ) -> Result<HashMap<ObjectId, DateTime>, StoreError> {
        let mut found = HashMap::new();
        if ids.is_empty() {
            return Ok(found);
        }
        let keys: Vec<String> = ids.iter().map(|id| mark_id(user, *id)).collect();
        let mut cursor = self
            .marks
            .find(doc! { "_id": { "$in": keys } })
            .projection(doc! { "messageId": 1, "readAt": 1 })
            .await
            .map_err(StoreError::command("read message_read"))?;
        while let Some(mark) = cursor
            .try_next()
            .await
            .map_err(StoreError::command("read message_read"))?
        {
            if let (Ok(id), Ok(at)) = (mark.get_object_id("messageId"), mark.get_datetime("readAt"))
            {
                found.insert(id, *at);
            }
        }
        Ok(found)
    }

    /// Marks `messages` read for `user` at `at`; how many were not marked
    /// before.
    pub(super) async fn mark(
        &self,
        account: AccountId,
        user: UserId,
        messages: &[Marked],
        at: DateTime,
    ) -> Result<u64, StoreError> {
        if messages.is_empty() {
            return Ok(0);
        }
        let documents: Vec<Document> = messages
            .iter()
            .map(|m| {
                doc! {
                    "_id": mark_id(user, m.id), "accountId": account.object_id(),
                    "userId": user.object_id(), "messageId": m.id,
                    "createdAt": m.created_at, "status": &m.status, "readAt": at,
                }
            })
            .collect();
        let total = documents.len() as u64;
        match self.marks.insert_many(documents).ordered(false).await {
            Ok(_) => Ok(total),
            Err(err) => match err.kind.as_ref() {
                ErrorKind::InsertMany(InsertManyError {
                    write_errors: Some(errors),
                    write_concern_error: None,
                    ..
                }) if errors.iter().all(|e| e.code == DUPLICATE_KEY) => {
                    Ok(total - errors.len() as u64)
                }
                _ => Err(StoreError::command("insert into message_read")(err)),
            },
        }
    }

    /// How many account-wide messages created after `after` (of `status`,
    /// if given) `user` marked read one by one.
    pub(super) async fn count_after(
        &self,
        account: AccountId,
        user: UserId,
        after: DateTime,
        status: Option<MessageStatus>,
    ) -> Result<u64, StoreError> {
        let mut filter = doc! {
            "accountId": account.object_id(), "userId": user.object_id(),
            "createdAt": { "$gt": after },
        };
        if let Some(status) = status {
            filter.insert("status", status.as_str());
        }
        super::count(&self.marks, filter, "count message_read").await
    }
}
