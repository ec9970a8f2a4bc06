//! # herald-jobs — the contract between producers and Herald's workers
//!
//! A web app that wants Herald to do something puts a job on a Redis queue.
//! This crate is everything such a producer needs, and nothing of the worker:
//!
//! - [`message`]: the `send_message` job — its wire payload ([`SendMessage`]),
//!   the validation that turns it into a [`ValidMessage`], and the enums of the
//!   message model (status, sender kind, recipient kind).
//! - [`export`]: the `export` job — a collection streamed to CSV for one
//!   account ([`Export`], validated into a [`ValidExport`]), and the bounds
//!   a filter must keep ([`FilterPolicy`]).
//! - [`ids`]: ObjectId newtypes parsed once from hex, so a value that reaches a
//!   handler is known to be well formed; the unpredictable ids Herald makes.
//! - [`queue`]: queue names and the Redis key namespace they live under.
//! - [`producer`]: [`Producer`], a small client that validates a job and enqueues
//!   it.
//! - [`enqueue`]: the enqueue script the producer and the worker share.
//! - [`recall`]: recalling a scheduled message before it is sent.
//! - [`error`]: [`ValidationError`], which always names the offending field.
//! - [`object`]: [`object_only!`], which makes a payload type accept a JSON
//!   object and nothing else.
//! - [`redis_url`]: Redis URLs, including `redis+sentinel://` and
//!   `redis+cluster://`; [`connection`]: the one connection type for them.
//! - [`task_order`]: job ids that sort in the order one process made them.
//! - [`trace`]: the W3C `traceparent` a job carries across the hop.
//!
//! Producers in other languages write the same JSON; its shape is documented on
//! [`SendMessage`] and in the repository's README.

pub mod claims;
pub mod connection;
pub mod enqueue;
pub mod error;
pub mod export;
pub mod ids;
pub mod message;
pub mod object;
pub mod producer;
pub mod queue;
pub mod recall;
pub mod redact;
pub mod redis_url;
mod string_enum;
pub mod task_order;
pub mod trace;

pub use connection::{Patience, RedisConnection};
pub use error::ValidationError;
pub use export::{
    CheckedExport, Export, ExportField, ExportKey, ExportLimits, ExportSort, FilterPolicy,
    SortOrder, ValidExport,
};
pub use ids::{AccountId, IdempotencyKey, MessageId, UserId};
pub use message::{
    MessageLimits, MessageStatus, Recipient, RecipientTarget, SendMessage, Sender, SenderFrom,
    ValidMessage, ValidRecipient, ValidSender,
};
pub use producer::{Producer, ProducerError};
pub use queue::{Namespace, QueueName};
pub use recall::Recall;
pub use redact::redact_url;
pub use trace::TraceParent;
