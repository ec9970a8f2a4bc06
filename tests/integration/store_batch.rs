//! Message inserts shared by concurrent jobs: one `insert_many` per batch,
//! still idempotent per message.

use herald::store::MessageBatcher;
use herald_jobs::SendMessage;
use mongodb::bson::doc;

use crate::helpers::{account, env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_mixing_new_and_stored_messages_stores_each_once_and_keeps_first_times() {
    let env = env().await;
    let account = account();
    let messages: Vec<_> = (0..40)
        .map(|i| {
            SendMessage::new(account, format!("m{i}"), "x")
                .validate(&Default::default())
                .expect("valid")
        })
        .collect();
    // Every fourth message was stored by an earlier run.
    let store = MessageBatcher::spawn(&env.database);
    let mut first_times = std::collections::HashMap::new();
    for message in messages.iter().step_by(4) {
        let stored = store.insert(message.clone()).await.expect("insert");
        first_times.insert(message.id, stored.created_at);
    }

    let batcher = MessageBatcher::spawn(&env.database);
    let answers = futures::future::join_all(messages.iter().map(|m| {
        let batcher = batcher.clone();
        let m = m.clone();
        async move { batcher.insert(m).await }
    }))
    .await;

    for (message, answer) in messages.iter().zip(answers) {
        let stored = answer.expect("stored");
        assert_eq!(stored.message.id, message.id);
        match first_times.get(&message.id) {
            Some(first) => {
                assert!(
                    !stored.newly_inserted,
                    "{} was stored before",
                    message.title
                );
                assert_eq!(&stored.created_at, first, "the first run's createdAt");
            }
            None => assert!(stored.newly_inserted, "{} is new", message.title),
        }
    }
    assert_eq!(env.message_count(doc! {}).await, 40);
    assert_eq!(
        env.message_count(doc! { "accountId": account.object_id(), "title": "m5" })
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_job_stores_its_own_message_once_and_a_rerun_gets_the_first_time() {
    let env = env().await;
    let message = SendMessage::new(account(), "alone", "x")
        .validate(&Default::default())
        .expect("valid");
    let batcher = MessageBatcher::spawn(&env.database);
    let first = batcher.insert(message.clone()).await.expect("stored");
    assert!(first.newly_inserted);
    let again = batcher.insert(message.clone()).await.expect("answered");
    assert!(!again.newly_inserted, "stored by the first run");
    assert_eq!(
        again.created_at, first.created_at,
        "the first run's createdAt"
    );
    // One after another, then many at once: each stored once.
    for i in 0..3 {
        let m = SendMessage::new(account(), format!("seq{i}"), "x")
            .validate(&Default::default())
            .expect("valid");
        assert!(batcher.insert(m).await.expect("stored").newly_inserted);
    }
    assert_eq!(env.message_count(doc! {}).await, 4);
}
