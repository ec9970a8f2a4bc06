//! What a user does to the messages of their inbox: read, unread, archive,
//! unarchive, delete; for a list of ids or for every message matching a
//! filter.
//!
//! The state is per user, as read state is ([`super::reads`]): a message to
//! one user keeps it in its own document, a message to the whole account
//! in the user's mark of it. Three rules keep the counts simple:
//!
//! - **a hidden message is read.** Archiving or deleting a message reads
//!   it; marking an archived message unread puts it back in the inbox. An
//!   unread count therefore never counts an archived or deleted message,
//!   and needs no condition of its own for them;
//! - **a deleted message is gone for that user**: no list, count or action
//!   finds it again;
//! - **deleting leaves a tombstone, not a hole.** A message to one user
//!   keeps its document, emptied: `title` and `content` become empty,
//!   `data` and `actionUrl` go, `deletedAt` says when, and `expiresAt`
//!   comes at most [`TOMBSTONE_DAYS`] later (the expiry sweep removes it,
//!   `crate::store::expiry`). The id stays taken meanwhile, so a re-run of
//!   the job that stored the message cannot store it again. A message to
//!   the whole account stays for its other users; the user's mark says it
//!   is deleted for them, and the mark goes with the message.
//!
//! A filter is applied in batches of [`ACTION_BATCH`] account-wide
//! messages, oldest first; the messages to the user are changed with one
//! update each way, whatever their number.

use std::collections::HashMap;

use futures::TryStreamExt;
use herald_jobs::{AccountId, MessageStatus, UserId};
use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};

use super::{
    reads::{Mark, MarkFields, Marked, ReadAll},
    to_account, to_user, Inbox, StoreError,
};

/// How long a deleted message's tombstone stays, at most.
pub const TOMBSTONE_DAYS: i64 = 7;

/// Account-wide messages looked at per round of a filtered action.
const ACTION_BATCH: i64 = 1_000;

/// How many times a message whose mark another call changed meanwhile is
/// looked at again before an action leaves it.
const MAX_PASSES: usize = 4;

/// Most message ids one action names.
pub const MAX_ACTION_IDS: usize = 100;

/// What a user does to messages of their inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxAction {
    /// Mark read (`readAt` keeps the first time).
    Read,
    /// Mark unread; an archived message goes back to the inbox.
    Unread,
    /// Move out of the inbox into the archive; reads it.
    Archive,
    /// Move from the archive back into the inbox, still read.
    Unarchive,
    /// Remove from the user's inbox for good.
    Delete,
}

impl InboxAction {
    /// The action's name in the API and its events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Unread => "unread",
            Self::Archive => "archive",
            Self::Unarchive => "unarchive",
            Self::Delete => "delete",
        }
    }
}

/// Narrows a filtered action. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionFilter {
    /// Only messages of this status.
    pub status: Option<MessageStatus>,
    /// Only messages of this category.
    pub category: Option<String>,
    /// Only messages the user read (`true`) or has not (`false`).
    pub is_read: Option<bool>,
    /// Only archived messages (`true`) or those in the inbox (`false`).
    pub archived: Option<bool>,
    /// Only messages created before this time.
    pub older_than: Option<DateTime>,
}

impl ActionFilter {
    /// The conditions on a message's own fields (the same names on a mark).
    fn conditions(&self) -> Document {
        let mut conditions = doc! {};
        if let Some(status) = self.status {
            conditions.insert("status", status.as_str());
        }
        if let Some(category) = &self.category {
            conditions.insert("category", category);
        }
        if let Some(before) = self.older_than {
            conditions.insert("createdAt", doc! { "$lt": before });
        }
        conditions
    }

    /// Whether a message in `state` matches the conditions on user state.
    fn admits(&self, state: &UserState) -> bool {
        self.is_read.is_none_or(|read| read == state.is_read())
            && self
                .archived
                .is_none_or(|archived| archived == state.is_archived())
    }
}

/// Which messages an action applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These messages (those of them the user sees).
    Ids(Vec<ObjectId>),
    /// Every message of the user's inbox matching the filter.
    Filter(ActionFilter),
}

/// What an action changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changed {
    /// How many messages changed state (an archived message archived again
    /// does not count).
    pub count: u64,
    /// Their ids, when the action named ids; empty for a filter.
    pub ids: Vec<ObjectId>,
}

/// A user's state of one message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct UserState {
    /// When the user read it; `None` while unread.
    pub read_at: Option<DateTime>,
    /// When the user archived it; `None` while in the inbox.
    pub archived_at: Option<DateTime>,
    /// Whether the user deleted it.
    pub deleted: bool,
}

impl UserState {
    /// The state of a message to one user, from its document.
    pub fn of_own(document: &Document) -> Self {
        let read = document.get_bool("isRead").unwrap_or(false);
        Self {
            read_at: read.then(|| {
                document
                    .get_datetime("readAt")
                    .copied()
                    .unwrap_or(DateTime::MIN)
            }),
            archived_at: document.get_datetime("archivedAt").ok().copied(),
            deleted: document.contains_key("deletedAt"),
        }
    }

    /// The state of an account-wide message created at `created` for a
    /// user with the watermark `read_all` and the mark `mark`;
    /// `first_read` is the document's `readAt` (when the account first
    /// read it, for messages only the earlier shared read state covers).
    pub fn of_account_wide(
        created: DateTime,
        read_all: Option<ReadAll>,
        mark: Option<&Mark>,
        first_read: Option<DateTime>,
    ) -> Self {
        let mark = mark.copied().unwrap_or_default();
        let read_at = match read_all {
            Some(all) if created <= all.before => match mark.unread_at {
                Some(_) => None,
                None => Some(all.read_at(created, first_read)),
            },
            _ => mark.read_at,
        };
        Self {
            read_at,
            archived_at: mark.archived_at,
            deleted: mark.deleted_at.is_some(),
        }
    }

    pub fn is_read(&self) -> bool {
        self.read_at.is_some()
    }

    pub fn is_archived(&self) -> bool {
        self.archived_at.is_some()
    }

    /// The state after `action` at `now`; the same state when it changes
    /// nothing. A deleted message stays as it is.
    fn after(self, action: InboxAction, now: DateTime) -> Self {
        if self.deleted {
            return self;
        }
        let read_at = self.read_at.or(Some(now));
        match action {
            InboxAction::Read => Self { read_at, ..self },
            InboxAction::Unread => Self {
                read_at: None,
                archived_at: None,
                ..self
            },
            InboxAction::Archive => Self {
                read_at,
                archived_at: self.archived_at.or(Some(now)),
                ..self
            },
            InboxAction::Unarchive => Self {
                archived_at: None,
                ..self
            },
            InboxAction::Delete => Self {
                read_at,
                archived_at: None,
                deleted: true,
            },
        }
    }

    /// The fields the user's mark of an account-wide message holds in
    /// this state: read state only where the watermark does not say it.
    fn mark_fields(&self, after_watermark: bool) -> MarkFields {
        MarkFields {
            read: after_watermark && self.is_read(),
            unread: !after_watermark && !self.is_read(),
            archived: self.is_archived(),
            deleted: self.deleted,
        }
    }
}

/// The update giving the messages to one user matched by a query the
/// state after `action` at `now`, for those in `from` (conditions on the
/// document's own state); each pair is one `update_many`.
fn own_updates(action: InboxAction, now: DateTime) -> Vec<(Document, Document)> {
    let unread = doc! { "isRead": false };
    let read = doc! { "isRead": true };
    let in_inbox = doc! { "archivedAt": { "$exists": false } };
    let archived = doc! { "archivedAt": { "$exists": true } };
    let read_now = doc! { "isRead": true, "readAt": now };
    match action {
        InboxAction::Read => vec![(unread, doc! { "$set": read_now })],
        InboxAction::Unread => vec![(
            read,
            doc! { "$set": { "isRead": false, "readAt": Bson::Null }, "$unset": { "archivedAt": "" } },
        )],
        InboxAction::Archive => vec![
            // The read ones first: the unread ones are read by the second.
            (
                doc! { "$and": [read, in_inbox] },
                doc! { "$set": { "archivedAt": now } },
            ),
            (
                unread,
                doc! { "$set": { "isRead": true, "readAt": now, "archivedAt": now } },
            ),
        ],
        InboxAction::Unarchive => vec![(archived, doc! { "$unset": { "archivedAt": "" } })],
        InboxAction::Delete => {
            let expires = DateTime::from_millis(
                now.timestamp_millis()
                    .saturating_add(TOMBSTONE_DAYS * 86_400_000),
            );
            vec![(
                doc! {},
                doc! {
                    "$set": { "deletedAt": now, "isRead": true, "title": "", "content": "" },
                    "$unset": { "data": "", "actionUrl": "", "archivedAt": "" },
                    "$min": { "expiresAt": expires },
                },
            )]
        }
    }
}

/// The conditions on a message to one user's own state for `filter`.
fn own_state_conditions(filter: &ActionFilter) -> Document {
    let mut conditions = doc! {};
    if let Some(read) = filter.is_read {
        conditions.insert("isRead", read);
    }
    if let Some(archived) = filter.archived {
        conditions.insert("archivedAt", doc! { "$exists": archived });
    }
    conditions
}

/// `doc! { "$and": parts }` without the empty parts.
fn all_of(parts: impl IntoIterator<Item = Document>) -> Document {
    let parts: Vec<Bson> = parts
        .into_iter()
        .filter(|part| !part.is_empty())
        .map(Bson::Document)
        .collect();
    doc! { "$and": parts }
}

/// `{_id: {$in: ids}}`.
fn id_in(ids: &[ObjectId]) -> Document {
    doc! { "_id": { "$in": ids.iter().map(|id| Bson::ObjectId(*id)).collect::<Vec<_>>() } }
}

/// Not deleted: the condition every query of the user's own messages has.
pub(super) fn not_deleted() -> Document {
    doc! { "deletedAt": { "$exists": false } }
}

impl Inbox {
    /// Applies `action` to the messages of `user`'s inbox in `account` that
    /// `selection` names, for `user` alone. Messages of other accounts or
    /// other users, and messages the user deleted, are left out as if they
    /// did not exist.
    pub async fn apply(
        &self,
        account: AccountId,
        user: UserId,
        action: InboxAction,
        selection: &Selection,
    ) -> Result<Changed, StoreError> {
        let now = DateTime::now();
        let read_all = self.reads.read_all(account, user, &self.collection).await?;
        let (filter, ids) = match selection {
            Selection::Ids(ids) => (ActionFilter::default(), Some(ids.as_slice())),
            Selection::Filter(filter) => (filter.clone(), None),
        };
        let mut changed = self
            .apply_to_own(account, user, action, &filter, ids, now)
            .await?;
        let wide = self
            .apply_to_account_wide(account, user, action, &filter, ids, read_all, now)
            .await?;
        changed.count += wide.count;
        changed.ids.extend(wide.ids);
        Ok(changed)
    }

    /// [`Self::apply`] for the messages to `user` alone.
    async fn apply_to_own(
        &self,
        account: AccountId,
        user: UserId,
        action: InboxAction,
        filter: &ActionFilter,
        ids: Option<&[ObjectId]>,
        now: DateTime,
    ) -> Result<Changed, StoreError> {
        let base = all_of([
            to_user(account, user),
            not_deleted(),
            filter.conditions(),
            own_state_conditions(filter),
            ids.map(id_in).unwrap_or_default(),
        ]);
        let mut changed = Changed::default();
        for (from, update) in own_updates(action, now) {
            let query = all_of([base.clone(), from]);
            if let Some(ids) = ids {
                // Named ones, one at a time: each write is conditional on
                // the state it changes, so of several calls at once one
                // changes a message, and learns that it did.
                for id in ids {
                    if changed.ids.contains(id) {
                        continue;
                    }
                    let modified = self
                        .collection
                        .update_one(all_of([query.clone(), doc! { "_id": id }]), update.clone())
                        .await
                        .map_err(StoreError::command("update messages"))?
                        .modified_count;
                    if modified == 1 {
                        changed.count += 1;
                        changed.ids.push(*id);
                    }
                }
            } else {
                changed.count += self
                    .collection
                    .update_many(query, update)
                    .await
                    .map_err(StoreError::command("update messages"))?
                    .modified_count;
            }
        }
        Ok(changed)
    }

    /// [`Self::apply`] for the account's messages to everyone: each one's
    /// state for the user from the watermark and their mark, changed
    /// through the marks, [`ACTION_BATCH`] messages at a time.
    #[allow(clippy::too_many_arguments)]
    async fn apply_to_account_wide(
        &self,
        account: AccountId,
        user: UserId,
        action: InboxAction,
        filter: &ActionFilter,
        ids: Option<&[ObjectId]>,
        read_all: Option<ReadAll>,
        now: DateTime,
    ) -> Result<Changed, StoreError> {
        let mut changed = Changed::default();
        // Reading by a filter: the messages up to the watermark are read
        // but those marked unread again, whose marks go.
        let mut floor = None;
        if let (InboxAction::Read, None, Some(all)) = (action, ids, read_all) {
            if filter.is_read != Some(true) && filter.archived != Some(true) {
                changed.count += self
                    .reads
                    .clear_unread_again(account, user, all.before, filter.conditions())
                    .await?;
            }
            floor = Some(all.before);
        }
        let mut after: Option<(DateTime, ObjectId)> = None;
        loop {
            let position = match (after, floor) {
                (Some((created, id)), _) => doc! { "$or": [
                    { "createdAt": { "$gt": created } },
                    { "createdAt": created, "_id": { "$gt": id } },
                ] },
                (None, Some(before)) => doc! { "createdAt": { "$gt": before } },
                (None, None) => doc! {},
            };
            let query = all_of([
                to_account(account),
                filter.conditions(),
                ids.map(id_in).unwrap_or_default(),
                position,
            ]);
            let batch: Vec<Document> = self
                .collection
                .find(query)
                .sort(doc! { "createdAt": 1, "_id": 1 })
                .projection(
                    doc! { "_id": 1, "createdAt": 1, "status": 1, "category": 1, "readAt": 1 },
                )
                .limit(ACTION_BATCH)
                .await
                .map_err(StoreError::command("list messages"))?
                .try_collect()
                .await
                .map_err(StoreError::command("list messages"))?;
            let messages: Vec<(Marked, Option<DateTime>)> = batch
                .iter()
                .filter_map(|d| Some((Marked::of(d)?, d.get_datetime("readAt").ok().copied())))
                .collect();
            let done = self
                .change_account_wide(
                    account,
                    user,
                    action,
                    filter,
                    ids.is_some(),
                    read_all,
                    &messages,
                    now,
                )
                .await?;
            changed.count += done.count;
            changed.ids.extend(done.ids);
            match messages.last() {
                Some((last, _)) if batch.len() as i64 == ACTION_BATCH => {
                    after = Some((last.created_at, last.id));
                }
                _ => return Ok(changed),
            }
        }
    }
}

impl Inbox {
    /// Applies `action` to `messages` (account-wide, each with its
    /// document's `readAt`) for `user`: each one's state from the
    /// watermark and their mark, then the marks written, grouped by the
    /// state they go from and to. A mark another call changed meanwhile
    /// is looked at afresh, up to [`MAX_PASSES`] times, so each change is
    /// made and counted once. `by_id` learns which messages changed.
    #[allow(clippy::too_many_arguments)]
    async fn change_account_wide(
        &self,
        account: AccountId,
        user: UserId,
        action: InboxAction,
        filter: &ActionFilter,
        by_id: bool,
        read_all: Option<ReadAll>,
        messages: &[(Marked, Option<DateTime>)],
        now: DateTime,
    ) -> Result<Changed, StoreError> {
        let mut changed = Changed::default();
        let mut pending: Vec<&(Marked, Option<DateTime>)> = messages.iter().collect();
        for _ in 0..MAX_PASSES {
            if pending.is_empty() {
                break;
            }
            let ids: Vec<ObjectId> = pending.iter().map(|(m, _)| m.id).collect();
            let marks = self.reads.marks_of(user, &ids).await?;
            let mut groups: HashMap<(Option<MarkFields>, MarkFields), Vec<Marked>> = HashMap::new();
            // Those read for the first time by this user: their documents
            // say when the account first read them.
            let mut newly_read = Vec::new();
            for (message, first_read) in &pending {
                let mark = marks.get(&message.id);
                let state =
                    UserState::of_account_wide(message.created_at, read_all, mark, *first_read);
                if state.deleted || !filter.admits(&state) {
                    continue;
                }
                let next = state.after(action, now);
                if next == state {
                    continue;
                }
                if next.is_read() && !state.is_read() {
                    newly_read.push(message.id);
                }
                let after_watermark = read_all.is_none_or(|all| message.created_at > all.before);
                groups
                    .entry((mark.map(Mark::fields), next.mark_fields(after_watermark)))
                    .or_default()
                    .push(message.clone());
            }
            let mut again = Vec::new();
            for ((prior, next), group) in &groups {
                let done = self
                    .reads
                    .change(account, user, group, *prior, next, now, by_id)
                    .await?;
                changed.count += done.count;
                if by_id {
                    changed.ids.extend(done.ids);
                }
                again.extend(done.again);
            }
            if !newly_read.is_empty() {
                self.first_read_of_account_messages(id_in(&newly_read), now)
                    .await?;
            }
            pending = messages
                .iter()
                .filter(|(m, _)| again.contains(&m.id))
                .collect();
        }
        if !pending.is_empty() {
            tracing::warn!(
                account_id = %account, user_id = %user, action = action.as_str(),
                messages = pending.len(),
                "messages kept changing under an inbox action; left as they are"
            );
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: i64) -> DateTime {
        DateTime::from_millis(millis)
    }

    #[test]
    fn a_hidden_message_is_read_and_unread_brings_it_back() {
        let now = at(5_000);
        let fresh = UserState::default();
        let archived = fresh.after(InboxAction::Archive, now);
        assert!(archived.is_read() && archived.is_archived());
        let deleted = fresh.after(InboxAction::Delete, now);
        assert!(deleted.is_read() && deleted.deleted && !deleted.is_archived());
        let back = archived.after(InboxAction::Unread, now);
        assert!(!back.is_read() && !back.is_archived());
        let unarchived = archived.after(InboxAction::Unarchive, now);
        assert!(unarchived.is_read() && !unarchived.is_archived());
    }

    #[test]
    fn a_deleted_message_stays_deleted_and_repeats_change_nothing() {
        let now = at(5_000);
        let deleted = UserState::default().after(InboxAction::Delete, now);
        for action in [
            InboxAction::Read,
            InboxAction::Unread,
            InboxAction::Archive,
            InboxAction::Unarchive,
            InboxAction::Delete,
        ] {
            assert_eq!(deleted.after(action, at(9_000)), deleted, "{action:?}");
        }
        let read = UserState::default().after(InboxAction::Read, now);
        assert_eq!(
            read.after(InboxAction::Read, at(9_000)),
            read,
            "first time kept"
        );
        let archived = read.after(InboxAction::Archive, now);
        assert_eq!(archived.after(InboxAction::Archive, at(9_000)), archived);
    }

    #[test]
    fn up_to_the_watermark_a_mark_records_unread_after_it_read() {
        let all = ReadAll::own_at(at(1_000), at(2_000));
        let older = UserState::of_account_wide(at(500), Some(all), None, None);
        assert!(older.is_read(), "the watermark reads it");
        let unread_again = Mark {
            unread_at: Some(at(3_000)),
            ..Mark::default()
        };
        let older = UserState::of_account_wide(at(500), Some(all), Some(&unread_again), None);
        assert!(!older.is_read());
        let newer = UserState::of_account_wide(at(1_500), Some(all), None, None);
        assert!(!newer.is_read());
        // What a mark holds: read state only where the watermark does not.
        let unread = UserState::default();
        assert!(unread.mark_fields(true).is_empty());
        assert!(unread.mark_fields(false).unread);
        let read = unread.after(InboxAction::Read, at(4_000));
        assert!(read.mark_fields(true).read);
        assert!(read.mark_fields(false).is_empty());
        let archived = unread.after(InboxAction::Archive, at(4_000));
        let fields = archived.mark_fields(false);
        assert!(fields.archived && !fields.read && !fields.unread);
    }

    #[test]
    fn a_filter_matches_on_state_and_fields() {
        let filter = ActionFilter {
            is_read: Some(false),
            archived: Some(false),
            ..ActionFilter::default()
        };
        assert!(filter.admits(&UserState::default()));
        let archived = UserState::default().after(InboxAction::Archive, at(1));
        assert!(!filter.admits(&archived));
        let conditions = ActionFilter {
            status: Some(MessageStatus::Error),
            category: Some("billing".into()),
            older_than: Some(at(7)),
            ..ActionFilter::default()
        }
        .conditions();
        assert_eq!(conditions.get_str("status"), Ok("error"));
        assert_eq!(conditions.get_str("category"), Ok("billing"));
        assert!(conditions.get_document("createdAt").is_ok());
    }
}
