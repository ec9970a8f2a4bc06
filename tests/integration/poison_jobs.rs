//! Poison jobs: payloads that can never become a job, mixed into batches of
//! valid ones, in a real `herald worker` process.

use std::{collections::HashMap, time::Duration};

use herald_jobs::{QueueName, SendMessage};
use mongodb::bson::doc;
use serde_json::json;

use crate::helpers::{account, env_with, stop_logged, wait_within};

/// Valid jobs around the poison ones.
const VALID: usize = 300;

/// Patience for a few hundred jobs on a busy machine (a deadline against
/// hangs, not a speed requirement).
const PATIENCE: Duration = Duration::from_secs(120);

/// Each kind of payload that is not a `send_message` job, with a fragment
/// of the reason its dead record must give.
fn poison_kinds(valid: &SendMessage) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let valid_json = serde_json::to_vec(valid).expect("encodes");
    let mut trailing = valid_json.clone();
    trailing.extend_from_slice(b" trailing bytes");
    let as_array = serde_json::to_vec(&json!([
        valid.message_id,
        valid.account_id,
        valid.title,
        valid.content,
        { "id": "system", "from": "system" },
        { "id": valid.account_id, "target": "account" },
        valid.status,
    ]))
    .expect("encodes");
    let mut big = serde_json::to_value(valid).expect("encodes");
    big["content"] = json!("x".repeat(5 * 1024 * 1024));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    vec![
        (
            "not JSON",
            b"<html>not json at all".to_vec(),
            "not valid JSON",
        ),
        ("empty", Vec::new(), "payload is empty"),
        ("trailing bytes", trailing, "trailing characters"),
        (
            "invalid UTF-8",
            b"{\"title\": \"\xff\xfe\xfd\"}".to_vec(),
            "not UTF-8",
        ),
        ("array", as_array, "invalid type: sequence"),
        ("null", b"null".to_vec(), "invalid type: null"),
        ("number", b"42".to_vec(), "invalid type: integer"),
        ("10,000-level nesting", deep.into_bytes(), "deeper than 64"),
        (
            "5 MB field",
            serde_json::to_vec(&big).expect("encodes"),
            "over the limit of 1048576 bytes",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_jobs_go_dead_with_their_reason_while_their_batches_run_on_without_a_restart() {
    let env = env_with(&[
        ("HERALD_LOG_FORMAT", "json"),
        ("HERALD_WORKER_OPS_BIND", ""),
        ("HERALD_WORKER_FETCH_BATCH_SIZE", "20"),
    ])
    .await;
    let account = account();
    let kinds = poison_kinds(&SendMessage::new(account, "shape", "of a job"));

    // The poison ones spread through the valid ones, so each fetch batch
    // holds both.
    let mut valid_ids = Vec::with_capacity(VALID);
    let mut poison: HashMap<String, (&str, &str)> = HashMap::new();
    let every = VALID / kinds.len();
    for i in 0..VALID {
        let job = SendMessage::new(account, format!("valid {i}"), "among poison");
        valid_ids.push(job.message_id.clone());
        let bytes = serde_json::to_vec(&job).expect("encodes");
        env.push_bytes(QueueName::SendMessage, &bytes).await;
        if i % every == every / 2 {
            if let Some((kind, bytes, reason)) = kinds.get(i / every) {
                let id = env.push_bytes(QueueName::SendMessage, bytes).await;
                poison.insert(id, (kind, reason));
            }
        }
    }
    assert_eq!(poison.len(), kinds.len(), "every kind was enqueued");
    // The other queues refuse poison the same way.
    let push_poison = env.push_bytes(QueueName::Push, b"\xc3\x28 binary").await;
    let export_poison = env.push_bytes(QueueName::Export, b"{\"key\": ").await;

    let log = std::env::temp_dir().join(format!("{}-poison.log", env.namespace));
    let mut worker = env.spawn_herald_logged(&["worker"], &[], &log);

    // Every valid message stored and pushed exactly once.
    wait_within(
        "every valid message pushed",
        PATIENCE,
        Duration::from_millis(200),
        || async { (env.accepted_count().await >= VALID as u64).then_some(()) },
    )
    .await;
    assert_eq!(env.message_count(doc! {}).await as usize, VALID);
    let pushes = env.pushes_per_message().await;
    assert_eq!(pushes.len(), VALID, "each valid message pushed");
    assert!(pushes.values().all(|&n| n == 1), "none pushed twice");
    for id in &valid_ids {
        assert_eq!(pushes.get(id), Some(&1), "message {id}");
    }

    // Every poison job dead after one run, its reason recorded.
    let dead = wait_within(
        "every poison job dead",
        PATIENCE,
        Duration::from_millis(100),
        || async {
            let dead = env.queue_set(QueueName::SendMessage, "dead").await;
            (dead.len() >= poison.len()).then_some(dead)
        },
    )
    .await;
    assert_eq!(dead.len(), poison.len(), "only the poison jobs are dead");
    for (id, (kind, reason)) in &poison {
        assert!(dead.contains(id), "{kind} job not dead");
        let meta = env.job_meta(QueueName::SendMessage, id).await;
        let result = meta.get("result").cloned().unwrap_or_default();
        assert!(
            result.contains(reason),
            "{kind}: {reason:?} not in {result}"
        );
        assert_eq!(
            meta.get("status").map(String::as_str),
            Some("Killed"),
            "{kind}"
        );
        assert_eq!(
            meta.get("attempts").map(String::as_str),
            Some("1"),
            "{kind}"
        );
    }
    assert_eq!(
        env.queue_set(QueueName::SendMessage, "done").await.len(),
        VALID
    );
    for (queue, id, reason) in [
        (QueueName::Push, &push_poison, "not UTF-8"),
        (QueueName::Export, &export_poison, "not valid JSON"),
    ] {
        wait_within(
            "the other queues' poison dead",
            PATIENCE,
            Duration::from_millis(100),
            || async {
                env.queue_set(queue, "dead")
                    .await
                    .contains(id)
                    .then_some(())
            },
        )
        .await;
        let meta = env.job_meta(queue, id).await;
        assert!(meta["result"].contains(reason), "{queue:?}: {meta:?}");
    }

    // The worker kept running as it was: no restart, nothing at ERROR.
    let (status, lines) = stop_logged(&mut worker, &log);
    assert!(status.success(), "{status:?}\n{lines}");
    let errors: Vec<&str> = lines
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(errors.is_empty(), "logged at ERROR: {errors:#?}");
    assert!(
        !lines.contains("restarting"),
        "a worker restarted:\n{lines}"
    );
    let rejected = lines
        .lines()
        .filter(|l| l.contains("\"level\":\"WARN\"") && l.contains("rejected"))
        .count();
    assert!(
        rejected >= poison.len() + 2,
        "each poison job is logged at WARN with its reason:\n{lines}"
    );
}
