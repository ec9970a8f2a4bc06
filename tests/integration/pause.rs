//! Pausing a queue: its jobs wait (no attempt spent) across worker
//! restarts while the other queues run, from the CLI and from the API.

use std::time::Duration;

use herald::queue::admin::QueueAdmin;
use herald_jobs::{QueueName, SendMessage};
use serde_json::Value;

use crate::helpers::{account, env, wait_for, TestEnv, WEB_TOKEN};

fn admin(env: &TestEnv, conn: &herald_jobs::RedisConnection) -> QueueAdmin {
    QueueAdmin::new(
        conn.clone(),
        herald::queues::config(&env.settings, QueueName::Push),
    )
}

/// Runs the `herald` command with `env`'s settings; its standard output,
/// once it succeeded.
pub(crate) fn herald(env: &TestEnv, args: &[&str]) -> String {
    let output = env.run_herald(args, &[]);
    assert!(
        output.status.success(),
        "herald {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_holds_its_jobs_across_a_worker_restart_while_the_others_run() {
    let mut env = env().await;
    let conn = herald::queue::connect(env.settings.redis.url.as_str())
        .await
        .expect("Redis");
    assert_eq!(
        herald(&env, &["queue", "pause", "push"]).trim(),
        "push paused"
    );
    env.start_worker().await;
    let jobs: Vec<SendMessage> = (0..5)
        .map(|i| SendMessage::new(account(), format!("held {i}"), "until resumed"))
        .collect();
    env.enqueue_bulk(jobs).await;
    // send_message is not paused: the messages are stored and their
    // pushes handed off, where they wait.
    wait_for("5 stored and 5 pushes waiting", || async {
        let stats = admin(&env, &conn).stats().await.ok()?;
        (env.message_count(mongodb::bson::doc! {}).await == 5 && stats.pending == 5).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(env.delivered("new_message").await.is_empty());

    env.stop_worker().await.expect("clean stop");
    env.start_worker().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(env.delivered("new_message").await.is_empty());
    let status = herald(&env, &["queue", "status"]);
    let push: Value = crate::helpers::json_lines(&status)
        .into_iter()
        .find(|q| q["queue"].as_str().is_some_and(|n| n.ends_with(":push")))
        .expect("the push queue's line");
    assert_eq!(push["paused"], true, "{status}");
    assert_eq!(push["pending"], 5, "{status}");

    assert_eq!(
        herald(&env, &["queue", "resume", "push"]).trim(),
        "push resumed"
    );
    wait_for("the 5 pushes", || async {
        (env.delivered("new_message").await.len() == 5).then_some(())
    })
    .await;
    assert!(env.pushes_per_message().await.values().all(|&n| n == 1));
    for id in env.queue_set(QueueName::Push, "done").await {
        let meta = env.job_meta(QueueName::Push, &id).await;
        assert_eq!(
            meta.get("attempts").map(String::as_str),
            Some("1"),
            "{meta:?}"
        );
    }
    env.stop_worker().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_api_pauses_and_resumes_a_queue_and_shows_it() {
    let env = env().await;
    let web = env.start_web().await;
    let post = |verb: &'static str| {
        env.http
            .post(format!("{web}/api/v1/queues/export/{verb}"))
            .bearer_auth(WEB_TOKEN)
            .send()
    };
    let paused_of = || async {
        let queues: Value = env
            .http
            .get(format!("{web}/api/v1/queues"))
            .bearer_auth(WEB_TOKEN)
            .send()
            .await
            .expect("API answers")
            .json()
            .await
            .expect("JSON");
        queues["queues"]
            .as_array()
            .expect("queues")
            .iter()
            .find(|q| q["name"] == "export")
            .map(|q| q["paused"].clone())
    };
    let answer: Value = post("pause").await.unwrap().json().await.unwrap();
    assert_eq!(answer, serde_json::json!({"paused": true, "changed": true}));
    assert_eq!(paused_of().await, Some(Value::Bool(true)));
    let again: Value = post("pause").await.unwrap().json().await.unwrap();
    assert_eq!(again["changed"], false);
    let answer: Value = post("resume").await.unwrap().json().await.unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"paused": false, "changed": true})
    );
    assert_eq!(paused_of().await, Some(Value::Bool(false)));
    let unknown = env
        .http
        .post(format!("{web}/api/v1/queues/nope/pause"))
        .bearer_auth(WEB_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}
