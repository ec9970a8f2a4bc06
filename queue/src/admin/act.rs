//! What an operator changes: retry and discard chosen dead jobs, pause and
//! resume the queue. Retrying or discarding every job a filter selects is
//! a bulk operation (`bulk.rs`).

use std::sync::LazyLock;

use redis::Script;

use super::ShardAdmin;
use crate::{dead_index::with_dead_index, now_secs, QueueError};

pub(super) static RETRY: LazyLock<Script> =
    LazyLock::new(|| with_dead_index(include_str!("../lua/retry.lua")));
pub(super) static DISCARD: LazyLock<Script> =
    LazyLock::new(|| with_dead_index(include_str!("../lua/discard.lua")));

/// Most dead jobs one retry or discard script call moves.
pub(super) const CHUNK: usize = 1_000;

impl ShardAdmin {
    /// Pauses the queue: workers (of every process) lease none of its jobs
    /// until [`ShardAdmin::resume`]; jobs running now finish. The state is
    /// kept in Redis, so it survives worker restarts. Returns whether the
    /// queue was running before.
    pub async fn pause(&self) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let set: bool = redis::cmd("SET")
            .arg(self.config.paused_key())
            .arg(format!("{:.3}", now_secs()))
            .arg("NX")
            .query_async::<Option<String>>(&mut conn)
            .await
            .map_err(self.error("pause"))?
            .is_some();
        if set {
            tracing::warn!(queue = %self.config.name, "queue paused by an operator");
        }
        Ok(set)
    }

    /// Resumes a paused queue and wakes an idle worker for the jobs that
    /// waited. Returns whether it was paused.
    pub async fn resume(&self) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let (removed, _): (u64, u64) = redis::pipe()
            .atomic()
            .del(self.config.paused_key())
            .lpush(self.config.wake_key(), "1")
            .ltrim(self.config.wake_key(), 0, 0)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(self.error("resume"))?;
        if removed > 0 {
            tracing::warn!(queue = %self.config.name, "queue resumed by an operator");
        }
        Ok(removed > 0)
    }

    /// Sends the given dead jobs back to the queue. Returns the ids retried
    /// (ids not in the dead set are skipped).
    pub async fn retry(&self, ids: &[String]) -> Result<Vec<String>, QueueError> {
        let mut retried = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let mut call = RETRY.prepare_invoke();
            call.key(self.config.dead_key())
                .key(self.config.active_key())
                .key(self.config.dead_key())
                .key(self.config.wake_key())
                .arg(self.config.meta_prefix())
                .arg(format!("{:.3}", now_secs()))
                .arg("ids");
            for id in chunk {
                call.arg(id);
            }
            let mut conn = self.conn.clone();
            let done: Vec<String> = call
                .invoke_async(&mut conn)
                .await
                .map_err(self.error("retry"))?;
            retried.extend(done);
        }
        Ok(retried)
    }

    /// Deletes the given dead jobs for good. Returns how many.
    pub async fn discard(&self, ids: &[String]) -> Result<u64, QueueError> {
        let mut total = 0;
        for chunk in ids.chunks(CHUNK) {
            let mut call = DISCARD.prepare_invoke();
            call.key(self.config.dead_key())
                .key(self.config.data_key())
                .key(self.config.dead_key())
                .arg(self.config.meta_prefix())
                .arg(self.config.history_prefix())
                .arg("ids");
            for id in chunk {
                call.arg(id);
            }
            let mut conn = self.conn.clone();
            total += call
                .invoke_async::<u64>(&mut conn)
                .await
                .map_err(self.error("discard"))?;
        }
        Ok(total)
    }
}
