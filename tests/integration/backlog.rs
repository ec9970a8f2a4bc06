//! The queue layer under backlogs larger than Lua's `unpack` limit (about
//! 8,000 values), which wedges plain apalis-redis 1.0.0.

use std::{collections::HashSet, path::PathBuf, time::Duration};

use apalis_core::worker::context::WorkerContext;
use herald_jobs::{Producer, QueueName, SendMessage};
use mongodb::bson::doc;

use crate::helpers::{account, env, wait_for, TestEnv};

/// Jobs in each backlog: well past the ~8,000 where `unpack` fails.
pub(crate) const BACKLOG: usize = 20_000;

pub(crate) async fn enqueue_backlog(env: &TestEnv, count: usize) -> Vec<String> {
    let account = account();
    let jobs: Vec<SendMessage> = (0..count)
        .map(|i| SendMessage::new(account, format!("broadcast {i}"), "to everyone"))
        .collect();
    let mut producer = Producer::connect(&env.settings.redis.url, &env.settings.redis.namespace)
        .await
        .expect("producer");
    producer
        .enqueue_messages(jobs)
        .await
        .expect("bulk enqueue")
        .into_iter()
        .map(|id| id.to_hex())
        .collect()
}

/// The `send_message` queue's name in the earlier, untagged layout
/// (apalis-redis's): `NAMESPACE:send_message`.
fn legacy_queue(env: &TestEnv) -> String {
    format!("{}:send_message", env.settings.redis.namespace)
}

/// A plain connection manager, as apalis-redis takes.
async fn apalis_connection() -> redis::aio::ConnectionManager {
    redis::Client::open(crate::helpers::redis_url())
        .expect("redis url")
        .get_connection_manager()
        .await
        .expect("redis")
}

/// Like [`enqueue_backlog`], written by apalis-redis itself in the earlier
/// layout (every job in the scheduled set, scored by the second it was
/// enqueued, no hash tag and no wake token): what a deployment of an
/// earlier release holds when it upgrades.
async fn enqueue_apalis_redis_backlog(env: &TestEnv, count: usize) -> Vec<String> {
    use apalis::prelude::{TaskBuilder, TaskSink};
    let account = account();
    let queue = legacy_queue(env);
    let conn = apalis_connection().await;
    let mut storage = apalis_redis::RedisStorage::<SendMessage>::new(conn)
        .with_config(apalis_redis::Config::default().queue(&queue));
    let mut ids = Vec::with_capacity(count);
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let id = herald_jobs::MessageId::generate();
        let job =
            SendMessage::new(account, format!("broadcast {i}"), "to everyone").with_message_id(id);
        ids.push(id.to_hex());
        tasks.push(TaskBuilder::new(job).build());
    }
    let mut tasks = tasks.into_iter();
    loop {
        let chunk: Vec<_> = tasks.by_ref().take(1_000).collect();
        if chunk.is_empty() {
            break;
        }
        storage
            .push_all(futures::stream::iter(chunk))
            .await
            .expect("apalis-redis enqueue");
    }
    ids
}

/// Waits until every message is stored and every push accepted.
pub(crate) async fn wait_drained(env: &TestEnv, count: usize) {
    wait_for_long("every message stored", || async {
        (env.message_count(doc! {}).await as usize == count).then_some(())
    })
    .await;
    wait_for_long("every push accepted", || async {
        (env.accepted_count().await as usize >= count).then_some(())
    })
    .await;
}

/// Like `wait_for`, with patience for a large backlog on a small machine.
pub(crate) async fn wait_for_long<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    let start = std::time::Instant::now();
    while check().await.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every expected message was pushed exactly once.
pub(crate) async fn assert_pushed_once(env: &TestEnv, ids: &[String]) {
    let events = env.delivered("new_message").await;
    let mut seen = HashSet::new();
    for event in &events {
        let id = event.data["messageId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(seen.insert(id.clone()), "message {id} pushed twice");
    }
    let expected: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(seen, expected, "pushed messages differ from enqueued ones");
}

fn log_path(env: &TestEnv, name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{}-{name}.log", env.namespace))
}

/// Lines of a JSON log at level WARN or ERROR.
fn complaints(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\""))
        .map(str::to_owned)
        .collect()
}

const QUIET_JSON_LOGS: [(&str, &str); 2] =
    [("HERALD_LOG_FORMAT", "json"), ("HERALD_LOG_LEVEL", "warn")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_that_wedges_plain_apalis_redis_is_moved_to_the_tagged_layout_and_drains() {
    let env = env().await;
    let ids = enqueue_apalis_redis_backlog(&env, BACKLOG).await;

    // The regression this guards: apalis-redis's own fetch cannot take this
    // backlog (every job is due at once in its scheduled set).
    let queue = legacy_queue(&env);
    let mut conn = apalis_connection().await;
    redis::cmd("ZADD")
        .arg(format!("{queue}:workers"))
        .arg(herald::queue::now_secs_string())
        .arg("probe")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let wedged = apalis_redis::queries::fetch_next(
        &mut conn,
        &WorkerContext::new("probe"),
        &apalis_redis::Config::default().queue(&queue),
    )
    .await
    .expect_err("plain apalis-redis fails on this backlog");
    assert!(
        wedged.to_string().contains("too many results to unpack"),
        "{wedged}"
    );
    redis::cmd("ZREM")
        .arg(format!("{queue}:workers"))
        .arg("probe")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    // Herald's worker, started on the same backlog, moves it to the tagged
    // layout and takes all of it.
    let log = log_path(&env, "drain");
    let mut worker = env.spawn_herald_logged(&["worker"], &QUIET_JSON_LOGS, &log);
    wait_drained(&env, BACKLOG).await;
    assert_pushed_once(&env, &ids).await;
    let mut herald_conn = herald::queue::connect(env.settings.redis.url.as_str())
        .await
        .unwrap();
    let left = herald_conn
        .scan_match(&env.settings.redis.namespace.legacy_pattern())
        .await
        .unwrap();
    assert_eq!(
        left,
        Vec::<String>::new(),
        "keys left in the earlier layout"
    );
    let _ = worker.kill();
    let _ = worker.wait();
    let complaints = complaints(&log);
    let _ = std::fs::remove_file(&log);
    assert!(
        complaints.is_empty(),
        "the worker logged problems:\n{}",
        complaints.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_enqueued_while_workers_run_drains() {
    let mut env = env().await;
    env.start_worker().await;
    let ids = enqueue_backlog(&env, BACKLOG).await;
    wait_drained(&env, BACKLOG).await;
    assert_pushed_once(&env, &ids).await;
    assert!(!env.worker_finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_with_10000_leased_jobs_loses_none_and_duplicates_none() {
    const LEASED: usize = 10_000;
    let mut env = env().await;
    let ids = enqueue_backlog(&env, LEASED).await;
    // Pushes hang at the provider while the first worker lives, so none of
    // its pushes completes: every one of them must be re-run by the second.
    env.script_failures(None, 120_000, 1_000_000).await;

    // One fetch leases the whole backlog to the first worker.
    let batch = LEASED.to_string();
    let mut first = env.spawn_herald_logged(
        &["worker"],
        &[("HERALD_WORKER_FETCH_BATCH_SIZE", batch.as_str())],
        &log_path(&env, "killed"),
    );
    // Finished send_message jobs are acknowledged as the worker goes, so
    // the jobs it holds are the send_message jobs it has not run yet plus
    // the pushes it leased, all hanging at the provider.
    wait_for(
        "the first worker to store some messages and hold 1,000 jobs",
        || async {
            let stored = env.message_count(doc! {}).await;
            let leased = leased_jobs(&env, QueueName::SendMessage).await
                + leased_jobs(&env, QueueName::Push).await;
            (stored >= 500 && leased >= 1_000).then_some(())
        },
    )
    .await;
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let _ = std::fs::remove_file(log_path(&env, "killed"));

    // The provider recovers; a second worker takes over once the first
    // one's heartbeats are overdue.
    env.http
        .delete(format!("{}/_sandbox/failures", env.sandbox_url))
        .send()
        .await
        .unwrap();
    env.start_worker().await;
    wait_drained(&env, LEASED).await;
    assert_pushed_once(&env, &ids).await;
}

/// Jobs currently leased to any worker of `queue`.
async fn leased_jobs(env: &TestEnv, queue: QueueName) -> usize {
    let mut conn = herald::queue::connect(env.settings.redis.url.as_str())
        .await
        .unwrap();
    let pattern = format!("{}:inflight:*", env.settings.redis.namespace.queue(queue));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut total = 0;
    for key in keys {
        total += redis::cmd("SCARD")
            .arg(key)
            .query_async::<usize>(&mut conn)
            .await
            .unwrap();
    }
    total
}

/// Counts per state of one of `env`'s queues.
async fn stats(env: &TestEnv, queue: QueueName) -> herald::queue::admin::QueueStats {
    let conn = herald::queue::connect(env.settings.redis.url.as_str())
        .await
        .unwrap();
    let config = herald::queues::config(&env.settings, queue);
    herald::queue::admin::QueueAdmin::new(conn, config)
        .stats()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_mid_backlog_gives_back_what_it_fetched_ahead_and_records_what_it_finished(
) {
    const JOBS: usize = 3_000;
    // One job at a time, so most of every batch is still waiting to start
    // (and the next one fetched ahead) when the stop comes.
    let mut env = crate::helpers::env_with(&[
        ("HERALD_QUEUES_SEND_MESSAGE_CONCURRENCY", "1"),
        ("HERALD_WORKER_FETCH_BATCH_SIZE", "200"),
    ])
    .await;
    let ids = enqueue_backlog(&env, JOBS).await;
    env.start_worker().await;
    wait_for("the worker to store some messages", || async {
        (env.message_count(doc! {}).await >= 300).then_some(())
    })
    .await;
    env.stop_worker().await.expect("the worker stops cleanly");

    // Nothing is left leased to the stopped worker, and no worker is left
    // registered.
    let sends = stats(&env, QueueName::SendMessage).await;
    assert_eq!((sends.running, sends.workers), (0, 0), "{sends:?}");
    assert_eq!(leased_jobs(&env, QueueName::SendMessage).await, 0);
    // Every job that ran is recorded done, with its push handed off; every
    // other job is back in the queue. None is lost or counted twice.
    let stored = env.message_count(doc! {}).await;
    assert!(
        stored < JOBS as u64,
        "the stop came too late: {stored} stored"
    );
    assert_eq!(sends.done, stored, "{sends:?}");
    assert_eq!(sends.done + sends.pending, JOBS as u64, "{sends:?}");
    let pushes = stats(&env, QueueName::Push).await;
    assert_eq!(pushes.running, 0, "{pushes:?}");
    assert_eq!(
        pushes.done + pushes.pending + pushes.scheduled,
        stored,
        "{pushes:?}"
    );

    // A new worker takes the rest; each message is stored and pushed once.
    env.start_worker().await;
    wait_drained(&env, JOBS).await;
    assert_pushed_once(&env, &ids).await;
    assert_eq!(stats(&env, QueueName::SendMessage).await.done, JOBS as u64);
}
