//! A private world per test: namespace, database, sandbox, worker.

use std::{
    collections::HashMap,
    future::Future,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use apalis::prelude::TaskSink;
use herald::{config::Settings, store::MESSAGE_COLLECTION, worker};
use herald_jobs::{AccountId, MessageId, Producer, QueueName, SendMessage};
use herald_push_sandbox::{self as sandbox, RecordedRequest};
use mongodb::bson::{doc, Document};
use serde_json::Value;
use tokio::{sync::oneshot, task::JoinHandle};

pub const APP_ID: &str = "test-app";
pub const SECRET: &str = "test-secret";
/// The configured operator token of the tests' servers (at least 32
/// characters, as `web.token` must be).
pub const WEB_TOKEN: &str = "test-web-token-0123456789abcdef0123";

/// How long `wait_for` waits before declaring the condition never came.
/// A deadline against hangs, not a speed requirement.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// `worker.idle_wait_ms` in tests: four times [`PATIENCE`].
pub const IDLE_WAIT_MS: &str = "120000";

pub fn redis_url() -> String {
    std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn mongodb_url() -> String {
    std::env::var("HERALD_TEST_MONGODB_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into())
}

/// Sends `method` to `url` with `token` as a bearer and `body` as JSON, each
/// when given; the answer's status and its body as JSON (a body that is
/// not JSON comes back as a JSON string).
pub async fn call_json(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (reqwest::StatusCode, Value) {
    let mut request = http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    let text = response.text().await.expect("a body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A fresh random account id.
pub fn account() -> AccountId {
    AccountId::from(mongodb::bson::oid::ObjectId::new())
}

fn unique_suffix() -> String {
    mongodb::bson::oid::ObjectId::new().to_hex()
}

/// A worker running in this process: its stop switch and its task.
/// How long a dropped [`TestEnv`] waits for its in-process worker to stop
/// before it removes the namespace's keys.
const WORKER_STOP_PATIENCE: Duration = Duration::from_secs(10);

type RunningWorker = (
    oneshot::Sender<()>,
    JoinHandle<Result<(), worker::WorkerError>>,
);

/// One test's namespace, database, sandbox and (optionally) worker.
pub struct TestEnv {
    pub settings: Settings,
    pub vars: HashMap<String, String>,
    pub namespace: String,
    pub database: mongodb::Database,
    pub sandbox_url: String,
    pub http: reqwest::Client,
    redis: herald_jobs::RedisConnection,
    worker: Option<RunningWorker>,
    /// Killed with the environment.
    _sandbox: SandboxProcess,
}

/// Builds a test environment whose sandbox accepts `APP_ID`/`SECRET`.
pub async fn env() -> TestEnv {
    env_with(&[]).await
}

/// Like [`env`], with extra `HERALD_*` variables (e.g. a wrong secret).
pub async fn env_with(extra: &[(&str, &str)]) -> TestEnv {
    if std::env::var_os("TEST_LOG").is_some() {
        let _no_export = herald::telemetry::init(
            &herald::config::LogSettings {
                format: herald::config::LogFormat::Pretty,
                level: "info,herald=debug".into(),
            },
            None,
            "test",
        );
    }
    let sandbox = SandboxProcess::start(0);
    let suffix = unique_suffix();
    let namespace = format!("herald-test-{suffix}");
    let database_name = format!("herald_test_{suffix}");
    let sandbox_url = sandbox.url.clone();

    let mut vars: HashMap<String, String> = [
        (
            "HERALD_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config").to_owned(),
        ),
        ("HERALD_ENV", "test".to_owned()),
        ("HERALD_REDIS_URL", redis_url()),
        ("HERALD_REDIS_NAMESPACE", namespace.clone()),
        ("HERALD_MONGODB_URL", mongodb_url()),
        ("HERALD_MONGODB_DATABASE", database_name.clone()),
        ("HERALD_TUISONGBAO_URL", sandbox_url.clone()),
        ("HERALD_TUISONGBAO_APP_ID", APP_ID.to_owned()),
        ("HERALD_TUISONGBAO_SECRET", SECRET.to_owned()),
        ("HERALD_TUISONGBAO_REQUEST_TIMEOUT_MS", "5000".to_owned()),
        ("HERALD_PUSHER_URL", sandbox_url.clone()),
        ("HERALD_PUSHER_APP_ID", APP_ID.to_owned()),
        ("HERALD_PUSHER_KEY", sandbox::DEFAULT_PUSHER_KEY.to_owned()),
        ("HERALD_PUSHER_SECRET", SECRET.to_owned()),
        ("HERALD_PUSHER_REQUEST_TIMEOUT_MS", "5000".to_owned()),
        // Far beyond PATIENCE: a job that only the idle wait's fallback
        // would start fails its test, so every test also checks that the
        // path it takes wakes the worker.
        ("HERALD_WORKER_IDLE_WAIT_MS", IDLE_WAIT_MS.to_owned()),
        (
            "HERALD_EXPORT_DIR",
            std::env::temp_dir()
                .join(format!("herald-test-exports-{suffix}"))
                .display()
                .to_string(),
        ),
        ("HERALD_EXPORT_COLLECTIONS", "customer,message".to_owned()),
        // `herald web` needs operator credentials to start.
        ("HERALD_WEB_TOKEN", WEB_TOKEN.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    let settings = Settings::load_from(&vars).expect("test settings are valid");
    let redis = herald::queue::connect(settings.redis.url.as_str())
        .await
        .expect("Redis is running (see README: the test command starts it)");
    let database = herald::store::connect(&settings.mongodb)
        .await
        .expect("the MongoDB-compatible server is running (see README)");
    TestEnv {
        settings,
        vars,
        namespace,
        database,
        sandbox_url,
        http: reqwest::Client::new(),
        redis,
        worker: None,
        _sandbox: sandbox,
    }
}

/// The push sandbox as a process (the `herald-push-sandbox` binary), as
/// the tests start s3s-fs and Sockudo: accepting [`APP_ID`], [`SECRET`]
/// and the default Pusher key, on 127.0.0.1. Killed when dropped.
pub struct SandboxProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl SandboxProcess {
    /// Starts it on `port` (0: a free one) and waits until it listens.
    pub fn start(port: u16) -> Self {
        use std::io::{BufRead, BufReader};
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_herald"))
            .with_file_name("herald-push-sandbox");
        assert!(
            bin.exists(),
            "{} is not built: `cargo build -p herald-push-sandbox` (the README's test command builds the whole workspace)",
            bin.display()
        );
        let mut child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--app-id", APP_ID])
            .args(["--secret", SECRET, "--key", sandbox::DEFAULT_PUSHER_KEY])
            // Its own configuration is not read: the arguments say it all.
            .env("HERALD_CONFIG_DIR", "/nonexistent")
            // Its compiled-in defaults log each event at info, on the
            // test's standard error: only what went wrong is worth that.
            .env("HERALD_LOG_LEVEL", "warn")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the sandbox binary starts");
        let mut first = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut first);
        }
        let Some(url) = first
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .map(str::to_owned)
        else {
            let _ = child.kill();
            let status = child.wait();
            panic!("the sandbox did not start ({status:?}): {first:?}");
        };
        Self { child, url }
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestEnv {
    /// Starts the worker in this process, as `herald worker` would.
    pub async fn start_worker(&mut self) {
        assert!(self.worker.is_none(), "worker already running");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(worker::run(self.settings.clone(), async move {
            let _ = rx.await;
        }));
        self.worker = Some((tx, handle));
    }

    /// Starts the worker in this process with other settings (for example
    /// corrected credentials after a restart).
    pub async fn start_worker_with(&mut self, settings: Settings) {
        assert!(self.worker.is_none(), "worker already running");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(worker::run(settings, async move {
            let _ = rx.await;
        }));
        self.worker = Some((tx, handle));
    }

    /// Starts the dashboard in this process on a free port, guarded by
    /// [`WEB_TOKEN`]; returns its base URL.
    /// A new API token bound to `account`, named `name` (the token store's
    /// indexes made first).
    pub async fn account_token(&self, name: &str, account: AccountId) -> String {
        let tokens = herald::store::ApiTokenStore::new(&self.database);
        tokens.ensure_indexes().await.expect("token index");
        let (_, token) = tokens
            .create(name, herald::store::TokenScope::Account(account))
            .await
            .expect("a token bound to the account");
        token
    }

    pub async fn start_web(&self) -> String {
        self.start_web_with(&self.settings).await
    }

    /// Like [`Self::start_web`], with other settings (for example presigned
    /// downloads).
    pub async fn start_web_with(&self, settings: &Settings) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let state = herald::web::WebState::new(
            self.redis.clone(),
            &self.database,
            settings,
            Some(secrecy::SecretString::from(WEB_TOKEN.to_owned())),
        )
        .expect("export storage");
        tokio::spawn(herald::web::serve(listener, state, std::future::pending()));
        url
    }

    /// Stops the in-process worker and returns how it ended.
    pub async fn stop_worker(&mut self) -> Result<(), worker::WorkerError> {
        let (tx, handle) = self.worker.take().expect("worker running");
        let _ = tx.send(());
        handle.await.expect("worker task did not panic")
    }

    /// Whether the in-process worker task has ended (it should not, by itself).
    pub fn worker_finished(&self) -> bool {
        self.worker.as_ref().is_none_or(|(_, h)| h.is_finished())
    }

    /// Enqueues through the public producer client.
    pub async fn enqueue(&self, job: SendMessage) -> MessageId {
        let mut producer =
            Producer::from_connection(self.redis.clone(), &self.settings.redis.namespace)
                .with_limits(self.settings.message);
        producer.enqueue_message(job).await.expect("enqueue")
    }

    /// Enqueues `jobs` with one bulk call of the public producer client.
    pub async fn enqueue_bulk(&self, jobs: Vec<SendMessage>) -> Vec<MessageId> {
        let mut producer =
            Producer::from_connection(self.redis.clone(), &self.settings.redis.namespace)
                .with_limits(self.settings.message);
        producer.enqueue_messages(jobs).await.expect("bulk enqueue")
    }

    /// Pushes any JSON onto the send_message queue, bypassing validation,
    /// as a producer in another language (or a buggy one) could.
    pub async fn push_raw(&self, payload: Value) {
        let mut storage = herald::queues::storage::<Value>(
            self.redis.clone(),
            &self.settings,
            QueueName::SendMessage,
        );
        storage.push(payload).await.expect("raw push");
    }

    pub fn messages(&self) -> mongodb::Collection<Document> {
        self.database.collection(MESSAGE_COLLECTION)
    }

    pub async fn message_count(&self, filter: Document) -> u64 {
        self.messages()
            .count_documents(filter)
            .await
            .expect("count")
    }

    pub async fn find_message(&self, id: MessageId) -> Option<Document> {
        self.messages()
            .find_one(doc! { "_id": id.object_id() })
            .await
            .expect("find")
    }

    /// The sandbox's JSON answer to `GET /_sandbox/{what}`.
    async fn sandbox_json<T: serde::de::DeserializeOwned>(&self, what: &str) -> T {
        let url = format!("{}/_sandbox/{what}", self.sandbox_url);
        let answer = self.http.get(url).send().await.expect("sandbox answers");
        answer.json().await.expect("sandbox JSON")
    }

    /// Every request the sandbox received, oldest first.
    pub async fn sandbox_requests(&self) -> Vec<RecordedRequest> {
        self.sandbox_json("events").await
    }

    /// Requests answered 200 so far (cheap: no event bodies).
    pub async fn accepted_count(&self) -> u64 {
        let stats: sandbox::SandboxStats = self.sandbox_json("stats").await;
        stats.by_status.get("200").copied().unwrap_or(0)
    }

    /// Accepted events called `name`.
    pub async fn delivered(&self, name: &str) -> Vec<RecordedRequest> {
        self.sandbox_requests()
            .await
            .into_iter()
            .filter(|r| r.status == 200 && r.name.as_deref() == Some(name))
            .collect()
    }

    /// How many times the sandbox accepted each message's `new_message`,
    /// by message id.
    pub async fn pushes_per_message(&self) -> HashMap<String, usize> {
        let mut pushes: HashMap<String, usize> = HashMap::new();
        for event in self.delivered("new_message").await {
            let id = event.data["messageId"].as_str().unwrap_or_default();
            *pushes.entry(id.to_owned()).or_default() += 1;
        }
        pushes
    }

    /// Scripts the sandbox's next `count` answers.
    pub async fn script_failures(&self, status: Option<u16>, delay_ms: u64, count: u32) {
        self.script_sandbox(
            serde_json::json!({ "status": status, "delayMs": delay_ms, "count": count }),
        )
        .await;
    }

    /// Makes the sandbox take the next `count` events and never answer.
    pub async fn script_hangs(&self, count: u32) {
        self.script_sandbox(serde_json::json!({ "hang": true, "count": count }))
            .await;
    }

    /// Scripts the sandbox with a whole plan (see `herald_push_sandbox`:
    /// `status`, `delayMs`, `count`, `skip`, `retryAfterSecs`, `hang`).
    pub async fn script_sandbox(&self, plan: Value) {
        let response = self
            .http
            .post(format!("{}/_sandbox/failures", self.sandbox_url))
            .json(&plan)
            .send()
            .await
            .expect("sandbox answers");
        assert!(
            response.status().is_success(),
            "{:?}",
            response.text().await
        );
    }

    /// The moment a fault test breaks something: a `herald worker` process
    /// (standard error in a log file named after `label`) working through
    /// `count` messages of one account that are still being enqueued
    /// ([`enqueue_through_outage`]), `first` of them pushed already.
    /// Returns the worker, its log and the producer's task.
    pub async fn messages_flowing(
        &self,
        label: &str,
        count: usize,
        first: u64,
    ) -> (
        HeraldProcess,
        std::path::PathBuf,
        JoinHandle<Vec<MessageId>>,
    ) {
        let log = std::env::temp_dir().join(format!("{}-{label}.log", self.namespace));
        let worker = self.spawn_herald_logged(&["worker"], &[], &log);
        let account = account();
        let jobs: Vec<SendMessage> = (0..count)
            .map(|i| SendMessage::new(account, format!("{label} {i}"), "through a fault"))
            .collect();
        let producing = tokio::spawn(enqueue_through_outage(self.settings.clone(), jobs));
        wait_within(
            "the first pushes",
            Duration::from_secs(60),
            Duration::from_millis(20),
            || async { (self.accepted_count().await >= first).then_some(()) },
        )
        .await;
        (worker, log, producing)
    }

    /// Members of a queue's Redis set (`dead`, `done`, ...).
    pub async fn queue_set(&self, queue: QueueName, set: &str) -> Vec<String> {
        self.shard_set(queue, 0, set).await
    }

    /// Members of a Redis set (`dead`, `done`, ...) of shard `shard` of
    /// `queue` (shard 0 is the queue itself when it has one shard).
    pub async fn shard_set(&self, queue: QueueName, shard: u16, set: &str) -> Vec<String> {
        let name = self.settings.redis.namespace.queue_shard(queue, shard);
        let key = format!("{name}:{set}");
        let mut conn = self.redis.clone();
        // done and dead are sorted sets (by finish time), inflight sets plain.
        let read = if set == "done" || set == "dead" {
            redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).clone()
        } else {
            redis::cmd("SMEMBERS").arg(&key).clone()
        };
        read.query_async(&mut conn).await.expect("members")
    }

    /// A job's metadata hash (status, attempts, result).
    pub async fn job_meta(&self, queue: QueueName, task_id: &str) -> HashMap<String, String> {
        let key = format!(
            "{}:meta:{task_id}",
            self.settings.redis.namespace.queue(queue)
        );
        let mut conn = self.redis.clone();
        redis::cmd("HGETALL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("HGETALL")
    }

    /// Pushes any JSON onto `queue`, bypassing validation.
    pub async fn push_raw_to(&self, queue: QueueName, payload: Value) {
        let mut storage =
            herald::queues::storage::<Value>(self.redis.clone(), &self.settings, queue);
        storage.push(payload).await.expect("raw push");
    }

    /// Puts `payload` — any bytes at all — on `queue` as one job, the way a
    /// producer writing the queue's Redis layout itself (or a bug, or an
    /// operator's hand) would; returns its id.
    pub async fn push_bytes(&self, queue: QueueName, payload: &[u8]) -> String {
        self.write_raw_job(queue, payload, true).await
    }

    /// Like [`Self::push_bytes`], without the wake token a producer pushes
    /// (see `herald_jobs::enqueue`): an idle worker finds the job only when
    /// its idle wait ends.
    pub async fn push_bytes_without_waking(&self, queue: QueueName, payload: &[u8]) -> String {
        self.write_raw_job(queue, payload, false).await
    }

    async fn write_raw_job(&self, queue: QueueName, payload: &[u8], wake: bool) -> String {
        let name = self.settings.redis.namespace.queue(queue);
        let id = ulid::Ulid::generate().to_string();
        let mut conn = self.redis.clone();
        redis::pipe()
            .atomic()
            .hset(format!("{name}:data"), &id, payload)
            .hset_multiple(
                format!("{name}:meta:{id}"),
                &[
                    ("attempts", "0"),
                    ("max_attempts", "10"),
                    ("status", "Pending"),
                    ("idempotency_key", ""),
                ],
            )
            .rpush(format!("{name}:active"), &id)
            .query_async::<()>(&mut conn)
            .await
            .expect("raw job written");
        if wake {
            redis::pipe()
                .atomic()
                .lpush(format!("{name}:wake"), "1")
                .ltrim(format!("{name}:wake"), 0, 0)
                .query_async::<()>(&mut conn)
                .await
                .expect("wake token written");
        }
        id
    }

    /// A job's run history, oldest first.
    pub async fn job_history(&self, queue: QueueName, task_id: &str) -> Vec<Value> {
        let key = format!(
            "{}:history:{task_id}",
            self.settings.redis.namespace.queue(queue)
        );
        let mut conn = self.redis.clone();
        let entries: Vec<String> = redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .expect("LRANGE");
        entries
            .iter()
            .map(|e| serde_json::from_str(e).expect("history entries are JSON"))
            .collect()
    }

    /// Spawns the real `herald` binary with this environment's settings.
    pub fn spawn_herald(&self, args: &[&str]) -> HeraldProcess {
        HeraldProcess(
            Command::new(env!("CARGO_BIN_EXE_herald"))
                .args(args)
                .envs(&self.vars)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("herald binary runs"),
        )
    }

    /// Spawns the real `herald` binary with extra variables, its standard
    /// error going to `log` (so a chatty process never blocks on a full pipe).
    pub fn spawn_herald_logged(
        &self,
        args: &[&str],
        extra: &[(&str, &str)],
        log: &std::path::Path,
    ) -> HeraldProcess {
        let file = std::fs::File::create(log).expect("log file");
        HeraldProcess(
            Command::new(env!("CARGO_BIN_EXE_herald"))
                .args(args)
                .envs(&self.vars)
                .envs(extra.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::from(file))
                .spawn()
                .expect("herald binary runs"),
        )
    }

    /// Makes an operator token for `name` with `role` through the CLI, as
    /// an operator would; returns its id and its secret.
    pub fn operator_token(&self, name: &str, role: &str) -> (String, String) {
        let output = self.run_herald(
            &["token", "create", "--operator", name, "--role", role],
            &[],
        );
        assert!(
            output.status.success(),
            "herald token create: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let secret = String::from_utf8(output.stdout)
            .expect("the secret is text")
            .trim()
            .to_owned();
        assert!(
            secret.starts_with("hro_") && secret.len() == 68,
            "{secret:?}"
        );
        // "operator token <id> for <name> (<role>); ..."
        let message = String::from_utf8_lossy(&output.stderr);
        let id = message
            .split_whitespace()
            .nth(2)
            .expect("the token's id")
            .to_owned();
        (id, secret)
    }

    /// Runs the real `herald` binary to completion.
    pub fn run_herald(&self, args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(args)
            .envs(&self.vars)
            .envs(extra.iter().copied())
            .output()
            .expect("herald binary runs")
    }
}

/// Enqueues `jobs` through the public producer in chunks of 20, 20 ms
/// apart, so that messages keep flowing while a test breaks something; a
/// chunk is tried again while Redis is away (the producer's enqueue
/// idempotency keys make a retried chunk a no-op for the messages that made
/// it in).
pub async fn enqueue_through_outage(settings: Settings, jobs: Vec<SendMessage>) -> Vec<MessageId> {
    let mut producer = Producer::connect(&settings.redis.url, &settings.redis.namespace)
        .await
        .expect("producer")
        .with_limits(settings.message);
    let mut ids = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(20) {
        loop {
            match producer.enqueue_messages(chunk.to_vec()).await {
                Ok(chunk_ids) => {
                    ids.extend(chunk_ids);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ids
}

/// A child process and its scratch directory: the process is killed and
/// the directory removed when dropped.
pub struct ScratchProcess {
    child: Child,
    dir: PathBuf,
}

impl ScratchProcess {
    /// Runs `command` with its output discarded, owning `dir`; `what`
    /// names the program in the failure message (with how to install it).
    pub fn spawn(command: &mut Command, dir: PathBuf, what: &str) -> Self {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{what} runs: {e}"));
        Self { child, dir }
    }
}

impl Drop for ScratchProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A connection to the Redis at `url`, or `None` while it does not answer
/// (for polling a server that is starting or restarting).
pub async fn try_redis(url: &str) -> Option<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).ok()?;
    client.get_multiplexed_async_connection().await.ok()
}

/// Waits until a worker of `env`'s namespace has registered on the push
/// queue of the Redis at `redis_url` (a worker process is up).
pub async fn wait_for_registered_worker(env: &TestEnv, redis_url: &str) {
    let key = format!(
        "{}:workers",
        env.settings.redis.namespace.queue(QueueName::Push)
    );
    wait_for("a worker to register", || async {
        let mut conn = try_redis(redis_url).await?;
        let n: usize = redis::cmd("ZCARD")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .ok()?;
        (n > 0).then_some(())
    })
    .await;
}

/// Polls `check` until it returns `Some`, or fails the test after
/// [`PATIENCE`] naming `what` was awaited.
pub async fn wait_for<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_within(what, PATIENCE, Duration::from_millis(50), check).await
}

/// Polls `check` every `every` until it returns `Some`, or fails the test
/// after `patience` naming `what` was awaited. A deadline against hangs,
/// not a speed requirement.
pub async fn wait_within<T, F, Fut>(
    what: &str,
    patience: Duration,
    every: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < patience, "timed out waiting for {what}");
        tokio::time::sleep(every).await;
    }
}

/// A `herald` child process, killed when dropped if it is still running,
/// so a test that fails half-way leaves no worker behind (one left running
/// would compete with every later test and benchmark for the machine).
pub struct HeraldProcess(Child);

impl std::ops::Deref for HeraldProcess {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for HeraldProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for HeraldProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The lines of `text` that are JSON (a log with `HERALD_LOG_FORMAT=json`,
/// `herald queue status`), as values; any other line is skipped.
pub fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Stops a `herald` process started with its standard error in `log`
/// (SIGTERM), and returns how it exited and what it logged; the log file
/// is removed.
pub fn stop_logged(
    process: &mut HeraldProcess,
    log: &std::path::Path,
) -> (std::process::ExitStatus, String) {
    assert!(
        process.try_wait().expect("try_wait").is_none(),
        "the process had exited by itself:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    signal(process, "TERM");
    let status = process.wait().expect("the process exits");
    let lines = std::fs::read_to_string(log).unwrap_or_default();
    let _ = std::fs::remove_file(log);
    (status, lines)
}

/// Waits for `child` to exit and returns how it did; fails the test if it
/// has not within the usual patience (a deadline against hangs).
pub async fn exited(child: &mut Child) -> std::process::ExitStatus {
    wait_for("a process to exit", || {
        let status = child.try_wait().expect("try_wait");
        async move { status }
    })
    .await
}

/// Sends signal `name` (e.g. `TERM`) to `child` with kill(1).
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
}

impl Drop for TestEnv {
    /// Removes the namespace's keys and drops the database. Runs on its own
    /// thread and runtime, since Drop cannot await.
    fn drop(&mut self) {
        if let Some((tx, handle)) = self.worker.take() {
            let _ = tx.send(());
            // On a multi-threaded runtime the worker's tasks run on beside
            // this thread: let it stop (its last heartbeat and receipts
            // written) before the cleanup, or a late write re-creates a key
            // after it. A current-thread runtime runs nothing while this
            // blocks, and drops the tasks with it.
            let multi_threaded = tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
                runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
            });
            let deadline = std::time::Instant::now() + WORKER_STOP_PATIENCE;
            while multi_threaded && !handle.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            handle.abort();
        }
        let _ = std::fs::remove_dir_all(&self.settings.export.dir);
        // The namespace's keys, and any an earlier release's layout left.
        let patterns = [
            self.settings.redis.namespace.key_pattern(),
            self.settings.redis.namespace.legacy_pattern(),
        ];
        let url = self.settings.redis.url.clone();
        let database = self.settings.mongodb.database.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let patience = herald_jobs::Patience::default();
                if let Ok(mut conn) = herald_jobs::RedisConnection::open(&url, patience).await {
                    for pattern in &patterns {
                        // SCAN, not KEYS: other tests share the server.
                        let keys = conn.scan_match(pattern).await.unwrap_or_default();
                        for chunk in keys.chunks(1000) {
                            let _: redis::RedisResult<()> =
                                redis::cmd("UNLINK").arg(chunk).query_async(&mut conn).await;
                        }
                    }
                }
                if let Ok(client) = mongodb::Client::with_uri_str(mongodb_url()).await {
                    let _ = client.database(&database).drop().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A tool binary the tests start: the path in the environment variable
/// `override_var`, else `name` on `PATH`, else in Cargo's bin directory
/// (where `cargo install` puts it); `None` if none is found.
pub fn installed_binary(override_var: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(override_var) {
        return Some(PathBuf::from(path));
    }
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin"));
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(cargo_bin)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Waits until something listens on 127.0.0.1:`port` (a server a test
/// started), at most `within`; `what` names it if it never does.
pub async fn wait_for_listener(what: &str, port: u16, within: Duration) {
    wait_within(
        &format!("{what} to listen on port {port}"),
        within,
        Duration::from_millis(50),
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
}
