//! Scaling out: several worker processes sharing the queues, a worker
//! killed mid-job, and Redis reached through Sentinel.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    path::PathBuf,
    process::Command,
    time::Duration,
};

use herald_jobs::{MessageId, Producer, QueueName, SendMessage};
use mongodb::bson::doc;

use crate::{
    helpers::{
        account, env, env_with, exited, redis_url, signal, wait_for, wait_for_registered_worker,
        wait_within, HeraldProcess, ScratchProcess, TestEnv,
    },
    ops::free_port,
};

/// Messages shared by the workers.
const JOBS: usize = 2_000;

/// Like `wait_for`, with patience for thousands of jobs on a busy machine.
/// A deadline against hangs, not a speed requirement.
async fn wait_long<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_within(
        what,
        Duration::from_secs(240),
        Duration::from_millis(200),
        check,
    )
    .await
}

fn log_path(env: &TestEnv, name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{}-{name}.log", env.namespace))
}

async fn redis(env: &TestEnv) -> herald_jobs::RedisConnection {
    herald::queue::connect(env.settings.redis.url.as_str())
        .await
        .expect("Redis")
}

/// Workers heart-beating on `queue`.
async fn live_workers(env: &TestEnv, queue: QueueName) -> usize {
    redis::cmd("ZCARD")
        .arg(format!(
            "{}:workers",
            env.settings.redis.namespace.queue(queue)
        ))
        .query_async(&mut redis(env).await)
        .await
        .expect("ZCARD")
}

async fn enqueue_all(env: &TestEnv, count: usize) -> Vec<MessageId> {
    let account = account();
    let jobs = (0..count)
        .map(|i| SendMessage::new(account, format!("shared {i}"), "to every worker"))
        .collect();
    Producer::connect(&redis_url(), &env.settings.redis.namespace)
        .await
        .expect("producer")
        .with_limits(env.settings.message)
        .enqueue_messages(jobs)
        .await
        .expect("bulk enqueue")
}

/// Every message stored once, and its `new_message` accepted exactly once.
async fn assert_each_stored_and_pushed_once(env: &TestEnv, ids: &[MessageId]) {
    let oids: Vec<_> = ids.iter().map(|id| id.object_id()).collect();
    assert_eq!(
        env.message_count(doc! { "_id": { "$in": oids } }).await as usize,
        ids.len()
    );
    assert_eq!(env.message_count(doc! {}).await as usize, ids.len());
    let mut pushes: HashMap<String, usize> = HashMap::new();
    for request in env.delivered("new_message").await {
        let id = request.data["messageId"]
            .as_str()
            .expect("new_message carries the message id")
            .to_owned();
        *pushes.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = pushes.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "pushed more than once: {twice:?}");
    let expected: HashSet<String> = ids.iter().map(|id| id.to_hex()).collect();
    let pushed: HashSet<String> = pushes.into_keys().collect();
    assert_eq!(pushed, expected, "every message pushed");
    assert_eq!(
        env.queue_set(QueueName::Push, "done").await.len(),
        ids.len()
    );
    assert!(env.queue_set(QueueName::Push, "dead").await.is_empty());
}

/// Pushes a worker log reports as delivered.
fn deliveries_in(log: &PathBuf) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("event delivered") && !l.contains("not recorded"))
        .count()
}

const SMALL_BATCHES: [(&str, &str); 1] = [("HERALD_WORKER_FETCH_BATCH_SIZE", "20")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_2000_messages_each_stored_and_pushed_once() {
    let env = env().await;
    let logs = [log_path(&env, "first"), log_path(&env, "second")];
    let mut workers: Vec<HeraldProcess> = logs
        .iter()
        .map(|log| env.spawn_herald_logged(&["worker"], &SMALL_BATCHES, log))
        .collect();
    wait_for("both workers to register", || async {
        (live_workers(&env, QueueName::SendMessage).await == 2).then_some(())
    })
    .await;

    let ids = enqueue_all(&env, JOBS).await;
    wait_long("every message stored and pushed", || async {
        let stored = env.message_count(doc! {}).await as usize;
        (stored == JOBS && env.accepted_count().await as usize >= JOBS).then_some(())
    })
    .await;

    // Both drain and exit cleanly; then nothing more may arrive.
    for worker in &workers {
        signal(worker, "TERM");
    }
    for worker in &mut workers {
        assert_eq!(exited(worker).await.code(), Some(0));
    }
    assert_each_stored_and_pushed_once(&env, &ids).await;

    let per_worker: Vec<usize> = logs.iter().map(deliveries_in).collect();
    for log in &logs {
        let _ = std::fs::remove_file(log);
    }
    eprintln!("pushes delivered per worker process: {per_worker:?}");
    assert_eq!(per_worker.iter().sum::<usize>(), JOBS, "{per_worker:?}");
    assert!(
        per_worker.iter().all(|n| *n > 0),
        "both processes took part: {per_worker:?}"
    );
}

/// Ids leased (fetched, not acknowledged) by the worker process `pid` on `queue`.
async fn leased_by(env: &TestEnv, queue: QueueName, pid: u32) -> Vec<String> {
    let mut conn = redis(env).await;
    let pattern = format!(
        "{}:inflight:*-{pid}-*",
        env.settings.redis.namespace.queue(queue)
    );
    let mut ids = Vec::new();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    for key in keys {
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("SMEMBERS");
        ids.extend(members);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_jobs_has_them_rerun_by_the_other_nothing_lost_or_doubled() {
    let env = env().await;
    // Until told otherwise the provider holds every push for 2 s, then
    // answers 503: pushes are in flight, none is accepted, all are retried.
    env.script_failures(Some(503), 2_000, 1_000_000).await;
    let logs = [log_path(&env, "killed"), log_path(&env, "survivor")];
    let mut killed = env.spawn_herald_logged(&["worker"], &SMALL_BATCHES, &logs[0]);
    let mut survivor = env.spawn_herald_logged(&["worker"], &SMALL_BATCHES, &logs[1]);
    wait_for("both workers to register", || async {
        (live_workers(&env, QueueName::Push).await == 2).then_some(())
    })
    .await;
    let ids = enqueue_all(&env, JOBS).await;

    // Kill one worker while it holds push jobs (their requests waiting at
    // the provider).
    let leased = wait_long("the first worker to hold push jobs", || async {
        let leased = leased_by(&env, QueueName::Push, killed.id()).await;
        (!leased.is_empty()).then_some(leased)
    })
    .await;
    killed.kill().expect("SIGKILL");
    killed.wait().expect("reaped");
    let leased_at_kill = leased_by(&env, QueueName::Push, killed.id()).await;
    assert!(!leased_at_kill.is_empty(), "leased when killed: {leased:?}");
    eprintln!(
        "push jobs leased by the killed worker: {}",
        leased_at_kill.len()
    );

    // The provider recovers. The survivor re-runs the dead worker's jobs
    // once its heartbeats are overdue (2 s x 2 in config/test.toml).
    env.http
        .delete(format!("{}/_sandbox/failures", env.sandbox_url))
        .send()
        .await
        .expect("sandbox answers");
    wait_long("every message stored and pushed", || async {
        let stored = env.message_count(doc! {}).await as usize;
        let done = env.queue_set(QueueName::Push, "done").await.len();
        (stored == JOBS && done == JOBS).then_some(())
    })
    .await;
    assert!(
        leased_by(&env, QueueName::Push, killed.id())
            .await
            .is_empty(),
        "the dead worker's leases were taken over"
    );
    let done: HashSet<String> = env
        .queue_set(QueueName::Push, "done")
        .await
        .into_iter()
        .collect();
    assert!(
        leased_at_kill.iter().all(|id| done.contains(id)),
        "every job the dead worker held was finished"
    );
    let survivor_log = std::fs::read_to_string(&logs[1]).unwrap_or_default();
    assert!(
        survivor_log.contains("re-queued jobs of workers that stopped heart-beating"),
        "the survivor recovered the orphans"
    );

    signal(&survivor, "TERM");
    assert_eq!(exited(&mut survivor).await.code(), Some(0));
    assert_each_stored_and_pushed_once(&env, &ids).await;
    for log in &logs {
        let _ = std::fs::remove_file(log);
    }
}

/// A `redis-server --sentinel` on a free port, stopped and removed on drop.
struct SentinelProcess {
    _process: ScratchProcess,
    port: u16,
}

impl SentinelProcess {
    /// Starts a sentinel monitoring the Redis at `master_port` as `service`.
    async fn start(service: &str, master_port: u16) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-sentinel-{service}"));
        std::fs::create_dir_all(&dir).expect("sentinel dir");
        let config = dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {service} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {service} 1000\n\
                 sentinel failover-timeout {service} 10000\n",
                dir.display()
            ),
        )
        .expect("sentinel config");
        let mut command = Command::new("redis-server");
        command.arg(&config).arg("--sentinel");
        let sentinel = Self {
            _process: ScratchProcess::spawn(
                &mut command,
                dir,
                "redis-server --sentinel (Debian: redis-server or redis-sentinel)",
            ),
            port,
        };
        let url = format!("redis://127.0.0.1:{port}");
        let service = service.to_owned();
        wait_for("the sentinel to know its master", || {
            let (url, service) = (url.clone(), service.clone());
            async move {
                let mut conn = crate::helpers::try_redis(&url).await?;
                let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&service)
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                addr.map(|_| ())
            }
        })
        .await;
        sentinel
    }

    fn url(&self, service: &str) -> String {
        format!("redis+sentinel://127.0.0.1:{}/{service}", self.port)
    }
}

fn redis_port() -> u16 {
    redis_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or(6379)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_and_a_producer_reach_redis_through_sentinel() {
    let service = format!("herald-{}", mongodb::bson::oid::ObjectId::new().to_hex());
    let sentinel = SentinelProcess::start(&service, redis_port()).await;
    let url = sentinel.url(&service);
    let mut env = env_with(&[("HERALD_REDIS_URL", &url)]).await;
    env.start_worker().await;

    let mut producer = Producer::connect(&url, &env.settings.redis.namespace)
        .await
        .expect("the producer connects through the sentinel");
    let id = producer
        .enqueue_message(SendMessage::new(account(), "via sentinel", "hello"))
        .await
        .expect("enqueue");
    wait_for("the message stored", || env.find_message(id)).await;
    wait_for("its push", || async {
        (env.delivered("new_message").await.len() == 1).then_some(())
    })
    .await;
    env.stop_worker().await.expect("clean stop");
}

/// A private `redis-server` on a free port (optionally a replica), stopped and
/// its directory removed on drop. The directory matters for a replica: it
/// writes the snapshot it receives from its master to disk, and without `--dir`
/// that file would land in the crate's directory.
struct RedisProcess {
    _process: ScratchProcess,
    port: u16,
}

impl RedisProcess {
    async fn start(replica_of: Option<u16>) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-redis-{port}"));
        std::fs::create_dir_all(&dir).expect("private Redis dir");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir);
        if let Some(master) = replica_of {
            command.args(["--replicaof", "127.0.0.1", &master.to_string()]);
        }
        let server = Self {
            _process: ScratchProcess::spawn(&mut command, dir, "redis-server"),
            port,
        };
        let url = format!("redis://127.0.0.1:{port}");
        wait_for("the private Redis to answer", || {
            let url = url.clone();
            async move {
                let info = replication_info(&url).await?;
                let ready = replica_of.is_none() || info.contains("master_link_status:up");
                ready.then_some(())
            }
        })
        .await;
        server
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sentinel_failover_the_worker_drains_and_exits_to_be_restarted() {
    let master = RedisProcess::start(None).await;
    let replica = RedisProcess::start(Some(master.port)).await;
    let service = format!("herald-{}", mongodb::bson::oid::ObjectId::new().to_hex());
    let sentinel = SentinelProcess::start(&service, master.port).await;
    let url = sentinel.url(&service);
    let env = env_with(&[("HERALD_REDIS_URL", &url)]).await;
    let log = log_path(&env, "failover");
    let mut worker = env.spawn_herald_logged(&["worker"], &[], &log);
    // Up and registered on the first master.
    wait_for_registered_worker(&env, &format!("redis://127.0.0.1:{}", master.port)).await;

    fail_over(&sentinel, &service, replica.port).await;

    assert_exited_for_the_new_master(&mut worker, &log, replica.port).await;
}

/// Asks the sentinel to fail `service` over and waits until it names the
/// replica at `replica_port` as the master.
async fn fail_over(sentinel: &SentinelProcess, service: &str, replica_port: u16) {
    let service = service.to_owned();
    let conn = redis::Client::open(format!("redis://127.0.0.1:{}", sentinel.port))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    wait_for("the sentinel to accept a failover", || {
        let mut conn = conn.clone();
        let service = service.clone();
        async move {
            redis::cmd("SENTINEL")
                .arg("failover")
                .arg(&service)
                .query_async::<()>(&mut conn)
                .await
                .ok()
        }
    })
    .await;
    wait_for("the replica to be promoted", || {
        let mut conn = conn.clone();
        let service = service.clone();
        async move {
            let (_, port): (String, u16) = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&service)
                .query_async(&mut conn)
                .await
                .ok()?;
            (port == replica_port).then_some(())
        }
    })
    .await;
}

/// Waits until the Redis at `port` reports itself a replica (Sentinel
/// turned the old master into one after a failover).
async fn wait_until_replica(port: u16) {
    let url = format!("redis://127.0.0.1:{port}");
    wait_for("the old master to become a replica", || {
        let url = url.clone();
        async move {
            let info = replication_info(&url).await?;
            info.contains("role:slave").then_some(())
        }
    })
    .await;
}

/// `INFO replication` of the Redis at `url`, if it answers.
async fn replication_info(url: &str) -> Option<String> {
    let mut conn = crate::helpers::try_redis(url).await?;
    redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sentinel_failover_the_producer_follows_and_web_exits_to_be_restarted() {
    let master = RedisProcess::start(None).await;
    let replica = RedisProcess::start(Some(master.port)).await;
    let service = format!("herald-{}", mongodb::bson::oid::ObjectId::new().to_hex());
    let sentinel = SentinelProcess::start(&service, master.port).await;
    let url = sentinel.url(&service);
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let env = env_with(&[
        ("HERALD_REDIS_URL", &url),
        ("HERALD_WEB_BIND", &bind),
        ("HERALD_WEB_TOKEN", crate::helpers::WEB_TOKEN),
    ])
    .await;
    let log = log_path(&env, "web-failover");
    let mut web = env.spawn_herald_logged(&["web"], &[], &log);
    crate::helpers::wait_for_listener("herald web", port, crate::helpers::PATIENCE).await;
    let mut producer = Producer::connect(&url, &env.settings.redis.namespace)
        .await
        .expect("the producer connects through the sentinel");
    producer
        .enqueue_message(SendMessage::new(account(), "before", "the failover"))
        .await
        .expect("enqueue on the first master");

    fail_over(&sentinel, &service, replica.port).await;
    // A write the old master took between its demotion and Sentinel's
    // reconfiguring it would be lost with Redis's asynchronous
    // replication (a Redis property, not Herald's); wait it out.
    wait_until_replica(master.port).await;
    producer
        .enqueue_message(SendMessage::new(account(), "after", "the failover"))
        .await
        .expect("the producer follows the failover");
    let mut conn = crate::helpers::try_redis(&format!("redis://127.0.0.1:{}", replica.port))
        .await
        .expect("the new master answers");
    let ready: u64 = redis::cmd("LLEN")
        .arg(format!(
            "{}:active",
            env.settings.redis.namespace.queue(QueueName::SendMessage)
        ))
        .query_async(&mut conn)
        .await
        .expect("LLEN");
    assert_eq!(ready, 2, "both jobs are on the new master");

    assert_exited_for_the_new_master(&mut web, &log, replica.port).await;
}

/// Waits for `process` to exit and checks it exited 1, for its supervisor,
/// saying in `log` that the master moved to the replica at `replica_port`;
/// removes the log.
async fn assert_exited_for_the_new_master(
    process: &mut HeraldProcess,
    log: &std::path::Path,
    replica_port: u16,
) {
    let status = exited(process).await;
    let stderr = std::fs::read_to_string(log).unwrap_or_default();
    let _ = std::fs::remove_file(log);
    assert_eq!(status.code(), Some(1), "a failure exit, for the supervisor");
    assert!(stderr.contains("the Redis master moved"), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{replica_port}")),
        "{stderr}"
    );
}
