//! Each user's own state of their account's messages to everyone: read,
//! archived, deleted.
//!
//! A message to one user keeps that user's state in its own document
//! (`isRead`, `readAt`: the contract's meaning; `archivedAt` and
//! `deletedAt`, see [`super::actions`]). A message to the whole account is
//! read, archived and deleted by each of its users on their own, and the
//! account's users are not known to Herald, so their state lives beside
//! the messages, in two collections:
//!
//! - `inbox_state`, one document per user (`_id` `<accountId>:<userId>`):
//!   `readAllBefore`, the newest account-wide message's `createdAt` when
//!   the user last marked everything read, and `readAllAt`, when that was.
//!   Every account-wide message up to `readAllBefore` (the watermark) is
//!   read for them, unless they marked it unread since. Marking all read is
//!   one write, however many messages the account has.
//! - `message_read`, at most one document per user and message (`_id`
//!   `<userId>:<messageId>`), with the message's `createdAt`, `status` and
//!   `category`, so that counts are index counts and never a join, and the
//!   user's state of it where the watermark does not say it:
//!   - after the watermark, `readAt`: the user read it. A mark after the
//!     watermark is always a read mark (an unread message there has none),
//!     so an unread count subtracts the marks after the watermark by
//!     counting index keys;
//!   - at or before it, `unreadAt`: the user marked it unread again;
//!   - anywhere, `archivedAt` and `deletedAt`. A hidden message is always
//!     read (archiving or deleting reads it; marking unread unarchives), so
//!     unread counts never count one.
//!
//!   Marking all read moves the watermark and removes the marks up to it
//!   that hold no more than read state.
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
    /// The watermark of a user's own mark-all made at `at`, up to `before`.
    #[cfg(test)]
    pub(super) fn own_at(before: DateTime, at: DateTime) -> Self {
        Self {
            before,
            own: Some((before, at)),
        }
    }

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

/// A user's mark of an account-wide message: their state of it where the
/// watermark does not say it (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Mark {
    pub read_at: Option<DateTime>,
    pub unread_at: Option<DateTime>,
    pub archived_at: Option<DateTime>,
    pub deleted_at: Option<DateTime>,
}

impl Mark {
    /// Which state fields this mark holds.
    pub fn fields(&self) -> MarkFields {
        MarkFields {
            read: self.read_at.is_some(),
            unread: self.unread_at.is_some(),
            archived: self.archived_at.is_some(),
            deleted: self.deleted_at.is_some(),
        }
    }
}

/// Which state fields a mark holds after a change: each one set (to the
/// change's time, unless it has one) or cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct MarkFields {
    pub read: bool,
    pub unread: bool,
    pub archived: bool,
    pub deleted: bool,
}

impl MarkFields {
    const NAMES: [&'static str; 4] = ["readAt", "unreadAt", "archivedAt", "deletedAt"];

    fn each(&self) -> [(&'static str, bool); 4] {
        let flags = [self.read, self.unread, self.archived, self.deleted];
        std::array::from_fn(|i| (Self::NAMES[i], flags[i]))
    }

    /// Whether the mark holds nothing (and goes).
    pub fn is_empty(&self) -> bool {
        self.each().iter().all(|(_, on)| !on)
    }

    /// The fields set, each to `at`.
    fn set(&self, at: DateTime) -> Document {
        self.each()
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(name, _)| (name.to_owned(), Bson::DateTime(at)))
            .collect()
    }

    /// The condition that a mark holds exactly these fields.
    fn presence(&self) -> Document {
        self.each()
            .into_iter()
            .map(|(name, on)| (name.to_owned(), Bson::Document(doc! { "$exists": on })))
            .collect()
    }

    /// The fields cleared, as `$unset` takes them.
    fn cleared(&self) -> Document {
        self.each()
            .into_iter()
            .filter(|(_, on)| !on)
            .map(|(name, _)| (name.to_owned(), Bson::String(String::new())))
            .collect()
    }
}

/// What [`ReadState::change`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct MarksChanged {
    /// How many marks it changed.
    pub count: u64,
    /// Which, when it wrote them one by one (or inserted them).
    pub ids: Vec<ObjectId>,
    /// The messages whose marks were found in another state than expected.
    pub again: Vec<ObjectId>,
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
        // Marks up to the watermark that hold read state alone say nothing
        // more, and an unread-again mark is read now. Hidden messages keep
        // theirs.
        self.marks
            .delete_many(doc! {
                "accountId": account.object_id(), "userId": user.object_id(),
                "createdAt": { "$lte": before },
                "archivedAt": { "$exists": false }, "deletedAt": { "$exists": false },
            })
            .await
            .map_err(StoreError::command("update message_read"))?;
        Ok(())
    }

    /// `user`'s marks of each of `ids` (those that have one).
    pub(super) async fn marks_of(
        &self,
        user: UserId,
        ids: &[ObjectId],
    ) -> Result<HashMap<ObjectId, Mark>, StoreError> {
        let mut found = HashMap::new();
        if ids.is_empty() {
            return Ok(found);
        }
        let keys: Vec<String> = ids.iter().map(|id| mark_id(user, *id)).collect();
        let mut cursor = self
            .marks
            .find(doc! { "_id": { "$in": keys } })
            .projection(
                doc! { "messageId": 1, "readAt": 1, "unreadAt": 1, "archivedAt": 1, "deletedAt": 1 },
            )
            .await
            .map_err(StoreError::command("read message_read"))?;
        while let Some(mark) = cursor
            .try_next()
            .await
            .map_err(StoreError::command("read message_read"))?
        {
            if let Ok(id) = mark.get_object_id("messageId") {
                let at = |field: &str| mark.get_datetime(field).ok().copied();
                found.insert(
                    id,
                    Mark {
                        read_at: at("readAt"),
                        unread_at: at("unreadAt"),
                        archived_at: at("archivedAt"),
                        deleted_at: at("deletedAt"),
                    },
                );
            }
        }
        Ok(found)
    }

    /// Inserts a mark of each of `messages` for `user` holding `fields`;
    /// returns the ids of those that had one already (left as they were).
    async fn insert(
        &self,
        account: AccountId,
        user: UserId,
        messages: &[Marked],
        fields: Document,
    ) -> Result<Vec<ObjectId>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let documents: Vec<Document> = messages
            .iter()
            .map(|m| {
                let mut mark = doc! {
                    "_id": mark_id(user, m.id), "accountId": account.object_id(),
                    "userId": user.object_id(), "messageId": m.id,
                    "createdAt": m.created_at, "status": &m.status,
                };
                if let Some(category) = &m.category {
                    mark.insert("category", category);
                }
                mark.extend(fields.clone());
                mark
            })
            .collect();
        match self.marks.insert_many(documents).ordered(false).await {
            Ok(_) => Ok(Vec::new()),
            Err(err) => match err.kind.as_ref() {
                ErrorKind::InsertMany(InsertManyError {
                    write_errors: Some(errors),
                    write_concern_error: None,
                    ..
                }) if errors.iter().all(|e| e.code == DUPLICATE_KEY) => Ok(errors
                    .iter()
                    .filter_map(|e| messages.get(e.index))
                    .map(|m| m.id)
                    .collect()),
                _ => Err(StoreError::command("insert into message_read")(err)),
            },
        }
    }

    /// Gives `user`'s marks of `messages`, each in the state `prior`
    /// (`None`: no mark), the state `next`: the times it sets are `at`
    /// where a mark has none yet (earlier ones are kept), the fields it
    /// clears are removed, and a mark left with no state goes.
    ///
    /// Each write is conditional on `prior`, so that of several calls
    /// changing one mark at once exactly one changes it: a mark found in
    /// another state (changed meanwhile) is left alone and returned in
    /// [`Changed::again`] for the caller to look at afresh. `one_by_one`
    /// writes each mark on its own to learn which changed (for at most a
    /// page of ids); otherwise one write per state learns how many.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn change(
        &self,
        account: AccountId,
        user: UserId,
        messages: &[Marked],
        prior: Option<MarkFields>,
        next: &MarkFields,
        at: DateTime,
        one_by_one: bool,
    ) -> Result<MarksChanged, StoreError> {
        let mut outcome = MarksChanged::default();
        let Some(prior) = prior else {
            let taken = self.insert(account, user, messages, next.set(at)).await?;
            for message in messages {
                if taken.contains(&message.id) {
                    outcome.again.push(message.id);
                } else {
                    outcome.ids.push(message.id);
                    outcome.count += 1;
                }
            }
            return Ok(outcome);
        };
        let mut update = doc! {};
        if !next.is_empty() {
            update.insert("$min", next.set(at));
            let cleared = next.cleared();
            if !cleared.is_empty() {
                update.insert("$unset", cleared);
            }
        }
        let fail = StoreError::command("update message_read");
        let written = |keys: Bson| {
            let mut filter = doc! { "_id": keys };
            filter.extend(prior.presence());
            filter
        };
        if one_by_one {
            for message in messages {
                let filter = written(Bson::String(mark_id(user, message.id)));
                let n = if next.is_empty() {
                    self.marks
                        .delete_one(filter)
                        .await
                        .map_err(&fail)?
                        .deleted_count
                } else {
                    self.marks
                        .update_one(filter, update.clone())
                        .await
                        .map_err(&fail)?
                        .modified_count
                };
                if n == 1 {
                    outcome.ids.push(message.id);
                    outcome.count += 1;
                } else {
                    outcome.again.push(message.id);
                }
            }
            return Ok(outcome);
        }
        let keys: Vec<String> = messages.iter().map(|m| mark_id(user, m.id)).collect();
        let filter = written(doc! { "$in": keys }.into());
        outcome.count = if next.is_empty() {
            self.marks
                .delete_many(filter)
                .await
                .map_err(&fail)?
                .deleted_count
        } else {
            self.marks
                .update_many(filter, update)
                .await
                .map_err(&fail)?
                .modified_count
        };
        if outcome.count < messages.len() as u64 {
            // Some changed meanwhile: which is unknown, so all are looked
            // at again (those changed here are then found in `next`).
            outcome.again = messages.iter().map(|m| m.id).collect();
        }
        Ok(outcome)
    }

    /// Removes `user`'s unread-again marks at or before `before` that match
    /// `narrow` (fields of the marks: `status`, `category`, `createdAt`):
    /// those messages are read again; how many.
    pub(super) async fn clear_unread_again(
        &self,
        account: AccountId,
        user: UserId,
        before: DateTime,
        narrow: Document,
    ) -> Result<u64, StoreError> {
        let mut filter = self.unread_again(account, user, before);
        filter = doc! { "$and": [filter, narrow] };
        Ok(self
            .marks
            .delete_many(filter)
            .await
            .map_err(StoreError::command("update message_read"))?
            .deleted_count)
    }

    /// Ids of `user`'s account-wide messages at or before `before` that
    /// they marked unread again, up to `limit`.
    pub(super) async fn unread_again_ids(
        &self,
        account: AccountId,
        user: UserId,
        before: DateTime,
        limit: i64,
    ) -> Result<Vec<ObjectId>, StoreError> {
        let marks: Vec<Document> = self
            .marks
            .find(self.unread_again(account, user, before))
            .projection(doc! { "messageId": 1 })
            .limit(limit)
            .await
            .map_err(StoreError::command("read message_read"))?
            .try_collect()
            .await
            .map_err(StoreError::command("read message_read"))?;
        Ok(marks
            .iter()
            .filter_map(|m| m.get_object_id("messageId").ok())
            .collect())
    }

    /// How many account-wide messages at or before `before` (matching
    /// `narrow`) `user` marked unread again.
    pub(super) async fn count_unread_again(
        &self,
        account: AccountId,
        user: UserId,
        before: DateTime,
        narrow: Document,
    ) -> Result<u64, StoreError> {
        let mut filter = self.unread_again(account, user, before);
        filter.extend(narrow);
        super::count(&self.marks, filter, "count message_read").await
    }

    /// [`Self::count_unread_again`] per category.
    pub(super) async fn count_unread_again_by_category(
        &self,
        account: AccountId,
        user: UserId,
        before: DateTime,
    ) -> Result<HashMap<Option<String>, u64>, StoreError> {
        super::by_category(&self.marks, self.unread_again(account, user, before)).await
    }

    /// The unread-again marks of `user` at or before `before`.
    fn unread_again(&self, account: AccountId, user: UserId, before: DateTime) -> Document {
        doc! {
            "accountId": account.object_id(), "userId": user.object_id(),
            "createdAt": { "$lte": before }, "unreadAt": { "$exists": true },
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
