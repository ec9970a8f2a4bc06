//! The world misbehaving: push failures and services that are down.

use std::time::Duration;

use herald_jobs::{QueueName, SendMessage};

use crate::helpers::{account, env, env_with, wait_for, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_that_fails_with_500_three_times_is_delivered_once_on_the_fourth_attempt() {
    let mut env = env_with(&[("HERALD_WORKER_RETRY_BASE_MS", "200")]).await;
    env.script_failures(Some(500), 0, 3).await;
    env.start_worker().await;
    let id = env
        .enqueue(SendMessage::new(account(), "retry", "me"))
        .await;

    let delivered = wait_for("delivery after the failures", || async {
        let events = env.delivered("new_message").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        delivered[0].data["messageId"],
        serde_json::json!(id.to_hex())
    );
    let statuses: Vec<u16> = env
        .sandbox_requests()
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![500, 500, 500, 200]);
    // The message was stored once; the retries only re-ran the push.
    assert_eq!(env.message_count(mongodb::bson::doc! {}).await, 1);
    assert_eq!(env.queue_set(QueueName::SendMessage, "done").await.len(), 1);

    // Each run of the push is in its history, with the provider's answer,
    // and the waits between runs grow.
    let push_id = wait_for("the push acknowledged", || async {
        env.queue_set(QueueName::Push, "done").await.pop()
    })
    .await;
    let history = assert_done_on_the_fourth_attempt_after_three_500s(&env, &push_id).await;
    assert!(history[3]["error"].is_null());
    let at: Vec<f64> = history.iter().map(|h| h["at"].as_f64().unwrap()).collect();
    // Equal jitter: the n-th wait is at least half of 200 ms x 2^(n-1).
    assert!(
        at[1] - at[0] >= 0.1 && at[2] - at[1] >= 0.2 && at[3] - at[2] >= 0.4,
        "{at:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_out_of_attempts_rests_failed_with_every_attempt_recorded() {
    let mut env = env_with(&[
        ("HERALD_WORKER_RETRY_BASE_MS", "100"),
        ("HERALD_QUEUES_PUSH_MAX_ATTEMPTS", "3"),
    ])
    .await;
    env.script_failures(Some(503), 0, 100).await;
    env.start_worker().await;
    env.enqueue(SendMessage::new(account(), "never", "delivered"))
        .await;
    let dead = wait_for("the push to fail for good", || async {
        env.queue_set(QueueName::Push, "dead").await.pop()
    })
    .await;
    let meta = env.job_meta(QueueName::Push, &dead).await;
    assert_eq!(meta.get("status").map(String::as_str), Some("Failed"));
    assert_eq!(meta.get("attempts").map(String::as_str), Some("3"));
    let history = env.job_history(QueueName::Push, &dead).await;
    assert_eq!(history.len(), 3, "{history:#?}");
    assert!(history
        .iter()
        .all(|h| h["error"].as_str().unwrap_or("").contains("HTTP 503")));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(env.sandbox_requests().await.len(), 3, "no fourth attempt");
}

/// Events the provider takes and never answers.
const HUNG: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_takes_events_and_never_answers_is_sent_them_again_after_the_timeout() {
    let mut env = env_with(&[
        ("HERALD_TUISONGBAO_REQUEST_TIMEOUT_MS", "500"),
        ("HERALD_WORKER_RETRY_BASE_MS", "100"),
    ])
    .await;
    env.script_hangs(HUNG as u32).await;
    env.start_worker().await;
    let account = account();
    for i in 0..HUNG {
        env.enqueue(SendMessage::new(
            account,
            format!("hung {i}"),
            "then sent again",
        ))
        .await;
    }
    wait_for("every event accepted", || async {
        (env.delivered("new_message").await.len() >= HUNG).then_some(())
    })
    .await;

    // Each event reached the provider twice: once into the silence (status
    // 0, no answer before the timeout), once accepted. Herald cannot tell
    // an event the provider took from one it never saw; this is the
    // documented gap (`docs/delivery.md`).
    let mut seen: std::collections::HashMap<String, Vec<u16>> = Default::default();
    for request in env.sandbox_requests().await {
        let id = request.data["messageId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        seen.entry(id).or_default().push(request.status);
    }
    assert_eq!(seen.len(), HUNG, "{seen:?}");
    for (id, statuses) in &seen {
        assert_eq!(statuses, &[0, 200], "message {id}");
    }
    // Nothing else doubled: stored once each, no push dead.
    assert_eq!(
        env.message_count(mongodb::bson::doc! {}).await as usize,
        HUNG
    );
    assert!(env.queue_set(QueueName::Push, "dead").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_push_is_not_sent_again_by_a_duplicate_job() {
    let mut env = env().await;
    env.start_worker().await;
    env.enqueue(SendMessage::new(account(), "once", "only"))
        .await;
    let push_id = wait_for("the push acknowledged", || async {
        env.queue_set(QueueName::Push, "done").await.pop()
    })
    .await;
    // The same push job again, as a redelivery or an operator's duplicate
    // would bring it (no enqueue idempotency key to stop it).
    let payload: serde_json::Value = {
        let mut conn = redis::Client::open(crate::helpers::redis_url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let data: String = redis::cmd("HGET")
            .arg(format!(
                "{}:data",
                env.settings.redis.namespace.queue(QueueName::Push)
            ))
            .arg(&push_id)
            .query_async(&mut conn)
            .await
            .unwrap();
        serde_json::from_str(&data).unwrap()
    };
    let mut push_queue = herald::queues::storage::<serde_json::Value>(
        herald::queue::connect(env.settings.redis.url.as_str())
            .await
            .unwrap(),
        &env.settings,
        QueueName::Push,
    );
    apalis::prelude::TaskSink::push(&mut push_queue, payload)
        .await
        .unwrap();
    wait_for("the duplicate to be processed", || async {
        (env.queue_set(QueueName::Push, "done").await.len() == 2).then_some(())
    })
    .await;
    assert_eq!(env.delivered("new_message").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_the_push_at_once_without_retrying() {
    let mut env = env_with(&[("HERALD_TUISONGBAO_SECRET", "wrong")]).await;
    env.start_worker().await;
    env.enqueue(SendMessage::new(account(), "denied", "401"))
        .await;

    let dead = wait_for("the push in the dead set", || async {
        let dead = env.queue_set(QueueName::Push, "dead").await;
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    let meta = env.job_meta(QueueName::Push, &dead[0]).await;
    assert_eq!(meta.get("status").map(String::as_str), Some("Killed"));
    assert!(meta["result"].contains("401"), "{meta:?}");
    // A retry would arrive within a few seconds; none does.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let statuses: Vec<u16> = env
        .sandbox_requests()
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![401]);
    // The message itself was stored: persisting and pushing fail separately.
    assert_eq!(env.message_count(mongodb::bson::doc! {}).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_endpoint_that_is_down_is_retried_until_it_comes_up() {
    // Point the worker at a port with nobody listening, then bring a sandbox up there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut env = env_with(&[("HERALD_TUISONGBAO_URL", &url)]).await;
    env.start_worker().await;
    env.enqueue(SendMessage::new(account(), "later", "push"))
        .await;
    wait_for("the stored message", || async {
        (env.message_count(mongodb::bson::doc! {}).await == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let _sandbox = crate::helpers::SandboxProcess::start(port);
    let client = reqwest::Client::new();
    let events = wait_for("delivery once the endpoint is up", || async {
        let events: Vec<herald_push_sandbox::RecordedRequest> = client
            .get(format!("{url}/_sandbox/events"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].status, 200);
}

/// Starts a worker with `settings` (one service at 127.0.0.1:9, where
/// nothing listens) and checks that it fails naming `service` and the
/// address.
async fn refuses_to_start_naming(settings: herald::config::Settings, service: &str) {
    let err = herald::worker::run(settings, std::future::pending())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(service) && text.contains("127.0.0.1:9"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_refuses_to_start_when_mongodb_is_down_and_names_it() {
    let env = env().await;
    let mut settings = env.settings.clone();
    settings.mongodb.url = "mongodb://127.0.0.1:9".into();
    refuses_to_start_naming(settings, "MongoDB").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_refuses_to_start_when_redis_is_down_and_names_it() {
    let mut env = env().await;
    let mut settings = env.settings.clone();
    settings.redis.url = "redis://127.0.0.1:9".into();
    refuses_to_start_naming(settings, "Redis").await;
    env.start_worker().await; // the environment itself is fine
    assert!(env.stop_worker().await.is_ok());
}

/// Checks that push job `push_id` ran four times, the first three answered
/// HTTP 500 (each in its history with the error) and the fourth done;
/// returns the history.
pub(crate) async fn assert_done_on_the_fourth_attempt_after_three_500s(
    env: &TestEnv,
    push_id: &str,
) -> Vec<serde_json::Value> {
    let meta = env.job_meta(QueueName::Push, push_id).await;
    assert_eq!(meta.get("attempts").map(String::as_str), Some("4"));
    let history = env.job_history(QueueName::Push, push_id).await;
    let statuses: Vec<&str> = history
        .iter()
        .map(|h| h["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        statuses,
        ["Pending", "Pending", "Pending", "Done"],
        "{history:#?}"
    );
    for run in &history[..3] {
        assert!(
            run["error"].as_str().unwrap_or("").contains("HTTP 500"),
            "{history:#?}"
        );
    }
    history
}
