//! Group commit for message inserts: concurrent jobs share `insert_many` calls.
//!
//! Each running `send_message` job hands its message to the
//! [`MessageBatcher`] and waits for its own answer. One task takes every
//! message that arrived while its previous call was in flight (at most
//! [`MAX_BATCH`]) and stores them with one unordered `insert_many`. There is
//! no timer: a lone job is inserted at once, and under load a batch grows by
//! itself with the number of jobs waiting, so MongoDB sees one round trip
//! per batch instead of one per message.
//!
//! Idempotency stays per message: a duplicate-key error on one document
//! means a document with that `_id` exists. It is this message, stored by
//! an earlier run, when it belongs to the same account and recipient: the
//! answer says so, with the first run's `createdAt`. Otherwise the id is
//! another message's ([`StoreError::IdTaken`]): nothing is stored, and the
//! job fails for good rather than succeed silently, so one account can
//! never suppress another's message by taking its id first. The rest of
//! the batch is stored as usual. Any other failure is reported to the jobs it concerns,
//! which apalis retries; re-running them is safe for the same reason.
//! `createdAt` is set when a job hands its message over, so batching does
//! not change the times or the order documents carry.

use std::collections::HashMap;

use herald_jobs::{ValidMessage, ValidRecipient};
use mongodb::{
    bson::{doc, oid::ObjectId, Bson, DateTime, Document},
    error::{ErrorKind, InsertManyError},
    Collection, Database,
};
use tokio::sync::{mpsc, oneshot};

use super::{message::DUPLICATE_KEY, StoreError, StoredMessage, MESSAGE_COLLECTION};

/// Most documents in one `insert_many`.
pub const MAX_BATCH: usize = 256;

/// One job waiting for its message to be stored.
struct Pending {
    message: ValidMessage,
    created_at: DateTime,
    expires_at: Option<DateTime>,
    reply: oneshot::Sender<Result<StoredMessage, StoreError>>,
}

/// Stores messages in batches; cheap to clone, shared by a worker's jobs.
///
/// The batching task ends when the last clone is dropped, after storing
/// what it was given.
#[derive(Debug, Clone)]
pub struct MessageBatcher {
    queue: mpsc::Sender<Pending>,
    keep: Option<std::time::Duration>,
}

/// What is told the size of each `insert_many` and how long it took, from
/// the call to its answer (the worker's metrics).
pub type BatchObserver = Box<dyn Fn(usize, std::time::Duration) + Send + Sync>;

impl MessageBatcher {
    /// Starts the batching task for `database`'s `message` collection on
    /// the current Tokio runtime.
    pub fn spawn(database: &Database) -> Self {
        Self::spawn_observed(database, Box::new(|_, _| {}))
    }

    /// [`MessageBatcher::spawn`], telling `observe` how many messages each
    /// `insert_many` carried and how long it took.
    pub fn spawn_observed(database: &Database, observe: BatchObserver) -> Self {
        let (queue, pending) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(run(
            database.collection(MESSAGE_COLLECTION),
            pending,
            observe,
        ));
        Self { queue, keep: None }
    }

    /// Gives every message stored without its own `expiresAt` one `keep`
    /// after its `createdAt` (`message.keep_days`); `None` keeps them.
    pub fn keeping(mut self, keep: Option<std::time::Duration>) -> Self {
        self.keep = keep;
        self
    }

    /// Stores `message` unless a document with its id exists already,
    /// sharing the round trip with other messages handed over meanwhile.
    pub async fn insert(&self, message: ValidMessage) -> Result<StoredMessage, StoreError> {
        let (reply, answer) = oneshot::channel();
        let created_at = DateTime::now();
        let pending = Pending {
            expires_at: crate::message::expiry_of(&message, created_at, self.keep),
            message,
            created_at,
            reply,
        };
        self.queue
            .send(pending)
            .await
            .map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }
}

async fn run(
    collection: Collection<Document>,
    mut pending: mpsc::Receiver<Pending>,
    observe: BatchObserver,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let documents = batch.len();
        let started = std::time::Instant::now();
        store(&collection, std::mem::take(&mut batch)).await;
        observe(documents, started.elapsed());
    }
}

/// What became of each document of a batch.
enum Fate {
    Inserted,
    Duplicate,
    Failed(mongodb::error::Error),
}

/// Inserts `batch` and answers every job in it.
async fn store(collection: &Collection<Document>, batch: Vec<Pending>) {
    let documents: Vec<Document> = batch
        .iter()
        .map(|p| crate::message::to_document(&p.message, p.created_at, p.expires_at))
        .collect();
    let fates: Vec<Fate> = match collection.insert_many(documents).ordered(false).await {
        Ok(_) => batch.iter().map(|_| Fate::Inserted).collect(),
        Err(err) => fates_of(&err, batch.len()),
    };
    let duplicates: Vec<ObjectId> = batch
        .iter()
        .zip(&fates)
        .filter(|(_, fate)| matches!(fate, Fate::Duplicate))
        .map(|(p, _)| p.message.id.object_id())
        .collect();
    let existing = match owners_of(collection, &duplicates).await {
        Ok(existing) => existing,
        Err(source) => {
            // Without the first run's createdAt the answer would be wrong;
            // fail those jobs so they run again.
            for (p, fate) in batch.into_iter().zip(fates) {
                let answer = match fate {
                    Fate::Inserted => Ok(stored(p.message, p.created_at, true)),
                    Fate::Duplicate => Err(StoreError::Command {
                        operation: "find in message",
                        source: source.clone(),
                    }),
                    Fate::Failed(source) => Err(insert_error(source)),
                };
                let _ = p.reply.send(answer);
            }
            return;
        }
    };
    for (p, fate) in batch.into_iter().zip(fates) {
        let answer = match fate {
            Fate::Inserted => Ok(stored(p.message, p.created_at, true)),
            Fate::Duplicate => match existing.get(&p.message.id.object_id()) {
                Some(owner) if owner.is_of(&p.message) => {
                    Ok(stored(p.message, owner.created_at, false))
                }
                Some(_) => Err(StoreError::IdTaken { id: p.message.id }),
                // Removed between the insert and the lookup: run again.
                None => Err(StoreError::Raced { id: p.message.id }),
            },
            Fate::Failed(source) => Err(insert_error(source)),
        };
        // A job that stopped waiting (its run was cut off) needs no answer.
        let _ = p.reply.send(answer);
    }
}

fn stored(message: ValidMessage, created_at: DateTime, newly_inserted: bool) -> StoredMessage {
    StoredMessage {
        message,
        created_at,
        newly_inserted,
    }
}

fn insert_error(source: mongodb::error::Error) -> StoreError {
    StoreError::Command {
        operation: "insert into message",
        source,
    }
}

/// Each document's fate after a failed unordered `insert_many` of `len`.
fn fates_of(err: &mongodb::error::Error, len: usize) -> Vec<Fate> {
    match err.kind.as_ref() {
        ErrorKind::InsertMany(InsertManyError {
            write_errors: Some(errors),
            write_concern_error: None,
            ..
        }) => {
            let mut fates: Vec<Fate> = (0..len).map(|_| Fate::Inserted).collect();
            for e in errors {
                if let Some(fate) = fates.get_mut(e.index) {
                    *fate = if e.code == DUPLICATE_KEY {
                        Fate::Duplicate
                    } else {
                        Fate::Failed(err.clone())
                    };
                }
            }
            fates
        }
        // The command as a whole failed (or its durability is unknown):
        // nothing can be promised for any document.
        _ => (0..len).map(|_| Fate::Failed(err.clone())).collect(),
    }
}

/// What the stored document with a message's id says about whose it is.
#[derive(Debug, Clone, Copy)]
struct Owner {
    account: Option<ObjectId>,
    recipient: Option<(ObjectId, bool)>,
    created_at: DateTime,
}

impl Owner {
    /// Whether the stored document is `message` itself (an earlier run's):
    /// same account, same recipient.
    fn is_of(&self, message: &ValidMessage) -> bool {
        let recipient = (
            message.to.object_id(),
            matches!(message.to, ValidRecipient::User(_)),
        );
        self.account == Some(message.account.object_id()) && self.recipient == Some(recipient)
    }
}

/// The owners of the existing documents among `ids`.
async fn owners_of(
    collection: &Collection<Document>,
    ids: &[ObjectId],
) -> Result<HashMap<ObjectId, Owner>, mongodb::error::Error> {
    let mut found = HashMap::new();
    if ids.is_empty() {
        return Ok(found);
    }
    let mut cursor = collection
        .find(
            doc! { "_id": { "$in": ids.iter().map(|id| Bson::ObjectId(*id)).collect::<Vec<_>>() } },
        )
        .projection(doc! { "accountId": 1, "to": 1, "createdAt": 1 })
        .await?;
    while cursor.advance().await? {
        let document = cursor.deserialize_current()?;
        let Ok(id) = document.get_object_id("_id") else {
            continue;
        };
        let recipient = document.get_document("to").ok().and_then(|to| {
            Some((
                to.get_object_id("id").ok()?,
                to.get_str("target").ok()? == "user",
            ))
        });
        found.insert(
            id,
            Owner {
                account: document.get_object_id("accountId").ok(),
                recipient,
                created_at: document
                    .get_datetime("createdAt")
                    .copied()
                    .unwrap_or(DateTime::MIN),
            },
        );
    }
    Ok(found)
}
