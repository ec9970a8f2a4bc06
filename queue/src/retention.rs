//! Retention: what a queue forgets of its finished jobs, and when.
//!
//! A job that succeeded is kept [`Retention::done`] after it finished, so
//! the dashboard can show it; a dead job is kept [`Retention::dead`], and
//! at most [`Retention::dead_max`] of them, oldest trimmed first. Removing a
//! job removes its payload, its metadata, its history and its place in the
//! done or dead set. The counters the dashboard and the metrics read (jobs
//! done for good, done and failed per minute, dead jobs trimmed and why)
//! are kept apart and survive.
//!
//! The retention script runs on the heartbeat, in slices of at most
//! [`RETENTION_LIMIT`] jobs of each kind per call and
//! [`RETENTION_CALLS_PER_HEARTBEAT`] calls per beat, so no call walks a
//! whole set and a backlog of finished jobs is worked off over a few
//! beats. A lock held for one heartbeat interval makes one worker of the
//! queue do it, however many run.
//!
//! A trim of dead jobs is never silent: it is logged at `warn` with its
//! reason and count, and counted in Redis (`<queue>:stats:trimmed:<reason>`),
//! which the dashboard, the API and `herald_jobs_trimmed_total` show.
//!
//! [`Retention::done`]: super::Retention::done
//! [`Retention::dead`]: super::Retention::dead
//! [`Retention::dead_max`]: super::Retention::dead_max

use std::sync::LazyLock;

use redis::Script;

use super::{dead_index::with_dead_index, now_secs, persistence::QueuePersistence, QueueError};

static RETENTION: LazyLock<Script> =
    LazyLock::new(|| with_dead_index(include_str!("lua/retention.lua")));
static UPGRADE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/upgrade.lua")));

/// Most jobs of each kind (done, dead by age, dead by cap) one retention
/// call removes.
pub const RETENTION_LIMIT: usize = 500;

/// Most retention calls one heartbeat makes; the next beat continues.
pub const RETENTION_CALLS_PER_HEARTBEAT: usize = 20;

/// Most ids one upgrade call converts.
const UPGRADE_LIMIT: usize = 1_000;

/// What one heartbeat's retention removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// Jobs that succeeded, past [`super::Retention::done`].
    pub done: u64,
    /// Dead jobs past [`super::Retention::dead`].
    pub dead_by_age: u64,
    /// Dead jobs beyond [`super::Retention::dead_max`].
    pub dead_by_cap: u64,
}

impl QueuePersistence {
    /// Runs the retention for up to one heartbeat's worth of calls, unless
    /// another worker of the queue holds the retention lock.
    pub(super) async fn apply_retention(&mut self, worker: &str) -> Result<Removed, QueueError> {
        let retention = self.config.retention;
        let now = now_secs();
        let lock_ms = self.config.heartbeat_interval.as_millis().max(1) as u64;
        let mut removed = Removed::default();
        for _ in 0..RETENTION_CALLS_PER_HEARTBEAT {
            let (done, by_age, by_cap, more): (i64, u64, u64, u8) = RETENTION
                .key(self.config.retention_lock_key())
                .key(self.config.done_key())
                .key(self.config.dead_key())
                .key(self.config.data_key())
                .arg(worker)
                .arg(lock_ms)
                .arg(format!("{:.3}", now - retention.done.as_secs_f64()))
                .arg(format!("{:.3}", now - retention.dead.as_secs_f64()))
                .arg(retention.dead_max)
                .arg(RETENTION_LIMIT)
                .arg(self.config.meta_prefix())
                .arg(self.config.history_prefix())
                .arg(self.config.stats_prefix())
                .invoke_async(&mut self.conn)
                .await
                .map_err(self.command_error("apply retention"))?;
            if done < 0 {
                // Another worker holds the lock this interval.
                break;
            }
            removed.done += done as u64;
            removed.dead_by_age += by_age;
            removed.dead_by_cap += by_cap;
            if more == 0 {
                break;
            }
        }
        let queue = &self.config.name;
        if removed.done > 0 {
            tracing::debug!(%queue, jobs = removed.done, "removed finished jobs past their retention");
        }
        if removed.dead_by_age > 0 {
            tracing::warn!(
                %queue,
                jobs = removed.dead_by_age,
                reason = "age",
                keep_days = retention.dead.as_secs() / 86_400,
                "trimmed dead jobs older than retention.dead_days"
            );
        }
        if removed.dead_by_cap > 0 {
            tracing::warn!(
                %queue,
                jobs = removed.dead_by_cap,
                reason = "cap",
                dead_max = retention.dead_max,
                "trimmed the oldest dead jobs beyond retention.dead_max"
            );
        }
        Ok(removed)
    }

    /// Converts the done and dead sets of the earlier layout (plain sets)
    /// into sorted sets by finish time, if they are still plain sets.
    pub(super) async fn upgrade_layout(&mut self) -> Result<(), QueueError> {
        for (set, count) in [(self.config.done_key(), "1"), (self.config.dead_key(), "0")] {
            loop {
                let more: u8 = UPGRADE
                    .key(&set)
                    .key(self.config.done_total_key())
                    .arg(self.config.meta_prefix())
                    .arg(format!("{:.3}", now_secs()))
                    .arg(UPGRADE_LIMIT)
                    .arg(count)
                    .invoke_async(&mut self.conn)
                    .await
                    .map_err(self.command_error("upgrade the done and dead sets"))?;
                if more == 0 {
                    break;
                }
            }
        }
        Ok(())
    }
}
