//! Redis stopped and started again under load, with its append-only file:
//! a live worker keeps its leases and what it knows, and nothing is lost or
//! pushed twice.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use herald_jobs::{QueueName, SendMessage};
use mongodb::bson::doc;

use crate::{
    helpers::{account, enqueue_through_outage, env_with, signal, wait_within},
    ops::free_port,
};

/// Messages sent through the outage.
const MESSAGES: usize = 2_000;
/// How long Redis stays down.
const OUTAGE: Duration = Duration::from_secs(5);

/// A private `redis-server` with its append-only file on (fsync every
/// second, Redis's default), which can be stopped and started again on the
/// same port and directory. Killed and removed on drop.
struct AofRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl AofRedis {
    async fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-aof-redis-{port}"));
        std::fs::create_dir_all(&dir).expect("private Redis dir");
        let mut redis = Self {
            port,
            dir,
            child: None,
        };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) and waits until it has loaded its AOF.
    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.child = Some(child);
        let url = self.url();
        wait_within(
            "the private Redis to answer",
            Duration::from_secs(30),
            Duration::from_millis(20),
            || {
                let url = url.clone();
                async move {
                    let mut conn = redis::Client::open(url)
                        .ok()?
                        .get_multiplexed_async_connection()
                        .await
                        .ok()?;
                    redis::cmd("PING")
                        .query_async::<String>(&mut conn)
                        .await
                        .ok()
                }
            },
        )
        .await;
    }

    /// Stops the server as an operator or a supervisor would: SIGTERM,
    /// which makes Redis write out its AOF and exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            let status = child.wait().expect("redis-server exits");
            assert!(status.success(), "redis-server stopped cleanly: {status:?}");
        }
    }
}

impl Drop for AofRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Members of the set `key`, read on a connection of its own (`None` if
/// Redis does not answer).
async fn set_size(url: &str, key: &str) -> Option<usize> {
    let mut conn = redis::Client::open(url)
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()?;
    redis::cmd("SCARD")
        .arg(key)
        .query_async(&mut conn)
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_under_load_loses_nothing_and_pushes_nothing_twice() {
    let mut redis = AofRedis::start().await;
    let url = redis.url();
    let env = env_with(&[
        ("HERALD_REDIS_URL", &url),
        ("HERALD_LOG_FORMAT", "json"),
        ("HERALD_WORKER_OPS_BIND", ""),
    ])
    .await;
    // A provider taking 30 ms per event, so that pushes are in flight (and
    // their receipts and acknowledgements on their way) when Redis stops.
    env.script_failures(None, 30, 1_000_000).await;
    let log = std::env::temp_dir().join(format!("{}-redis-restart.log", env.namespace));
    let mut worker = env.spawn_herald_logged(&["worker"], &[], &log);

    let account = account();
    let jobs: Vec<SendMessage> = (0..MESSAGES)
        .map(|i| SendMessage::new(account, format!("through the outage {i}"), "once"))
        .collect();
    let producing = tokio::spawn(enqueue_through_outage(env.settings.clone(), jobs));

    // Stop Redis once messages are flowing, with jobs leased, running and
    // finishing at that moment.
    wait_within(
        "the first pushes",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || async { (env.accepted_count().await >= 200).then_some(()) },
    )
    .await;
    redis.stop();
    tokio::time::sleep(OUTAGE).await;
    redis.restart().await;
    let restarted = Instant::now();
    // Jobs leased before the outage may have been pushed during it; what
    // counts is the first push after it.
    let pushed_before = env.accepted_count().await;
    let first_push_after = wait_within(
        "a push after the restart",
        Duration::from_secs(60),
        Duration::from_millis(10),
        || async { (env.accepted_count().await > pushed_before).then(|| restarted.elapsed()) },
    )
    .await;

    let ids = producing.await.expect("producer task");
    assert_eq!(ids.len(), MESSAGES);
    let push_done = format!(
        "{}:done",
        env.settings.redis.namespace.queue(QueueName::Push)
    );
    let everything = wait_within(
        "every message pushed",
        Duration::from_secs(240),
        Duration::from_millis(100),
        || async {
            let done = set_size(&url, &push_done).await?;
            (done >= MESSAGES).then(|| restarted.elapsed())
        },
    )
    .await;

    // Zero lost, zero doubled.
    assert_eq!(env.message_count(doc! {}).await as usize, MESSAGES);
    let mut pushes: HashMap<String, usize> = HashMap::new();
    for event in env.delivered("new_message").await {
        let id = event.data["messageId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        *pushes.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = pushes.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "pushed more than once: {twice:?}");
    for id in &ids {
        assert_eq!(
            pushes.get(&id.to_hex()),
            Some(&1),
            "message {id} pushed once"
        );
    }
    for queue in [QueueName::SendMessage, QueueName::Push] {
        let dead = format!("{}:dead", env.settings.redis.namespace.queue(queue));
        assert_eq!(
            set_size(&url, &dead).await,
            Some(0),
            "{queue:?} has dead jobs"
        );
    }

    // The same worker carried on: no restart, no leases left to the
    // heartbeat timeout, its outage and recovery in the log.
    assert!(
        worker.try_wait().expect("try_wait").is_none(),
        "worker exited"
    );
    signal(&worker, "TERM");
    let status = worker.wait().expect("worker exits");
    let lines = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(status.success(), "{status:?}");
    assert!(
        !lines.contains("restarting"),
        "a worker was rebuilt:\n{lines}"
    );
    assert!(
        !lines.contains("stopped heart-beating"),
        "jobs waited for the heartbeat timeout:\n{lines}"
    );
    assert!(
        lines.contains("Redis call failed"),
        "the outage was seen:\n{lines}"
    );
    assert!(lines.contains("Redis answers again"), "{lines}");
    let kept = |what: &str| lines.lines().filter(|l| l.contains(what)).count();
    eprintln!(
        "worker log: {} calls failed first, {} recoveries, {} receipt batches kept, {} written late",
        kept("Redis call failed;"),
        kept("Redis answers again"),
        kept("delivery receipts not written"),
        kept("delivery receipts written now"),
    );
    eprintln!(
        "Redis restart: down {OUTAGE:?}; first push {first_push_after:?} after it answered again; \
         all {MESSAGES} pushed {everything:?} after it answered again"
    );
}
