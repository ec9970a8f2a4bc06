//! Which events were already delivered: the push queue's idempotency record.
//!
//! A push job is delivered at least once by the queue (a redelivery after a
//! crash, an operator's retry). Before sending, the handler asks the
//! [`DeliveryLog`] whether the job's key (`EVENT:ID`) was delivered; after a
//! success it records the key. What remains is the instant between the
//! provider accepting an event and the record being written: a crash exactly
//! there sends the event again on redelivery. Closing that gap would need the
//! provider to deduplicate, which Tuisongbao's API does not offer.

use std::time::Duration;

use redis::aio::ConnectionManager;

/// Delivered-event keys in Redis, `NAMESPACE:push:delivered:<key>`.
#[derive(Debug, Clone)]
pub struct DeliveryLog {
    conn: ConnectionManager,
    prefix: String,
    ttl: Duration,
}

impl DeliveryLog {
    /// A log under `queue` (the push queue's full name), keeping keys `ttl`.
    pub fn new(conn: ConnectionManager, queue: &str, ttl: Duration) -> Self {
        Self {
            conn,
            prefix: format!("{queue}:delivered"),
            ttl,
        }
    }

    fn key(&self, idempotency_key: &str) -> String {
        format!("{}:{idempotency_key}", self.prefix)
    }

    /// Whether the event with this key was delivered already.
    pub async fn was_delivered(&self, idempotency_key: &str) -> Result<bool, redis::RedisError> {
        let mut conn = self.conn.clone();
        redis::cmd("EXISTS")
            .arg(self.key(idempotency_key))
            .query_async::<bool>(&mut conn)
            .await
    }

    /// Records that the event with this key was delivered.
    pub async fn record(&self, idempotency_key: &str) -> Result<(), redis::RedisError> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.key(idempotency_key))
            .arg(crate::queue::now_secs_string())
            .arg("EX")
            .arg(self.ttl.as_secs().max(1))
            .query_async::<()>(&mut conn)
            .await
    }
}
