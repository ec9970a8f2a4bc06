//! Herald's Redis queue layer: an apalis backend with bounded scripts.
//!
//! apalis-redis 1.0.0 wedges once about 8,000 jobs are due at once: its fetch
//! script hands every due id to one Lua `unpack`, which fails beyond that
//! size, and it fails the same way on every poll for as long as the backlog
//! lasts. This module replaces its worker side with scripts in which every
//! loop is bounded by an argument (see `lua/`), so a backlog of any size
//! drains.
//!
//! The layer knows queues, jobs as bytes, idempotency keys and hand-offs,
//! never what a job does: which queues exist, how the settings tune each
//! and what a fetch lookup means belong to the caller ([`crate::queues`]).
//!
//! - [`RedisQueue`] is the apalis backend, so workers keep apalis's worker
//!   model and middleware. Its worker side (`driver`) fetches the next
//!   batch while the last jobs of one run and acknowledges finished jobs in
//!   the background, in batches; a Redis outage pauses it without stopping
//!   it (`redis_retry`). `persistence` holds the worker-side script calls,
//!   `enqueue` and `acknowledge` the writing ones.
//! - [`decode`] turns a job's stored bytes into its arguments, or says why
//!   they cannot be (the job is then recorded dead; its batch runs on).
//! - [`AckLayer`] reports each finished job, with its typed [`Handoff`]
//!   ([`JobOutput`]), to its worker's backend.
//! - [`QueueConfig`] names the keys and holds the tuning of one queue,
//!   including its optional fetch-time lookup.
//! - [`RetryPolicy`] decides when a failed job runs again.
//! - [`Doorbell`]: an enqueue from this process wakes this process's worker
//!   of that queue at once.
//! - [`admin::QueueAdmin`] is the operator's side: counts per state, dead
//!   jobs, retry and discard, pause and resume (the dashboard, the API,
//!   `herald failed` and `herald queue`).
//! - `retention` forgets finished jobs after [`Retention`] says, on the
//!   heartbeat, one worker at a time.
//! - [`failover`] notices when Sentinel names a new master.
//!
//! `Q` is the queue's name, `{NAMESPACE:QUEUE}`: a Redis Cluster hash tag
//! that every key of the queue shares (see [`herald_jobs::queue`]).
//! Producers write `Q:data`, `Q:meta:<id>`, `Q:active`, `Q:scheduled`,
//! the claims `Q:idempotency:*` ([`herald_jobs::claims`]) and `Q:wake`
//! through the enqueue script that `herald_jobs::enqueue` shares with
//! this module. [`legacy`] moves keys
//! of the earlier, untagged layout (apalis-redis's) over. The rest: `Q:inflight:<worker>`,
//! `Q:workers`, `Q:done` and `Q:dead` (sorted by finish time),
//! `Q:history:<id>` (each run's time, status and error), `Q:stats:*`
//! (counters), `Q:paused` and `Q:retention`. `docs/ARCHITECTURE.md` describes every key and
//! script; `docs/delivery.md` states what they guarantee.

pub mod ack;
mod acknowledge;
pub mod admin;
mod backend;
pub mod dead_index;
pub mod decode;
pub mod doorbell;
mod driver;
mod enqueue;
pub mod failover;
pub mod handoff;
pub mod legacy;
mod persistence;
mod redis_retry;
mod retention;
pub mod retry;
#[cfg(feature = "test-support")]
pub mod seed;

use std::time::Duration;

use herald_jobs::{queue::suffix, Patience, RedisConnection};

pub use ack::AckLayer;
pub use backend::RedisQueue;
pub use dead_index::DeadLabel;
pub use doorbell::Doorbell;
pub use handoff::{Handoff, HandoffJob, JobOutput};
pub use redis_retry::retry_pause;
pub use retry::{Outcome, RetryPolicy};

/// Most scheduled jobs promoted to the queue by one fetch.
pub const PROMOTE_LIMIT: usize = 1_000;
/// Most jobs of dead workers handed back by one script call.
pub const RECOVER_LIMIT: usize = 1_000;
/// Most jobs enqueued by one script call.
pub const PUSH_CHUNK: usize = herald_jobs::enqueue::ENQUEUE_CHUNK;
/// Most acknowledgements recorded by one script call.
pub const COMPLETE_CHUNK: usize = 500;
/// Runs remembered in a job's history.
pub const HISTORY_LEN: usize = 25;
/// Metadata field of a fetched job naming the idempotency key the fetch
/// looked up (queues with a [`QueueConfig::fetch_lookup`]); absent when the
/// job was enqueued without a key.
pub const LOOKUP_KEY: &str = "lookup_key";
/// Metadata field of a fetched job holding the value found under its
/// idempotency key (queues with a [`QueueConfig::fetch_lookup`]); absent
/// when there was none.
pub const LOOKUP_VALUE: &str = "lookup_value";

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The server could not be reached.
    #[error("cannot reach Redis at {url}: {source}")]
    Connect {
        /// The URL tried, without credentials.
        url: String,
        /// The driver's error.
        #[source]
        source: redis::RedisError,
    },
    /// A command or script failed.
    #[error("Redis {operation} on {queue} failed: {source}")]
    Command {
        /// What was being done.
        operation: &'static str,
        /// Full queue name.
        queue: String,
        /// The driver's error.
        #[source]
        source: redis::RedisError,
    },
    /// A job's arguments could not be encoded as JSON (enqueue).
    #[error("cannot encode a job for {queue}: {source}")]
    Encode {
        /// Full queue name.
        queue: String,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A filter of dead jobs names what the queue does not index, or asks
    /// for more than an operation supports.
    #[error("bad filter for {queue}: {detail}")]
    Filter {
        /// Full queue name.
        queue: String,
        /// What was wrong.
        detail: String,
    },
    /// A script answered with something this code does not understand.
    #[error("unexpected answer from Redis for {queue}: {detail}")]
    Protocol {
        /// Full queue name.
        queue: String,
        /// What was wrong.
        detail: String,
    },
}

impl QueueError {
    /// Whether the fetch script refused because this worker is not
    /// registered (it was presumed dead and removed).
    pub fn is_unregistered(&self) -> bool {
        matches!(self, QueueError::Command { source, .. } if source.code() == Some("HERALD_UNREGISTERED"))
    }
}

/// What a queue keeps of its finished jobs, and for how long. Removing a
/// job removes its payload, metadata, history and set membership; the
/// counters the dashboard shows are kept apart and survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How long a job that succeeded is kept after it finished.
    pub done: Duration,
    /// How long a dead job is kept after it failed for good.
    pub dead: Duration,
    /// Most dead jobs kept; beyond it the oldest are trimmed.
    pub dead_max: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            done: Duration::from_secs(3600),
            dead: Duration::from_secs(30 * 24 * 3600),
            dead_max: 100_000,
        }
    }
}

/// Why a dead job was removed without an operator asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimReason {
    /// It was older than [`Retention::dead`].
    Age,
    /// The dead set held more than [`Retention::dead_max`] jobs.
    Cap,
}

impl TrimReason {
    /// Every reason, for metrics and counts.
    pub const ALL: [TrimReason; 2] = [TrimReason::Age, TrimReason::Cap];

    /// The reason as metrics and counters name it.
    pub fn as_str(self) -> &'static str {
        match self {
            TrimReason::Age => "age",
            TrimReason::Cap => "cap",
        }
    }
}

/// What a queue keeps per minute, for an hour, under
/// [`QueueConfig::stats_prefix`] (`complete.lua` writes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinuteStat {
    /// Counter: jobs that succeeded that minute.
    Done,
    /// Counter: runs that failed that minute.
    Failed,
    /// Hash: enqueue-to-finish histogram of the jobs done that minute
    /// (bucket → count).
    Latency,
}

impl MinuteStat {
    /// Every statistic, in the order of [`MinuteStat`].
    pub const ALL: [MinuteStat; 3] = [MinuteStat::Done, MinuteStat::Failed, MinuteStat::Latency];

    /// The statistic as its keys name it.
    pub fn as_str(self) -> &'static str {
        match self {
            MinuteStat::Done => "done",
            MinuteStat::Failed => "failed",
            MinuteStat::Latency => "latency",
        }
    }
}

/// One queue's key names and tuning.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Full name, `{NAMESPACE:QUEUE}` (see [`herald_jobs::queue`]); every
    /// key starts with it, so every key of the queue shares its hash tag.
    pub name: String,
    /// Jobs leased per fetch.
    pub batch_size: usize,
    /// How often a worker reports it is alive.
    pub heartbeat_interval: Duration,
    /// Heartbeats a worker may miss before its jobs go to others.
    pub missed_heartbeats: u32,
    /// How long an enqueue idempotency key is remembered (None: forever).
    pub dedup_ttl: Option<Duration>,
    /// The fetch-time lookup: a key prefix under which the fetch script
    /// looks up each fetched job's idempotency key (`<prefix>:<key>`) and
    /// hands the job what it found (metadata [`LOOKUP_KEY`] and
    /// [`LOOKUP_VALUE`]), in the same round trip. The queue attaches no
    /// meaning to the value; the push worker uses it for its delivery
    /// receipts ([`crate::push::delivery`]).
    pub fetch_lookup: Option<String>,
    /// When failed jobs run again.
    pub retry: RetryPolicy,
    /// Largest payload a worker decodes; a larger job is recorded dead.
    pub max_payload_bytes: usize,
    /// Longest an idle worker waits for a wake-up before it fetches anyway
    /// (see [`RedisQueue::waking_on`]): the bound on how late a job is
    /// picked up if its wake token was missed.
    pub idle_wait: Duration,
    /// What the queue keeps of finished jobs, and for how long.
    pub retention: Retention,
    /// The labels dead jobs are indexed by, for the failed list's filters
    /// (see [`dead_index`]); none by default.
    pub dead_labels: Vec<DeadLabel>,
}

impl QueueConfig {
    /// A queue named `name` with defaults suited to tests and small setups.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            batch_size: 20,
            heartbeat_interval: Duration::from_secs(10),
            missed_heartbeats: 3,
            dedup_ttl: None,
            fetch_lookup: None,
            retry: RetryPolicy {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(300),
                max_attempts: 10,
            },
            max_payload_bytes: 1 << 20,
            idle_wait: Duration::from_secs(5),
            retention: Retention::default(),
            dead_labels: Vec::new(),
        }
    }

    /// The name operators see (the dashboard, the API, `herald queue`):
    /// [`Self::name`] without the hash tag's braces, `NAMESPACE:QUEUE`.
    pub fn display_name(&self) -> &str {
        let name = self.name.as_str();
        name.strip_prefix('{')
            .and_then(|inner| inner.strip_suffix('}'))
            .unwrap_or(name)
    }

    /// How long without a heartbeat before a worker is presumed dead.
    pub fn orphan_after(&self) -> Duration {
        self.heartbeat_interval * self.missed_heartbeats.max(1)
    }

    /// The key `<name>:<suffix>`: every key of the queue is one, and so
    /// are keys its users keep beside it (such as a fetch lookup's prefix).
    pub fn key(&self, suffix: &str) -> String {
        herald_jobs::queue::queue_key(&self.name, suffix)
    }

    /// Hash: job id → payload.
    pub fn data_key(&self) -> String {
        self.key(suffix::DATA)
    }
    /// List: ids ready to run, oldest first.
    pub fn active_key(&self) -> String {
        self.key(suffix::ACTIVE)
    }
    /// Sorted set: ids waiting for their time (score: Unix seconds).
    pub fn scheduled_key(&self) -> String {
        self.key(suffix::SCHEDULED)
    }
    /// List: at most one wake token, which idle workers block on (`BLPOP`)
    /// and every script that makes jobs ready pushes (see
    /// [`herald_jobs::enqueue`]).
    pub fn wake_key(&self) -> String {
        self.key(suffix::WAKE)
    }
    /// Sorted set: worker names (score: last heartbeat, Unix seconds).
    pub fn workers_key(&self) -> String {
        self.key("workers")
    }
    /// Set: ids leased to `worker`.
    pub fn inflight_key(&self, worker: &str) -> String {
        format!("{}:{worker}", self.inflight_prefix())
    }
    /// Prefix of the per-worker inflight sets.
    pub fn inflight_prefix(&self) -> String {
        self.key("inflight")
    }
    /// Prefix of the per-job metadata hashes.
    pub fn meta_prefix(&self) -> String {
        self.key(suffix::META)
    }
    /// Metadata hash of job `id`.
    pub fn meta_key(&self, id: &str) -> String {
        format!("{}:{id}", self.meta_prefix())
    }
    /// Prefix of the per-job run histories.
    pub fn history_prefix(&self) -> String {
        self.key("history")
    }
    /// Run history (list of JSON entries) of job `id`.
    pub fn history_key(&self, id: &str) -> String {
        format!("{}:{id}", self.history_prefix())
    }
    /// Prefix of enqueue idempotency keys.
    pub fn idempotency_prefix(&self) -> String {
        self.key(suffix::IDEMPOTENCY)
    }
    /// Sorted set: ids that succeeded (score: when, Unix seconds), kept
    /// [`Retention::done`].
    pub fn done_key(&self) -> String {
        self.key("done")
    }
    /// Sorted set: ids that will not run again (score: when they failed,
    /// Unix seconds), kept [`Retention::dead`], at most
    /// [`Retention::dead_max`].
    pub fn dead_key(&self) -> String {
        self.key("dead")
    }
    /// Prefix of the counters: per minute (`:done:<minute>`,
    /// `:failed:<minute>`, kept an hour) and for good (`:total:done`,
    /// `:trimmed:age`, `:trimmed:cap`).
    pub fn stats_prefix(&self) -> String {
        self.key("stats")
    }
    /// Counter: jobs that ever succeeded.
    pub fn done_total_key(&self) -> String {
        self.key("stats:total:done")
    }
    /// Statistic `stat` of minute `minute` (Unix seconds / 60).
    pub fn minute_key(&self, stat: MinuteStat, minute: impl std::fmt::Display) -> String {
        format!("{}:{}:{minute}", self.stats_prefix(), stat.as_str())
    }
    /// Counter: dead jobs trimmed for `reason` (see [`TrimReason`]).
    pub fn trimmed_key(&self, reason: TrimReason) -> String {
        format!("{}:trimmed:{}", self.stats_prefix(), reason.as_str())
    }
    /// JSON record of the operator's bulk operation `id` on dead jobs.
    pub fn bulk_key(&self, id: &str) -> String {
        self.key(&format!("bulk:{id}"))
    }
    /// List: the latest bulk operations' ids, newest first.
    pub fn bulks_key(&self) -> String {
        self.key("bulks")
    }
    /// Present while the queue is paused: workers lease none of its jobs.
    pub fn paused_key(&self) -> String {
        self.key("paused")
    }
    /// The lock that makes one worker at a time run the retention.
    pub fn retention_lock_key(&self) -> String {
        self.key("retention")
    }
    /// Hash describing `worker`.
    pub fn worker_meta_key(&self, worker: &str) -> String {
        self.key(&format!("workers:metadata:{worker}"))
    }
}

/// Opens a managed (auto-reconnecting) connection to the Redis at `url`
/// (`redis://`, `rediss://`, `redis+sentinel://` or `redis+cluster://`)
/// and checks it with PING.
pub async fn connect(url: &str) -> Result<RedisConnection, QueueError> {
    let connect_error = |source| QueueError::Connect {
        url: herald_jobs::redact_url(url),
        source,
    };
    // A `redis+sentinel://` URL is resolved to the current master here, a
    // `redis+cluster://` URL's nodes asked for the cluster's layout.
    let mut conn = RedisConnection::open(url, Patience::default())
        .await
        .map_err(connect_error)?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map_err(connect_error)?;
    Ok(conn)
}

/// A job's arguments as they arrived, checked to be one JSON document
/// (see [`decode`]) but not decoded further: a handler decodes them into
/// its job type itself, so it can log and count a payload of the wrong
/// shape in its own terms, without building a JSON tree first.
pub type RawArgs = Box<serde_json::value::RawValue>;

/// [`now_secs`] as Redis stores it (three decimals).
pub fn now_secs_string() -> String {
    format!("{:.3}", now_secs())
}

/// Seconds since the Unix epoch, with millisecond precision: the clock
/// the enqueue script and every other script of the queue are given.
pub use herald_jobs::enqueue::now_secs;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_named_under_the_queue() {
        let config = QueueConfig::new("herald:push");
        assert_eq!(config.data_key(), "herald:push:data");
        assert_eq!(config.active_key(), "herald:push:active");
        assert_eq!(config.scheduled_key(), "herald:push:scheduled");
        assert_eq!(config.wake_key(), "herald:push:wake");
        assert_eq!(config.inflight_key("w1"), "herald:push:inflight:w1");
        assert_eq!(config.meta_key("01J"), "herald:push:meta:01J");
        assert_eq!(
            config.worker_meta_key("w1"),
            "herald:push:workers:metadata:w1"
        );
        assert_eq!(config.idempotency_prefix(), "herald:push:idempotency");
    }

    #[test]
    fn operators_see_the_name_without_the_hash_tag() {
        assert_eq!(
            QueueConfig::new("{herald:push}").display_name(),
            "herald:push"
        );
        assert_eq!(QueueConfig::new("bench:noop").display_name(), "bench:noop");
    }

    #[test]
    fn a_worker_is_orphaned_after_its_missed_heartbeats() {
        let mut config = QueueConfig::new("q");
        config.heartbeat_interval = Duration::from_secs(2);
        config.missed_heartbeats = 3;
        assert_eq!(config.orphan_after(), Duration::from_secs(6));
    }
}
