//! Which events were already delivered: the push queue's delivery receipts.
//!
//! A push job is delivered at least once by the queue (a redelivery after a
//! crash, an operator's retry, a duplicate job). After the provider accepts
//! an event, the handler writes a receipt under the job's idempotency key
//! (`EVENT:ID`); a later job with that key is told so and does not send
//! again.
//!
//! Both halves stay off the job's critical path:
//!
//! - **Reading**: the push queue's fetch script looks the receipt up while
//!   it leases the job, and hands it over in the job's metadata
//!   ([`crate::queue::DELIVERED_AT`]); no round trip of its own. A rerun
//!   comes at least a heartbeat timeout after the run that sent, and a
//!   retry after its backoff, so the receipt is there by then. A job whose
//!   metadata has no key (enqueued by hand) is checked with its own GET.
//! - **Writing**: [`DeliveryLog::record`] sends the receipt at once but does
//!   not make the job wait for Redis's answer; [`DeliveryLog::flush`] waits
//!   for every receipt still on its way (the worker calls it on shutdown).
//!
//! What remains is the instant between the provider accepting an event and
//! the receipt reaching Redis: a crash exactly there sends the event again
//! on redelivery. Closing that gap would need the provider to deduplicate,
//! which Tuisongbao's API does not offer.

use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio_util::task::TaskTracker;
use tracing::{warn, Instrument};

use crate::queue::QueueConfig;

/// Delivered-event receipts in Redis, `NAMESPACE:push:delivered:<key>`,
/// holding the delivery time (Unix seconds).
#[derive(Debug, Clone)]
pub struct DeliveryLog {
    conn: ConnectionManager,
    prefix: String,
    ttl: Duration,
    writes: TaskTracker,
}

impl DeliveryLog {
    /// The receipts of `queue` (the push queue), each kept `ttl`.
    pub fn new(conn: ConnectionManager, queue: &QueueConfig, ttl: Duration) -> Self {
        Self {
            conn,
            prefix: queue.delivered_prefix(),
            ttl,
            writes: TaskTracker::new(),
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
        if metadata.get(crate::queue::RECEIPT_KEY) == Some(idempotency_key) {
            return Ok(metadata.get(crate::queue::DELIVERED_AT).map(str::to_owned));
        }
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(format!("{}:{idempotency_key}", self.prefix))
            .query_async::<Option<String>>(&mut conn)
            .await
    }

    /// Records that the event with `idempotency_key` was delivered. The
    /// write is sent now and finishes in the background; a failure is
    /// logged (the event is out, so failing the job would send it again).
    pub fn record(&self, idempotency_key: &str) {
        let mut conn = self.conn.clone();
        let key = format!("{}:{idempotency_key}", self.prefix);
        let ttl = self.ttl.as_secs().max(1);
        self.writes.spawn(
            async move {
                let written = redis::cmd("SET")
                    .arg(&key)
                    .arg(crate::queue::now_secs_string())
                    .arg("EX")
                    .arg(ttl)
                    .query_async::<()>(&mut conn)
                    .await;
                if let Err(e) = written {
                    warn!(error = %e, receipt = %key, "event delivered but its receipt was not written; a redelivery would send it again");
                }
            }
            .in_current_span(),
        );
    }

    /// Waits until every receipt recorded so far is written (or failed).
    pub async fn flush(&self) {
        self.writes.close();
        self.writes.wait().await;
        self.writes.reopen();
    }
}
