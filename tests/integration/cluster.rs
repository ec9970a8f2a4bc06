//! Herald on a Redis Cluster (`redis+cluster://`): messages, failing
//! pushes, exports, the failed list and a large backlog on the shared
//! cluster `scripts/redis-cluster.sh` starts, and a primary failing over in
//! the middle of a run on a private one. Each test counts what was stored
//! and pushed: nothing lost, nothing doubled.

use std::collections::{HashMap, HashSet};

use herald::queue::admin::{DeadFilter, QueueAdmin};
use herald_jobs::{connection::key_slot, MessageId, Namespace, QueueName, SendMessage};
use mongodb::bson::{doc, Bson};
use serde_json::json;

use crate::{
    backlog::{assert_pushed_once, enqueue_backlog, wait_drained, BACKLOG},
    dashboard::{api_get_json, env_with_failed_pushes_and},
    export_helpers::{enqueue as enqueue_export, number, wait_status},
    exports::{export_job, file_of, read_csv, seed, ROWS_A},
    helpers::{account, env_with, stop_logged, wait_for, TestEnv},
    redis_cluster::{cluster_nodes, node_connection, shared_cluster_url, PrivateCluster},
};

/// A test environment on the shared cluster, with extra `HERALD_*`
/// variables; fails with how to start the cluster if it does not answer.
pub(crate) async fn cluster_env(extra: &[(&str, &str)]) -> TestEnv {
    let url = shared_cluster_url();
    herald_jobs::RedisConnection::open(&url, herald_jobs::Patience::default())
        .await
        .unwrap_or_else(|e| {
            panic!("the shared Redis Cluster answers at {url} (bash scripts/redis-cluster.sh start): {e}")
        });
    let mut vars = vec![("HERALD_REDIS_URL", url.as_str())];
    vars.extend_from_slice(extra);
    env_with(&vars).await
}

/// The client port of the first node of a `redis+cluster://` URL.
pub(crate) fn first_port(url: &str) -> u16 {
    url.trim_start_matches("redis+cluster://")
        .rsplit('@')
        .next()
        .and_then(|nodes| nodes.split(',').next())
        .and_then(|node| node.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("a node port in {url}"))
}

/// The port of the primary serving `slot`, as the node at `port` sees the
/// cluster.
pub(crate) async fn primary_of(port: u16, slot: u16) -> u16 {
    let nodes = cluster_nodes(port).await.expect("CLUSTER NODES");
    nodes
        .iter()
        .find(|n| n.primary && !n.failed && n.serves(slot))
        .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
        .port
}

/// A fresh namespace whose send_message and push queues the shared cluster
/// places on different primaries. A random one puts them on the same
/// primary one time in three (three primaries), which would leave the
/// spread check below nothing to check.
async fn spread_namespace(port: u16) -> Namespace {
    loop {
        let raw = format!(
            "herald-test-{}",
            mongodb::bson::oid::ObjectId::new().to_hex()
        );
        let namespace = Namespace::parse(&raw).expect("a valid namespace");
        let sends = namespace.queue(QueueName::SendMessage);
        let pushes = namespace.queue(QueueName::Push);
        if primary_of(port, key_slot(sends.as_bytes())).await
            != primary_of(port, key_slot(pushes.as_bytes())).await
        {
            return namespace;
        }
    }
}

/// Every key matching `pattern` on each primary of the cluster the node at
/// `port` belongs to, asked of each primary alone (`SCAN` on one node).
pub(crate) async fn keys_by_primary(port: u16, pattern: &str) -> HashMap<u16, Vec<String>> {
    let nodes = cluster_nodes(port).await.expect("CLUSTER NODES");
    let mut found = HashMap::new();
    for node in nodes.iter().filter(|n| n.primary && !n.failed) {
        let mut conn = node_connection(node.port).await.expect("a primary answers");
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut conn)
                .await
                .expect("SCAN");
            keys.extend(page);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        found.insert(node.port, keys);
    }
    found
}

/// Every message of `ids` is stored, and nothing else is.
pub(crate) async fn assert_stored_once(env: &TestEnv, ids: &[MessageId]) {
    let wanted: Vec<Bson> = ids
        .iter()
        .map(|id| Bson::ObjectId(id.object_id()))
        .collect();
    assert_eq!(
        env.message_count(doc! { "_id": { "$in": wanted } }).await,
        ids.len() as u64,
        "every message stored"
    );
    assert_eq!(
        env.message_count(doc! {}).await,
        ids.len() as u64,
        "no other document"
    );
}

/// Waits until as many pushes as `ids` were accepted, leaves time for a
/// doubled one to show, and checks that every message of `ids` was stored
/// once and pushed once, and nothing else.
pub(crate) async fn assert_delivered_once(env: &TestEnv, ids: &[MessageId]) {
    wait_for("every push accepted", || async {
        (env.accepted_count().await as usize >= ids.len()).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_stored_once(env, ids).await;
    assert_pushed_once(env, &hex(ids)).await;
}

pub(crate) fn hex(ids: &[MessageId]) -> Vec<String> {
    ids.iter().map(|id| id.to_hex()).collect()
}

/// Accounts, and messages each, in the end-to-end test.
const ACCOUNTS: usize = 5;
const PER_ACCOUNT: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_several_accounts_are_stored_and_pushed_once_with_the_queues_on_two_primaries()
{
    let port = first_port(&shared_cluster_url());
    let namespace = spread_namespace(port).await;
    let mut env = cluster_env(&[("HERALD_REDIS_NAMESPACE", namespace.as_str())]).await;
    env.start_worker().await;
    let mut ids = Vec::new();
    for a in 0..ACCOUNTS {
        let account = account();
        // Most in one bulk call, a few one by one.
        let bulk = (0..PER_ACCOUNT - 5)
            .map(|i| SendMessage::new(account, format!("account {a} bulk {i}"), "on a cluster"))
            .collect();
        ids.extend(env.enqueue_bulk(bulk).await);
        for i in 0..5 {
            ids.push(
                env.enqueue(SendMessage::new(
                    account,
                    format!("account {a} single {i}"),
                    "on a cluster",
                ))
                .await,
            );
        }
    }
    let count = ids.len();
    wait_for("every message stored", || async {
        (env.message_count(doc! {}).await as usize >= count).then_some(())
    })
    .await;
    assert_delivered_once(&env, &ids).await;
    let pushes = env.pushes_per_message().await;
    assert!(pushes.values().all(|&n| n == 1), "{pushes:?}");
    assert_eq!(
        env.queue_set(QueueName::SendMessage, "done").await.len(),
        count
    );
    assert!(!env.worker_finished(), "the worker runs on");

    // Each queue's keys all sit on one primary (one hash tag, one slot),
    // and the two busy queues on different primaries.
    let by_primary = keys_by_primary(port, &namespace.key_pattern()).await;
    let mut queues_on: HashMap<String, HashSet<u16>> = HashMap::new();
    for (primary, keys) in &by_primary {
        for key in keys {
            let tag = key
                .split_once('}')
                .map(|(tag, _)| format!("{tag}}}"))
                .expect("a tagged key");
            queues_on.entry(tag).or_default().insert(*primary);
        }
    }
    for queue in QueueName::ALL {
        let tag = namespace.queue(queue);
        if let Some(primaries) = queues_on.get(&tag) {
            assert_eq!(primaries.len(), 1, "{tag} on {primaries:?}");
        }
    }
    let on = |queue| {
        queues_on
            .get(&namespace.queue(queue))
            .and_then(|primaries| primaries.iter().next().copied())
            .unwrap_or_else(|| panic!("no key of {queue} on any primary: {queues_on:?}"))
    };
    let (sends, pushes) = (on(QueueName::SendMessage), on(QueueName::Push));
    assert_ne!(sends, pushes, "the queues share a primary: {queues_on:?}");
    let primaries: HashSet<u16> = queues_on.values().flatten().copied().collect();
    assert!(primaries.len() >= 2, "{queues_on:?}");

    // The CLI reads the queues through the cluster as well.
    let status = crate::pause::herald(&env, &["queue", "status"]);
    let sends: serde_json::Value = status
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|q| q["queue"] == format!("{namespace}:send_message"))
        .unwrap_or_else(|| panic!("no send_message line in {status}"));
    assert_eq!(sends["done"], count as u64, "{status}");
    assert_eq!(sends["pending"], 0, "{status}");
    env.stop_worker().await.expect("the worker stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_that_fails_with_500_three_times_is_delivered_once_on_a_cluster() {
    let mut env = cluster_env(&[("HERALD_WORKER_RETRY_BASE_MS", "200")]).await;
    env.script_failures(Some(500), 0, 3).await;
    env.start_worker().await;
    let id = env
        .enqueue(SendMessage::new(account(), "retry", "on a cluster"))
        .await;
    let push_id = wait_for("the push acknowledged", || async {
        env.queue_set(QueueName::Push, "done").await.pop()
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let statuses: Vec<u16> = env
        .sandbox_requests()
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![500, 500, 500, 200]);
    let delivered = env.delivered("new_message").await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].data["messageId"], json!(id.to_hex()));
    assert_stored_once(&env, &[id]).await;
    assert_eq!(env.queue_set(QueueName::SendMessage, "done").await.len(), 1);
    crate::failures::assert_done_on_the_fourth_attempt_after_three_500s(&env, &push_id).await;
    env.stop_worker().await.expect("the worker stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_on_a_cluster_writes_the_accounts_rows_and_finishes_once() {
    let mut env = cluster_env(&[]).await;
    let seeded = seed(&env).await;
    env.start_worker().await;
    enqueue_export(&env, export_job(seeded.a, "cluster-a")).await;
    let record = wait_status(&env, seeded.a, "cluster-a", "finished").await;
    assert_eq!(number(&record, "rows"), ROWS_A as i64);
    let rows = read_csv(&file_of(&env, seeded.a, "cluster-a"));
    assert_eq!(rows.len(), ROWS_A + 1, "a header and the account's rows");
    let ids: HashSet<&str> = rows[1..].iter().map(|r| r[1].as_str()).collect();
    assert_eq!(ids.len(), ROWS_A, "each row once");
    assert!(
        ids.iter().all(|id| seeded.a_ids.contains(*id)),
        "a row of another account"
    );
    wait_for("export_finish", || async {
        (!env.delivered("export_finish").await.is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let finishes = env.delivered("export_finish").await;
    assert_eq!(finishes.len(), 1, "one export_finish");
    assert_eq!(finishes[0].data, json!({ "key": "cluster-a" }));
    env.stop_worker().await.expect("the worker stops cleanly");
}

/// Pushes failing for good in the failed-list test.
const FAILING: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_failed_for_good_on_a_cluster_are_listed_and_a_retry_delivers_each_once() {
    let url = shared_cluster_url();
    let (mut env, dead) = env_with_failed_pushes_and(FAILING, &[("HERALD_REDIS_URL", &url)]).await;
    assert_eq!(dead.len(), FAILING);
    let admin = QueueAdmin::new(
        herald::queue::connect(url.as_str())
            .await
            .expect("the cluster"),
        herald::queues::config(&env.settings, QueueName::Push),
    );
    let (jobs, total) = admin
        .dead_jobs(&DeadFilter::all(), 0, 10)
        .await
        .expect("the failed list");
    assert_eq!((jobs.len(), total), (FAILING, FAILING));

    let web = env.start_web().await;
    let groups = api_get_json(&env, format!("{web}/api/v1/queues/push/failed/groups")).await;
    assert_eq!(groups["total"], 1, "{groups}");
    let group = groups["groups"][0].clone();
    assert_eq!(group["count"], FAILING);
    assert!(
        group["error"].as_str().unwrap_or("").contains("HTTP 401"),
        "{group}"
    );

    crate::failed_list::retry_group_once_credentials_are_fixed(&mut env, &web, &group, FAILING)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let pushes = env.pushes_per_message().await;
    assert_eq!(pushes.len(), FAILING, "{pushes:?}");
    assert!(pushes.values().all(|&n| n == 1), "each once: {pushes:?}");
    assert_eq!(env.message_count(doc! {}).await, FAILING as u64);
    let (jobs, total) = admin
        .dead_jobs(&DeadFilter::all(), 0, 10)
        .await
        .expect("the failed list");
    assert_eq!((jobs.len(), total), (0, 0), "the failed list is empty");
    env.stop_worker().await.expect("the worker stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_past_20000_jobs_enqueued_with_no_worker_drains_on_a_cluster() {
    let jobs = BACKLOG + 1_000;
    let mut env = cluster_env(&[]).await;
    let ids = enqueue_backlog(&env, jobs).await;
    assert_eq!(ids.len(), jobs);
    env.start_worker().await;
    wait_drained(&env, jobs).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_pushed_once(&env, &ids).await;
    assert_eq!(env.message_count(doc! {}).await, jobs as u64);
    assert!(!env.worker_finished(), "the worker runs on");
    env.stop_worker().await.expect("the worker stops cleanly");
}

/// Messages flowing through the failover.
const THROUGH_FAILOVER: usize = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_failing_over_mid_run_loses_and_doubles_no_message() {
    let cluster = PrivateCluster::start().await;
    let env = env_with(&[("HERALD_REDIS_URL", &cluster.url())]).await;
    let (mut worker, log, producing) = env
        .messages_flowing("cluster-failover", THROUGH_FAILOVER, 200)
        .await;
    let key = format!(
        "{}:active",
        env.settings.redis.namespace.queue(QueueName::SendMessage)
    );
    // Mid-run: the producer is still enqueuing when the failover starts.
    assert!(
        !producing.is_finished(),
        "the messages were all enqueued before the failover"
    );
    let stored_before = env.message_count(doc! {}).await;
    let (old, new) = cluster.fail_over(&key).await;
    assert_ne!(old, new);
    let stored_after = env.message_count(doc! {}).await;
    eprintln!(
        "failover {old} -> {new}: {stored_before} messages stored when it began, \
         {stored_after} when it ended, of {THROUGH_FAILOVER}"
    );
    let ids = producing.await.expect("the producer finished");
    assert_eq!(ids.len(), THROUGH_FAILOVER);
    // The worker must still run: the cluster client follows the new primary.
    if let Some(status) = worker.try_wait().expect("try_wait") {
        panic!(
            "the worker exited ({status}) on the failover:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    wait_drained(&env, THROUGH_FAILOVER).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_pushed_once(&env, &hex(&ids)).await;
    assert_stored_once(&env, &ids).await;
    let (status, lines) = stop_logged(&mut worker, &log);
    let complaints: Vec<&str> = lines
        .lines()
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
        .collect();
    eprintln!(
        "the worker logged {} warnings or errors:\n{}",
        complaints.len(),
        complaints.join("\n")
    );
    assert!(status.success(), "the worker stopped cleanly: {status:?}");
}
