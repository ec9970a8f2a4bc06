//! Redis stopped and started again under load, with its append-only file:
//! a live worker keeps its leases and what it knows, and nothing is lost or
//! pushed twice.

use std::time::{Duration, Instant};

use herald_jobs::QueueName;
use mongodb::bson::doc;

use crate::{
    helpers::{env_with, stop_logged, wait_within},
    servers::{Kind, PrivateServer},
};

/// Messages sent through the outage.
const MESSAGES: usize = 2_000;
/// How long Redis stays down.
const OUTAGE: Duration = Duration::from_secs(5);

/// Members of the sorted set `key` (a queue's done or dead jobs), read on
/// a connection of its own (`None` if Redis does not answer).
async fn set_size(url: &str, key: &str) -> Option<usize> {
    let mut conn = crate::helpers::try_redis(url).await?;
    redis::cmd("ZCARD")
        .arg(key)
        .query_async(&mut conn)
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_under_load_loses_nothing_and_pushes_nothing_twice() {
    let mut redis = PrivateServer::start(Kind::RedisWithAof).await;
    let url = redis.url();
    let env = env_with(&[
        ("HERALD_REDIS_URL", &url),
        ("HERALD_LOG_FORMAT", "json"),
        ("HERALD_WORKER_OPS_BIND", ""),
    ])
    .await;
    // A provider taking 30 ms per event, so that pushes are in flight (and
    // their receipts and acknowledgements on their way) when Redis stops.
    env.script_failures(None, 30, 1_000_000).await;
    // Stop Redis once messages are flowing, with jobs leased, running and
    // finishing at that moment.
    let (mut worker, log, producing) = env.messages_flowing("redis-restart", MESSAGES, 200).await;
    redis.stop("TERM");
    tokio::time::sleep(OUTAGE).await;
    redis.restart().await;
    let restarted = Instant::now();
    // Jobs leased before the outage may have been pushed during it; what
    // counts is the first push after it.
    let pushed_before = env.accepted_count().await;
    let first_push_after = wait_within(
        "a push after the restart",
        Duration::from_secs(60),
        Duration::from_millis(10),
        || async { (env.accepted_count().await > pushed_before).then(|| restarted.elapsed()) },
    )
    .await;

    let ids = producing.await.expect("producer task");
    assert_eq!(ids.len(), MESSAGES);
    let push_done = format!(
        "{}:done",
        env.settings.redis.namespace.queue(QueueName::Push)
    );
    let everything = wait_within(
        "every message pushed",
        Duration::from_secs(240),
        Duration::from_millis(100),
        || async {
            let done = set_size(&url, &push_done).await?;
            (done >= MESSAGES).then(|| restarted.elapsed())
        },
    )
    .await;

    // Zero lost, zero doubled.
    assert_eq!(env.message_count(doc! {}).await as usize, MESSAGES);
    let pushes = env.pushes_per_message().await;
    let twice: Vec<_> = pushes.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "pushed more than once: {twice:?}");
    for id in &ids {
        assert_eq!(
            pushes.get(&id.to_hex()),
            Some(&1),
            "message {id} pushed once"
        );
    }
    for queue in [QueueName::SendMessage, QueueName::Push] {
        let dead = format!("{}:dead", env.settings.redis.namespace.queue(queue));
        assert_eq!(
            set_size(&url, &dead).await,
            Some(0),
            "{queue:?} has dead jobs"
        );
    }

    // The same worker carried on: no restart, no leases left to the
    // heartbeat timeout, its outage and recovery in the log.
    let (status, lines) = stop_logged(&mut worker, &log);
    assert!(status.success(), "{status:?}");
    assert!(
        !lines.contains("restarting"),
        "a worker was rebuilt:\n{lines}"
    );
    assert!(
        !lines.contains("stopped heart-beating"),
        "jobs waited for the heartbeat timeout:\n{lines}"
    );
    assert!(
        lines.contains("Redis call failed"),
        "the outage was seen:\n{lines}"
    );
    assert!(lines.contains("Redis answers again"), "{lines}");
    let kept = |what: &str| lines.lines().filter(|l| l.contains(what)).count();
    eprintln!(
        "worker log: {} calls failed first, {} recoveries, {} receipt batches kept, {} written late",
        kept("Redis call failed;"),
        kept("Redis answers again"),
        kept("delivery receipts not written"),
        kept("delivery receipts written now"),
    );
    eprintln!(
        "Redis restart: down {OUTAGE:?}; first push {first_push_after:?} after it answered again; \
         all {MESSAGES} pushed {everything:?} after it answered again"
    );
}
