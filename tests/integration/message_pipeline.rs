//! send_message end to end: enqueue → document in MongoDB → event at the sandbox.

use herald::store::{inbox::rfc3339, MessageBatcher};
use herald_jobs::{MessageId, MessageStatus, QueueName, SendMessage, UserId};
use mongodb::bson::{doc, Bson, Document};
use serde_json::json;

use crate::helpers::{account, env, env_with, wait_for, TestEnv, APP_ID, SECRET};

fn user() -> UserId {
    UserId::from(mongodb::bson::oid::ObjectId::new())
}

/// Field name → BSON type name, in document order.
fn shape(doc: &Document) -> Vec<(String, &'static str)> {
    doc.iter()
        .map(|(k, v)| {
            let kind = match v {
                Bson::ObjectId(_) => "objectId",
                Bson::String(_) => "string",
                Bson::Boolean(_) => "bool",
                Bson::DateTime(_) => "date",
                Bson::Null => "null",
                Bson::Document(_) => "object",
                _ => "other",
            };
            (k.clone(), kind)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_the_document_of_the_contract_with_exact_names_and_bson_types() {
    let mut env = env().await;
    env.start_worker().await;
    let account = account();
    let (to, from) = (user(), user());
    let before = mongodb::bson::DateTime::now();
    let id = env
        .enqueue(
            SendMessage::new(
                account,
                "Quota reached",
                "<p>You used <b>90%</b> of 消息</p>",
            )
            .status(MessageStatus::Warning)
            .to_user(to)
            .sent_by_user(from),
        )
        .await;

    let stored = wait_for("the message document", || env.find_message(id)).await;
    let after = mongodb::bson::DateTime::now();

    let expected_shape: Vec<(String, &str)> = [
        ("_id", "objectId"),
        ("accountId", "objectId"),
        ("title", "string"),
        ("content", "string"),
        ("sender", "object"),
        ("to", "object"),
        ("status", "string"),
        ("isRead", "bool"),
        ("createdAt", "date"),
        ("readAt", "null"),
    ]
    .into_iter()
    .map(|(k, t)| (k.to_owned(), t))
    .collect();
    assert_eq!(shape(&stored), expected_shape);

    assert_eq!(stored.get_object_id("_id").unwrap(), id.object_id());
    assert_eq!(
        stored.get_object_id("accountId").unwrap(),
        account.object_id()
    );
    assert_eq!(stored.get_str("title").unwrap(), "Quota reached");
    assert_eq!(
        stored.get_str("content").unwrap(),
        "<p>You used <b>90%</b> of 消息</p>"
    );
    assert_eq!(
        stored.get_document("sender").unwrap(),
        &doc! { "id": from.object_id(), "from": "user" }
    );
    assert_eq!(
        stored.get_document("to").unwrap(),
        &doc! { "id": to.object_id(), "target": "user" }
    );
    assert_eq!(stored.get_str("status").unwrap(), "warning");
    assert!(!stored.get_bool("isRead").unwrap());
    let created = *stored.get_datetime("createdAt").unwrap();
    assert!(
        before <= created && created <= after,
        "createdAt set by the worker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_messages_store_the_literal_system_sender_and_the_account_recipient() {
    let mut env = env().await;
    env.start_worker().await;
    let account = account();
    let id = env
        .enqueue(SendMessage::new(account, "Welcome", "hello"))
        .await;
    let stored = wait_for("the message document", || env.find_message(id)).await;
    assert_eq!(
        stored.get_document("sender").unwrap(),
        &doc! { "id": "system", "from": "system" }
    );
    assert_eq!(
        stored.get_document("to").unwrap(),
        &doc! { "id": account.object_id(), "target": "account" }
    );
    assert_eq!(stored.get_str("status").unwrap(), "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_receives_new_message_exactly_as_tuisongbao_expects_it() {
    let mut env = env().await;
    env.start_worker().await;
    let account = account();
    let sender = user();
    let id = env
        .enqueue(SendMessage::new(account, "Hi", "there").sent_by_user(sender))
        .await;

    let events = wait_for("the new_message event", || async {
        let events = env.delivered("new_message").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.path, "/v2/open/engine/events");
    use base64::Engine;
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{APP_ID}:{SECRET}"))
    );
    assert!(event.authorized, "Basic auth with {expected_auth}");
    assert_eq!(event.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        event.channels,
        vec![format!("presence-message-wm-global{}", account.to_hex())]
    );
    assert_eq!(
        event.data["sender"],
        json!({ "id": sender.to_hex(), "from": "user" })
    );
    assert_eq!(event.data["messageId"], json!(id.to_hex()));
    assert_eq!(event.data["title"], json!("Hi"));
    assert_eq!(event.data["status"], json!("success"));
    assert_eq!(
        event.data["to"],
        json!({ "id": account.to_hex(), "target": "account" })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_jobs_are_dead_with_their_error_nothing_stored_nothing_pushed_and_the_worker_runs_on(
) {
    let mut env = env().await;
    env.start_worker().await;
    let account = account();
    let valid = serde_json::to_value(SendMessage::new(account, "t", "c")).unwrap();
    let with = |path: &[&str], value: serde_json::Value| {
        let mut job = valid.clone();
        let mut slot = &mut job;
        for key in path {
            slot = &mut slot[*key];
        }
        *slot = value;
        job
    };
    let cases = [
        (with(&["accountId"], json!("not-hex")), "accountId"),
        (with(&["messageId"], json!("1234")), "messageId"),
        (with(&["status"], json!("info")), "status"),
        (with(&["to", "target"], json!("group")), "to.target"),
        (with(&["sender", "from"], json!("robot")), "sender.from"),
        (with(&["sender", "id"], json!("zz")), "sender.id"),
        (with(&["title"], json!("   ")), "title"),
        (
            with(&["content"], json!("x".repeat(64 * 1024 + 1))),
            "content",
        ),
        (json!({ "title": "only a title" }), "missing field"),
        (json!("not an object"), "invalid type"),
    ];
    for (payload, _) in &cases {
        env.push_raw(payload.clone()).await;
    }

    let dead = wait_for("every invalid job in the dead set", || async {
        let dead = env.queue_set(QueueName::SendMessage, "dead").await;
        (dead.len() == cases.len()).then_some(dead)
    })
    .await;

    // Each job's recorded result names what was wrong with it.
    let mut results = Vec::new();
    for task_id in &dead {
        let meta = env.job_meta(QueueName::SendMessage, task_id).await;
        assert_eq!(
            meta.get("status").map(String::as_str),
            Some("Killed"),
            "{meta:?}"
        );
        assert_eq!(
            meta.get("attempts").map(String::as_str),
            Some("1"),
            "{meta:?}"
        );
        results.push(meta.get("result").cloned().unwrap_or_default());
    }
    for (_, expected) in &cases {
        assert!(
            results.iter().any(|r| r.contains(expected)),
            "no recorded error mentions {expected:?}: {results:#?}"
        );
    }

    // The worker is still running and still processes good jobs.
    assert!(!env.worker_finished());
    let id = env
        .enqueue(SendMessage::new(account, "after", "bad ones"))
        .await;
    wait_for("the valid message", || env.find_message(id)).await;
    wait_for("its push", || async {
        (env.delivered("new_message").await.len() == 1).then_some(())
    })
    .await;
    assert_eq!(
        env.message_count(doc! {}).await,
        1,
        "nothing stored for invalid jobs"
    );
    assert_eq!(
        env.sandbox_requests().await.len(),
        1,
        "nothing pushed for invalid jobs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_delivered_twice_stores_one_message_and_pushes_once() {
    let mut env = env().await;
    env.start_worker().await;
    let job = SendMessage::new(account(), "twice", "delivered");
    let id = env.enqueue(job.clone()).await;
    wait_for("the first push", || async {
        (env.delivered("new_message").await.len() == 1).then_some(())
    })
    .await;
    let first = env.find_message(id).await.unwrap();

    // The same payload again, as apalis redelivers a job whose worker died
    // before acknowledging it.
    env.push_raw(serde_json::to_value(&job).unwrap()).await;
    wait_for("the redelivered job to finish", || async {
        (env.queue_set(QueueName::SendMessage, "done").await.len() == 2).then_some(())
    })
    .await;
    // Give a wrongly scheduled second push the time to show up.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    assert_eq!(env.message_count(doc! { "_id": id.object_id() }).await, 1);
    assert_eq!(
        env.find_message(id).await.unwrap(),
        first,
        "document untouched"
    );
    assert_eq!(env.delivered("new_message").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_rerun_after_its_insert_keeps_the_first_document_and_still_pushes() {
    // A worker that crashed after inserting but before scheduling the push
    // leaves the document behind; the re-run must not fail on the duplicate
    // and must still push, carrying the original createdAt.
    let mut env = env().await;
    let job = SendMessage::new(account(), "crash", "after insert");
    let valid = job.validate(&Default::default()).unwrap();
    let first = MessageBatcher::spawn(&env.database)
        .insert(valid)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    env.start_worker().await;
    env.push_raw(serde_json::to_value(&job).unwrap()).await;
    let events = wait_for("the push of the re-run", || async {
        let events = env.delivered("new_message").await;
        (!events.is_empty()).then_some(events)
    })
    .await;

    let id = first.message.id;
    assert_eq!(env.message_count(doc! {}).await, 1);
    let stored = env.find_message(id).await.unwrap();
    assert_eq!(stored.get_datetime("createdAt").unwrap(), &first.created_at);
    // The event's own format: always three digits of milliseconds.
    assert_eq!(
        events[0].data["createdAt"],
        json!(rfc3339(first.created_at).unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_side_indexes_exist_once_the_worker_started() {
    let mut env = env().await;
    env.start_worker().await;
    let names = wait_for("the indexes", || async {
        let names = env.messages().list_index_names().await.ok()?;
        (names.len() >= 3).then_some(names)
    })
    .await;
    assert!(
        names.contains(&"accountId_1_createdAt_-1".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"accountId_1_isRead_1".to_owned()),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acknowledgement_hands_the_push_off_and_wakes_the_push_worker() {
    // With a one-minute idle wait an idle push worker that missed its
    // wake-up would sit on the push for up to a minute: only the
    // hand-off's wake-up gets it out within the test's patience.
    let mut env = crate::helpers::env_with(&[("HERALD_WORKER_IDLE_WAIT_MS", "60000")]).await;
    let id = env
        .enqueue(SendMessage::new(account(), "handed", "off"))
        .await;
    env.start_worker().await;
    let events = wait_for("the push", || async {
        let events = env.delivered("new_message").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events[0].data["messageId"], json!(id.to_hex()));

    // The send_message job's record names the push it handed off (not its
    // payload), and that push is the one that ran.
    let send_id = wait_for("the send_message job recorded done", || async {
        env.queue_set(QueueName::SendMessage, "done").await.pop()
    })
    .await;
    let meta = env.job_meta(QueueName::SendMessage, &send_id).await;
    let result: serde_json::Value = serde_json::from_str(&meta["result"]).unwrap();
    let handed_off = result["Ok"]["handedOff"].as_array().expect("handedOff ids");
    assert_eq!(handed_off.len(), 1, "{result}");
    let push_queue = env.settings.redis.namespace.queue(QueueName::Push);
    let push_id = handed_off[0]
        .as_str()
        .and_then(|h| h.strip_prefix(&format!("{push_queue}:")))
        .expect("a push queue job id")
        .to_owned();
    assert!(
        !meta["result"].contains("channels"),
        "payload not kept: {result}"
    );
    let push_done = wait_for("the push job recorded done", || async {
        let done = env.queue_set(QueueName::Push, "done").await;
        (!done.is_empty()).then_some(done)
    })
    .await;
    assert_eq!(push_done, vec![push_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_at_a_time_pushes_an_accounts_messages_in_the_order_they_were_enqueued() {
    // A bulk enqueue lands within a millisecond or two: only task ids that
    // increase within the process keep such jobs in their order.
    let mut env = env_with(&[
        ("HERALD_QUEUES_SEND_MESSAGE_CONCURRENCY", "1"),
        ("HERALD_QUEUES_PUSH_CONCURRENCY", "1"),
    ])
    .await;
    let account = account();
    let mut enqueued = env
        .enqueue_bulk(
            (0..150)
                .map(|i| SendMessage::new(account, format!("bulk {i}"), "in order"))
                .collect(),
        )
        .await;
    // Single enqueues after the bulk, in the same second.
    for i in 0..50 {
        enqueued.push(
            env.enqueue(SendMessage::new(account, format!("single {i}"), "in order"))
                .await,
        );
    }
    env.start_worker().await;

    assert_pushed_in_order(&env, &enqueued).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_side_by_side_still_push_in_enqueue_order_one_push_at_a_time() {
    // 16 send_message jobs at once finish in any order; their pushes are
    // handed off in the order the jobs started, so one push at a time
    // delivers them in enqueue order.
    let mut env = env_with(&[
        ("HERALD_QUEUES_SEND_MESSAGE_CONCURRENCY", "16"),
        ("HERALD_QUEUES_PUSH_CONCURRENCY", "1"),
    ])
    .await;
    let account = account();
    let enqueued = env
        .enqueue_bulk(
            (0..300)
                .map(|i| SendMessage::new(account, format!("side by side {i}"), "in order"))
                .collect(),
        )
        .await;
    env.start_worker().await;

    assert_pushed_in_order(&env, &enqueued).await;
}

/// Waits for a `new_message` event per message of `enqueued`, then checks
/// they arrived in exactly that order.
async fn assert_pushed_in_order(env: &TestEnv, enqueued: &[MessageId]) {
    let events = wait_for("every new_message event", || async {
        let events = env.delivered("new_message").await;
        (events.len() >= enqueued.len()).then_some(events)
    })
    .await;
    let pushed: Vec<String> = events
        .iter()
        .map(|e| e.data["messageId"].as_str().unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> = enqueued.iter().map(|id| id.to_hex()).collect();
    assert_eq!(pushed, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_retrying_an_enqueue_leaves_one_message_and_one_push() {
    // A producer that did not see the answer to its enqueue sends the same
    // message (the same messageId) again: two jobs, one document, one push.
    let mut env = env().await;
    env.start_worker().await;
    let job = SendMessage::new(account(), "retried", "enqueue");
    let id = env.enqueue(job.clone()).await;
    assert_eq!(env.enqueue(job).await, id);
    wait_for("both jobs done", || async {
        (env.queue_set(QueueName::SendMessage, "done").await.len() == 2).then_some(())
    })
    .await;
    wait_for("the push", || async {
        (env.delivered("new_message").await.len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(env.message_count(doc! { "_id": id.object_id() }).await, 1);
    assert_eq!(env.delivered("new_message").await.len(), 1, "pushed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_with_enqueue_dedup_adds_no_second_job() {
    let env = env().await;
    let mut producer =
        herald_jobs::Producer::connect(&env.settings.redis.url, &env.settings.redis.namespace)
            .await
            .expect("producer")
            .with_enqueue_dedup(std::time::Duration::from_secs(60));
    let job = SendMessage::new(account(), "deduplicated", "enqueue");
    producer.enqueue_message(job.clone()).await.expect("first");
    producer
        .enqueue_message(job)
        .await
        .expect("second, absorbed");
    let mut conn = herald::queue::connect(env.settings.redis.url.as_str())
        .await
        .unwrap();
    let queue = env.settings.redis.namespace.queue(QueueName::SendMessage);
    let jobs: u64 = redis::cmd("HLEN")
        .arg(format!("{queue}:data"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(jobs, 1, "one job for the two enqueues");
}
