//! A queue's jobs in one state, a page at a time, for the dashboard's
//! queue pages: pending (the queue list, in order), scheduled (by time),
//! running (the workers' leases). Dead jobs have their own list
//! (`dead.rs`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{meta_number, meta_time, ShardAdmin};
use crate::QueueError;

/// A state a job can be listed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// In the queue list, waiting for a worker.
    Pending,
    /// Waiting for its time (a retry's backoff, a delayed job).
    Scheduled,
    /// Leased to a worker.
    Running,
}

/// A job as a queue page lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListedJob {
    /// Job id.
    pub id: String,
    /// The JSON payload (`null` if the job's data is gone).
    pub payload: Value,
    /// Runs made so far.
    pub attempts: u64,
    /// When it was enqueued (Unix seconds), if recorded.
    pub enqueued_at: Option<f64>,
    /// When it is to run (scheduled jobs, Unix seconds).
    pub run_at: Option<f64>,
    /// The worker holding it (running jobs).
    pub worker: Option<String>,
}

/// A listed id with what its state adds: the run time (scheduled) or the
/// worker (running).
pub(super) type Placed = (String, Option<f64>, Option<String>);

impl ShardAdmin {
    /// The ids of the jobs in `state`, a page of `limit` from `offset`:
    /// pending in queue order, scheduled soonest first, running by worker.
    /// Returns the page and how many jobs are in that state;
    /// [`ShardAdmin::read_listed`] reads the jobs.
    pub async fn placed_in(
        &self,
        state: JobState,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Placed>, usize), QueueError> {
        let mut conn = self.conn.clone();
        let last = offset.saturating_add(limit.max(1)) - 1;
        let (page, total): (Vec<Placed>, usize) = match state {
            JobState::Pending => {
                let (ids, total): (Vec<String>, usize) = redis::pipe()
                    .lrange(self.config.active_key(), offset as isize, last as isize)
                    .llen(self.config.active_key())
                    .query_async(&mut conn)
                    .await
                    .map_err(self.error("list pending jobs"))?;
                (ids.into_iter().map(|id| (id, None, None)).collect(), total)
            }
            JobState::Scheduled => {
                let (ids, total): (Vec<(String, f64)>, usize) = redis::pipe()
                    .zrange_withscores(self.config.scheduled_key(), offset as isize, last as isize)
                    .zcard(self.config.scheduled_key())
                    .query_async(&mut conn)
                    .await
                    .map_err(self.error("list scheduled jobs"))?;
                let page = ids
                    .into_iter()
                    .map(|(id, at)| (id, Some(at), None))
                    .collect();
                (page, total)
            }
            JobState::Running => {
                // Leases are bounded by the workers' concurrency: read them
                // all, then page.
                let workers: Vec<String> = redis::cmd("ZRANGE")
                    .arg(self.config.workers_key())
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut conn)
                    .await
                    .map_err(self.error("list workers"))?;
                let mut pipe = redis::pipe();
                for worker in &workers {
                    pipe.smembers(self.config.inflight_key(worker));
                }
                let leases: Vec<Vec<String>> = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(self.error("list running jobs"))?;
                let mut all: Vec<Placed> = workers
                    .iter()
                    .zip(leases)
                    .flat_map(|(worker, ids)| {
                        let mut ids = ids;
                        ids.sort();
                        ids.into_iter()
                            .map(move |id| (id, None, Some(worker.clone())))
                    })
                    .collect();
                let total = all.len();
                let page = all
                    .drain(offset.min(total)..(last + 1).min(total))
                    .collect();
                (page, total)
            }
        };
        if limit == 0 {
            return Ok((Vec::new(), total));
        }
        Ok((page, total))
    }

    /// The jobs of `page` with their payload and metadata, in one round
    /// trip.
    pub async fn read_listed(&self, page: Vec<Placed>) -> Result<Vec<ListedJob>, QueueError> {
        if page.is_empty() {
            return Ok(Vec::new());
        }
        let records = self
            .read_records(page.iter().map(|(id, _, _)| id.as_str()))
            .await?;
        let jobs = page
            .into_iter()
            .zip(records)
            .map(|((id, run_at, worker), (payload, meta))| ListedJob {
                id,
                payload,
                attempts: meta_number(&meta, "attempts"),
                enqueued_at: meta_time(&meta, "enqueued_at"),
                run_at,
                worker,
            })
            .collect();
        Ok(jobs)
    }
}
