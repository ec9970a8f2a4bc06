//! MongoDB: connecting, and the collections Herald writes.
//!
//! [`connect`] opens the client and proves the server answers before a worker
//! starts taking jobs. [`MessageStore`] owns the `message` collection.

mod batch;
mod message;

use std::time::Duration;

use mongodb::{bson::doc, options::ClientOptions, Client, Database};

pub use batch::{MessageBatcher, MAX_BATCH as MAX_INSERT_BATCH};
/// The `message` document for a message (the contract's shape), for
/// benchmarks that insert the same documents without Herald.
pub use message::to_document as message_document;
pub use message::{MessageStore, StoredMessage, MESSAGE_COLLECTION};

use crate::config::MongoSettings;

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
    /// The task that batches message inserts has stopped (the worker is
    /// shutting down); the job runs again later.
    #[error("the message inserter has stopped")]
    Stopped,
}

/// How long the driver looks for a usable server before giving up. Short, so
/// a down database is reported in seconds rather than after the driver's 30 s.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to MongoDB and pings the configured database.
pub async fn connect(settings: &MongoSettings) -> Result<Database, StoreError> {
    let redacted = herald_jobs::producer::redact_url(&settings.url);
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
    let client = Client::with_options(options).map_err(connect_error)?;
    let database = client.database(&settings.database);
    database
        .run_command(doc! { "ping": 1 })
        .await
        .map_err(connect_error)?;
    Ok(database)
}
