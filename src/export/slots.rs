//! How many of one account's exports run at once, across every worker.
//!
//! An export holds a core of the database for as long as its scan lasts, so
//! one account that asks for fifty must not hold fifty workers' export
//! permits while the other accounts wait. Before it starts, a run takes
//! one of its account's `export.max_running_per_account` slots; when none
//! is free the job is deferred ([`crate::queue::retry::Defer`]): scheduled
//! again a little later, its status still `queued`, no attempt spent, and
//! the jobs of other accounts behind it run meanwhile.
//!
//! The slots are a sorted set per account in Redis
//! (`{NAMESPACE}:export:running:<accountId>`), shared by every worker:
//! each member is a run, scored by when its lease ends. `lua/slot.lua`
//! drops ended leases, then admits the run if it holds a slot already or
//! one is free, by the server's clock. A run renews its lease while it
//! runs and gives it back when it ends; a crashed worker's slot frees
//! itself when the lease ends ([`LEASE`]).
//!
//! Written here rather than with a crate: governor and the tower limits
//! count requests in one process; this is a lease-based semaphore over
//! Redis, which none of the crates of the field offers.

use std::{sync::LazyLock, time::Duration};

use herald_jobs::{AccountId, Namespace, RedisConnection};
use redis::Script;
use tokio::task::JoinHandle;
use tracing::warn;

static SLOT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/slot.lua")));

/// How long a slot stays held without a renewal: what a crashed worker's
/// run keeps of its account's slots.
pub const LEASE: Duration = Duration::from_secs(60);

/// How often a running export renews its lease.
const RENEW_EVERY: Duration = Duration::from_secs(20);

/// The sorted set of `account`'s running exports in `namespace`,
/// `{NAMESPACE}:export:running:<account>`.
pub fn running_key(namespace: &Namespace, account: impl std::fmt::Display) -> String {
    namespace.key(&format!("export:running:{account}"))
}

/// The slots of every account, for one worker's exports.
#[derive(Clone)]
pub struct AccountSlots {
    redis: RedisConnection,
    namespace: Namespace,
    limit: u32,
}

impl std::fmt::Debug for AccountSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountSlots")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// A slot a run holds: renewed in the background until
/// [`Slot::release`] (or, if the run is dropped, freed by a background task).
#[derive(Debug)]
pub struct Slot {
    redis: RedisConnection,
    key: String,
    run: String,
    renewal: Option<JoinHandle<()>>,
}

impl AccountSlots {
    /// Slots of `limit` per account, kept under `namespace`.
    pub fn new(redis: RedisConnection, namespace: &Namespace, limit: u32) -> Self {
        Self {
            redis,
            namespace: namespace.clone(),
            limit,
        }
    }

    /// Most runs of one account at once.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Takes a slot of `account` for `run`; `None` when they are all taken.
    pub async fn acquire(
        &self,
        account: AccountId,
        run: &str,
    ) -> Result<Option<Slot>, redis::RedisError> {
        let key = running_key(&self.namespace, account);
        let mut redis = self.redis.clone();
        if !take(&mut redis, &key, self.limit, run).await? {
            return Ok(None);
        }
        let renewal = tokio::spawn(renew(
            redis.clone(),
            key.clone(),
            self.limit,
            run.to_owned(),
        ));
        Ok(Some(Slot {
            redis,
            key,
            run: run.to_owned(),
            renewal: Some(renewal),
        }))
    }
}

/// Runs `slot.lua` once: whether `run` holds a slot of the set `key`.
async fn take(
    redis: &mut RedisConnection,
    key: &str,
    limit: u32,
    run: &str,
) -> Result<bool, redis::RedisError> {
    let held: i64 = SLOT
        .key(key)
        .arg(LEASE.as_millis() as u64)
        .arg(limit)
        .arg(run)
        .invoke_async(redis)
        .await?;
    Ok(held == 1)
}

/// Renews `run`'s lease every [`RENEW_EVERY`] until aborted.
async fn renew(mut redis: RedisConnection, key: String, limit: u32, run: String) {
    let mut every = tokio::time::interval(RENEW_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        match take(&mut redis, &key, limit, &run).await {
            Ok(true) => {}
            // The lease ran out (Redis was away longer than LEASE) and the
            // slots went to other runs: this export goes on; the account
            // runs one more than its limit until it ends.
            Ok(false) => warn!(%key, "export slot lost to other runs; the export goes on"),
            Err(error) => warn!(%error, %key, "export slot not renewed; trying again"),
        }
    }
}

impl Slot {
    /// Gives the slot back, so the account's next export starts at once.
    pub async fn release(mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        let result: Result<i64, _> = redis::cmd("ZREM")
            .arg(&self.key)
            .arg(&self.run)
            .query_async(&mut self.redis)
            .await;
        if let Err(error) = result {
            warn!(%error, key = %self.key, "export slot not given back; its lease ends it");
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(renewal) = self.renewal.take() else {
            return;
        };
        renewal.abort();
        // Dropped without `release` (the run was cut off): give the slot
        // back in the background; if that fails too, the lease ends it.
        let (mut redis, key, run) = (self.redis.clone(), self.key.clone(), self.run.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _: Result<i64, _> = redis::cmd("ZREM")
                    .arg(&key)
                    .arg(&run)
                    .query_async(&mut redis)
                    .await;
            });
        }
    }
}
