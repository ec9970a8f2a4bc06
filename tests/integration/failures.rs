//! The world misbehaving: push failures and services that are down.

use std::time::Duration;

use herald_jobs::{QueueName, SendMessage};

use crate::helpers::{account, env, env_with, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_that_fails_with_500_is_retried_until_delivered_once() {
    let mut env = env().await;
    env.script_failures(Some(500), 0, 2).await;
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
    assert_eq!(statuses, vec![500, 500, 200]);
    // The message was stored once; the retries only re-ran the push.
    assert_eq!(env.message_count(mongodb::bson::doc! {}).await, 1);
    assert_eq!(env.queue_set(QueueName::SendMessage, "done").await.len(), 1);

    // Each run of the push is in its history, with the provider's answer.
    let push_id = wait_for("the push acknowledged", || async {
        env.queue_set(QueueName::Push, "done").await.pop()
    })
    .await;
    let history = env.job_history(QueueName::Push, &push_id).await;
    let statuses: Vec<&str> = history
        .iter()
        .map(|h| h["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["Pending", "Pending", "Done"], "{history:#?}");
    assert!(
        history[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("HTTP 500"),
        "{history:#?}"
    );
    assert!(history[2]["error"].is_null());
    let (first, second) = (
        history[0]["at"].as_f64().unwrap(),
        history[1]["at"].as_f64().unwrap(),
    );
    assert!(
        second - first >= 0.5,
        "the retry waited the backoff's lower bound"
    );
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

    let (_addr, _handle) = herald::push::sandbox::spawn(
        format!("127.0.0.1:{port}").parse().unwrap(),
        herald::push::sandbox::SandboxCredentials {
            app_id: crate::helpers::APP_ID.into(),
            secret: crate::helpers::SECRET.into(),
        },
    )
    .await
    .expect("port still free");
    let client = reqwest::Client::new();
    let events = wait_for("delivery once the endpoint is up", || async {
        let events: Vec<herald::push::sandbox::RecordedRequest> = client
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_refuses_to_start_when_mongodb_is_down_and_names_it() {
    let env = env().await;
    let mut settings = env.settings.clone();
    settings.mongodb.url = "mongodb://127.0.0.1:9".into();
    let err = herald::worker::run(settings, std::future::pending())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("MongoDB") && text.contains("127.0.0.1:9"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_refuses_to_start_when_redis_is_down_and_names_it() {
    let mut env = env().await;
    let mut settings = env.settings.clone();
    settings.redis.url = "redis://127.0.0.1:9".into();
    let err = herald::worker::run(settings, std::future::pending())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("Redis") && text.contains("127.0.0.1:9"),
        "{text}"
    );
    env.start_worker().await; // the environment itself is fine
    assert!(env.stop_worker().await.is_ok());
}
