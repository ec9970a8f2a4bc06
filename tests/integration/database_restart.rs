//! The database killed and started again under load: every message that was
//! pushed is stored (writes wait for the journal before the push is
//! handed on), and none is stored or pushed twice.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use herald_jobs::{QueueName, SendMessage};
use mongodb::bson::doc;

use crate::{
    helpers::{account, enqueue_through_outage, env_with, signal, wait_within},
    ops::free_port,
};

/// Messages sent through the crash.
const MESSAGES: usize = 2_000;

/// The MongoDB-compatible server the setup installs: `secantusd-rs` (or,
/// where it could not be built, `secantusd-py`).
fn server_binary() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain([home.join(".cargo/bin")])
        .collect();
    for name in ["secantusd-rs", "secantusd-py"] {
        if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            return found;
        }
    }
    panic!("no secantusd-rs or secantusd-py found; scripts/setup.sh installs one")
}

/// A private SecantusDB on a free port, in its durable mode, that can be
/// killed (SIGKILL: no chance to flush anything) and started again on the
/// same files. Killed and removed on drop.
struct Database {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Database {
    async fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-secantus-{port}"));
        std::fs::create_dir_all(&dir).expect("private database dir");
        let mut database = Self {
            port,
            dir,
            child: None,
        };
        database.restart().await;
        database
    }

    fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let child = Command::new(server_binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(&self.dir)
            .arg("--sync-on-commit")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the database server runs");
        self.child = Some(child);
        let url = self.url();
        wait_within(
            "the private database to answer",
            Duration::from_secs(60),
            Duration::from_millis(50),
            || {
                let url = url.clone();
                async move {
                    let client = mongodb::Client::with_uri_str(&url).await.ok()?;
                    let pinged = client
                        .database("admin")
                        .run_command(doc! { "ping": 1 })
                        .await
                        .ok()
                        .map(|_| ());
                    client.shutdown().immediate(true).await;
                    pinged
                }
            },
        )
        .await;
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "KILL");
            let _ = child.wait();
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_killed_under_load_keeps_every_message_that_was_pushed() {
    let mut database = Database::start().await;
    let url = database.url();
    let env = env_with(&[
        ("HERALD_MONGODB_URL", &url),
        ("HERALD_WORKER_RETRY_BASE_MS", "200"),
        ("HERALD_WORKER_RETRY_CAP_SECS", "2"),
        ("HERALD_WORKER_SEND_MESSAGE_MAX_ATTEMPTS", "50"),
        ("HERALD_LOG_FORMAT", "json"),
        ("HERALD_WORKER_OPS_BIND", ""),
    ])
    .await;
    let log = std::env::temp_dir().join(format!("{}-database-restart.log", env.namespace));
    let mut worker = env.spawn_herald_logged(&["worker"], &[], &log);

    let account = account();
    let jobs: Vec<SendMessage> = (0..MESSAGES)
        .map(|i| SendMessage::new(account, format!("through the crash {i}"), "kept"))
        .collect();
    let producing = tokio::spawn(enqueue_through_outage(env.settings.clone(), jobs));

    wait_within(
        "the first pushes",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || async { (env.accepted_count().await >= 300).then_some(()) },
    )
    .await;
    database.kill();
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

    signal(&worker, "TERM");
    let status = worker.wait().expect("worker exits");
    let lines = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
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
