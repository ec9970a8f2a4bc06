//! [`QueueAdmin`]: one queue as operators see it, whatever the number of
//! shards it is spread over.
//!
//! A queue with `redis.queue_shards` above 1 is several queues of keys,
//! each under a hash tag of its own (see `herald_jobs::queue::shard_of`).
//! Every view here asks each shard and merges the answers so that the
//! dashboard, the API and the CLI show one queue:
//!
//! - counts are added up (workers: the most any shard has, since every
//!   worker process consumes every shard);
//! - pages of dead, scheduled, pending and running jobs are merged in the
//!   order each list promises (latest failure, soonest run time, queue
//!   position, worker); each shard is asked for the first
//!   `offset + limit` ids, and only the page's jobs are read;
//! - a job id is looked for on every shard (ids are unique per queue);
//! - error groups with the same id are one group, their counts added;
//! - pause, resume, retry and discard act on every shard.
//!
//! With one shard each call goes straight to it.

use std::cmp::Ordering;

use herald_jobs::RedisConnection;

use super::{
    history::MinuteCounts, listing::Placed, DeadFilter, DeadJob, ErrorGroup, JobDetail, JobState,
    ListedJob, Minute, QueueStats, ShardAdmin,
};
use crate::{QueueConfig, QueueError};

/// Most error groups read from each shard to merge them (the groups are
/// distinct error texts, so a shard rarely has more than a few dozen).
const GROUPS_PER_SHARD: usize = 10_000;

/// Operator access to one queue and all its shards.
#[derive(Debug, Clone)]
pub struct QueueAdmin {
    shards: Vec<ShardAdmin>,
}

impl QueueAdmin {
    /// Admin access to the queue `config` describes (one shard).
    pub fn new(conn: RedisConnection, config: QueueConfig) -> Self {
        Self::sharded(conn, config, [])
    }

    /// Admin access to the queue whose shard 0 `first` describes (it names
    /// the queue and keeps the bulk operations' records) and whose other
    /// shards `others` describe.
    pub fn sharded(
        conn: RedisConnection,
        first: QueueConfig,
        others: impl IntoIterator<Item = QueueConfig>,
    ) -> Self {
        Self {
            shards: std::iter::once(first)
                .chain(others)
                .map(|config| ShardAdmin::new(conn.clone(), config))
                .collect(),
        }
    }

    /// The queue's name as operators see it (`NAMESPACE:QUEUE`).
    pub fn name(&self) -> &str {
        self.first_shard().config.display_name()
    }

    pub(super) fn shards(&self) -> &[ShardAdmin] {
        &self.shards
    }

    /// Shard 0, which keeps what belongs to the queue as a whole.
    pub(super) fn first_shard(&self) -> &ShardAdmin {
        // Never empty: `sharded` takes shard 0 apart from the rest.
        &self.shards[0]
    }

    /// Counts per state and recent throughput, added up over the shards.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut total = QueueStats {
            queue: self.name().to_owned(),
            ..QueueStats::default()
        };
        for shard in &self.shards {
            let one = shard.stats().await?;
            total.pending += one.pending;
            total.scheduled += one.scheduled;
            total.running += one.running;
            total.done += one.done;
            total.failed += one.failed;
            total.trimmed_by_age += one.trimmed_by_age;
            total.trimmed_by_cap += one.trimmed_by_cap;
            total.done_last_5_min += one.done_last_5_min;
            total.failed_last_5_min += one.failed_last_5_min;
            total.workers = total.workers.max(one.workers);
            total.paused |= one.paused;
        }
        Ok(total)
    }

    /// One job's payload, metadata, history and state; `None` if no shard
    /// knows it.
    pub async fn job(&self, id: &str) -> Result<Option<JobDetail>, QueueError> {
        for shard in &self.shards {
            if let Some(job) = shard.job(id).await? {
                return Ok(Some(job));
            }
        }
        Ok(None)
    }

    /// Dead jobs `filter` selects, most recently failed first; `offset`
    /// and `limit` page through them. Returns the page and how many the
    /// filter selects in all.
    pub async fn dead_jobs(
        &self,
        filter: &DeadFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<DeadJob>, usize), QueueError> {
        if let [shard] = self.shards.as_slice() {
            let (page, total) = shard.dead_page(filter, offset, limit).await?;
            return Ok((shard.read_dead(page).await?, total));
        }
        let mut total = 0;
        let mut candidates = Vec::new();
        for (index, shard) in self.shards.iter().enumerate() {
            let (ids, count) = shard
                .dead_page(filter, 0, offset.saturating_add(limit))
                .await?;
            total += count;
            candidates.extend(ids.into_iter().map(|(id, at)| (index, id, at)));
        }
        // Latest failure first.
        candidates.sort_by(|a, b| b.2.partial_cmp(&a.2).unwrap_or(Ordering::Equal));
        let page = window(candidates, offset, limit);
        let mut jobs = Vec::with_capacity(page.len());
        for (index, shard) in self.shards.iter().enumerate() {
            let mine: Vec<(String, f64)> = page
                .iter()
                .filter(|(s, _, _)| *s == index)
                .map(|(_, id, at)| (id.clone(), *at))
                .collect();
            if !mine.is_empty() {
                jobs.extend(shard.read_dead(mine).await?);
            }
        }
        jobs.sort_by(|a, b| {
            b.failed_at
                .partial_cmp(&a.failed_at)
                .unwrap_or(Ordering::Equal)
        });
        Ok((jobs, total))
    }

    /// The error groups of the dead jobs, those with the most jobs first;
    /// at most `limit`. Returns them and how many groups there are.
    pub async fn error_groups(&self, limit: usize) -> Result<(Vec<ErrorGroup>, usize), QueueError> {
        if let [shard] = self.shards.as_slice() {
            return shard.error_groups(limit).await;
        }
        let mut merged: Vec<ErrorGroup> = Vec::new();
        for shard in &self.shards {
            for group in shard.error_groups(GROUPS_PER_SHARD).await?.0 {
                match merged.iter_mut().find(|g| g.id == group.id) {
                    Some(same) => {
                        same.count += group.count;
                        same.last_failed_at = match (same.last_failed_at, group.last_failed_at) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            (a, b) => a.or(b),
                        };
                    }
                    None => merged.push(group),
                }
            }
        }
        merged.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.id.cmp(&b.id)));
        let total = merged.len();
        merged.truncate(limit.max(1));
        Ok((merged, total))
    }

    /// The last `minutes` minutes (at most
    /// [`super::HISTORY_MINUTES`]), oldest first, the current minute last.
    pub async fn history(&self, minutes: usize) -> Result<Vec<Minute>, QueueError> {
        let mut total: Vec<MinuteCounts> = Vec::new();
        for shard in &self.shards {
            let counts = shard.history(minutes).await?;
            if total.is_empty() {
                total = counts;
                continue;
            }
            // Each shard reads the clock itself: add minute to minute.
            for one in counts {
                if let Some(same) = total.iter_mut().find(|m| m.at == one.at) {
                    same.add(&one);
                }
            }
        }
        Ok(total.into_iter().map(MinuteCounts::into_minute).collect())
    }

    /// The enqueue-to-finish latency of the jobs done in the last
    /// `minutes` minutes, every shard's together, as the 50th and 99th
    /// percentiles in milliseconds (the upper bound of the bucket each
    /// falls in); `None` when no job finished.
    pub async fn recent_latency_ms(
        &self,
        minutes: usize,
    ) -> Result<(Option<u64>, Option<u64>), QueueError> {
        let mut latency: std::collections::HashMap<usize, u64> = Default::default();
        for shard in &self.shards {
            for minute in shard.history(minutes).await? {
                for (bucket, count) in minute.latency {
                    *latency.entry(bucket).or_default() += count;
                }
            }
        }
        Ok((
            super::history::quantile_ms(&latency, 0.5),
            super::history::quantile_ms(&latency, 0.99),
        ))
    }

    /// Jobs in `state`, a page of `limit` from `offset`: pending in queue
    /// order (the shards' lists side by side, as workers take them),
    /// scheduled soonest first, running by shard and worker. Returns the
    /// page and how many jobs are in that state.
    pub async fn jobs_in(
        &self,
        state: JobState,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<ListedJob>, usize), QueueError> {
        if let [shard] = self.shards.as_slice() {
            let (page, total) = shard.placed_in(state, offset, limit).await?;
            return Ok((shard.read_listed(page).await?, total));
        }
        let mut total = 0;
        // (shard, position in the shard's list, the job)
        let mut candidates: Vec<(usize, usize, Placed)> = Vec::new();
        for (index, shard) in self.shards.iter().enumerate() {
            let (page, count) = shard
                .placed_in(state, 0, offset.saturating_add(limit))
                .await?;
            total += count;
            candidates.extend(
                page.into_iter()
                    .enumerate()
                    .map(|(position, placed)| (index, position, placed)),
            );
        }
        match state {
            JobState::Pending => candidates.sort_by_key(|(shard, position, _)| (*position, *shard)),
            JobState::Scheduled => candidates.sort_by(|a, b| {
                (a.2 .1)
                    .partial_cmp(&b.2 .1)
                    .unwrap_or(Ordering::Equal)
                    .then(a.0.cmp(&b.0))
            }),
            JobState::Running => candidates.sort_by_key(|(shard, position, _)| (*shard, *position)),
        }
        let page: Vec<(usize, usize, Placed)> = window(candidates, offset, limit);
        let mut listed: Vec<(usize, ListedJob)> = Vec::with_capacity(page.len());
        for (index, shard) in self.shards.iter().enumerate() {
            let mine: Vec<(usize, Placed)> = page
                .iter()
                .enumerate()
                .filter(|(_, (s, _, _))| *s == index)
                .map(|(rank, (_, _, placed))| (rank, placed.clone()))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let ranks: Vec<usize> = mine.iter().map(|(rank, _)| *rank).collect();
            let jobs = shard
                .read_listed(mine.into_iter().map(|(_, placed)| placed).collect())
                .await?;
            listed.extend(ranks.into_iter().zip(jobs));
        }
        listed.sort_by_key(|(rank, _)| *rank);
        Ok((listed.into_iter().map(|(_, job)| job).collect(), total))
    }

    /// Pauses every shard: workers (of every process) lease none of the
    /// queue's jobs until [`QueueAdmin::resume`]; jobs running now finish.
    /// The state is kept in Redis, so it survives worker restarts. Returns
    /// whether the queue was running before (any shard was).
    pub async fn pause(&self) -> Result<bool, QueueError> {
        let mut changed = false;
        for shard in &self.shards {
            changed |= shard.pause().await?;
        }
        Ok(changed)
    }

    /// Resumes every shard and wakes an idle worker of each for the jobs
    /// that waited. Returns whether it was paused (any shard was).
    pub async fn resume(&self) -> Result<bool, QueueError> {
        let mut changed = false;
        for shard in &self.shards {
            changed |= shard.resume().await?;
        }
        Ok(changed)
    }

    /// Sends the given dead jobs back to the queue. Returns the ids retried
    /// (ids no shard holds dead are skipped).
    pub async fn retry(&self, ids: &[String]) -> Result<Vec<String>, QueueError> {
        let mut retried = Vec::new();
        for shard in &self.shards {
            retried.extend(shard.retry(ids).await?);
        }
        Ok(retried)
    }

    /// Deletes the given dead jobs for good. Returns how many.
    pub async fn discard(&self, ids: &[String]) -> Result<u64, QueueError> {
        let mut total = 0;
        for shard in &self.shards {
            total += shard.discard(ids).await?;
        }
        Ok(total)
    }
}

/// The `limit` entries from `offset` of a merged, sorted list.
fn window<T>(sorted: Vec<T>, offset: usize, limit: usize) -> Vec<T> {
    sorted.into_iter().skip(offset).take(limit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_skips_then_takes() {
        assert_eq!(window((0..10).collect(), 3, 4), vec![3, 4, 5, 6]);
        assert_eq!(window((0..3).collect::<Vec<u8>>(), 5, 4), Vec::<u8>::new());
    }
}
