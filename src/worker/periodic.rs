//! Work that one worker of many does each period: the export retention
//! sweep and the removal of expired messages.
//!
//! Every worker ticks at the period; at each tick it tries to take the
//! period's turn, a Redis key set with `NX` that expires after one period,
//! and only the worker that took it does the work. So however many workers
//! run, the work is done about once a period, and a worker that dies
//! holding the turn delays it by one period at most.

use std::{future::Future, time::Duration};

use herald_jobs::RedisConnection;
use tokio::task::JoinHandle;
use tracing::warn;

/// Whether this worker takes the turn under `turn_key` for `period`.
async fn take_turn(
    redis: &mut RedisConnection,
    turn_key: &str,
    period: Duration,
) -> redis::RedisResult<bool> {
    let taken: Option<String> = redis::cmd("SET")
        .arg(turn_key)
        .arg(std::process::id())
        .arg("NX")
        .arg("PX")
        .arg(u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1))
        .query_async(redis)
        .await?;
    Ok(taken.is_some())
}

/// Runs `work` now and every `period` while the returned task runs, each
/// time this worker holds the turn under `turn_key`. `what` names the work
/// in the log line of a turn that could not be taken.
pub fn spawn_taking_turns<F, Fut>(
    what: &'static str,
    period: Duration,
    mut redis: RedisConnection,
    turn_key: String,
    mut work: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut every = tokio::time::interval(period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match take_turn(&mut redis, &turn_key, period).await {
                Ok(true) => work().await,
                Ok(false) => {}
                Err(error) => warn!(%error, "{what} skipped: its turn could not be taken"),
            }
        }
    })
}
