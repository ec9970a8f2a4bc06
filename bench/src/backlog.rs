//! A backlog drained end to end: the full `send_message` pipeline.
//!
//! `jobs` messages are enqueued through the `herald-jobs` producer while no
//! worker runs (all due at once, the case that wedges plain apalis-redis);
//! then a worker is started and the clock runs until every message is stored
//! in MongoDB and every push accepted by a local sandbox. The run then checks
//! that no message was stored or pushed twice. It uses its own Redis
//! namespace and Mongo database and removes both afterwards.

use std::{collections::HashSet, time::Duration, time::Instant};

use herald::{
    config::Settings,
    store::{self, MESSAGE_COLLECTION},
    worker,
};
use herald_jobs::{AccountId, Namespace, Producer, SendMessage};
use herald_push_sandbox::{self as sandbox, RecordedRequest, SandboxCredentials, SandboxStats};
use mongodb::bson::doc;
use secrecy::ExposeSecret;

use crate::{queue::BenchError, Row};

/// What a backlog run measured and verified.
#[derive(Debug)]
pub struct BacklogReport {
    /// Time to enqueue the backlog.
    pub enqueue: Row,
    /// Time from the worker's start until all was stored and pushed.
    pub drain: Row,
    /// Documents in the collection at the end.
    pub stored: u64,
    /// Distinct message ids among accepted pushes.
    pub pushed_distinct: usize,
    /// Accepted pushes in all.
    pub pushed_total: usize,
}

/// Runs the backlog workload with `settings` (Redis, MongoDB, worker tuning).
/// With `live`, the worker starts before the jobs are enqueued (jobs arrive
/// while it runs) and the clock runs from the first enqueue.
pub async fn run(settings: &Settings, jobs: u64, live: bool) -> Result<BacklogReport, BenchError> {
    let suffix = mongodb::bson::oid::ObjectId::new().to_hex();
    let mut settings = settings.clone();
    settings.redis.namespace = Namespace::parse(&format!("herald-bench-{suffix}"))
        .map_err(|e| BenchError::Enqueue(e.to_string()))?;
    settings.mongodb.database = format!("herald_bench_{suffix}");

    let (sandbox_url, sandbox_task) = private_sandbox(&mut settings).await?;

    let database = store::connect(&settings.mongodb)
        .await
        .map_err(|e| BenchError::Enqueue(e.to_string()))?;
    let result = drain(&settings, &database, &sandbox_url, jobs, live).await;

    let _ = database.drop().await;
    let mut conn = herald::queue::connect(settings.redis.url.as_str()).await?;
    super::queue::cleanup(&mut conn, &settings.redis.namespace.key_pattern()).await?;
    sandbox_task.abort();
    result
}

/// Starts a push sandbox of its own on a free loopback port and points
/// `settings` at it. Returns its URL and its task (abort it when done).
pub(crate) async fn private_sandbox(
    settings: &mut Settings,
) -> Result<(String, tokio::task::JoinHandle<std::io::Result<()>>), BenchError> {
    let (addr, task) = sandbox::spawn(
        "127.0.0.1:0".parse().expect("literal address"),
        SandboxCredentials {
            app_id: settings.tuisongbao.app_id.clone(),
            secret: settings.tuisongbao.secret.expose_secret().to_owned(),
        },
    )
    .await
    .map_err(|e| BenchError::Enqueue(format!("sandbox: {e}")))?;
    let url = format!("http://{addr}");
    settings.tuisongbao.url = reqwest::Url::parse(&url).expect("a bound address is a URL");
    Ok((url, task))
}

/// Events the sandbox at `sandbox_url` accepted so far (0 while it does
/// not answer).
pub(crate) async fn accepted_pushes(http: &reqwest::Client, sandbox_url: &str) -> u64 {
    let stats: SandboxStats = match http
        .get(format!("{sandbox_url}/_sandbox/stats"))
        .send()
        .await
    {
        Ok(response) => response.json().await.unwrap_or_default(),
        Err(_) => SandboxStats::default(),
    };
    stats.by_status.get("200").copied().unwrap_or(0)
}

fn spawn_worker(
    settings: &Settings,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<Result<(), worker::WorkerError>> {
    let mut settings = settings.clone();
    settings.worker.ops_bind = None; // the benchmark's in-process worker needs no probes
    tokio::spawn(worker::run(settings, async move {
        let _ = stopped.await;
    }))
}

async fn drain(
    settings: &Settings,
    database: &mongodb::Database,
    sandbox_url: &str,
    jobs: u64,
    live: bool,
) -> Result<BacklogReport, BenchError> {
    let account = AccountId::from(mongodb::bson::oid::ObjectId::new());
    let messages: Vec<SendMessage> = (0..jobs)
        .map(|i| SendMessage::new(account, format!("broadcast {i}"), "to every user"))
        .collect();
    let mut producer = Producer::connect(&settings.redis.url, &settings.redis.namespace)
        .await
        .map_err(|e| BenchError::Enqueue(e.to_string()))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut stopped = Some(stopped);
    let mut running = None;
    if live {
        running = stopped.take().map(|rx| spawn_worker(settings, rx));
    }
    let start = Instant::now();
    let enqueue_start = start;
    producer
        .enqueue_messages(messages)
        .await
        .map_err(|e| BenchError::Enqueue(e.to_string()))?;
    let enqueue = Row {
        name: "enqueue (herald-jobs producer, bulk)".into(),
        count: jobs,
        elapsed: enqueue_start.elapsed(),
    };
    let (start, running) = match (running, stopped.take()) {
        (Some(running), _) => (enqueue_start, running),
        (None, Some(rx)) => (Instant::now(), spawn_worker(settings, rx)),
        (None, None) => return Err(BenchError::Stuck("the worker could not start".into())),
    };
    let collection = database.collection::<mongodb::bson::Document>(MESSAGE_COLLECTION);
    let http = reqwest::Client::new();
    loop {
        if running.is_finished() {
            return Err(BenchError::Stuck("the worker stopped early".into()));
        }
        let stored = collection.count_documents(doc! {}).await.unwrap_or(0);
        let accepted = accepted_pushes(&http, sandbox_url).await;
        if stored >= jobs && accepted >= jobs {
            break;
        }
        if start.elapsed() > Duration::from_secs(1800) {
            return Err(BenchError::Stuck(format!(
                "backlog ({stored} stored, {accepted} pushed)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain = Row {
        name: if live {
            "enqueued while running: stored and pushed".into()
        } else {
            "drain: stored in MongoDB and pushed".into()
        },
        count: jobs,
        elapsed: start.elapsed(),
    };
    // Let late duplicates, if any, arrive before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop.send(());
    let _ = running.await;

    let stored = collection.count_documents(doc! {}).await.unwrap_or(0);
    let events: Vec<RecordedRequest> = http
        .get(format!("{sandbox_url}/_sandbox/events"))
        .send()
        .await
        .map_err(|e| BenchError::Enqueue(e.to_string()))?
        .json()
        .await
        .map_err(|e| BenchError::Enqueue(e.to_string()))?;
    let accepted: Vec<&RecordedRequest> = events
        .iter()
        .filter(|e| e.status == 200 && e.name.as_deref() == Some("new_message"))
        .collect();
    let distinct: HashSet<&str> = accepted
        .iter()
        .filter_map(|e| e.data["messageId"].as_str())
        .collect();
    Ok(BacklogReport {
        enqueue,
        drain,
        stored,
        pushed_distinct: distinct.len(),
        pushed_total: accepted.len(),
    })
}
