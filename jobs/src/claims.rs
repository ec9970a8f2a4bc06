//! Claims of enqueue idempotency keys, grouped in time buckets.
//!
//! An enqueue with an idempotency key claims it: the key's claim holds the
//! id of the job that took it, and a later enqueue with a claimed key adds
//! nothing. A queue may give a claim a new value (the push queue records a
//! delivery receipt there), and looks claims up when it leases jobs.
//!
//! A claim is one field of a hash that holds every claim of its time
//! bucket, not a key of its own (`lua/claims.lua` has the layout): Redis
//! counts about 260 bytes for a small string key with an expiry, and about
//! 80 for a field of a large hash. A bucket expires whole, so a claim
//! lives between its TTL and twice that; two probes per grid find it.
//! `docs/ARCHITECTURE.md` ("Claims and receipts") tells the layout and its
//! costs.
//!
//! Every script that touches claims is prefixed with the same Lua
//! functions ([`with_claims`]), so the enqueue script, a queue's fetch and
//! the calls here agree on where a claim is.

use std::{sync::LazyLock, time::Duration};

use redis::{aio::ConnectionLike, RedisResult, Script};

/// The Lua functions every claim-touching script starts with.
pub const CLAIMS_LUA: &str = include_str!("../lua/claims.lua");

/// `source`, prefixed with the claim functions ([`CLAIMS_LUA`]).
pub fn with_claims(source: &str) -> Script {
    Script::new(&format!("{CLAIMS_LUA}\n{source}"))
}

static GET: LazyLock<Script> = LazyLock::new(|| with_claims(include_str!("../lua/claim_get.lua")));
static SET: LazyLock<Script> = LazyLock::new(|| with_claims(include_str!("../lua/claim_set.lua")));

/// Most keys one script call reads or writes; longer lists are sent in
/// calls of this size.
pub const CLAIM_CHUNK: usize = 1_000;

/// The key naming the claims' slot and their grids: `<prefix>:grids`.
pub fn grids_key(prefix: &str) -> String {
    format!("{prefix}:grids")
}

/// The values of the claims of `keys` under `prefix` (a queue's
/// `<queue>:idempotency`), in order; `None` for a key not claimed. `now`
/// is the current time in Unix seconds.
pub async fn get<C: ConnectionLike + Send>(
    conn: &mut C,
    prefix: &str,
    keys: &[String],
    now: f64,
) -> RedisResult<Vec<Option<String>>> {
    let mut values = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(CLAIM_CHUNK) {
        let mut call = GET.prepare_invoke();
        call.key(grids_key(prefix))
            .arg(prefix)
            .arg(format!("{now:.3}"));
        for key in chunk {
            call.arg(key);
        }
        let found: Vec<Option<String>> = call.invoke_async(conn).await?;
        values.extend(found);
    }
    Ok(values)
}

/// Gives each `(key, value)` claim under `prefix` its new value, where the
/// claim is; a key not claimed is claimed with it, remembered `ttl`
/// (`None`: for good). Returns how many keys were claimed anew.
pub async fn set<C: ConnectionLike + Send>(
    conn: &mut C,
    prefix: &str,
    ttl: Option<Duration>,
    entries: &[(String, String)],
    now: f64,
) -> RedisResult<u64> {
    let ttl = ttl_secs(ttl);
    let mut new = 0;
    for chunk in entries.chunks(CLAIM_CHUNK) {
        let mut call = SET.prepare_invoke();
        call.key(grids_key(prefix))
            .arg(prefix)
            .arg(format!("{now:.3}"))
            .arg(ttl);
        for (key, value) in chunk {
            call.arg(key).arg(value);
        }
        let added: u64 = call.invoke_async(conn).await?;
        new += added;
    }
    Ok(new)
}

/// A claim TTL as the scripts take it: whole seconds, at least 1; 0 for
/// none (kept for good).
pub fn ttl_secs(ttl: Option<Duration>) -> u64 {
    ttl.map(|d| d.as_secs().max(1)).unwrap_or(0)
}
