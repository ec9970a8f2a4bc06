//! Keys of the earlier, untagged layout (`NAMESPACE:QUEUE:...`) move to
//! their hash-tagged names: renamed when the new name is free, merged when
//! a producer of the earlier release wrote beside a worker of this one, and
//! left in place (and reported) when the new name holds another type.

use std::collections::HashMap;

use herald::queue::legacy::{adopt_legacy_keys, legacy_jobs_waiting};
use herald_jobs::{QueueName, SendMessage};

use crate::helpers::{account, env, wait_for};

async fn conn() -> herald_jobs::RedisConnection {
    herald::queue::connect(&crate::helpers::redis_url())
        .await
        .expect("redis")
}

#[tokio::test]
async fn every_kind_of_key_is_renamed_or_merged_and_a_type_clash_is_left_for_an_operator() {
    let env = env().await;
    let ns = &env.settings.redis.namespace;
    let (old, new) = (
        format!("{ns}:send_message"),
        ns.queue(QueueName::SendMessage),
    );
    let mut conn = conn().await;
    // In the earlier layout only: moved whole, expiry kept.
    redis::pipe()
        .hset(format!("{old}:meta:a"), "status", "Pending")
        .set_ex(format!("{old}:idempotency:k"), "a", 600)
        .set(format!("{ns}:retention:export"), "w1")
        // In both layouts: merged.
        .rpush(format!("{old}:active"), &["a", "b"])
        .rpush(format!("{new}:active"), "c")
        .hset_multiple(format!("{old}:data"), &[("a", "old-a"), ("b", "old-b")])
        .hset(format!("{new}:data"), "b", "new-b")
        .zadd(format!("{old}:done"), "x", 1)
        .zadd(format!("{old}:done"), "y", 2)
        .zadd(format!("{new}:done"), "y", 5)
        .sadd(format!("{old}:inflight:w1"), "p")
        .sadd(format!("{new}:inflight:w1"), "q")
        .set(format!("{old}:stats:total:done"), 7)
        .set(format!("{new}:stats:total:done"), 3)
        // Another type under the new name: left alone.
        .set(format!("{old}:paused"), "1")
        .hset(format!("{new}:paused"), "by", "someone")
        .exec_async(&mut conn)
        .await
        .expect("seed both layouts");
    assert!(legacy_jobs_waiting(&mut conn, ns).await.unwrap());

    let adopted = adopt_legacy_keys(&mut conn, ns).await.expect("adopt");
    assert_eq!(adopted.conflicts, vec![format!("{old}:paused")]);
    assert_eq!(adopted.moved, 8);
    assert!(!legacy_jobs_waiting(&mut conn, ns).await.unwrap());

    let active: Vec<String> = redis::cmd("LRANGE")
        .arg(format!("{new}:active"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(active, ["a", "b", "c"], "older jobs first, in their order");
    let data: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("{new}:data"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(data["a"], "old-a");
    assert_eq!(data["b"], "new-b", "the new layout's field is kept");
    let done: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(format!("{new}:done"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(done, [("x".to_owned(), 1.0), ("y".to_owned(), 5.0)]);
    let inflight: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{new}:inflight:w1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(inflight.len(), 2);
    let total: u64 = redis::cmd("GET")
        .arg(format!("{new}:stats:total:done"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(total, 10, "counters add up");
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{new}:idempotency:k"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 600, "expiry kept: {ttl}");
    let status: String = redis::cmd("HGET")
        .arg(format!("{new}:meta:a"))
        .arg("status")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(status, "Pending");
    let lock: String = redis::cmd("GET")
        .arg(ns.key("retention:export"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(lock, "w1", "a namespace key goes under {{NAMESPACE}}");

    let left = conn.scan_match(&ns.legacy_pattern()).await.unwrap();
    assert_eq!(left, vec![format!("{old}:paused")]);
    // A second pass has nothing left to do but the clash.
    let again = adopt_legacy_keys(&mut conn, ns).await.unwrap();
    assert_eq!((again.moved, again.conflicts.len()), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_an_earlier_producer_writes_while_the_worker_runs_is_moved_and_run() {
    use apalis::prelude::{TaskBuilder, TaskSink};
    let mut env = crate::helpers::env_with(&[("HERALD_WORKER_HEARTBEAT_INTERVAL_SECS", "1")]).await;
    env.start_worker().await;
    // The worker moved what there was at its start; this job comes later.
    crate::helpers::wait_for_registered_worker(&env, &crate::helpers::redis_url()).await;
    // An apalis-redis producer, as an earlier release's producers wrote.
    let manager = redis::Client::open(crate::helpers::redis_url())
        .expect("redis url")
        .get_connection_manager()
        .await
        .expect("redis");
    let legacy_queue = format!("{}:send_message", env.settings.redis.namespace);
    let mut storage = apalis_redis::RedisStorage::<SendMessage>::new(manager)
        .with_config(apalis_redis::Config::default().queue(&legacy_queue));
    let id = herald_jobs::MessageId::generate();
    let job = SendMessage::new(account(), "from an earlier producer", "hello").with_message_id(id);
    storage
        .push_all(futures::stream::iter(vec![TaskBuilder::new(job).build()]))
        .await
        .expect("apalis-redis enqueue");

    wait_for(
        "the earlier producer's message stored and pushed",
        || async {
            (env.message_count(mongodb::bson::doc! {}).await == 1
                && env.accepted_count().await == 1)
                .then_some(())
        },
    )
    .await;
    let mut conn = conn().await;
    let left = conn
        .scan_match(&env.settings.redis.namespace.legacy_pattern())
        .await
        .unwrap();
    assert!(
        !left
            .iter()
            .any(|key| key.ends_with(":data") || key.ends_with(":scheduled")),
        "{left:?}"
    );
}
