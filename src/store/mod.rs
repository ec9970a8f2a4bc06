//! MongoDB: connecting, and the collections Herald writes.
//!
//! [`connect`] opens the client and proves the server answers before a worker
//! starts taking jobs. [`MessageStore`] writes the `message` collection,
//! [`Inbox`] reads it for the frontend, [`ApiTokenStore`] keeps the
//! producers' API tokens, [`operators`] the operators' tokens and their
//! roles, and [`audit`] the trail of what operators did.

pub mod audit;
mod batch;
pub mod expiry;
pub mod inbox;
mod message;
pub mod operators;
pub mod tokens;

use std::time::Duration;

use mongodb::{
    bson::doc,
    options::{Acknowledgment, ClientOptions, WriteConcern},
    Client, Database,
};

/// The `message` document for a message (the contract's shape), for
/// benchmarks that insert the same documents without Herald.
pub use crate::message::to_document as message_document;
pub use batch::{MessageBatcher, MAX_BATCH as MAX_INSERT_BATCH};
pub use expiry::{CollectionFacts, MessageExpiry};
pub use inbox::Inbox;
pub(crate) use message::is_duplicate_key;
pub use message::{MessageStore, StoredMessage, MESSAGE_COLLECTION};
pub use tokens::{ApiTokenStore, TokenScope};

use crate::config::{MongoSettings, WriteAcknowledgment};

/// Why a MongoDB operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The server could not be reached or refused the handshake.
    #[error("cannot reach MongoDB at {url}: {source}")]
    Connect {
        /// The URL tried, without credentials.
        url: String,
        /// The driver's error.
        #[source]
        source: mongodb::error::Error,
    },
    /// A command failed.
    #[error("MongoDB {operation} failed: {source}")]
    Command {
        /// What was being done, e.g. `insert into message`.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: mongodb::error::Error,
    },
    /// The operating system's random source failed (creating a token).
    #[error("cannot read random bytes: {0}")]
    Random(String),
    /// The task that batches message inserts has stopped (the worker is
    /// shutting down); the job runs again later.
    #[error("the message inserter has stopped")]
    Stopped,
    /// The message's id is the `_id` of a stored message of another account
    /// or recipient: nothing was stored. Running again cannot help; the
    /// producer must choose another id (`docs/security.md`, "Ids and idempotency").
    #[error(
        "message id {id} is already the id of another message (another account's, or another \
         recipient's); nothing was stored or pushed: give this message an id no one else can \
         choose or guess"
    )]
    IdTaken {
        /// The id asked for.
        id: herald_jobs::MessageId,
    },
    /// The document holding the message's id was removed between the
    /// insert that found it and the read of its owner; the job runs again.
    #[error("message id {id} was taken, then freed, while being stored; the job runs again")]
    Raced {
        /// The id asked for.
        id: herald_jobs::MessageId,
    },
}

impl StoreError {
    /// The mapping of a failed driver call to [`StoreError::Command`]
    /// naming `operation`, for `map_err`.
    pub fn command(operation: &'static str) -> impl Fn(mongodb::error::Error) -> StoreError {
        move |source| StoreError::Command { operation, source }
    }
}

/// Creates `indexes` on `collection` (those that exist already are left as
/// they are); `operation` names the call in an error.
pub async fn ensure_indexes<T: Send + Sync>(
    collection: &mongodb::Collection<T>,
    indexes: impl IntoIterator<Item = mongodb::IndexModel>,
    operation: &'static str,
) -> Result<(), StoreError> {
    collection
        .create_indexes(indexes)
        .await
        .map_err(StoreError::command(operation))?;
    Ok(())
}

/// How long the driver looks for a usable server before giving up. Short, so
/// a down database is reported in seconds rather than after the driver's 30 s.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle on the configured database whose client connects on first use:
/// nothing is sent to the server yet (a `mongodb+srv` URL is resolved). For processes that must start while
/// MongoDB is down (`herald web` reports it on `/readyz`).
pub async fn open(settings: &MongoSettings) -> Result<Database, StoreError> {
    let redacted = herald_jobs::redact_url(&settings.url);
    let connect_error = |source| StoreError::Connect {
        url: redacted.clone(),
        source,
    };
    let mut options = ClientOptions::parse(&settings.url)
        .await
        .map_err(connect_error)?;
    options.app_name.get_or_insert_with(|| "herald".to_owned());
    options
        .server_selection_timeout
        .get_or_insert(SERVER_SELECTION_TIMEOUT);
    options
        .connect_timeout
        .get_or_insert(SERVER_SELECTION_TIMEOUT);
    options.write_concern = Some(write_concern(settings));
    let client = Client::with_options(options).map_err(connect_error)?;
    Ok(client.database(&settings.database))
}

/// How long a write waits for the members its write concern names before
/// it fails (and its job runs again later), so a replica set that lost its
/// majority stalls no worker for good.
pub const WRITE_CONCERN_TIMEOUT: Duration = Duration::from_secs(10);

/// The write concern every write Herald makes is held to (settings
/// `mongodb.write_concern` and `mongodb.write_journal`).
pub fn write_concern(settings: &MongoSettings) -> WriteConcern {
    let w = match &settings.write_concern {
        WriteAcknowledgment::Majority => Acknowledgment::Majority,
        WriteAcknowledgment::Members(n) => Acknowledgment::Nodes(*n),
        WriteAcknowledgment::Tag(tag) => Acknowledgment::Custom(tag.clone()),
    };
    WriteConcern::builder()
        .w(w)
        .journal(settings.write_journal)
        .w_timeout(WRITE_CONCERN_TIMEOUT)
        .build()
}

/// Connects to MongoDB and pings the configured database.
pub async fn connect(settings: &MongoSettings) -> Result<Database, StoreError> {
    let database = open(settings).await?;
    database
        .run_command(doc! { "ping": 1 })
        .await
        .map_err(|source| StoreError::Connect {
            url: herald_jobs::redact_url(&settings.url),
            source,
        })?;
    Ok(database)
}

/// How long [`close`] waits for open cursors and sessions to end before it
/// closes the connections regardless.
const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// Shuts the client behind `database` down in order: its background tasks
/// stop and its connections close while the runtime is still running.
/// Dropping a client instead leaves that work to the runtime's own
/// shutdown, where the driver's tasks can panic; every process calls this
/// before it exits.
pub async fn close(database: &Database) {
    let client = database.client().clone();
    if tokio::time::timeout(CLOSE_PATIENCE, client.clone().shutdown())
        .await
        .is_err()
    {
        tracing::warn!("MongoDB cursors still open after 5 s; closing the connections anyway");
        client.shutdown().immediate(true).await;
    }
}
