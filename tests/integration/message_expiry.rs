//! Message retention: a message's `expiresAt` (or `message.keep_days`)
//! removes it with every user's read mark of it, one account's expiry
//! touches nothing of another's, a message already expired when its job
//! runs is neither stored nor pushed, and the dashboard and `herald doctor`
//! show what the collection holds.

use std::time::Duration;

use herald::store::{inbox::READ_COLLECTION, Inbox};
use herald_jobs::{QueueName, SendMessage, UserId};
use mongodb::bson::{doc, oid::ObjectId, Document};
use reqwest::Method;

use crate::helpers::{account, call_json, env_with, wait_for, wait_within, TestEnv, WEB_TOKEN};

/// A time `offset` from now.
fn from_now(offset: chrono::Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + offset
}

/// The read marks of `ids` in `message_read`.
async fn marks_of(env: &TestEnv, ids: &[ObjectId]) -> u64 {
    env.database
        .collection::<Document>(READ_COLLECTION)
        .count_documents(doc! { "messageId": { "$in": ids.to_vec() } })
        .await
        .expect("count read marks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_messages_leave_with_their_read_marks_and_nothing_else_does() {
    let mut env = env_with(&[("HERALD_MESSAGE_EXPIRY_SWEEP_SECS", "1")]).await;
    env.start_worker().await;
    let (mine, theirs) = (account(), account());
    let soon = from_now(chrono::Duration::seconds(3));
    let mut expiring = Vec::new();
    for i in 0..3 {
        let job = SendMessage::new(mine, format!("expiring {i}"), "soon gone").expires_at(soon);
        expiring.push(env.enqueue(job).await.object_id());
    }
    let mut kept = Vec::new();
    for i in 0..2 {
        let job = SendMessage::new(mine, format!("kept {i}"), "stays");
        kept.push(env.enqueue(job).await.object_id());
    }
    // The other account: one expiring, one kept.
    let job = SendMessage::new(theirs, "theirs expiring", "gone").expires_at(soon);
    let their_expiring = env.enqueue(job).await.object_id();
    let their_kept = env
        .enqueue(SendMessage::new(theirs, "theirs kept", "stays"))
        .await
        .object_id();
    wait_for("seven pushes", || async {
        (env.delivered("new_message").await.len() == 7).then_some(())
    })
    .await;

    // Two users of the account read an expiring and a kept message.
    let inbox = Inbox::new(&env.database);
    let users = [UserId::from(ObjectId::new()), UserId::from(ObjectId::new())];
    for user in users {
        inbox
            .mark_read(mine, user, &[expiring[0], kept[0]])
            .await
            .expect("marked read");
    }
    assert_eq!(marks_of(&env, &[expiring[0]]).await, 2);
    assert_eq!(marks_of(&env, &[kept[0]]).await, 2);
    let stored = env
        .find_message(herald_jobs::MessageId::from(expiring[0]))
        .await
        .expect("stored");
    assert!(stored.get_datetime("expiresAt").is_ok(), "{stored}");

    let count = |ids: Vec<ObjectId>| {
        let env = &env;
        async move { env.message_count(doc! { "_id": { "$in": ids } }).await }
    };
    let mut all_expiring = expiring.clone();
    all_expiring.push(their_expiring);
    wait_within(
        "the expired messages removed",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { (count(all_expiring.clone()).await == 0).then_some(()) },
    )
    .await;
    assert_eq!(
        marks_of(&env, &expiring).await,
        0,
        "their read marks went too"
    );
    let mut all_kept = kept.clone();
    all_kept.push(their_kept);
    assert_eq!(count(all_kept).await, 3, "messages without an expiry stay");
    assert_eq!(marks_of(&env, &[kept[0]]).await, 2, "their read marks stay");
    // Each user's inbox shows what is left, and nothing was pushed again.
    for user in users {
        let page = inbox
            .user_page(mine, user, &Default::default(), None, 50)
            .await
            .expect("the inbox");
        let ids: Vec<&str> = page.messages.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(kept.iter().all(|k| ids.contains(&k.to_hex().as_str())));
    }
    assert_eq!(env.delivered("new_message").await.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_days_dates_every_message_without_its_own_expiry_and_a_late_job_does_nothing() {
    let mut env = env_with(&[("HERALD_MESSAGE_KEEP_DAYS", "7")]).await;
    env.start_worker().await;
    let account = account();
    let plain = env.enqueue(SendMessage::new(account, "plain", "x")).await;
    let own_at = from_now(chrono::Duration::days(30));
    let own = env
        .enqueue(SendMessage::new(account, "own", "x").expires_at(own_at))
        .await;
    // Its time passed before any worker took it: neither stored nor pushed.
    let late = env
        .enqueue(
            SendMessage::new(account, "late", "x")
                .expires_at(from_now(-chrono::Duration::seconds(1))),
        )
        .await;
    wait_for("three send_message jobs done", || async {
        (env.queue_set(QueueName::SendMessage, "done").await.len() == 3).then_some(())
    })
    .await;
    wait_for("two pushes", || async {
        (env.delivered("new_message").await.len() == 2).then_some(())
    })
    .await;

    let plain = env.find_message(plain).await.expect("stored");
    let created = plain.get_datetime("createdAt").expect("createdAt");
    let expires = plain.get_datetime("expiresAt").expect("expiresAt");
    assert_eq!(
        expires.timestamp_millis() - created.timestamp_millis(),
        7 * 86_400_000
    );
    let own = env.find_message(own).await.expect("stored");
    assert_eq!(
        own.get_datetime("expiresAt")
            .expect("expiresAt")
            .timestamp_millis(),
        own_at.timestamp_millis()
    );
    assert!(
        env.find_message(late).await.is_none(),
        "an expired message is not stored"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.delivered("new_message").await.len(), 2, "nor pushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_collections_size_and_its_oldest_message() {
    let mut env = env_with(&[]).await;
    let base = env.start_web().await;
    let url = format!("{base}/api/v1/messages/stats");
    let (status, empty) = call_json(&env.http, Method::GET, &url, Some(WEB_TOKEN), None).await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["documents"], 0);
    assert_eq!(empty["oldestCreatedAt"], serde_json::Value::Null);
    assert_eq!(empty["keepDays"], serde_json::Value::Null);

    env.start_worker().await;
    let account = account();
    let first = env.enqueue(SendMessage::new(account, "first", "x")).await;
    env.enqueue(SendMessage::new(account, "second", "x")).await;
    wait_for("two pushes", || async {
        (env.delivered("new_message").await.len() == 2).then_some(())
    })
    .await;
    let (status, stats) = call_json(&env.http, Method::GET, &url, Some(WEB_TOKEN), None).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["documents"], 2, "{stats}");
    assert!(stats["bytes"].as_u64().is_some_and(|b| b > 0), "{stats}");
    let first = env.find_message(first).await.expect("stored");
    let created = herald::message::rfc3339(*first.get_datetime("createdAt").expect("createdAt"));
    assert_eq!(
        stats["oldestCreatedAt"].as_str(),
        created.as_deref(),
        "{stats}"
    );

    // Without a token, or with an API token, the dashboard's API answers nothing.
    let (status, _) = call_json(&env.http, Method::GET, &url, None, None).await;
    assert_eq!(status, 401);
    let api_token = env.account_token("producer", account).await;
    let (status, answer) = call_json(&env.http, Method::GET, &url, Some(&api_token), None).await;
    assert_eq!(status, 401, "{answer}");
    assert!(!answer.to_string().contains("collStats"), "{answer}");
}
