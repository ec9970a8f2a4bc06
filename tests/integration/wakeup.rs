//! Idle workers wake the moment a job is enqueued, by any process, one
//! worker per job, and a missed wake-up costs at most the idle wait.
//!
//! Every test in this suite runs with `worker.idle_wait_ms` far beyond its
//! patience (see `helpers::IDLE_WAIT_MS`), so any job these tests (or any
//! other) see start was started by a wake-up, not by the fallback.

use std::{collections::HashSet, time::Duration};

use futures::StreamExt;
use herald_jobs::{enqueue::now_secs, Producer, QueueName, SendMessage};
use serde_json::{json, Value};

use crate::helpers::{
    account, env, env_with, redis_url, wait_for, wait_for_registered_worker, TestEnv,
};

/// The wake list of `env`'s `queue`.
fn wake_key(env: &TestEnv, queue: QueueName) -> String {
    format!("{}:wake", env.settings.redis.namespace.queue(queue))
}

/// Blocks on `key` for up to `secs` on a connection of its own; whether
/// it got a token.
async fn blocked_waiter(key: String, secs: f64) -> bool {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(Duration::from_secs_f64(secs + 5.0))),
        )
        .await
        .expect("redis");
    let token: Option<(String, String)> = redis::cmd("BLPOP")
        .arg(key)
        .arg(secs)
        .query_async(&mut conn)
        .await
        .expect("BLPOP");
    token.is_some()
}

/// Starts three waiters on `key` and gives them time to block.
async fn three_waiters(key: &str) -> Vec<tokio::task::JoinHandle<bool>> {
    let waiters = (0..3)
        .map(|_| tokio::spawn(blocked_waiter(key.to_owned(), 2.0)))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    waiters
}

async fn woken(waiters: Vec<tokio::task::JoinHandle<bool>>) -> usize {
    let mut woken = 0;
    for waiter in waiters {
        woken += usize::from(waiter.await.expect("waiter ran"));
    }
    woken
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_wakes_exactly_one_of_three_blocked_workers_and_tokens_never_pile_up() {
    let env = env().await;
    let key = wake_key(&env, QueueName::SendMessage);
    let mut producer = Producer::from_connection(
        herald::queue::connect(&redis_url()).await.expect("redis"),
        &env.settings.redis.namespace,
    );

    let waiters = three_waiters(&key).await;
    producer
        .enqueue_message(SendMessage::new(account(), "one", "job"))
        .await
        .expect("enqueue");
    assert_eq!(woken(waiters).await, 1, "one job wakes one worker");

    // A bulk enqueue still wakes one: the worker that takes the first batch
    // wakes the next if it leaves jobs behind (fetch.lua).
    let waiters = three_waiters(&key).await;
    let many = (0..50)
        .map(|i| SendMessage::new(account(), format!("bulk {i}"), "job"))
        .collect();
    producer.enqueue_messages(many).await.expect("bulk enqueue");
    assert_eq!(woken(waiters).await, 1, "one enqueue call wakes one worker");

    // With nobody waiting, enqueues leave one token, not one each.
    for i in 0..5 {
        producer
            .enqueue_message(SendMessage::new(account(), format!("unseen {i}"), "job"))
            .await
            .expect("enqueue");
    }
    let mut conn = herald::queue::connect(&redis_url()).await.expect("redis");
    let tokens: u64 = redis::cmd("LLEN")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("LLEN");
    assert_eq!(tokens, 1);
}

/// A `herald worker` process of `env`, logging warnings only to a file.
fn worker_process(env: &TestEnv, name: &str) -> crate::helpers::HeraldProcess {
    let log = std::env::temp_dir().join(format!("{}-{name}.log", env.namespace));
    env.spawn_herald_logged(&["worker"], &[("HERALD_LOG_LEVEL", "warn")], &log)
}

/// Waits for the `new_message` event of message `id`.
async fn pushed(env: &TestEnv, id: &str) {
    wait_for(&format!("the push of {id}"), || async {
        env.delivered("new_message")
            .await
            .iter()
            .any(|event| event.data["messageId"] == json!(id))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_process_starts_jobs_from_the_producer_and_from_v1_at_once() {
    let env = env().await;
    let _worker = worker_process(&env, "idle");
    wait_for_registered_worker(&env, &redis_url()).await;
    // Let its first fetches find the queues empty: it is now blocked on
    // the wake lists, with an idle wait four times this test's patience.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let id = env
        .enqueue(SendMessage::new(account(), "from", "the producer"))
        .await;
    pushed(&env, &id.to_hex()).await;

    let web = env.start_web().await;
    let tokens = herald::store::ApiTokenStore::new(&env.database);
    tokens.ensure_indexes().await.expect("token index");
    let (_, token) = tokens
        .create("wakeup", herald::store::TokenScope::AnyAccount)
        .await
        .expect("token");
    let answer: Value = env
        .http
        .post(format!("{web}/v1/messages"))
        .bearer_auth(&token)
        .json(&json!({
            "accountId": account().to_hex(),
            "title": "from",
            "content": "the API",
        }))
        .send()
        .await
        .expect("web answers")
        .json()
        .await
        .expect("JSON answer");
    let id = answer["messageId"]
        .as_str()
        .unwrap_or_else(|| panic!("no messageId in {answer}"))
        .to_owned();
    pushed(&env, &id).await;
}

/// The names of the workers whose fetch of `queue` MONITOR shows in
/// `lines` (the fetch script's third key is the fetching worker's inflight
/// set, `<queue>:inflight:<worker>`).
fn fetching_workers(lines: &[String], queue: &str) -> HashSet<String> {
    let marker = format!("\"{queue}:inflight:");
    lines
        .iter()
        .filter(|line| line.contains("\"evalsha\"") || line.contains("\"EVALSHA\""))
        .filter_map(|line| {
            let start = line.find(&marker)? + marker.len();
            let end = line[start..].find('"')? + start;
            Some(line[start..end].to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_wakes_one_of_three_idle_worker_processes() {
    let env = env().await;
    let queue = env.settings.redis.namespace.queue(QueueName::SendMessage);
    let _workers: Vec<_> = (0..3)
        .map(|i| worker_process(&env, &format!("herd-{i}")))
        .collect();
    let conn = herald::queue::connect(&redis_url()).await.expect("redis");
    wait_for("three registered workers", || async {
        let mut conn = conn.clone();
        let n: u64 = redis::cmd("ZCARD")
            .arg(format!("{queue}:workers"))
            .query_async(&mut conn)
            .await
            .ok()?;
        (n == 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Watch every command from here on; keep this namespace's lines.
    let client = redis::Client::open(redis_url()).expect("redis url");
    let monitor = client.get_async_monitor().await.expect("MONITOR");
    let namespace = env.namespace.clone();
    let watch = tokio::spawn(async move {
        let mut lines = Vec::new();
        let mut stream = monitor.into_on_message::<String>();
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Ok(Some(line)) = tokio::time::timeout_at(until, stream.next()).await {
            if line.contains(&namespace) {
                lines.push(line);
            }
        }
        lines
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = now_secs();
    let id = env
        .enqueue(SendMessage::new(account(), "one job", "three workers"))
        .await;
    pushed(&env, &id.to_hex()).await;
    let lines = watch.await.expect("monitor task");
    let fetchers = fetching_workers(&lines, &queue);
    assert_eq!(
        fetchers.len(),
        1,
        "workers that fetched after one enqueue at {started}: {fetchers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_written_without_a_wake_token_starts_when_the_idle_wait_ends() {
    let mut env = env_with(&[("HERALD_WORKER_IDLE_WAIT_MS", "500")]).await;
    env.start_worker().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let message = SendMessage::new(account(), "unannounced", "written by hand");
    let payload = serde_json::to_vec(&message).expect("JSON");
    let id: Value = serde_json::from_slice::<Value>(&payload).expect("JSON")["messageId"].clone();
    env.push_bytes_without_waking(QueueName::SendMessage, &payload)
        .await;
    pushed(&env, id.as_str().expect("messageId")).await;
}
