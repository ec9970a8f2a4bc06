//! Queues spread over several shards (`redis.queue_shards`): producers put
//! each account's jobs on its shard, workers consume every shard fairly,
//! and the dashboard, the API and the CLI show each queue as one. On the
//! shared Redis Cluster (the shards on several primaries) and on one
//! server. Every test counts what was stored and pushed: nothing lost,
//! nothing doubled.

use std::collections::{HashMap, HashSet};

use herald_jobs::{
    connection::key_slot, queue::shard_of, AccountId, MessageId, Namespace, QueueName, SendMessage,
};
use mongodb::bson::doc;
use serde_json::{json, Value};

use crate::{
    backlog::{assert_pushed_once, wait_drained},
    cluster::{
        assert_delivered_once, assert_stored_once, cluster_env, first_port, hex, keys_by_primary,
        primary_of,
    },
    dashboard::{api_get_json, fix_credentials},
    helpers::{account, enqueue_through_outage, env_with, stop_logged, wait_for, TestEnv},
    redis_cluster::{shared_cluster_url, PrivateCluster},
};

/// `count` fresh accounts for each of `shards` shards, shard 0's first.
fn accounts_per_shard(shards: u16, count: usize) -> Vec<Vec<AccountId>> {
    let mut per_shard = vec![Vec::new(); usize::from(shards)];
    while per_shard.iter().any(|accounts| accounts.len() < count) {
        let account = account();
        let shard = usize::from(shard_of(&account.to_hex(), shards));
        if per_shard[shard].len() < count {
            per_shard[shard].push(account);
        }
    }
    per_shard
}

/// How many ids the set `set` holds on each shard of `queue`.
async fn per_shard(env: &TestEnv, queue: QueueName, set: &str) -> Vec<usize> {
    let mut counts = Vec::new();
    for shard in 0..env.settings.redis.queue_shards {
        counts.push(env.shard_set(queue, shard, set).await.len());
    }
    counts
}

/// The line of `queue` in `herald queue status`; fails if there is not
/// exactly one.
fn status_line(env: &TestEnv, queue: QueueName) -> Value {
    let status = crate::pause::herald(env, &["queue", "status"]);
    let name = format!("{}:{}", env.settings.redis.namespace, queue.as_str());
    let lines: Vec<Value> = crate::helpers::json_lines(&status)
        .into_iter()
        .filter(|q| q["queue"] == name.as_str())
        .collect();
    assert_eq!(lines.len(), 1, "one line for {name}: {status}");
    lines[0].clone()
}

/// Starts `env`'s worker and waits until it has written the shard count
/// producers follow (a producer that reads it before sees one shard).
async fn start_sharded_worker(env: &mut TestEnv) {
    start_sharded_worker_with(env, env.settings.clone()).await;
}

/// [`start_sharded_worker`] with `settings`.
async fn start_sharded_worker_with(env: &mut TestEnv, settings: herald::config::Settings) {
    let wanted = settings.redis.queue_shards;
    env.start_worker_with(settings).await;
    wait_for_shard_count(env, wanted).await;
}

/// Waits until a worker has written `wanted` as the queues' shard count.
async fn wait_for_shard_count(env: &TestEnv, wanted: u16) {
    let conn = herald::queue::connect(env.settings.redis.url.as_str())
        .await
        .expect("Redis");
    let namespace = env.settings.redis.namespace.clone();
    wait_for("the worker's shard count", || {
        let (mut conn, namespace) = (conn.clone(), namespace.clone());
        async move {
            let stored = herald::queues::shards::stored(&mut conn, &namespace)
                .await
                .ok()?;
            (stored == Some(wanted)).then_some(())
        }
    })
    .await;
}

/// Shards of a queue in the cluster tests.
const CLUSTER_SHARDS: u16 = 4;
/// Accounts per shard, and messages per account, in the cluster test.
const ACCOUNTS_PER_SHARD: usize = 2;
const PER_ACCOUNT: usize = 15;

/// A fresh namespace whose send_message shards the shared cluster places
/// on at least two primaries (a random one puts four shards on one
/// primary one time in 27, which would leave the spread unchecked).
async fn namespace_over_primaries(port: u16, shards: u16) -> Namespace {
    loop {
        let raw = format!(
            "herald-test-{}",
            mongodb::bson::oid::ObjectId::new().to_hex()
        );
        let namespace = Namespace::parse(&raw).expect("a valid namespace");
        let mut primaries = HashSet::new();
        for shard in 0..shards {
            let tag = namespace.queue_shard(QueueName::SendMessage, shard);
            primaries.insert(primary_of(port, key_slot(tag.as_bytes())).await);
        }
        if primaries.len() >= 2 {
            return namespace;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_queue_on_a_cluster_spreads_over_primaries_keeps_each_accounts_order_and_shows_as_one(
) {
    let port = first_port(&shared_cluster_url());
    let namespace = namespace_over_primaries(port, CLUSTER_SHARDS).await;
    let shards = CLUSTER_SHARDS.to_string();
    let mut env = cluster_env(&[
        ("HERALD_REDIS_NAMESPACE", namespace.as_str()),
        ("HERALD_REDIS_QUEUE_SHARDS", &shards),
        // One push at a time: each account's events in enqueue order.
        ("HERALD_QUEUES_PUSH_CONCURRENCY", "1"),
    ])
    .await;
    start_sharded_worker(&mut env).await;
    let accounts: Vec<AccountId> = accounts_per_shard(CLUSTER_SHARDS, ACCOUNTS_PER_SHARD)
        .into_iter()
        .flatten()
        .collect();
    // Every account's first ten messages in one bulk call, interleaved,
    // then five each one by one.
    let mut order: HashMap<AccountId, Vec<MessageId>> = HashMap::new();
    let bulk: Vec<SendMessage> = (0..10)
        .flat_map(|i| {
            accounts
                .iter()
                .map(move |a| SendMessage::new(*a, format!("bulk {i}"), "sharded"))
        })
        .collect();
    let bulk_accounts: Vec<AccountId> = (0..10).flat_map(|_| accounts.clone()).collect();
    for (account, id) in bulk_accounts.iter().zip(env.enqueue_bulk(bulk).await) {
        order.entry(*account).or_default().push(id);
    }
    for i in 0..PER_ACCOUNT - 10 {
        for account in &accounts {
            let id = env
                .enqueue(SendMessage::new(*account, format!("single {i}"), "sharded"))
                .await;
            order.entry(*account).or_default().push(id);
        }
    }
    let ids: Vec<MessageId> = order.values().flatten().copied().collect();
    let count = ids.len();
    assert_delivered_once(&env, &ids).await;

    // Each account's events arrived in the order its messages were enqueued.
    let account_of: HashMap<String, AccountId> = order
        .iter()
        .flat_map(|(account, ids)| ids.iter().map(move |id| (id.to_hex(), *account)))
        .collect();
    let mut arrived: HashMap<AccountId, Vec<String>> = HashMap::new();
    for event in env.delivered("new_message").await {
        let id = event.data["messageId"].as_str().unwrap_or_default();
        arrived
            .entry(account_of[id])
            .or_default()
            .push(id.to_owned());
    }
    for (account, ids) in &order {
        assert_eq!(arrived[account], hex(ids), "order of account {account}");
    }

    // Each shard ran exactly its accounts' jobs.
    let per_account = ACCOUNTS_PER_SHARD * PER_ACCOUNT;
    assert_eq!(
        per_shard(&env, QueueName::SendMessage, "done").await,
        vec![per_account; usize::from(CLUSTER_SHARDS)]
    );
    assert_eq!(
        per_shard(&env, QueueName::Push, "done").await,
        vec![per_account; usize::from(CLUSTER_SHARDS)],
        "an account's pushes stay on its shard"
    );
    // ...and the shards' keys sit on more than one primary.
    let mut primaries = HashSet::new();
    for (primary, keys) in keys_by_primary(port, &namespace.key_pattern()).await {
        for shard in 0..CLUSTER_SHARDS {
            let tag = namespace.queue_shard(QueueName::SendMessage, shard);
            if keys.iter().any(|key| key.starts_with(&format!("{tag}:"))) {
                primaries.insert(primary);
            }
        }
    }
    assert!(primaries.len() >= 2, "shards on {primaries:?}");

    // Operators see one queue of every shard's jobs.
    let sends = status_line(&env, QueueName::SendMessage);
    assert_eq!(sends["done"], count as u64, "{sends}");
    assert_eq!(sends["pending"], 0, "{sends}");
    let web = env.start_web().await;
    let queues = api_get_json(&env, format!("{web}/api/v1/queues")).await;
    let pushes: Vec<&Value> = queues["queues"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|q| q["name"] == "push")
        .collect();
    assert_eq!(pushes.len(), 1, "{queues}");
    assert_eq!(pushes[0]["done"], count as u64, "{queues}");
    env.stop_worker().await.expect("the worker stops cleanly");
}

/// Jobs of the busy account in the fairness test.
const BUSY_BACKLOG: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_on_one_shard_does_not_hold_up_a_job_on_another() {
    let mut env = env_with(&[
        ("HERALD_REDIS_QUEUE_SHARDS", "3"),
        ("HERALD_QUEUES_SEND_MESSAGE_CONCURRENCY", "1"),
    ])
    .await;
    // The worker writes the shard count the producers follow.
    env.start_worker().await;
    env.stop_worker().await.expect("the worker stops cleanly");
    let accounts = accounts_per_shard(3, 1);
    let (busy, quiet) = (accounts[0][0], accounts[2][0]);
    let backlog: Vec<SendMessage> = (0..BUSY_BACKLOG)
        .map(|i| SendMessage::new(busy, format!("busy {i}"), "backlog"))
        .collect();
    let busy_ids = env.enqueue_bulk(backlog).await;
    let quiet_id = env
        .enqueue(SendMessage::new(quiet, "quiet", "behind nobody"))
        .await;
    let mut conn = herald::queue::connect(env.settings.redis.url.as_str())
        .await
        .expect("Redis");
    let waiting: Vec<usize> = {
        let mut lengths = Vec::new();
        for shard in 0..3 {
            let key = format!(
                "{}:active",
                env.settings
                    .redis
                    .namespace
                    .queue_shard(QueueName::SendMessage, shard)
            );
            lengths.push(
                redis::cmd("LLEN")
                    .arg(key)
                    .query_async::<usize>(&mut conn)
                    .await
                    .expect("LLEN"),
            );
        }
        lengths
    };
    assert_eq!(
        waiting,
        vec![BUSY_BACKLOG, 0, 1],
        "each account on its shard"
    );

    env.start_worker().await;
    let busy_done_then = wait_for("the quiet account's message stored", || async {
        if env.find_message(quiet_id).await.is_some() {
            Some(
                env.message_count(doc! { "accountId": busy.object_id() })
                    .await,
            )
        } else {
            None
        }
    })
    .await;
    assert!(
        (busy_done_then as usize) < BUSY_BACKLOG / 2,
        "the quiet shard waited for {busy_done_then} of the busy shard's jobs"
    );
    let mut all = busy_ids;
    all.push(quiet_id);
    assert_delivered_once(&env, &all).await;
    env.stop_worker().await.expect("the worker stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pushes_on_every_shard_are_one_list_one_group_and_one_retry() {
    let mut env = env_with(&[
        ("HERALD_REDIS_QUEUE_SHARDS", "3"),
        ("HERALD_TUISONGBAO_SECRET", "wrong"),
    ])
    .await;
    start_sharded_worker(&mut env).await;
    let accounts = accounts_per_shard(3, 2);
    let mut ids = Vec::new();
    for account in accounts.iter().flatten() {
        ids.push(
            env.enqueue(SendMessage::new(*account, "failing", "401"))
                .await,
        );
    }
    let failing = ids.len();
    wait_for("every push dead", || async {
        (per_shard(&env, QueueName::Push, "dead").await == vec![2, 2, 2]).then_some(())
    })
    .await;

    let web = env.start_web().await;
    let list = api_get_json(&env, format!("{web}/api/v1/queues/push/failed?limit=4")).await;
    assert_eq!(list["total"], failing, "{list}");
    let page: Vec<f64> = list["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|job| job["failed_at"].as_f64().expect("a failure time"))
        .collect();
    assert_eq!(page.len(), 4, "{list}");
    assert!(
        page.windows(2).all(|w| w[0] >= w[1]),
        "latest first: {page:?}"
    );
    let rest = api_get_json(
        &env,
        format!("{web}/api/v1/queues/push/failed?offset=4&limit=4"),
    )
    .await;
    let mut listed: HashSet<String> = HashSet::new();
    for job in list["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(rest["jobs"].as_array().into_iter().flatten())
    {
        listed.insert(job["id"].as_str().expect("an id").to_owned());
    }
    assert_eq!(listed.len(), failing, "two pages list each job once");
    // A job of the last shard is found by id.
    let last = env.shard_set(QueueName::Push, 2, "dead").await;
    let detail = api_get_json(&env, format!("{web}/api/v1/queues/push/jobs/{}", last[0])).await;
    assert_eq!(detail["state"], "failed", "{detail}");

    let groups = api_get_json(&env, format!("{web}/api/v1/queues/push/failed/groups")).await;
    assert_eq!(groups["total"], 1, "{groups}");
    assert_eq!(groups["groups"][0]["count"], failing, "{groups}");
    let failed = status_line(&env, QueueName::Push);
    assert_eq!(failed["failed"], failing as u64, "{failed}");

    fix_credentials(&mut env).await;
    let begun = crate::dashboard::api_post(
        &env,
        format!("{web}/api/v1/queues/push/failed/retry"),
        Some(&json!({ "filter": { "error": groups["groups"][0]["id"] } })),
    )
    .await;
    assert_eq!(begun.status(), reqwest::StatusCode::ACCEPTED);
    wait_for("the retried pushes delivered", || async {
        (env.delivered("new_message").await.len() >= failing).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_pushed_once(&env, &hex(&ids)).await;
    assert_eq!(
        per_shard(&env, QueueName::Push, "dead").await,
        vec![0, 0, 0]
    );
    let operations = api_get_json(&env, format!("{web}/api/v1/queues/push/operations")).await;
    assert_eq!(operations["operations"][0]["done"], failing, "{operations}");
    assert_eq!(
        operations["operations"][0]["total"], failing,
        "{operations}"
    );
    env.stop_worker().await.expect("the worker stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_refuses_fewer_shards_while_a_shard_it_would_drop_holds_jobs() {
    let mut env = env_with(&[("HERALD_REDIS_QUEUE_SHARDS", "3")]).await;
    env.start_worker().await;
    env.stop_worker().await.expect("the worker stops cleanly");
    let on_last = accounts_per_shard(3, 1)[2][0];
    let id = env
        .enqueue(SendMessage::new(on_last, "waits", "on shard 2"))
        .await;

    let mut fewer = env.settings.clone();
    fewer.redis.queue_shards = 1;
    let refused = herald::worker::Worker::build(fewer.clone())
        .await
        .expect_err("the worker refuses to drop a shard holding a job");
    let text = refused.to_string();
    assert!(
        text.contains("shard 2") && text.contains("queue_shards = 3"),
        "{text}"
    );

    // With the count the jobs were written for, the job runs; then the
    // shards are empty and the count may shrink.
    env.start_worker().await;
    wait_for("the push accepted", || async {
        (env.accepted_count().await >= 1).then_some(())
    })
    .await;
    env.stop_worker().await.expect("the worker stops cleanly");
    assert_stored_once(&env, &[id]).await;
    start_sharded_worker_with(&mut env, fewer).await;
    let moved = account();
    let second = env
        .enqueue(SendMessage::new(moved, "after", "one shard"))
        .await;
    wait_for("the second push accepted", || async {
        (env.accepted_count().await >= 2).then_some(())
    })
    .await;
    assert_eq!(
        env.shard_set(QueueName::SendMessage, 0, "done").await.len(),
        1,
        "the producer follows the count the worker wrote"
    );
    assert_stored_once(&env, &[id, second]).await;
    env.stop_worker().await.expect("the worker stops cleanly");
}

/// Messages per account in the failover test, three accounts, one per
/// shard.
const PER_SHARD_THROUGH_FAILOVER: usize = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_of_a_sharded_queue_failing_over_mid_run_loses_and_doubles_no_message() {
    let cluster = PrivateCluster::start().await;
    let env = env_with(&[
        ("HERALD_REDIS_URL", &cluster.url()),
        ("HERALD_REDIS_QUEUE_SHARDS", "3"),
    ])
    .await;
    let log = std::env::temp_dir().join(format!("{}-sharded-failover.log", env.namespace));
    let mut worker = env.spawn_herald_logged(&["worker"], &[], &log);
    wait_for_shard_count(&env, 3).await;
    // Interleaved: every shard busy at once.
    let accounts: Vec<AccountId> = accounts_per_shard(3, 1).into_iter().flatten().collect();
    let jobs: Vec<SendMessage> = (0..PER_SHARD_THROUGH_FAILOVER)
        .flat_map(|i| {
            accounts
                .iter()
                .map(move |a| SendMessage::new(*a, format!("failover {i}"), "sharded"))
        })
        .collect();
    let total = jobs.len();
    let producing = tokio::spawn(enqueue_through_outage(env.settings.clone(), jobs));
    wait_for("the first pushes", || async {
        (env.accepted_count().await >= 200).then_some(())
    })
    .await;
    assert!(
        !producing.is_finished(),
        "the messages were all enqueued before the failover"
    );
    // The primary of shard 2 of send_message fails over.
    let key = format!(
        "{}:active",
        env.settings
            .redis
            .namespace
            .queue_shard(QueueName::SendMessage, 2)
    );
    let (old, new) = cluster.fail_over(&key).await;
    assert_ne!(old, new);
    let ids = producing.await.expect("the producer finished");
    assert_eq!(ids.len(), total);
    if let Some(status) = worker.try_wait().expect("try_wait") {
        panic!(
            "the worker exited ({status}) on the failover:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    wait_drained(&env, total).await;
    assert_delivered_once(&env, &ids).await;
    // Each account's jobs ran on its shard, through the failover.
    let done = per_shard(&env, QueueName::SendMessage, "done").await;
    assert_eq!(done, vec![PER_SHARD_THROUGH_FAILOVER; 3]);
    let (status, _) = stop_logged(&mut worker, &log);
    assert!(status.success(), "the worker stopped cleanly: {status:?}");
}
