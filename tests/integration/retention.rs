//! Retention: finished jobs leave Redis after `retention.done_secs`, dead
//! jobs are trimmed by age and by count (counted, never silently), the
//! counters survive, and a retry-all walks the dead set once.

use std::time::Duration;

use herald::queue::admin::{QueueAdmin, QueueStats};
use herald_jobs::RedisConnection;
use herald_jobs::{QueueName, SendMessage};

use crate::helpers::{account, env_with, wait_for, TestEnv};

async fn redis(env: &TestEnv) -> RedisConnection {
    herald::queue::connect(env.settings.redis.url.as_str())
        .await
        .expect("Redis")
}

fn admin(conn: &RedisConnection, env: &TestEnv, queue: QueueName) -> QueueAdmin {
    QueueAdmin::new(conn.clone(), herald::queues::config(&env.settings, queue))
}

async fn stats(conn: &RedisConnection, env: &TestEnv, queue: QueueName) -> QueueStats {
    admin(conn, env, queue).stats().await.expect("stats")
}

/// Every key of `env`'s namespace under `queue`, sorted.
async fn keys_of(conn: &mut RedisConnection, env: &TestEnv, queue: QueueName) -> Vec<String> {
    let pattern = format!("{}:*", env.settings.redis.namespace.queue(queue));
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(conn)
        .await
        .expect("KEYS");
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_leave_redis_after_their_retention_and_their_counts_stay() {
    let mut env = env_with(&[
        ("HERALD_RETENTION_DONE_SECS", "1"),
        ("HERALD_WORKER_HEARTBEAT_INTERVAL_SECS", "1"),
    ])
    .await;
    let mut conn = redis(&env).await;
    env.start_worker().await;
    let jobs: Vec<SendMessage> = (0..20)
        .map(|i| SendMessage::new(account(), format!("kept {i}"), "briefly"))
        .collect();
    env.enqueue_bulk(jobs).await;
    wait_for("20 pushes", || async {
        (env.delivered("new_message").await.len() == 20).then_some(())
    })
    .await;

    for queue in [QueueName::SendMessage, QueueName::Push] {
        wait_for("the finished jobs forgotten", || async {
            let done = env.queue_set(queue, "done").await;
            let data: u64 = redis::cmd("HLEN")
                .arg(format!(
                    "{}:data",
                    env.settings.redis.namespace.queue(queue)
                ))
                .query_async(&mut conn.clone())
                .await
                .ok()?;
            (done.is_empty() && data == 0).then_some(())
        })
        .await;
        let left = keys_of(&mut conn, &env, queue).await;
        assert!(
            left.iter()
                .all(|k| !k.contains(":meta:") && !k.contains(":history:")),
            "{queue:?} keeps job keys: {left:?}"
        );
        let counts = stats(&conn, &env, queue).await;
        assert_eq!(counts.done, 20, "{queue:?}: {counts:?}");
        assert!(counts.done_last_5_min >= 20, "{queue:?}: {counts:?}");
    }
    // What stays per message is the push's claim of its idempotency key
    // (a field of a time bucket's hash, holding the delivery receipt),
    // for the re-run window, and nothing else of the jobs.
    let push_keys = keys_of(&mut conn, &env, QueueName::Push).await;
    let mut claims = 0;
    for bucket in push_keys
        .iter()
        .filter(|k| k.contains(":idempotency:") && !k.ends_with(":grids"))
    {
        let receipts: Vec<String> = redis::cmd("HVALS")
            .arg(bucket)
            .query_async(&mut conn)
            .await
            .expect("HVALS");
        assert!(receipts.iter().all(|v| v.starts_with("d@")), "{receipts:?}");
        claims += receipts.len();
    }
    assert_eq!(claims, 20, "{push_keys:?}");
    env.stop_worker().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_cap_trims_the_oldest_dead_jobs_and_counts_them() {
    let mut env = env_with(&[
        ("HERALD_TUISONGBAO_SECRET", "wrong"),
        ("HERALD_RETENTION_DEAD_MAX", "3"),
        ("HERALD_WORKER_HEARTBEAT_INTERVAL_SECS", "1"),
    ])
    .await;
    let conn = redis(&env).await;
    env.start_worker().await;
    // One at a time, so their failure times are in their order.
    for i in 0..5 {
        env.enqueue(SendMessage::new(account(), format!("refused {i}"), "401"))
            .await;
        wait_for("the push dead", || async {
            let dead = stats(&conn, &env, QueueName::Push).await;
            (dead.failed + dead.trimmed_by_cap > i).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let counts = wait_for("the dead set trimmed to 3", || async {
        let counts = stats(&conn, &env, QueueName::Push).await;
        (counts.failed == 3 && counts.trimmed_by_cap == 2).then_some(counts)
    })
    .await;
    assert_eq!(counts.trimmed_by_age, 0);
    // The three kept are the most recent failures.
    let (page, total) = admin(&conn, &env, QueueName::Push)
        .dead_jobs(&herald::queue::admin::DeadFilter::all(), 0, 10)
        .await
        .expect("dead jobs");
    assert_eq!(total, 3);
    let titles: Vec<String> = page
        .iter()
        .map(|job| job.payload["event"]["data"]["title"].to_string())
        .collect();
    assert_eq!(
        titles,
        ["\"refused 4\"", "\"refused 3\"", "\"refused 2\""],
        "{page:?}"
    );
    // The trimmed jobs left the indexes too: the one error group counts
    // the three kept, and the event's index lists only them.
    let admin = admin(&conn, &env, QueueName::Push);
    let (groups, _) = admin.error_groups(10).await.expect("groups");
    assert_eq!(groups.iter().map(|g| g.count).sum::<u64>(), 3, "{groups:?}");
    let by_event = herald::queue::admin::DeadFilter {
        labels: vec![("event".into(), "new_message".into())],
        error: None,
    };
    let (_, indexed) = admin.dead_jobs(&by_event, 0, 10).await.expect("by event");
    assert_eq!(indexed, 3);
    env.stop_worker().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_jobs_older_than_their_days_are_trimmed_and_counted() {
    let mut env = env_with(&[("HERALD_WORKER_HEARTBEAT_INTERVAL_SECS", "1")]).await;
    let mut conn = redis(&env).await;
    // Two dead jobs as the complete script leaves them: one failed 31 days
    // ago, one an hour ago.
    let queue = env.settings.redis.namespace.queue(QueueName::Push);
    let now = herald::queue::now_secs_string().parse::<f64>().unwrap();
    for (id, failed_at) in [("old", now - 31.0 * 86_400.0), ("recent", now - 3_600.0)] {
        redis::pipe()
            .hset(format!("{queue}:data"), id, "{}")
            .hset(format!("{queue}:meta:{id}"), "status", "Failed")
            .zadd(format!("{queue}:dead"), id, failed_at)
            .query_async::<()>(&mut conn)
            .await
            .expect("seed");
    }
    env.start_worker().await;
    let counts = wait_for("the old dead job trimmed", || async {
        let counts = stats(&conn, &env, QueueName::Push).await;
        (counts.trimmed_by_age == 1).then_some(counts)
    })
    .await;
    assert_eq!(counts.failed, 1);
    assert_eq!(env.queue_set(QueueName::Push, "dead").await, ["recent"]);
    assert!(env.job_meta(QueueName::Push, "old").await.is_empty());
    env.stop_worker().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_all_retries_each_dead_job_once_even_when_it_fails_again() {
    let mut env = env_with(&[("HERALD_TUISONGBAO_SECRET", "wrong")]).await;
    let conn = redis(&env).await;
    env.start_worker().await;
    let jobs: Vec<SendMessage> = (0..30)
        .map(|i| SendMessage::new(account(), format!("refused {i}"), "401"))
        .collect();
    env.enqueue_bulk(jobs).await;
    wait_for("30 dead pushes", || async {
        (stats(&conn, &env, QueueName::Push).await.failed == 30).then_some(())
    })
    .await;
    // The credentials are still wrong: each retried push fails again at
    // once and is dead again while the retry-all is still going.
    let retried = admin(&conn, &env, QueueName::Push)
        .retry_all()
        .await
        .expect("retry all");
    assert_eq!(retried, 30);
    wait_for("the 30 dead again", || async {
        (stats(&conn, &env, QueueName::Push).await.failed == 30).then_some(())
    })
    .await;
    env.stop_worker().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_converts_the_plain_done_and_dead_sets_of_the_earlier_layout() {
    let mut env = env_with(&[]).await;
    let mut conn = redis(&env).await;
    let queue = env.settings.redis.namespace.queue(QueueName::Push);
    let ids: Vec<String> = (0..2_500).map(|i| format!("old-{i}")).collect();
    for chunk in ids.chunks(500) {
        redis::cmd("SADD")
            .arg(format!("{queue}:done"))
            .arg(chunk)
            .query_async::<()>(&mut conn)
            .await
            .expect("seed done");
    }
    // Finished a minute ago: inside its retention, so it stays.
    let now = herald::queue::now_secs_string().parse::<f64>().unwrap();
    let done_at = format!("{:.3}", now - 60.0);
    redis::pipe()
        .hset(format!("{queue}:meta:old-0"), "done_at", &done_at)
        .sadd(format!("{queue}:dead"), "dead-0")
        .query_async::<()>(&mut conn)
        .await
        .expect("seed");
    env.start_worker().await;
    let counts = wait_for("the sets converted", || async {
        let kind: String = redis::cmd("TYPE")
            .arg(format!("{queue}:done"))
            .query_async(&mut conn.clone())
            .await
            .ok()?;
        (kind == "zset").then_some(())?;
        Some(stats(&conn, &env, QueueName::Push).await)
    })
    .await;
    assert_eq!(counts.done, 2_500, "the lifetime count carries on");
    assert_eq!(counts.failed, 1);
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(format!("{queue}:done"))
        .arg("old-0")
        .query_async(&mut conn)
        .await
        .expect("ZSCORE");
    assert_eq!(score.map(|s| format!("{s:.3}")), Some(done_at));
    env.stop_worker().await.expect("clean stop");
}
