//! The database killed and started again under load: every message that was
//! pushed is stored (writes wait for the journal before the push is
//! handed on), and none is stored or pushed twice.

use std::time::Duration;

use herald_jobs::QueueName;
use mongodb::bson::doc;

use crate::{
    helpers::{env_with, stop_logged, wait_within},
    servers::{Kind, PrivateServer},
};

/// Messages sent through the crash.
const MESSAGES: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_killed_under_load_keeps_every_message_that_was_pushed() {
    let mut database = PrivateServer::start(Kind::DurableSecantus).await;
    let url = database.url();
    let env = env_with(&[
        ("HERALD_MONGODB_URL", &url),
        ("HERALD_WORKER_RETRY_BASE_MS", "200"),
        ("HERALD_WORKER_RETRY_CAP_SECS", "2"),
        ("HERALD_QUEUES_SEND_MESSAGE_MAX_ATTEMPTS", "50"),
        ("HERALD_LOG_FORMAT", "json"),
        ("HERALD_WORKER_OPS_BIND", ""),
    ])
    .await;
    let (mut worker, log, producing) = env.messages_flowing("database-crash", MESSAGES, 300).await;
    database.stop("KILL");
    let pushed_at_crash = env.accepted_count().await;
    // Longer than the driver's server selection timeout (5 s), so inserts
    // fail and their jobs run again, not only wait.
    tokio::time::sleep(Duration::from_secs(7)).await;
    database.restart().await;

    let ids = producing.await.expect("producer task");
    wait_within(
        "every message pushed",
        Duration::from_secs(240),
        Duration::from_millis(200),
        || async { (env.accepted_count().await >= MESSAGES as u64).then_some(()) },
    )
    .await;

    // Every message pushed is in the database: in particular those pushed
    // just before the crash.
    let pushes = env.pushes_per_message().await;
    let twice: Vec<_> = pushes.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "pushed more than once: {twice:?}");
    let pushed_ids: Vec<_> = pushes
        .keys()
        .map(|id| mongodb::bson::oid::ObjectId::parse_str(id).expect("an ObjectId"))
        .collect();
    let stored_of_pushed = env
        .message_count(doc! { "_id": { "$in": &pushed_ids } })
        .await;
    assert_eq!(
        stored_of_pushed as usize,
        pushed_ids.len(),
        "pushed but not stored after the crash"
    );
    assert_eq!(pushes.len(), MESSAGES, "every message pushed");
    assert_eq!(env.message_count(doc! {}).await as usize, MESSAGES);
    for id in &ids {
        assert_eq!(pushes.get(&id.to_hex()), Some(&1), "message {id}");
    }
    assert!(env
        .queue_set(QueueName::SendMessage, "dead")
        .await
        .is_empty());

    let (status, lines) = stop_logged(&mut worker, &log);
    assert!(status.success(), "{status:?}");
    // The failed inserts were said at warn, each with its job.
    assert!(
        lines
            .lines()
            .any(|l| l.contains("\"level\":\"WARN\"") && l.contains("message not stored")),
        "no warning for the failed inserts:\n{lines}"
    );
    eprintln!(
        "database crash: {pushed_at_crash} of {MESSAGES} pushed when it was killed; all stored and pushed once"
    );
}
