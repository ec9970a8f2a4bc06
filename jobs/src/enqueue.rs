//! Writing jobs onto a queue: the enqueue script every producer and the
//! worker share.
//!
//! A job is its payload (JSON bytes) under its id in the queue's data hash,
//! a metadata hash, and its id either at the tail of the ready list (due
//! now) or in the scheduled set (due later). One script call writes a
//! whole chunk of jobs atomically, claims their idempotency keys, and puts
//! a wake token on the queue's wake list so that an idle worker blocked on
//! it starts at once (see `lua/enqueue.lua`). Jobs written in one call, and
//! calls made one after another, reach the ready list in that order.
//!
//! The Rust [`crate::Producer`] and Herald's own hand-offs and HTTP API
//! enqueue through [`enqueue`]; producers in other languages use Herald's
//! HTTP API (`POST /v1/messages`, `POST /v1/exports`).

use std::{sync::LazyLock, time::Duration};

use redis::{aio::ConnectionLike, RedisResult, Script};

use crate::queue::{queue_key, suffix};

static ENQUEUE: LazyLock<Script> =
    LazyLock::new(|| crate::claims::with_claims(include_str!("../lua/enqueue.lua")));

/// Most jobs written by one script call; [`enqueue`] sends larger sets in
/// chunks of this size, one round trip each.
pub const ENQUEUE_CHUNK: usize = 500;

/// One job for the enqueue script.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The job id (unique in its queue): a ULID string.
    pub id: String,
    /// The job's arguments, as JSON bytes.
    pub payload: Vec<u8>,
    /// Unix seconds at which it becomes due; 0 (or any time not after now)
    /// means due at once.
    pub run_at: u64,
    /// The enqueue idempotency key, "" for none: a job whose key was
    /// claimed already (within the queue's TTL) is not written again.
    pub idempotency_key: String,
    /// Field/value pairs of the job's metadata hash; see
    /// [`NewJob::metadata`] for the fields every job starts with.
    pub metadata: Vec<(String, String)>,
}

impl NewJob {
    /// The fields every job's metadata hash starts with. `max_attempts` 0
    /// leaves the choice to the worker's retry policy for the queue; `now`
    /// is the enqueue time in Unix seconds (the worker measures a job's
    /// enqueue-to-finish latency from it).
    pub fn metadata(
        attempts: usize,
        max_attempts: usize,
        idempotency_key: &str,
        now: f64,
    ) -> Vec<(String, String)> {
        vec![
            ("attempts".into(), attempts.to_string()),
            ("max_attempts".into(), max_attempts.to_string()),
            ("status".into(), "Pending".into()),
            ("idempotency_key".into(), idempotency_key.to_owned()),
            ("enqueued_at".into(), format!("{now:.3}")),
        ]
    }
}

/// How the jobs of one [`enqueue`] were placed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enqueued {
    /// Put on the ready list.
    pub ready: u64,
    /// Put in the scheduled set, due later.
    pub scheduled: u64,
    /// Skipped: their idempotency key or id existed already.
    pub duplicates: u64,
}

/// Writes `jobs` onto the queue whose full name is `queue`, in chunks of
/// [`ENQUEUE_CHUNK`]; `dedup_ttl` is how long their idempotency keys are
/// remembered (`None`: for good). `now` is the current time in Unix
/// seconds. A failed call leaves the chunks before it written.
pub async fn enqueue<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &str,
    dedup_ttl: Option<Duration>,
    jobs: &[NewJob],
    now: f64,
) -> RedisResult<Enqueued> {
    let ttl = crate::claims::ttl_secs(dedup_ttl);
    let mut total = Enqueued::default();
    for chunk in jobs.chunks(ENQUEUE_CHUNK) {
        let mut call = ENQUEUE.prepare_invoke();
        call.key(queue_key(queue, suffix::DATA))
            .key(queue_key(queue, suffix::ACTIVE))
            .key(queue_key(queue, suffix::SCHEDULED))
            .key(queue_key(queue, suffix::WAKE))
            .arg(format!("{now:.3}"))
            .arg(queue_key(queue, suffix::META))
            .arg(queue_key(queue, suffix::IDEMPOTENCY))
            .arg(ttl);
        for job in chunk {
            call.arg(&job.id)
                .arg(&job.payload)
                .arg(job.run_at)
                .arg(&job.idempotency_key)
                .arg(job.metadata.len());
            for (field, value) in &job.metadata {
                call.arg(field).arg(value);
            }
        }
        let (ready, scheduled, duplicates): (u64, u64, u64) = call.invoke_async(conn).await?;
        total.ready += ready;
        total.scheduled += scheduled;
        total.duplicates += duplicates;
    }
    Ok(total)
}

/// Seconds since the Unix epoch, with millisecond precision: the `now` an
/// enqueue passes.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0)
}
