//! What Redis Cluster costs per job on one machine: Herald's no-op and
//! end-to-end workloads on one Redis server and on a local cluster, in the
//! same run; and what sharded queues change: the end-to-end workload once
//! more on the cluster with each queue spread over [`SHARDS`] shards, with
//! the Redis CPU of the busiest primary per message for both.
//!
//! The baseline is the same workload on the one server of the settings
//! (`redis.url`); the other row runs it against the cluster
//! (`redis+cluster://`). Trials alternate between the two, so a slow spell
//! of the machine lands on both sides, and each side keeps its median. On
//! one machine a cluster can only cost: its primaries share the same cores,
//! and each queue lives on one primary (its hash tag's slot). What it buys
//! on several machines is the subject of BENCHMARKS.md.

use crate::{
    median_index,
    pipeline::{self, Timed},
    queue::{self, BenchError},
    Row,
};
use herald::config::Settings;
use herald_jobs::RedisConnection;

/// Shards per queue in the sharded end-to-end row (one per primary of the
/// local cluster).
pub const SHARDS: u16 = 3;

/// The workloads, each run on both deployments.
#[derive(Debug, Clone)]
pub struct Workload {
    /// No-op jobs through Herald's queue layer.
    pub noop: queue::Workload,
    /// Messages end to end (stored, pushed), at the first concurrency of
    /// `e2e.concurrencies`.
    pub e2e: pipeline::Workload,
    /// Trials per deployment and workload.
    pub trials: usize,
}

impl Workload {
    /// The fixed workload BENCHMARKS.md reports.
    pub fn standard() -> Self {
        Self {
            noop: queue::Workload {
                jobs: 20_000,
                round: 5_000,
            },
            e2e: pipeline::Workload {
                jobs: 5_000,
                concurrencies: vec![8],
                window: 1_000,
                trials: 1,
            },
            trials: 3,
        }
    }

    /// A few hundred jobs: checks that every part runs on the cluster.
    pub fn smoke() -> Self {
        Self {
            noop: queue::Workload {
                jobs: 500,
                round: 500,
            },
            e2e: pipeline::Workload {
                jobs: 200,
                concurrencies: vec![8],
                window: 100,
                trials: 1,
            },
            trials: 1,
        }
    }
}

/// The medians of each workload on each deployment.
#[derive(Debug, Clone)]
pub struct Report {
    /// No-op jobs: one server, then the cluster.
    pub noop: [Row; 2],
    /// Redis CPU time (user and system) per no-op job, in microseconds,
    /// in the median trial, on the primaries (the one server; the
    /// cluster's three primaries): one server, then the cluster.
    pub noop_redis_cpu_us: [f64; 2],
    /// The same on the cluster's replicas (replication's cost; the one
    /// server has none).
    pub noop_replica_cpu_us: f64,
    /// End to end: one server, the cluster, then the cluster with
    /// [`SHARDS`] shards per queue, with their latencies.
    pub e2e: [Timed; 3],
    /// Redis CPU time per message, in microseconds, of the primary that
    /// spent the most in the median end-to-end trial: the cluster with one
    /// shard per queue, then with [`SHARDS`].
    pub busiest_primary_us: [f64; 2],
    /// The busiest primary's share of all the primaries' Redis CPU in the
    /// same trials (0 to 1): one shard, then [`SHARDS`].
    pub busiest_primary_share: [f64; 2],
    /// Whether every end-to-end message was stored once and pushed once,
    /// in every trial on both deployments.
    pub verified: bool,
}

/// Runs `workload` against the server of `settings` and the cluster at
/// `cluster_url`.
pub async fn run(
    settings: &Settings,
    cluster_url: &str,
    workload: &Workload,
) -> Result<Report, BenchError> {
    let mut on_cluster = settings.clone();
    on_cluster.redis.url = cluster_url.to_owned();
    let mut sharded = on_cluster.clone();
    sharded.redis.queue_shards = SHARDS;
    let deployments = [("one server", settings), ("cluster", &on_cluster)];
    let sharded_label = format!("cluster, {SHARDS} shards");
    let batch = settings.worker.fetch_batch_size;
    let concurrency = settings.queues.send_message.concurrency;
    let e2e_concurrency = workload.e2e.concurrencies.first().copied().unwrap_or(8);

    let mut noop: [Vec<(Row, [f64; 2])>; 2] = Default::default();
    // Each trial with the busiest primary's CPU (per message, and its
    // share of all the primaries'); on one server it is not compared.
    let mut e2e: [Vec<(Timed, [f64; 2])>; 3] = Default::default();
    let mut verified = true;
    for _ in 0..workload.trials.max(1) {
        for (side, (label, settings)) in deployments.iter().enumerate() {
            let conn = herald::queue::connect(settings.redis.url.as_str()).await?;
            let (primaries, replicas) = node_addresses(&mut conn.clone()).await?;
            let before = [
                redis_cpu_seconds(&primaries).await?,
                redis_cpu_seconds(&replicas).await?,
            ];
            let mut row = queue::herald_queue(conn, workload.noop, batch, concurrency).await?;
            let after = [
                redis_cpu_seconds(&primaries).await?,
                redis_cpu_seconds(&replicas).await?,
            ];
            row.name = format!("no-op jobs, {label}");
            let per_job_us = |i: usize| (after[i] - before[i]) * 1e6 / row.count.max(1) as f64;
            let cpu = [per_job_us(0), per_job_us(1)];
            noop[side].push((row, cpu));
            let (timed, busiest, ok) =
                end_to_end(settings, &primaries, &workload.e2e, e2e_concurrency, label).await?;
            verified &= ok;
            e2e[side].push((timed, busiest));
        }
        let conn = herald::queue::connect(sharded.redis.url.as_str()).await?;
        let (primaries, _) = node_addresses(&mut conn.clone()).await?;
        let (timed, busiest, ok) = end_to_end(
            &sharded,
            &primaries,
            &workload.e2e,
            e2e_concurrency,
            &sharded_label,
        )
        .await?;
        verified &= ok;
        e2e[2].push((timed, busiest));
    }
    let [(noop_server, cpu_server), (noop_cluster, cpu_cluster)] = noop.map(|mut rows| {
        let median = median_index(&rows, |(row, _)| row.rate());
        rows.swap_remove(median)
    });
    let [(e2e_server, _), (e2e_cluster, [one_us, one_share]), (e2e_sharded, [sharded_us, sharded_share])] =
        e2e.map(|mut runs| {
            let median = median_index(&runs, |(run, _)| run.row.rate());
            runs.swap_remove(median)
        });
    Ok(Report {
        noop: [noop_server, noop_cluster],
        noop_redis_cpu_us: [cpu_server[0], cpu_cluster[0]],
        noop_replica_cpu_us: cpu_cluster[1],
        e2e: [e2e_server, e2e_cluster, e2e_sharded],
        busiest_primary_us: [one_us, sharded_us],
        busiest_primary_share: [one_share, sharded_share],
        verified,
    })
}

/// One end-to-end trial on `settings`, named after `label`, with the Redis
/// CPU per message of the busiest of `primaries` and its share of all of
/// theirs, and whether every message was stored once and pushed once.
async fn end_to_end(
    settings: &Settings,
    primaries: &[String],
    workload: &pipeline::Workload,
    concurrency: usize,
    label: &str,
) -> Result<(Timed, [f64; 2], bool), BenchError> {
    let mut before = Vec::with_capacity(primaries.len());
    for primary in primaries {
        before.push(redis_cpu_seconds(std::slice::from_ref(primary)).await?);
    }
    let (mut timed, ok) = pipeline::herald_end_to_end(settings, workload, concurrency).await?;
    let (mut busiest, mut all): (f64, f64) = (0.0, 0.0);
    for (primary, before) in primaries.iter().zip(before) {
        let spent = redis_cpu_seconds(std::slice::from_ref(primary)).await? - before;
        busiest = busiest.max(spent);
        all += spent;
    }
    timed.row.name = format!("messages end to end, {label}");
    let per_message = busiest * 1e6 / timed.row.count.max(1) as f64;
    Ok((timed, [per_message, busiest / all.max(1e-9)], ok))
}

/// The `host:port` of the primaries behind `conn` (the one server, or the
/// cluster's primaries) and of the cluster's replicas (`CLUSTER NODES`).
async fn node_addresses(
    conn: &mut RedisConnection,
) -> Result<(Vec<String>, Vec<String>), BenchError> {
    let RedisConnection::Cluster(_) = conn else {
        let info: String = redis::cmd("CLIENT").arg("INFO").query_async(conn).await?;
        let address = info
            .split_whitespace()
            .find_map(|field| field.strip_prefix("laddr="))
            .ok_or_else(|| BenchError::Invalid("CLIENT INFO has no laddr".into()))?;
        return Ok((vec![address.to_owned()], Vec::new()));
    };
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(conn).await?;
    let (mut primaries, mut replicas) = (Vec::new(), Vec::new());
    for line in nodes.lines() {
        let mut fields = line.split_whitespace();
        let (Some(address), Some(flags)) = (fields.nth(1), fields.next()) else {
            continue;
        };
        let address = address.split('@').next().unwrap_or(address).to_owned();
        match flags.split(',').any(|flag| flag == "master") {
            true => primaries.push(address),
            false => replicas.push(address),
        }
    }
    Ok((primaries, replicas))
}

/// CPU seconds (user and system) the Redis servers at `nodes` have used
/// since they started, added up (`INFO cpu`).
async fn redis_cpu_seconds(nodes: &[String]) -> Result<f64, BenchError> {
    let mut total = 0.0;
    for address in nodes {
        let client = redis::Client::open(format!("redis://{address}"))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut conn).await?;
        total += info
            .lines()
            .filter_map(|line| {
                let (key, value) = line.split_once(':')?;
                matches!(key, "used_cpu_user" | "used_cpu_sys")
                    .then(|| value.trim().parse::<f64>().ok())
                    .flatten()
            })
            .sum::<f64>();
    }
    Ok(total)
}
