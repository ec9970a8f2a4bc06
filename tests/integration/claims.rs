//! Claims of idempotency keys in time buckets (`herald_jobs::claims`,
//! `jobs/lua/claims.lua`), against a real Redis: a claimed key is a
//! duplicate for at least its TTL however the TTL changes, a receipt
//! overwrites the claim where it is (one field per key), buckets expire
//! with their grid, and strings of the earlier one-key-per-claim layout are
//! still honoured on a queue that ran before.

use std::time::Duration;

use herald_jobs::{
    claims,
    enqueue::{enqueue, now_secs, NewJob},
    queue::queue_key,
    QueueName, RedisConnection,
};

use crate::helpers::env;

async fn conn() -> RedisConnection {
    herald::queue::connect(&crate::helpers::redis_url())
        .await
        .expect("redis")
}

fn job(id: &str, key: &str) -> NewJob {
    NewJob {
        id: id.to_owned(),
        payload: b"{}".to_vec(),
        run_at: 0,
        idempotency_key: key.to_owned(),
        metadata: NewJob::metadata(0, 0, key, now_secs()),
    }
}

/// Every claim bucket of `queue` (not the grids) and its fields.
async fn buckets(conn: &mut RedisConnection, queue: &str) -> Vec<(String, Vec<String>)> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", queue_key(queue, "idempotency")))
        .query_async(conn)
        .await
        .expect("KEYS");
    let mut found = Vec::new();
    for key in keys.into_iter().filter(|k| !k.ends_with(":grids")) {
        let values: Vec<String> = redis::cmd("HVALS")
            .arg(&key)
            .query_async(conn)
            .await
            .expect("HVALS");
        found.push((key, values));
    }
    found
}

#[tokio::test]
async fn a_claim_is_one_field_found_again_and_overwritten_in_place() {
    let env = env().await;
    let queue = env.settings.redis.namespace.queue(QueueName::Push);
    let prefix = queue_key(&queue, "idempotency");
    let mut conn = conn().await;
    let ttl = Some(Duration::from_secs(600));

    let first = enqueue(
        &mut conn,
        &queue,
        ttl,
        &[job("j1", "new_message:a:1")],
        now_secs(),
    )
    .await
    .expect("enqueue");
    assert_eq!((first.ready, first.duplicates), (1, 0));
    // The same key again, in another call and twice in one call: duplicates.
    let again = enqueue(
        &mut conn,
        &queue,
        ttl,
        &[
            job("j2", "new_message:a:1"),
            job("j3", "new_message:a:2"),
            job("j4", "new_message:a:2"),
        ],
        now_secs(),
    )
    .await
    .expect("enqueue");
    assert_eq!((again.ready, again.duplicates), (1, 2));

    let keys = ["new_message:a:1", "new_message:a:2", "new_message:a:3"].map(String::from);
    let values = claims::get(&mut conn, &prefix, &keys, now_secs())
        .await
        .expect("get");
    assert_eq!(values, [Some("j1".into()), Some("j3".into()), None]);

    // A receipt takes the claim's place; a key never claimed gets one.
    let receipts = [
        ("new_message:a:1".to_owned(), "d@1".to_owned()),
        ("new_message:a:3".to_owned(), "d@3".to_owned()),
    ];
    let new = claims::set(&mut conn, &prefix, ttl, &receipts, now_secs())
        .await
        .expect("set");
    assert_eq!(new, 1, "only the unclaimed key is claimed anew");
    let values = claims::get(&mut conn, &prefix, &keys, now_secs())
        .await
        .expect("get");
    assert_eq!(
        values,
        [Some("d@1".into()), Some("j3".into()), Some("d@3".into())]
    );
    let held = buckets(&mut conn, &queue).await;
    let fields: usize = held.iter().map(|(_, values)| values.len()).sum();
    assert_eq!(fields, 3, "one field per key: {held:?}");
    for (bucket, _) in &held {
        assert!(
            !bucket.contains("new_message"),
            "keys are not stored: {bucket}"
        );
        let ttl_left: i64 = redis::cmd("TTL")
            .arg(bucket)
            .query_async(&mut conn)
            .await
            .expect("TTL");
        // A bucket of grid 600 expires at the end of the next one.
        assert!((600..=1200).contains(&ttl_left), "{bucket}: {ttl_left}");
    }
}

#[tokio::test]
async fn a_claim_made_under_another_ttl_is_still_found() {
    let env = env().await;
    let queue = env.settings.redis.namespace.queue(QueueName::Push);
    let prefix = queue_key(&queue, "idempotency");
    let mut conn = conn().await;
    // New retry settings change the re-run window between two runs.
    enqueue(
        &mut conn,
        &queue,
        Some(Duration::from_secs(8040)),
        &[job("j1", "k")],
        now_secs(),
    )
    .await
    .expect("enqueue");
    let later = enqueue(
        &mut conn,
        &queue,
        Some(Duration::from_secs(3600)),
        &[job("j2", "k")],
        now_secs(),
    )
    .await
    .expect("enqueue");
    assert_eq!(later.duplicates, 1);
    let receipt = [("k".to_owned(), "d@9".to_owned())];
    claims::set(
        &mut conn,
        &prefix,
        Some(Duration::from_secs(3600)),
        &receipt,
        now_secs(),
    )
    .await
    .expect("set");
    let held = buckets(&mut conn, &queue).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(held[0].0.contains(":8040:"), "kept where it was: {held:?}");
    assert_eq!(held[0].1, ["d@9"]);
}

#[tokio::test]
async fn strings_of_the_earlier_layout_count_on_a_queue_that_ran_before() {
    let env = env().await;
    let queue = env.settings.redis.namespace.queue(QueueName::Push);
    let prefix = queue_key(&queue, "idempotency");
    let mut conn = conn().await;
    // What the earlier release left: a job hash and one string per claim.
    redis::pipe()
        .hset(queue_key(&queue, "data"), "old", "{}")
        .set_ex(format!("{prefix}:sent"), "d@5", 600)
        .set_ex(format!("{prefix}:waiting"), "old", 600)
        .exec_async(&mut conn)
        .await
        .expect("seed");

    // Read before this layout's first write (a worker's first fetch).
    let keys = ["sent".to_owned(), "waiting".to_owned()];
    let values = claims::get(&mut conn, &prefix, &keys, now_secs())
        .await
        .expect("get");
    assert_eq!(values, [Some("d@5".into()), Some("old".into())]);

    let ttl = Some(Duration::from_secs(600));
    let added = enqueue(
        &mut conn,
        &queue,
        ttl,
        &[job("j1", "sent"), job("j2", "fresh")],
        now_secs(),
    )
    .await
    .expect("enqueue");
    assert_eq!((added.ready, added.duplicates), (1, 1));
    // The receipt of a job claimed by a string overwrites the string, its
    // expiry kept.
    let receipt = [("waiting".to_owned(), "d@6".to_owned())];
    assert_eq!(
        claims::set(&mut conn, &prefix, ttl, &receipt, now_secs())
            .await
            .expect("set"),
        0
    );
    let (value, ttl_left): (String, i64) = redis::pipe()
        .get(format!("{prefix}:waiting"))
        .ttl(format!("{prefix}:waiting"))
        .query_async(&mut conn)
        .await
        .expect("string");
    assert_eq!(value, "d@6");
    assert!(ttl_left > 0 && ttl_left <= 600, "{ttl_left}");

    // On a queue that never ran, strings are not looked at.
    let fresh = env.settings.redis.namespace.queue(QueueName::Export);
    let fresh_prefix = queue_key(&fresh, "idempotency");
    redis::cmd("SET")
        .arg(format!("{fresh_prefix}:stray"))
        .arg("x")
        .arg("EX")
        .arg(60)
        .exec_async(&mut conn)
        .await
        .expect("seed");
    let stray = enqueue(&mut conn, &fresh, ttl, &[job("j3", "stray")], now_secs())
        .await
        .expect("enqueue");
    assert_eq!(stray.ready, 1);
}

/// Whether the grids of `prefix` say strings of the earlier layout may
/// still exist (so every lookup probes for one).
async fn strings_probed(conn: &mut RedisConnection, prefix: &str) -> bool {
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(format!("{prefix}:grids"))
        .arg("strings")
        .query_async(conn)
        .await
        .expect("ZSCORE");
    score.is_some()
}

#[tokio::test]
async fn a_queue_that_never_held_a_job_has_no_strings_to_probe_though_its_workers_registered() {
    let env = env().await;
    let ttl = Some(Duration::from_secs(600));
    let mut conn = conn().await;

    // A new deployment: the workers register before anything is enqueued.
    let fresh = env.settings.redis.namespace.queue(QueueName::Push);
    let prefix = queue_key(&fresh, "idempotency");
    let _: () = redis::cmd("ZADD")
        .arg(queue_key(&fresh, "workers"))
        .arg(now_secs())
        .arg("worker-1")
        .query_async(&mut conn)
        .await
        .expect("ZADD");
    enqueue(&mut conn, &fresh, ttl, &[job("j1", "k1")], now_secs())
        .await
        .expect("enqueue");
    assert!(!strings_probed(&mut conn, &prefix).await);

    // A queue whose jobs are all gone but which did finish some: its total
    // of done jobs, kept for good, says it ran before.
    let ran = env.settings.redis.namespace.queue(QueueName::SendMessage);
    let prefix = queue_key(&ran, "idempotency");
    let _: () = redis::cmd("SET")
        .arg(queue_key(&ran, "stats:total:done"))
        .arg(3)
        .query_async(&mut conn)
        .await
        .expect("SET");
    enqueue(&mut conn, &ran, ttl, &[job("j2", "k2")], now_secs())
        .await
        .expect("enqueue");
    assert!(strings_probed(&mut conn, &prefix).await);
}
