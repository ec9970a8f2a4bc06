//! Message retention: removing messages whose `expiresAt` has passed, with
//! every user's read mark of them, and the facts an operator checks it by.
//!
//! A message carries `expiresAt` when its producer set one or the worker
//! keeps messages for `message.keep_days` (see
//! [`crate::message::expiry_of`]); a sparse index holds only those, so the
//! sweep finds them without touching the messages that are kept. The
//! sweep works in batches of [`EXPIRY_BATCH`]: the batch's read marks in
//! `message_read` go first, then the messages, so a sweep cut off between
//! the two leaves a message that the next sweep removes, never a mark
//! without its message. A message addressed to one user keeps that user's
//! read state in its own document, which goes with it; the per-user
//! watermarks of `inbox_state` name no message and stay.
//!
//! A worker runs [`MessageExpiry::sweep`] every `message.expiry_sweep_secs`,
//! one worker at a time (`crate::worker::periodic`).

use futures::TryStreamExt;
use mongodb::{
    bson::{doc, Bson, DateTime, Document},
    Collection, Database,
};

use herald_jobs::Namespace;

use super::{inbox::READ_COLLECTION, StoreError, MESSAGE_COLLECTION};

/// The key whose holder sweeps this period in `namespace`,
/// `{NAMESPACE}:retention:message`.
pub fn turn_key(namespace: &Namespace) -> String {
    namespace.key("retention:message")
}

/// Messages removed per round of a sweep.
pub const EXPIRY_BATCH: i64 = 1_000;

/// Removes expired messages; cheap to clone.
#[derive(Debug, Clone)]
pub struct MessageExpiry {
    database: Database,
    messages: Collection<Document>,
    marks: Collection<Document>,
}

/// What the `message` collection holds, as the dashboard and `herald
/// doctor` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectionFacts {
    /// Documents in the collection.
    pub documents: u64,
    /// Their size, in bytes, as the server counts it (`collStats` `size`).
    pub bytes: u64,
    /// `createdAt` of the oldest stored message: the first document in the
    /// collection's natural (insertion) order; `None` when it is empty.
    pub oldest: Option<DateTime>,
}

impl MessageExpiry {
    /// The sweep over `database`'s `message` and `message_read`.
    pub fn new(database: &Database) -> Self {
        Self {
            database: database.clone(),
            messages: database.collection(MESSAGE_COLLECTION),
            marks: database.collection(READ_COLLECTION),
        }
    }

    /// Removes every message whose `expiresAt` is at or before `now`, and
    /// their read marks; how many messages were removed.
    pub async fn sweep(&self, now: DateTime) -> Result<u64, StoreError> {
        let mut removed = 0;
        loop {
            let ids: Vec<Bson> = self
                .messages
                .find(doc! { "expiresAt": { "$lte": now } })
                .projection(doc! { "_id": 1 })
                .limit(EXPIRY_BATCH)
                .await
                .map_err(StoreError::command("find expired messages"))?
                .try_collect::<Vec<Document>>()
                .await
                .map_err(StoreError::command("find expired messages"))?
                .into_iter()
                .filter_map(|document| document.get("_id").cloned())
                .collect();
            if ids.is_empty() {
                return Ok(removed);
            }
            let full = ids.len() as i64 == EXPIRY_BATCH;
            self.marks
                .delete_many(doc! { "messageId": { "$in": &ids } })
                .await
                .map_err(StoreError::command("remove read marks of expired messages"))?;
            let deleted = self
                .messages
                .delete_many(doc! { "_id": { "$in": &ids }, "expiresAt": { "$lte": now } })
                .await
                .map_err(StoreError::command("remove expired messages"))?
                .deleted_count;
            removed += deleted;
            if !full || deleted == 0 {
                return Ok(removed);
            }
        }
    }

    /// How many messages the collection holds, their size and the oldest.
    pub async fn facts(&self) -> Result<CollectionFacts, StoreError> {
        let stats = match self
            .database
            .run_command(doc! { "collStats": MESSAGE_COLLECTION })
            .await
        {
            Ok(stats) => stats,
            // Servers that answer a collection not made yet with an error
            // rather than zeros.
            Err(error) if namespace_not_found(&error) => Document::new(),
            Err(error) => return Err(StoreError::command("collStats on message")(error)),
        };
        let number = |field: &str| match stats.get(field) {
            Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
            Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
            Some(Bson::Double(n)) if *n >= 0.0 => *n as u64,
            _ => 0,
        };
        let oldest = self
            .messages
            .find_one(doc! {})
            .sort(doc! { "$natural": 1 })
            .projection(doc! { "createdAt": 1 })
            .await
            .map_err(StoreError::command("find the oldest message"))?
            .and_then(|document| document.get_datetime("createdAt").ok().copied());
        Ok(CollectionFacts {
            documents: number("count"),
            bytes: number("size"),
            oldest,
        })
    }
}

/// Whether `error` is the server's "no such collection" (code 26).
fn namespace_not_found(error: &mongodb::error::Error) -> bool {
    matches!(error.kind.as_ref(), mongodb::error::ErrorKind::Command(e) if e.code == 26)
}
