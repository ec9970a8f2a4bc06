//! The read side of the `message` collection: what the frontend shows.
//!
//! A user's inbox is their account's messages to everyone plus the messages
//! addressed to them, never a colleague's; read state is per user
//! ([`reads`]). Pages are cut by a cursor, not an offset ([`PageCursor`]).
//!
//! Every query starts with `accountId` and the recipient, so the indexes
//! [`crate::store::MessageStore::ensure_indexes`] creates serve them:
//! `{accountId, to.target, to.id, isRead}` counts a user's unread messages
//! to them, `{accountId, to.target, to.id, createdAt}` lists them and
//! counts the account-wide ones newer than a user's last mark-all, and
//! `{accountId, userId, createdAt}` on `message_read` counts what they read
//! one by one since. An unread count is therefore three index counts, each
//! over the messages since the user last marked everything read.
//!
//! The account's whole list ([`Inbox::account_page`]) is the back office's
//! view, with each document's own `isRead`.

use std::collections::HashMap;

mod actions;
mod cursor;
mod reads;
mod view;

use futures::TryStreamExt;
use herald_jobs::{AccountId, MessageStatus, UserId};
use mongodb::{
    bson::{doc, oid::ObjectId, Bson, DateTime, Document},
    Collection, Database,
};

pub use actions::{ActionFilter, Changed, InboxAction, Selection, MAX_ACTION_IDS, TOMBSTONE_DAYS};
pub use cursor::{BadCursor, PageCursor, CURSOR_PATTERN};
pub use reads::{READ_COLLECTION, STATE_COLLECTION};
pub use view::{rfc3339, InboxMessage, InboxRecipient, InboxSender};

use actions::{not_deleted, UserState};
use reads::{ReadAll, ReadState};

use super::{StoreError, MESSAGE_COLLECTION};

/// Messages per page when the caller names no limit.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// The largest page a caller may ask for.
pub const MAX_PAGE_SIZE: u32 = 100;

/// Most documents one page of a user's inbox looks at. A filter on the
/// user's read state is partly applied here rather than in the query; a
/// page that looked at this many without filling up ends early, with a
/// cursor to go on from.
const MAX_SCANNED: usize = 5_000;

/// Most messages marked unread again that a page of unread messages names
/// in its query; a user with more is served by scanning (see
/// [`MAX_SCANNED`]).
const MAX_UNREAD_AGAIN: i64 = 1_000;

/// Narrows a user's inbox. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxFilter {
    /// Only messages this user read (`true`) or has not (`false`).
    pub is_read: Option<bool>,
    /// Only messages of this status.
    pub status: Option<MessageStatus>,
    /// Only messages of this category.
    pub category: Option<String>,
    /// The user's archive (`true`) instead of their inbox.
    pub archived: bool,
}

/// Narrows an unread count. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountFilter {
    /// Only messages of this status.
    pub status: Option<MessageStatus>,
    /// Only messages of this category.
    pub category: Option<String>,
}

impl CountFilter {
    /// The filter as query conditions on a message or a read mark.
    fn conditions(&self) -> Document {
        let mut conditions = doc! {};
        if let Some(status) = self.status {
            conditions.insert("status", status.as_str());
        }
        if let Some(category) = &self.category {
            conditions.insert("category", category);
        }
        conditions
    }
}

/// A user's unread messages, in all and per category.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnreadByCategory {
    /// Every unread message.
    pub unread: u64,
    /// Unread messages per category, for each category that has some.
    pub categories: std::collections::BTreeMap<String, u64>,
    /// Unread messages without a category.
    pub uncategorized: u64,
}

/// Narrows the account's whole list. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFilter {
    /// Only documents whose `isRead` is this.
    pub is_read: Option<bool>,
    /// Only messages of this status.
    pub status: Option<MessageStatus>,
    /// Only messages whose `to.id` is this id (a user, or the account for
    /// messages addressed to all of it).
    pub to: Option<ObjectId>,
    /// Only messages of this category.
    pub category: Option<String>,
}

/// One page of messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxPage {
    /// Newest first.
    pub messages: Vec<InboxMessage>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// What marking messages read did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marking {
    /// The messages named that the user sees, with their read state now.
    pub messages: Vec<InboxMessage>,
    /// Ids of those that were unread for the user and are read now.
    pub newly_read: Vec<String>,
}

/// The three parts of a user's unread count: their own unread messages,
/// the account's messages since `read_all_before` (all of them without
/// it), and the time after which their one-by-one marks count.
fn unread_parts(
    account: AccountId,
    user: UserId,
    read_all_before: Option<DateTime>,
) -> (Document, Document, DateTime) {
    let own = with(to_user(account, user), doc! { "isRead": false });
    let since = match read_all_before {
        Some(before) => doc! { "createdAt": { "$gt": before } },
        None => doc! {},
    };
    (
        own,
        with(to_account(account), since),
        read_all_before.unwrap_or(DateTime::MIN),
    )
}

/// How many documents of `collection` match `query`, per `category`
/// (`None`: without one), counted by the server in one aggregation.
async fn by_category(
    collection: &Collection<Document>,
    query: Document,
) -> Result<HashMap<Option<String>, u64>, StoreError> {
    let groups: Vec<Document> = collection
        .aggregate([
            doc! { "$match": query },
            doc! { "$group": { "_id": "$category", "n": { "$sum": 1 } } },
        ])
        .await
        .map_err(StoreError::command("count per category"))?
        .try_collect()
        .await
        .map_err(StoreError::command("count per category"))?;
    Ok(groups
        .iter()
        .map(|group| {
            let category = group.get_str("_id").ok().map(str::to_owned);
            let n = match group.get("n") {
                Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
                Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
            };
            (category, n)
        })
        .collect())
}

/// The query for the messages to every user of `account`.
fn to_account(account: AccountId) -> Document {
    doc! {
        "accountId": account.object_id(),
        "to.target": "account", "to.id": account.object_id(),
    }
}

/// The query for the messages of `account` addressed to `user`.
fn to_user(account: AccountId, user: UserId) -> Document {
    doc! {
        "accountId": account.object_id(),
        "to.target": "user", "to.id": user.object_id(),
    }
}

/// `query` with the extra conditions of `extra` (top-level fields).
fn with(mut query: Document, extra: Document) -> Document {
    query.extend(extra);
    query
}

/// The query for the messages `ids`.
fn actions_ids(ids: &[ObjectId]) -> Document {
    doc! { "_id": { "$in": ids.iter().map(|id| Bson::ObjectId(*id)).collect::<Vec<_>>() } }
}

/// Whether `document` is addressed to the whole account.
fn is_account_wide(document: &Document) -> bool {
    document
        .get_document("to")
        .ok()
        .and_then(|to| to.get_str("target").ok())
        == Some("account")
}

/// Counts the documents of `collection` matching `filter` with the `count`
/// command's plan (index keys where an index covers the filter).
pub(super) async fn count(
    collection: &Collection<Document>,
    filter: Document,
    operation: &'static str,
) -> Result<u64, StoreError> {
    let reply = collection
        .client()
        .database(collection.namespace().db.as_str())
        .run_command(doc! { "count": collection.name(), "query": filter })
        .await
        .map_err(StoreError::command(operation))?;
    Ok(match reply.get("n") {
        Some(Bson::Int32(n)) => (*n).max(0) as u64,
        Some(Bson::Int64(n)) => (*n).max(0) as u64,
        Some(Bson::Double(n)) => n.max(0.0) as u64,
        _ => 0,
    })
}

/// Read access to the `message` collection, and each user's read state.
#[derive(Debug, Clone)]
pub struct Inbox {
    collection: Collection<Document>,
    reads: ReadState,
}

impl Inbox {
    /// The inbox over `database`'s `message` collection.
    pub fn new(database: &Database) -> Self {
        Self {
            collection: database.collection(MESSAGE_COLLECTION),
            reads: ReadState::new(database),
        }
    }

    /// Creates the index of the per-user read marks (the `message`
    /// collection's own are [`crate::store::MessageStore`]'s), and records
    /// when per-user read state began, if no earlier call did (see
    /// [`reads`]).
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        self.reads.ensure_indexes().await?;
        self.reads.record_cutover().await
    }

    /// Whether `account` has a stored message `id` (another account's
    /// message of that id does not count).
    pub async fn account_has(&self, account: AccountId, id: ObjectId) -> Result<bool, StoreError> {
        let found = self
            .collection
            .count_documents(doc! { "_id": id, "accountId": account.object_id() })
            .limit(1)
            .await
            .map_err(StoreError::command("find a message"))?;
        Ok(found > 0)
    }

    /// Finds up to `limit` documents matching `query`, newest first.
    async fn newest(&self, query: Document, limit: i64) -> Result<Vec<Document>, StoreError> {
        self.collection
            .find(query)
            .sort(doc! { "createdAt": -1, "_id": -1 })
            .limit(limit)
            .await
            .map_err(StoreError::command("list messages"))?
            .try_collect()
            .await
            .map_err(StoreError::command("list messages"))
    }

    /// A page of every message of `account` matching `filter`, newest
    /// first, starting after `cursor`, each with its document's read
    /// state. `limit` is clamped to 1..=[`MAX_PAGE_SIZE`].
    pub async fn account_page(
        &self,
        account: AccountId,
        filter: &AccountFilter,
        cursor: Option<PageCursor>,
        limit: u32,
    ) -> Result<InboxPage, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE_SIZE) as usize;
        // A user's deleted message is a tombstone ([`actions`]): not listed.
        let mut query = with(doc! { "accountId": account.object_id() }, not_deleted());
        if let Some(is_read) = filter.is_read {
            query.insert("isRead", is_read);
        }
        if let Some(status) = filter.status {
            query.insert("status", status.as_str());
        }
        if let Some(to) = filter.to {
            query.insert("to.id", to);
        }
        if let Some(category) = &filter.category {
            query.insert("category", category);
        }
        if let Some(cursor) = cursor {
            query = doc! { "$and": [query, cursor.after()] };
        }
        // One more than asked, to learn whether a next page exists.
        let mut documents = self.newest(query, limit as i64 + 1).await?;
        let more = documents.len() > limit;
        documents.truncate(limit);
        let next_cursor = documents
            .last()
            .filter(|_| more)
            .map(|last| PageCursor::after_document(last).encode());
        Ok(InboxPage {
            messages: documents.iter().map(InboxMessage::from).collect(),
            next_cursor,
        })
    }

    /// Each of `documents` with `user`'s state of it: for a message to the
    /// user, its document's; for one to the account, from the user's
    /// watermark and their mark of it ([`reads`]).
    async fn with_user_state(
        &self,
        user: UserId,
        read_all: Option<ReadAll>,
        documents: &[Document],
    ) -> Result<Vec<(InboxMessage, UserState)>, StoreError> {
        let ids: Vec<ObjectId> = documents
            .iter()
            .filter(|d| is_account_wide(d))
            .filter_map(|d| d.get_object_id("_id").ok())
            .collect();
        let marks = self.reads.marks_of(user, &ids).await?;
        Ok(documents
            .iter()
            .map(|d| {
                let state = if is_account_wide(d) {
                    UserState::of_account_wide(
                        d.get_datetime("createdAt")
                            .copied()
                            .unwrap_or(DateTime::MIN),
                        read_all,
                        d.get_object_id("_id").ok().and_then(|id| marks.get(&id)),
                        d.get_datetime("readAt").ok().copied(),
                    )
                } else {
                    UserState::of_own(d)
                };
                let message = InboxMessage::from(d)
                    .read_as(state.read_at)
                    .archived_as(state.archived_at);
                (message, state)
            })
            .collect())
    }

    /// The account-wide messages that may be unread for a user with the
    /// watermark `read_all`: those after it and those they marked unread
    /// again (all of them, when they marked too many to name).
    async fn unread_candidates(
        &self,
        account: AccountId,
        user: UserId,
        read_all: Option<ReadAll>,
    ) -> Result<Document, StoreError> {
        let Some(all) = read_all else {
            return Ok(to_account(account));
        };
        let again = self
            .reads
            .unread_again_ids(account, user, all.before, MAX_UNREAD_AGAIN)
            .await?;
        if again.len() as i64 >= MAX_UNREAD_AGAIN {
            return Ok(to_account(account));
        }
        let again: Vec<Bson> = again.into_iter().map(Bson::ObjectId).collect();
        Ok(with(
            to_account(account),
            doc! { "$or": [
                { "createdAt": { "$gt": all.before } },
                { "_id": { "$in": again } },
            ] },
        ))
    }

    /// A page of `user`'s inbox in `account` (the account's messages to
    /// everyone and those to `user`) matching `filter`, newest first,
    /// starting after `cursor`, with the user's read state. `limit` is
    /// clamped to 1..=[`MAX_PAGE_SIZE`].
    pub async fn user_page(
        &self,
        account: AccountId,
        user: UserId,
        filter: &InboxFilter,
        cursor: Option<PageCursor>,
        limit: u32,
    ) -> Result<InboxPage, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE_SIZE) as usize;
        let read_all = self.reads.read_all(account, user, &self.collection).await?;
        let shelf = doc! { "archivedAt": { "$exists": filter.archived } };
        let mine = with(with(to_user(account, user), not_deleted()), shelf);
        let (everyone, mine) = match filter.is_read {
            None => (to_account(account), mine),
            // Unread: what the user's last mark-all did not cover and what
            // they marked unread again (the marks made since are dropped
            // below), and their own unread.
            Some(false) => (
                self.unread_candidates(account, user, read_all).await?,
                with(mine, doc! { "isRead": false }),
            ),
            // Read: the account's (the unread among them dropped below),
            // and their own read.
            Some(true) => (to_account(account), with(mine, doc! { "isRead": true })),
        };
        let mut query = doc! { "$or": [everyone, mine] };
        if let Some(status) = filter.status {
            query.insert("status", status.as_str());
        }
        if let Some(category) = &filter.category {
            query.insert("category", category);
        }
        let mut after = cursor;
        let mut page: Vec<(InboxMessage, PageCursor)> = Vec::with_capacity(limit + 1);
        let mut scanned = 0;
        let mut chunk = limit + 1;
        let more = loop {
            let bounded = match after {
                Some(cursor) => doc! { "$and": [query.clone(), cursor.after()] },
                None => query.clone(),
            };
            let documents = self.newest(bounded, chunk as i64).await?;
            let exhausted = documents.len() < chunk;
            let states = self.with_user_state(user, read_all, &documents).await?;
            for (document, (message, state)) in documents.iter().zip(states) {
                scanned += 1;
                let here = PageCursor::after_document(document);
                after = Some(here);
                let shown = !state.deleted
                    && state.is_archived() == filter.archived
                    && filter
                        .is_read
                        .is_none_or(|wanted| wanted == state.is_read());
                if shown {
                    page.push((message, here));
                    if page.len() > limit {
                        break;
                    }
                }
            }
            if page.len() > limit {
                break true;
            }
            if exhausted {
                break false;
            }
            if scanned >= MAX_SCANNED {
                // Looked at enough: a shorter page, with a cursor to go on.
                let next_cursor = after.map(|c| c.encode());
                return Ok(InboxPage {
                    messages: page.into_iter().map(|(m, _)| m).collect(),
                    next_cursor,
                });
            }
            chunk = (chunk * 2).min(1_000);
        };
        page.truncate(limit);
        let next_cursor = page
            .last()
            .filter(|_| more)
            .map(|(_, cursor)| cursor.encode());
        Ok(InboxPage {
            messages: page.into_iter().map(|(m, _)| m).collect(),
            next_cursor,
        })
    }

    /// How many messages of `user`'s inbox in `account` (matching
    /// `narrow`) the user has not read: their own unread messages, plus the
    /// account's messages since their last mark-all, less those of them they
    /// read one by one, plus those up to it they marked unread again.
    /// Archived and deleted messages are read ([`actions`]), so no count
    /// counts them.
    pub async fn unread_count(
        &self,
        account: AccountId,
        user: UserId,
        narrow: &CountFilter,
    ) -> Result<u64, StoreError> {
        let read_all = self.reads.read_all(account, user, &self.collection).await?;
        let (own, everyone, after) = unread_parts(account, user, read_all.map(|all| all.before));
        let own = count(
            &self.collection,
            with(own, narrow.conditions()),
            "count unread messages",
        );
        let everyone = count(
            &self.collection,
            with(everyone, narrow.conditions()),
            "count unread messages",
        );
        let marked = self
            .reads
            .count_after(account, user, after, narrow.conditions());
        let again = self
            .reads
            .count_unread_again(account, user, after, narrow.conditions());
        let (own, everyone, marked, again) = futures::try_join!(own, everyone, marked, again)?;
        Ok(own + everyone.saturating_sub(marked) + again)
    }

    /// `user`'s unread messages in `account`, in all and per category, in
    /// one call: the three parts of [`Self::unread_count`], each grouped by
    /// category on the server.
    pub async fn unread_by_category(
        &self,
        account: AccountId,
        user: UserId,
    ) -> Result<UnreadByCategory, StoreError> {
        let read_all = self.reads.read_all(account, user, &self.collection).await?;
        let (own, everyone, after) = unread_parts(account, user, read_all.map(|all| all.before));
        let (own, everyone, marked, again) = futures::try_join!(
            by_category(&self.collection, own),
            by_category(&self.collection, everyone),
            self.reads.count_after_by_category(account, user, after),
            self.reads
                .count_unread_again_by_category(account, user, after),
        )?;
        let mut unread = UnreadByCategory::default();
        let categories: std::collections::BTreeSet<&Option<String>> = own
            .keys()
            .chain(everyone.keys())
            .chain(again.keys())
            .collect();
        for category in categories {
            let of =
                |counts: &HashMap<Option<String>, u64>| counts.get(category).copied().unwrap_or(0);
            let n = of(&own) + of(&everyone).saturating_sub(of(&marked)) + of(&again);
            if n == 0 {
                continue;
            }
            unread.unread += n;
            match category {
                Some(name) => {
                    unread.categories.insert(name.clone(), n);
                }
                None => unread.uncategorized += n,
            }
        }
        Ok(unread)
    }

    /// Marks each of `ids` that `user` sees in `account` read for them
    /// (`readAt` keeps the first time). Messages of other accounts or
    /// other users among `ids`, and those the user deleted, are left out of
    /// the answer as if they did not exist.
    ///
    /// A message to the whole account is read for this user alone; its
    /// document's `isRead` and `readAt` then say that someone in the
    /// account read it, and when first (`docs/security.md`, "Read state per user").
    pub async fn mark_read(
        &self,
        account: AccountId,
        user: UserId,
        ids: &[ObjectId],
    ) -> Result<Marking, StoreError> {
        let changed = self
            .apply(
                account,
                user,
                InboxAction::Read,
                &Selection::Ids(ids.to_vec()),
            )
            .await?;
        Ok(Marking {
            messages: self.user_messages(account, user, ids).await?,
            newly_read: changed.ids.iter().map(|id| id.to_hex()).collect(),
        })
    }

    /// Those of `ids` that `user` sees in `account`, newest first, with
    /// their state for the user; deleted ones are not seen.
    pub async fn user_messages(
        &self,
        account: AccountId,
        user: UserId,
        ids: &[ObjectId],
    ) -> Result<Vec<InboxMessage>, StoreError> {
        let query = with(
            doc! { "$or": [to_account(account), with(to_user(account, user), not_deleted())] },
            actions_ids(ids),
        );
        let documents = self.newest(query, ids.len() as i64).await?;
        let read_all = self.reads.read_all(account, user, &self.collection).await?;
        Ok(self
            .with_user_state(user, read_all, &documents)
            .await?
            .into_iter()
            .filter(|(_, state)| !state.deleted)
            .map(|(message, _)| message)
            .collect())
    }

    /// Marks every message of `user`'s inbox in `account` (of `status`, if
    /// given) read for them; how many were unread.
    ///
    /// Without a status this is one write for the account's messages,
    /// whatever their number: everything up to the newest is read for the
    /// user ([`reads`]). With one, each unread message of that status is
    /// marked, a batch at a time.
    pub async fn mark_all_read(
        &self,
        account: AccountId,
        user: UserId,
        status: Option<MessageStatus>,
    ) -> Result<u64, StoreError> {
        if let Some(status) = status {
            let filter = ActionFilter {
                status: Some(status),
                ..ActionFilter::default()
            };
            let read = self
                .apply(account, user, InboxAction::Read, &Selection::Filter(filter))
                .await?;
            return Ok(read.count);
        }
        let now = DateTime::now();
        let own = self
            .collection
            .update_many(
                with(to_user(account, user), doc! { "isRead": false }),
                doc! { "$set": { "isRead": true, "readAt": now } },
            )
            .await
            .map_err(StoreError::command("mark messages read"))?
            .modified_count;
        let unread = self
            .unread_count(account, user, &CountFilter::default())
            .await?;
        let newest = self.newest(to_account(account), 1).await?;
        if let Some(created) = newest
            .first()
            .and_then(|d| d.get_datetime("createdAt").ok().copied())
        {
            self.reads.mark_all(account, user, created, now).await?;
            self.first_read_of_account_messages(
                with(
                    to_account(account),
                    doc! { "createdAt": { "$lte": created } },
                ),
                now,
            )
            .await?;
        }
        // The count came after the user's own were marked: what it counted
        // is the account's messages they had not read.
        Ok(own + unread)
    }

    /// Sets `isRead` and `readAt` on the account-wide messages matching
    /// `query` that no user had read: their documents say when the account
    /// first read them, as before read state was per user.
    pub(super) async fn first_read_of_account_messages(
        &self,
        query: Document,
        now: DateTime,
    ) -> Result<(), StoreError> {
        self.collection
            .update_many(
                with(query, doc! { "isRead": false }),
                doc! { "$set": { "isRead": true, "readAt": now } },
            )
            .await
            .map_err(StoreError::command("mark messages read"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_inbox_is_the_account_and_the_user_never_a_colleague() {
        let account = AccountId::parse("5f0c8a3e2b1d4c0012345678").unwrap();
        let user = UserId::parse("5f0c8a3e2b1d4c00aaaaaaaa").unwrap();
        let everyone = to_account(account);
        assert_eq!(everyone.get_str("to.target"), Ok("account"));
        assert_eq!(everyone.get_object_id("to.id"), Ok(account.object_id()));
        let mine = to_user(account, user);
        assert_eq!(mine.get_str("to.target"), Ok("user"));
        assert_eq!(mine.get_object_id("to.id"), Ok(user.object_id()));
        for query in [everyone, mine] {
            assert_eq!(query.keys().next().map(String::as_str), Some("accountId"));
        }
    }
}
