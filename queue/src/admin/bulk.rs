//! Retrying or discarding every dead job a filter selects, a bounded slice
//! per script call, with its progress kept in Redis for whoever asks.
//!
//! An operation is bounded by the moment it began: it takes the jobs that
//! had failed by then, oldest first, [`CHUNK`] per call, so a retried job
//! that fails again meanwhile (dead with a later time) is not taken again
//! and the walk ends; a sharded queue's shards are walked one after
//! another. Its record (`<queue>:bulk:<id>`, JSON, kept a day, on the
//! queue's first shard)
//! says how many jobs it selected when it began and how many it has done;
//! `<queue>:bulks` lists the latest [`RECENT_OPERATIONS`]. The record is
//! written after every slice, so a dashboard polling it shows the
//! progress, and an operation whose process died stays `running` with an
//! `updated_at` that stops moving (run it again: it takes what is left).

use serde::{Deserialize, Serialize};

use super::{
    act::{CHUNK, DISCARD, RETRY},
    DeadFilter, QueueAdmin, ShardAdmin,
};
use crate::{now_secs, QueueError};

/// How long an operation's record is kept.
const RECORD_TTL_SECS: u64 = 24 * 3600;

/// How many operations `<queue>:bulks` lists.
pub const RECENT_OPERATIONS: usize = 20;

/// What a bulk operation does to each job it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    /// Send it back to the queue with a fresh attempt budget.
    Retry,
    /// Delete it for good.
    Discard,
}

impl BulkAction {
    fn as_str(self) -> &'static str {
        match self {
            BulkAction::Retry => "retry",
            BulkAction::Discard => "discard",
        }
    }
}

/// Where a bulk operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkState {
    /// Slices are still being taken.
    Running,
    /// Every selected job was handled.
    Finished,
    /// A call failed; `error` says why. Running it again takes the rest.
    Failed,
}

/// A bulk operation's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkProgress {
    /// Its id (unique per queue).
    pub id: String,
    /// Retry or discard.
    pub action: BulkAction,
    /// Which dead jobs: all, one label value or one error group.
    pub filter: DeadFilter,
    /// Jobs that failed at or before this time (Unix seconds) are taken.
    pub before: f64,
    /// How many jobs the filter selected when it began.
    pub total: u64,
    /// How many have been retried or discarded so far.
    pub done: u64,
    /// Running, finished or failed.
    pub state: BulkState,
    /// Why it failed.
    pub error: Option<String>,
    /// When it began (Unix seconds).
    pub started_at: f64,
    /// When its record last changed (Unix seconds).
    pub updated_at: f64,
}

impl ShardAdmin {
    /// The set a bulk operation with `filter` takes from: the dead set, or
    /// the one index the filter names (a bulk operation takes one filter).
    pub(super) fn bulk_source(&self, filter: &DeadFilter) -> Result<String, QueueError> {
        let mut keys = self.filter_keys(filter)?;
        match keys.len() {
            0 => Ok(self.config.dead_key()),
            1 => Ok(keys.remove(0)),
            _ => Err(self.filter_error(
                "a bulk retry or discard takes one filter: a label value or an error group".into(),
            )),
        }
    }

    /// How many dead jobs `filter` selects that failed at or before
    /// `before` (Unix seconds).
    async fn count_before(&self, filter: &DeadFilter, before: f64) -> Result<u64, QueueError> {
        let source = self.bulk_source(filter)?;
        let mut conn = self.conn.clone();
        redis::cmd("ZCOUNT")
            .arg(&source)
            .arg("-inf")
            .arg(format!("{before:.3}"))
            .query_async(&mut conn)
            .await
            .map_err(self.error("count dead jobs"))
    }

    /// Retries or discards the next slice (at most [`CHUNK`]) of what
    /// `progress` selects on this shard; returns how many it took (0: the
    /// shard is done).
    async fn take_slice(&self, progress: &BulkProgress) -> Result<u64, QueueError> {
        let source = self.bulk_source(&progress.filter)?;
        let before = format!("{:.3}", progress.before);
        let mut conn = self.conn.clone();
        Ok(match progress.action {
            BulkAction::Retry => {
                let ids: Vec<String> = RETRY
                    .key(self.config.dead_key())
                    .key(self.config.active_key())
                    .key(&source)
                    .key(self.config.wake_key())
                    .arg(self.config.meta_prefix())
                    .arg(format!("{:.3}", now_secs()))
                    .arg("all")
                    .arg(CHUNK)
                    .arg(&before)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(self.error("retry dead jobs"))?;
                ids.len() as u64
            }
            BulkAction::Discard => DISCARD
                .key(self.config.dead_key())
                .key(self.config.data_key())
                .key(&source)
                .arg(self.config.meta_prefix())
                .arg(self.config.history_prefix())
                .arg("all")
                .arg(CHUNK)
                .arg(&before)
                .invoke_async(&mut conn)
                .await
                .map_err(self.error("discard dead jobs"))?,
        })
    }

    /// Writes the record; `new` also lists it among the recent ones.
    async fn save_bulk(&self, progress: &BulkProgress, new: bool) -> Result<(), QueueError> {
        let record = serde_json::to_string(progress).map_err(|source| QueueError::Encode {
            queue: self.config.name.clone(),
            source,
        })?;
        let mut pipe = redis::pipe();
        pipe.set_ex(self.config.bulk_key(&progress.id), record, RECORD_TTL_SECS)
            .ignore();
        if new {
            pipe.lpush(self.config.bulks_key(), &progress.id)
                .ignore()
                .ltrim(self.config.bulks_key(), 0, RECENT_OPERATIONS as isize - 1)
                .ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(self.error("record a bulk operation"))
    }

    /// The operation `id`, if its record is still kept.
    async fn bulk(&self, id: &str) -> Result<Option<BulkProgress>, QueueError> {
        let mut conn = self.conn.clone();
        let record: Option<String> = redis::cmd("GET")
            .arg(self.config.bulk_key(id))
            .query_async(&mut conn)
            .await
            .map_err(self.error("read a bulk operation"))?;
        Ok(record.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// The latest operations, newest first.
    async fn bulks(&self) -> Result<Vec<BulkProgress>, QueueError> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = redis::cmd("LRANGE")
            .arg(self.config.bulks_key())
            .arg(0)
            .arg(RECENT_OPERATIONS - 1)
            .query_async(&mut conn)
            .await
            .map_err(self.error("list bulk operations"))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.config.bulk_key(id)).collect();
        let records: Vec<Option<String>> = redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .map_err(self.error("list bulk operations"))?;
        Ok(records
            .into_iter()
            .flatten()
            .filter_map(|r| serde_json::from_str(&r).ok())
            .collect())
    }
}

impl QueueAdmin {
    /// Records a new operation on the dead jobs `filter` selects now, and
    /// returns it; [`QueueAdmin::run_bulk`] does the work.
    pub async fn begin_bulk(
        &self,
        action: BulkAction,
        filter: DeadFilter,
    ) -> Result<BulkProgress, QueueError> {
        let first = self.first_shard();
        first.bulk_source(&filter)?;
        let now = now_secs();
        let mut total = 0;
        for shard in self.shards() {
            total += shard.count_before(&filter, now).await?;
        }
        let progress = BulkProgress {
            id: format!("{}-{:04x}", (now * 1000.0) as u64, fastrand::u16(..)),
            action,
            filter,
            before: now,
            total,
            done: 0,
            state: BulkState::Running,
            error: None,
            started_at: now,
            updated_at: now,
        };
        first.save_bulk(&progress, true).await?;
        tracing::warn!(
            queue = %self.name(),
            operation = %progress.id,
            action = action.as_str(),
            jobs = total,
            "bulk operation on dead jobs begun by an operator"
        );
        Ok(progress)
    }

    /// Does `progress`'s operation to the end, a slice per call, writing
    /// its record after each. Returns the final record.
    pub async fn run_bulk(&self, mut progress: BulkProgress) -> Result<BulkProgress, QueueError> {
        let outcome = self.take_slices(&mut progress).await;
        progress.updated_at = now_secs();
        progress.state = match &outcome {
            Ok(()) => BulkState::Finished,
            Err(e) => {
                progress.error = Some(e.to_string());
                BulkState::Failed
            }
        };
        // Best effort: the record of a failure caused by Redis may not be
        // writable either; the caller gets the error.
        let saved = self.first_shard().save_bulk(&progress, false).await;
        outcome?;
        saved?;
        tracing::info!(
            queue = %self.name(),
            operation = %progress.id,
            action = progress.action.as_str(),
            jobs = progress.done,
            "bulk operation on dead jobs finished"
        );
        Ok(progress)
    }

    /// Walks every shard, a slice at a time, saving the record after each.
    async fn take_slices(&self, progress: &mut BulkProgress) -> Result<(), QueueError> {
        for shard in self.shards() {
            loop {
                let taken = shard.take_slice(progress).await?;
                if taken == 0 {
                    break;
                }
                progress.done += taken;
                progress.updated_at = now_secs();
                self.first_shard().save_bulk(progress, false).await?;
            }
        }
        Ok(())
    }

    /// The operation `id`, if its record is still kept.
    pub async fn bulk(&self, id: &str) -> Result<Option<BulkProgress>, QueueError> {
        self.first_shard().bulk(id).await
    }

    /// The latest operations, newest first.
    pub async fn bulks(&self) -> Result<Vec<BulkProgress>, QueueError> {
        self.first_shard().bulks().await
    }

    /// Retries every job that was dead when the call began, in slices;
    /// returns how many.
    pub async fn retry_all(&self) -> Result<u64, QueueError> {
        let progress = self
            .begin_bulk(BulkAction::Retry, DeadFilter::all())
            .await?;
        Ok(self.run_bulk(progress).await?.done)
    }
}
