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
//!
//! Before read state was per user, a message to the account was read for
//! every user at once (its document's `isRead`). So that an upgrade does
//! not turn an account's history unread, the first worker of this release
//! records when it started (`inbox_state` `cutover`), and each account gets
//! a watermark of its own, computed once, the first time one of its users
//! is looked up (`inbox_state` `legacy:<accountId>`): the newest message
//! to the account that was read before the cutover. Everything up to it is
//! read for every user of the account, as it was.

use std::collections::HashMap;

use futures::TryStreamExt;
use herald_jobs::{AccountId, UserId};
use mongodb::{
    bson::{doc, oid::ObjectId, Bson, DateTime, Document},
    error::{ErrorKind, InsertManyError},
    options::{IndexOptions, UpdateOptions},
    Collection, Database, IndexModel,
};

use crate::store::{message::DUPLICATE_KEY, StoreError};

/// Name of the per-user read marks' collection.
pub const READ_COLLECTION: &str = "message_read";
/// Name of the per-user inbox state's collection.
pub const STATE_COLLECTION: &str = "inbox_state";

/// Which of their account's messages to everyone a user has read at once:
/// every one up to `before`, by their own mark-all or by the account's
/// read state from before the cutover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReadAll {
    /// Every message to the account created up to this is read.
    pub before: DateTime,
    /// The user's own last mark-all: up to when, and when it was made.
    own: Option<(DateTime, DateTime)>,
}

impl ReadAll {
    /// When a message to the account created at `created` (at most
    /// `before`) was read: at the user's mark-all that covered it, or,
    /// when only the account's earlier read state does, when the account
    /// first read it (`first_read`, its document's `readAt`).
    pub(super) fn read_at(&self, created: DateTime, first_read: Option<DateTime>) -> DateTime {
        match self.own {
            Some((before, at)) if created <= before => at,
            _ => first_read.unwrap_or(self.before),
        }
    }
}

/// The `inbox_state` document that records when per-user read state began.
const CUTOVER_ID: &str = "cutover";

/// An account-wide message a user marks read.
#[derive(Debug, Clone)]
pub(super) struct Marked {
    pub id: ObjectId,
    pub created_at: DateTime,
    pub status: String,
    pub category: Option<String>,
}

impl Marked {
    /// The mark of `document` (a message with at least `_id`, `createdAt`,
    /// `status` and, if it has one, `category`).
    pub fn of(document: &Document) -> Option<Self> {
        Some(Self {
            id: document.get_object_id("_id").ok()?,
            created_at: document
                .get_datetime("createdAt")
                .copied()
                .unwrap_or(DateTime::MIN),
            status: document.get_str("status").unwrap_or_default().to_owned(),
            category: document.get_str("category").ok().map(str::to_owned),
        })
    }
}

/// The two collections of per-user read state.
#[derive(Debug, Clone)]
pub(super) struct ReadState {
    marks: Collection<Document>,
    states: Collection<Document>,
}

/// An upsert whose insert collided on `_id`: a document there already, kept
/// as it is. Any other error stays one.
fn already_there(
    error: mongodb::error::Error,
) -> Result<mongodb::results::UpdateResult, mongodb::error::Error> {
    if crate::store::is_duplicate_key(&error) {
        Ok(mongodb::results::UpdateResult::default())
    } else {
        Err(error)
    }
}

fn state_id(account: AccountId, user: UserId) -> String {
    format!("{account}:{user}")
}

fn legacy_id(account: AccountId) -> String {
    format!("legacy:{account}")
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

    /// The index that counts a user's marks after a time, and the one that
    /// finds a message's marks when it expires (`crate::store::expiry`).
    pub(super) async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let index = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_owned()).build())
                .build()
        };
        let indexes = [
            index(
                doc! { "accountId": 1, "userId": 1, "createdAt": -1 },
                "accountId_1_userId_1_createdAt_-1",
            ),
            index(doc! { "messageId": 1 }, "messageId_1"),
        ];
        crate::store::ensure_indexes(&self.marks, indexes, "createIndexes on message_read").await
    }

    /// Records, once, when per-user read state began: the first worker
    /// of this release does, at start. Later calls change nothing.
    pub(super) async fn record_cutover(&self) -> Result<(), StoreError> {
        self.states
            .update_one(
                doc! { "_id": CUTOVER_ID },
                doc! { "$setOnInsert": { "at": DateTime::now() } },
            )
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await
            .map_err(StoreError::command("record the inbox cutover"))?;
        Ok(())
    }

    /// Which of `account`'s messages to everyone `user` has read at once,
    /// if any (see [`ReadAll`]).
    pub(super) async fn read_all(
        &self,
        account: AccountId,
        user: UserId,
        messages: &Collection<Document>,
    ) -> Result<Option<ReadAll>, StoreError> {
        let state = self
            .states
            .find_one(doc! { "_id": state_id(account, user) })
            .await
            .map_err(StoreError::command("read inbox_state"))?;
        let own = state.and_then(|s| {
            Some((
                *s.get_datetime("readAllBefore").ok()?,
                *s.get_datetime("readAllAt").ok()?,
            ))
        });
        let legacy = self.legacy_before(account, messages).await?;
        let before = match (own, legacy) {
            (Some((own, _)), Some(legacy)) => own.max(legacy),
            (Some((own, _)), None) => own,
            (None, Some(legacy)) => legacy,
            (None, None) => return Ok(None),
        };
        Ok(Some(ReadAll { before, own }))
    }

    /// The newest of `account`'s messages to everyone that was read before
    /// the cutover, computed the first time and kept; `None` when there
    /// is none (or no cutover was recorded: no earlier release ran).
    async fn legacy_before(
        &self,
        account: AccountId,
        messages: &Collection<Document>,
    ) -> Result<Option<DateTime>, StoreError> {
        let id = legacy_id(account);
        let kept = self
            .states
            .find_one(doc! { "_id": &id })
            .await
            .map_err(StoreError::command("read inbox_state"))?;
        if let Some(kept) = kept {
            return Ok(kept.get_datetime("before").ok().copied());
        }
        let Some(cutover) = self
            .states
            .find_one(doc! { "_id": CUTOVER_ID })
            .await
            .map_err(StoreError::command("read inbox_state"))?
            .and_then(|c| c.get_datetime("at").ok().copied())
        else {
            return Ok(None);
        };
        let newest_read = messages
            .find_one(doc! {
                "accountId": account.object_id(),
                "to.target": "account", "to.id": account.object_id(),
                "isRead": true, "readAt": { "$lte": cutover },
            })
            .sort(doc! { "createdAt": -1 })
            .projection(doc! { "createdAt": 1 })
            .await
            .map_err(StoreError::command("find the account's earlier read state"))?
            .and_then(|d| d.get_datetime("createdAt").ok().copied());
        self.states
            .update_one(
                doc! { "_id": &id },
                doc! { "$setOnInsert": {
                    "accountId": account.object_id(),
                    "before": newest_read.map_or(Bson::Null, Bson::DateTime),
                } },
            )
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await
            // Another process computed it at the same moment.
            .or_else(already_there)
            .map_err(StoreError::command(
                "record the account's earlier read state",
            ))?;
        Ok(newest_read)
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
            // The state exists with a later `readAllBefore`: the upsert's
            // insert collides on `_id`, and nothing is to do.
            .or_else(already_there)
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
                let mut mark = doc! {
                    "_id": mark_id(user, m.id), "accountId": account.object_id(),
                    "userId": user.object_id(), "messageId": m.id,
                    "createdAt": m.created_at, "status": &m.status, "readAt": at,
                };
                if let Some(category) = &m.category {
                    mark.insert("category", category);
                }
                mark
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

    /// How many account-wide messages created after `after` (matching
    /// `narrow`: `status`, `category`) `user` marked read one by one.
    pub(super) async fn count_after(
        &self,
        account: AccountId,
        user: UserId,
        after: DateTime,
        narrow: Document,
    ) -> Result<u64, StoreError> {
        super::count(
            &self.marks,
            self.after(account, user, after, narrow),
            "count message_read",
        )
        .await
    }

    /// [`Self::count_after`] per category ([`super::by_category`]).
    pub(super) async fn count_after_by_category(
        &self,
        account: AccountId,
        user: UserId,
        after: DateTime,
    ) -> Result<HashMap<Option<String>, u64>, StoreError> {
        super::by_category(&self.marks, self.after(account, user, after, doc! {})).await
    }

    /// The marks of `user` for account-wide messages created after `after`.
    fn after(
        &self,
        account: AccountId,
        user: UserId,
        after: DateTime,
        narrow: Document,
    ) -> Document {
        let mut filter = doc! {
            "accountId": account.object_id(), "userId": user.object_id(),
            "createdAt": { "$gt": after },
        };
        filter.extend(narrow);
        filter
    }
}
