//! Keys of the earlier, untagged layout, moved to their hash-tagged names.
//!
//! Releases before the Redis Cluster layout named keys
//! `NAMESPACE:QUEUE:...` (the apalis-redis layout); they are now
//! `{NAMESPACE:QUEUE}:...` (see [`herald_jobs::queue`]). A worker that
//! starts on a server holding keys of the earlier layout moves them over
//! before it takes any job ([`adopt_legacy_keys`]): jobs waiting, leases,
//! finished and dead jobs, histories, counters, idempotency keys and
//! delivery receipts carry on under the new names. Each key is moved by
//! one script ([`ADOPT_LIMIT`] members per call), renamed whole when its
//! new name is free and merged when it is not (`lua/adopt_key.lua`).
//!
//! A producer of the earlier release may keep writing while the workers
//! are upgraded: the worker checks on every heartbeat whether jobs arrived
//! under the old names ([`legacy_jobs_waiting`]) and moves them too. The
//! keys that make jobs ready (`active`, `scheduled`, `wake`) move last, so
//! a job is never ready before its payload and metadata are in place.
//!
//! A cluster never held the earlier layout (it could not run it), so none
//! of this runs there.

use std::sync::LazyLock;

use herald_jobs::{Namespace, QueueName, RedisConnection};
use redis::Script;

use super::QueueError;

static ADOPT_KEY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/adopt_key.lua")));

/// Most members (list items, hash fields, set members) one call moves.
pub const ADOPT_LIMIT: usize = 1_000;

/// The suffixes of the keys that make a queue's jobs ready; moved last.
const READY_SUFFIXES: [&str; 3] = [":active", ":scheduled", ":wake"];

/// What [`adopt_legacy_keys`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Adopted {
    /// Keys moved (renamed or merged).
    pub moved: u64,
    /// Keys left where they were because a key of another type already
    /// has their new name; an operator decides.
    pub conflicts: Vec<String>,
}

/// Moves every key of `namespace` in the earlier layout to its new name;
/// see the module docs. Does nothing on a cluster.
pub async fn adopt_legacy_keys(
    conn: &mut RedisConnection,
    namespace: &Namespace,
) -> Result<Adopted, QueueError> {
    let mut adopted = Adopted::default();
    if conn.is_cluster() {
        return Ok(adopted);
    }
    let mut keys = conn
        .scan_match(&namespace.legacy_pattern())
        .await
        .map_err(|source| command_error(namespace, "list keys of the earlier layout", source))?;
    // Payloads, metadata and everything else first; then what makes jobs
    // ready, so a worker never leases an id whose payload is not there.
    keys.sort_by_key(|key| READY_SUFFIXES.iter().any(|suffix| key.ends_with(suffix)));
    for old in keys {
        let Some(new) = namespace.from_legacy(&old) else {
            continue;
        };
        loop {
            let more: i64 = ADOPT_KEY
                .key(&old)
                .key(&new)
                .arg(ADOPT_LIMIT)
                .invoke_async(conn)
                .await
                .map_err(|source| {
                    command_error(namespace, "move a key of the earlier layout", source)
                })?;
            match more {
                1 => continue,
                0 => adopted.moved += 1,
                _ => adopted.conflicts.push(old.clone()),
            }
            break;
        }
    }
    if adopted.moved > 0 {
        // Idle workers block on their wake lists; the moved jobs made none
        // ready through the scripts that push a token.
        for queue in QueueName::ALL {
            let wake = herald_jobs::queue::queue_key(&namespace.queue(queue), "wake");
            redis::pipe()
                .lpush(&wake, "1")
                .ltrim(&wake, 0, 0)
                .exec_async(conn)
                .await
                .map_err(|source| command_error(namespace, "wake the workers", source))?;
        }
        tracing::info!(
            namespace = %namespace,
            keys = adopted.moved,
            "moved keys of the earlier Redis layout to their hash-tagged names"
        );
    }
    for key in &adopted.conflicts {
        tracing::error!(
            namespace = %namespace,
            key = %key,
            "a key of the earlier layout was left in place: its new name holds another type"
        );
    }
    Ok(adopted)
}

/// Watches for jobs a producer of the earlier release writes, every
/// `every` (the heartbeat interval), and moves them over; see the module
/// docs. Runs until aborted; a failed check is logged and tried again.
pub fn spawn_watch(
    mut conn: RedisConnection,
    namespace: Namespace,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if conn.is_cluster() {
            return;
        }
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let moved = match legacy_jobs_waiting(&mut conn, &namespace).await {
                Ok(true) => adopt_legacy_keys(&mut conn, &namespace).await.map(|_| ()),
                Ok(false) => Ok(()),
                Err(error) => Err(error),
            };
            if let Err(error) = moved {
                tracing::warn!(namespace = %namespace, %error, "could not move jobs of the earlier layout; trying again");
            }
        }
    })
}

/// Whether jobs wait under the earlier layout's names: a producer of the
/// earlier release wrote since the last [`adopt_legacy_keys`]. One
/// `EXISTS` call; always false on a cluster.
pub async fn legacy_jobs_waiting(
    conn: &mut RedisConnection,
    namespace: &Namespace,
) -> Result<bool, QueueError> {
    if conn.is_cluster() {
        return Ok(false);
    }
    let mut exists = redis::cmd("EXISTS");
    for queue in QueueName::ALL {
        for suffix in ["data", "active", "scheduled"] {
            exists.arg(format!("{namespace}:{queue}:{suffix}"));
        }
    }
    let found: u64 = exists.query_async(conn).await.map_err(|source| {
        command_error(namespace, "look for jobs of the earlier layout", source)
    })?;
    Ok(found > 0)
}

fn command_error(
    namespace: &Namespace,
    operation: &'static str,
    source: redis::RedisError,
) -> QueueError {
    QueueError::Command {
        operation,
        queue: namespace.to_string(),
        source,
    }
}
