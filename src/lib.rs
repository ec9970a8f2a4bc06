//! # Herald — notifications and exports worker
//!
//! Web apps enqueue jobs in Redis (see the `herald-jobs` crate for the
//! contract); Herald's workers store messages in MongoDB and push realtime
//! events to Tuisongbao or a Pusher-protocol server so the browser updates
//! at once.
//!
//! How the parts meet, following one `send_message` job:
//!
//! 1. [`queue`] is a Redis job queue as an apalis backend, with no
//!    knowledge of Herald's jobs; [`queues`] configures Herald's three
//!    queues on it from the settings, each spread over [`queues::shards`] when
//!    one Redis primary is not enough.
//! 2. [`worker`] runs one apalis worker per queue. Its
//!    [`worker::send_message`] handler validates the payload into a typed
//!    message, stores it through [`store`] (idempotent by message id) and
//!    returns a [`push::job::PushJob`] as a [`queue::Handoff`], which the
//!    job's acknowledgement enqueues on the `push` queue.
//! 3. [`worker::push`] delivers the event with the configured
//!    [`push::Provider`] (Tuisongbao or the Pusher protocol), within the
//!    provider's [`push::limits`] and the rate limit all workers share
//!    ([`push::rate_limit`]; a job held back by it is deferred without
//!    spending an attempt); failures are classified by
//!    [`push::PushError::is_retryable`].
//! 4. [`export`] streams an account's documents into a CSV file with live
//!    progress, through the `export` queue.
//! 5. [`web`] is the operator's dashboard and JSON API over the queues
//!    ([`queue::admin`]): counts, failed jobs, retry and discard; and the
//!    producers' API, which also signs browsers' channel subscriptions
//!    ([`push::auth`]).
//! 6. The workspace's `sandbox/` crate (`herald-push-sandbox`, not part of
//!    this library) is a local stand-in for Tuisongbao and the Pusher HTTP
//!    API, for tests, demos and development.
//!
//! Around them: [`config`] loads layered settings, [`telemetry`] sets up
//! structured logs, [`shutdown`] turns SIGTERM/SIGINT into a future,
//! [`ops`] serves `/healthz`, `/readyz` and `/metrics` for both processes.
//! The `herald-bench` crate (`bench/`) measures throughput against
//! baselines through this library's public API. `docs/ARCHITECTURE.md`
//! describes the layers and the queue's keys and scripts.

pub mod channels;
pub mod config;
pub mod export;
pub mod message;
pub mod ops;
pub mod push;
pub use herald_queue as queue;
pub mod queues;
pub mod secret;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod web;
pub mod worker;
