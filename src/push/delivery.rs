//! Which events were already delivered: the push queue's delivery receipts.
//!
//! A push job is delivered at least once by the queue (a redelivery after a
//! crash, an operator's retry, a duplicate job). After the provider accepts
//! an event, the handler writes a receipt under the job's idempotency key
//! (`EVENT:ID`); a later job with that key is told so and does not send
//! again.
//!
//! The receipt is the push queue's own enqueue claim of that key
//! ([`herald_jobs::claims`]), overwritten: the claim holds the job id
//! while the event waits to be sent, and [`RECEIPT_PREFIX`] and the
//! delivery time once it was. One claim per event, for the re-run window,
//! whatever happened to it: a hand-off of a delivered event is still a
//! duplicate, and Redis keeps one hash field per message (about 80 bytes,
//! see `docs/ARCHITECTURE.md`), not two.
//!
//! Both halves stay off the job's critical path:
//!
//! - **Reading**: the push queue is configured with the receipts as its
//!   fetch-time lookup ([`DeliveryLog::fetch_lookup`]), so the fetch script
//!   looks the receipt up while it leases the job and hands it over in the
//!   job's metadata ([`crate::queue::LOOKUP_VALUE`]); no round trip of its
//!   own. A rerun
//!   comes at least a heartbeat timeout after the run that sent, and a
//!   retry after its backoff, so the receipt is there by then. A job whose
//!   metadata has no key (enqueued by hand) is checked with its own
//!   lookup.
//! - **Writing**: [`DeliveryLog::record`] hands the receipt to one writer
//!   task per process and returns at once. The writer sends every receipt
//!   waiting in one script call per [`herald_jobs::claims::CLAIM_CHUNK`];
//!   when Redis does not answer
//!   (restarting, a broken connection) it keeps them and tries again until
//!   it does, so a receipt is never dropped while the process lives.
//!   [`DeliveryLog::flush`] waits until every receipt recorded so far is
//!   written (the worker calls it on shutdown).
//!
//! What remains is the time between the provider accepting an event and
//! its receipt reaching Redis: a process that dies exactly then, or whose
//! job is redelivered before its receipt could be written, sends the event
//! again. Closing that gap would need the provider to deduplicate, which
//! Tuisongbao's API does not offer. A worker that stays alive through a
//! Redis outage also holds back the job's acknowledgement until Redis
//! answers, so its own jobs are not redelivered meanwhile.

use std::{collections::VecDeque, time::Duration};

use herald_jobs::{claims, RedisConnection};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::queue::QueueConfig;

/// How a receipt's value begins (then the delivery time, whole Unix
/// seconds); an enqueue claim holds a job id (a ULID), which never begins
/// so. Short on purpose: Redis keeps one per message for the re-run window.
pub const RECEIPT_PREFIX: &str = "d@";

/// The delivery time a key's value records, if it is a receipt (and not
/// the enqueue claim of a job still to send).
pub fn receipt_time(value: &str) -> Option<&str> {
    value.strip_prefix(RECEIPT_PREFIX)
}

/// Most receipts kept while Redis is away (about 150 bytes each). Past
/// this the oldest are dropped, with an error in the log: the process
/// would otherwise grow without bound in an outage that never ends.
pub const MAX_PENDING_RECEIPTS: usize = 100_000;

/// What the writer task is asked to do.
enum Command {
    /// Write `key` = `value`.
    Record { key: String, value: String },
    /// Answer once everything asked before is written.
    Flush(oneshot::Sender<()>),
}

/// Delivered-event receipts in Redis: the push queue's claim of the
/// event's key holding [`RECEIPT_PREFIX`] and the delivery time.
#[derive(Debug, Clone)]
pub struct DeliveryLog {
    conn: RedisConnection,
    prefix: String,
    writer: mpsc::UnboundedSender<Command>,
}

impl DeliveryLog {
    /// Where the receipts of `queue` (the push queue) are kept: the
    /// prefix of its enqueue claims. The push queue's
    /// [`QueueConfig::fetch_lookup`].
    pub fn fetch_lookup(queue: &QueueConfig) -> String {
        queue.idempotency_prefix()
    }

    /// The receipts of `queue` (the push queue), each kept `ttl`. Starts
    /// the writer task, which ends when the last clone is dropped (after
    /// writing what it holds) — so it must be called inside a runtime.
    pub fn new(conn: RedisConnection, queue: &QueueConfig, ttl: Duration) -> Self {
        let (writer, commands) = mpsc::unbounded_channel();
        let prefix = Self::fetch_lookup(queue);
        tokio::spawn(write_receipts(conn.clone(), prefix.clone(), ttl, commands));
        Self {
            conn,
            prefix,
            writer,
        }
    }

    /// When the event with `idempotency_key` was delivered, if it was.
    ///
    /// The answer the job's fetch found (in `metadata`) is used when the
    /// fetch looked up this very key; otherwise — a job enqueued without
    /// its key, such as an operator's copy of a payload — Redis is asked,
    /// and an error fails the run (sending without knowing could deliver
    /// twice).
    pub async fn delivered_at(
        &self,
        metadata: &apalis_core::task::metadata::MetadataStore,
        idempotency_key: &str,
    ) -> Result<Option<String>, redis::RedisError> {
        if metadata.get(crate::queue::LOOKUP_KEY) == Some(idempotency_key) {
            return Ok(metadata
                .get(crate::queue::LOOKUP_VALUE)
                .and_then(receipt_time)
                .map(str::to_owned));
        }
        let mut conn = self.conn.clone();
        let keys = [idempotency_key.to_owned()];
        let values = claims::get(&mut conn, &self.prefix, &keys, crate::queue::now_secs()).await?;
        Ok(values
            .into_iter()
            .flatten()
            .next()
            .as_deref()
            .and_then(receipt_time)
            .map(str::to_owned))
    }

    /// Which of `keys` have a receipt, in one round trip (the receipts of
    /// an event's channel slices, see [`crate::worker::push`]).
    pub async fn delivered_keys(&self, keys: &[String]) -> Result<Vec<bool>, redis::RedisError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let found = claims::get(&mut conn, &self.prefix, keys, crate::queue::now_secs()).await?;
        Ok(found
            .iter()
            .map(|value| value.as_deref().and_then(receipt_time).is_some())
            .collect())
    }

    /// Records that the event with `idempotency_key` was delivered, now.
    /// Returns at once; the writer task writes it (see the module docs).
    pub fn record(&self, idempotency_key: &str) {
        let command = Command::Record {
            key: idempotency_key.to_owned(),
            value: format!("{RECEIPT_PREFIX}{}", crate::queue::now_secs() as u64),
        };
        if self.writer.send(command).is_err() {
            error!(
                key = idempotency_key,
                "receipt writer stopped; this receipt is lost"
            );
        }
    }

    /// Waits until every receipt recorded so far is written, at most
    /// `patience`; returns whether they all were.
    pub async fn flush(&self, patience: Duration) -> bool {
        let (done, written) = oneshot::channel();
        if self.writer.send(Command::Flush(done)).is_err() {
            return false;
        }
        let flushed = matches!(tokio::time::timeout(patience, written).await, Ok(Ok(())));
        if !flushed {
            error!(
                patience_secs = patience.as_secs(),
                "delivery receipts not written before shutdown; a redelivery of those jobs would send their events again"
            );
        }
        flushed
    }
}

/// Adds `command` to what the writer holds.
fn absorb(
    command: Command,
    pending: &mut VecDeque<(String, String)>,
    flushes: &mut Vec<oneshot::Sender<()>>,
) {
    match command {
        Command::Record { key, value } => {
            if pending.len() >= MAX_PENDING_RECEIPTS {
                if let Some((dropped, _)) = pending.pop_front() {
                    error!(receipt = %dropped, "too many receipts waiting for Redis; dropped the oldest");
                }
            }
            pending.push_back((key, value));
        }
        Command::Flush(done) => flushes.push(done),
    }
}

/// The writer task: see the module docs.
async fn write_receipts(
    mut conn: RedisConnection,
    prefix: String,
    ttl: Duration,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut pending: VecDeque<(String, String)> = VecDeque::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    let mut failures: u32 = 0;
    loop {
        if pending.is_empty() {
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
            match commands.recv().await {
                Some(command) => absorb(command, &mut pending, &mut flushes),
                // Every handle is gone and nothing is left to write.
                None => return,
            }
        }
        while let Ok(command) = commands.try_recv() {
            absorb(command, &mut pending, &mut flushes);
        }
        if pending.is_empty() {
            continue;
        }
        let receipts = pending.make_contiguous();
        let written = claims::set(
            &mut conn,
            &prefix,
            Some(ttl),
            receipts,
            crate::queue::now_secs(),
        )
        .await;
        match written {
            Ok(_) => {
                if failures > 0 {
                    info!(
                        receipts = pending.len(),
                        tries = failures + 1,
                        "delivery receipts written now that Redis answers"
                    );
                }
                failures = 0;
                pending.clear();
            }
            Err(e) => {
                if failures == 0 {
                    warn!(
                        error = %e,
                        receipts = pending.len(),
                        "delivery receipts not written; keeping them and trying again until Redis answers"
                    );
                }
                tokio::time::sleep(crate::queue::retry_pause(failures)).await;
                failures = failures.saturating_add(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_is_told_from_the_enqueue_claim_it_overwrites() {
        assert_eq!(receipt_time("d@1796104259"), Some("1796104259"));
        // The claim holds the job's id.
        assert_eq!(receipt_time("01JDQ3V8Y5K7Z9M2N4P6R8T0W2"), None);
        assert_eq!(receipt_time(""), None);
    }
}
