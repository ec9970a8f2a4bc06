//! Sending messages into Herald at a fixed rate, over HTTP or through the
//! Rust producer, and matching each with its `new_message` event at the
//! recorder.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use herald_jobs::{AccountId, Producer, SendMessage};
use serde_json::json;

use super::process::Spawned;
use crate::{pipeline::recorder::Receipts, queue::BenchError};

/// When each message (or awaited event) was sent, by its receipt id.
pub(super) type Sent = HashMap<String, Instant>;

/// The way into Herald a message takes.
#[derive(Clone)]
pub(super) enum Path {
    /// `POST /v1/messages` to `herald web`, with an API token bound to the
    /// messages' account.
    Http {
        /// The client (keeps its connections alive between requests).
        http: reqwest::Client,
        /// `{web}/v1/messages`.
        url: String,
        /// The API token.
        token: String,
    },
    /// `Producer::enqueue_message` (boxed: a producer is large, and a path
    /// is cloned into every send's task).
    Producer(Box<Producer>),
}

impl Path {
    /// Sends one message and waits for Herald's answer; returns the id
    /// the message is stored under.
    pub(super) async fn send(self, job: SendMessage) -> Result<String, BenchError> {
        match self {
            Path::Http { http, url, token } => {
                // As a producer that retries safely would: an idempotency
                // key (a token bound to an account may not name the id).
                let body = json!({
                    "idempotencyKey": job.message_id,
                    "accountId": job.account_id,
                    "title": job.title,
                    "content": job.content,
                });
                let answer = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| BenchError::Enqueue(format!("POST /v1/messages: {e}")))?;
                let status = answer.status();
                if status != reqwest::StatusCode::ACCEPTED {
                    let text = answer.text().await.unwrap_or_default();
                    return Err(BenchError::Enqueue(format!(
                        "POST /v1/messages answered {status}: {text}"
                    )));
                }
                let accepted: serde_json::Value = answer
                    .json()
                    .await
                    .map_err(|e| BenchError::Enqueue(format!("POST /v1/messages: {e}")))?;
                accepted["messageId"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| BenchError::Enqueue(format!("no messageId in {accepted}")))
            }
            Path::Producer(mut producer) => producer
                .enqueue_message(job)
                .await
                .map(|id| id.to_hex())
                .map_err(|e| BenchError::Enqueue(e.to_string())),
        }
    }
}

/// `count` messages for `account`.
pub(super) fn messages(account: AccountId, count: u64, label: &str) -> Vec<SendMessage> {
    (0..count)
        .map(|i| SendMessage::new(account, format!("{label} {i}"), "a light-load message"))
        .collect()
}

/// Sends `jobs` through `path`, one every `1 / rate` seconds from now,
/// each in its own task so a slow answer does not delay the next send.
/// Returns each message's send time (taken just before its call) and the
/// time from the first send to the last.
pub(super) async fn paced(
    path: &Path,
    jobs: Vec<SendMessage>,
    rate: f64,
) -> Result<(Sent, Duration), BenchError> {
    let period = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.into_iter().enumerate() {
        tokio::time::sleep_until(start + period * i as u32).await;
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let at = Instant::now();
            path.send(job).await.map(|id| (id, at))
        }));
    }
    let mut sent = Sent::with_capacity(tasks.len());
    for task in tasks {
        let (id, at) = task
            .await
            .map_err(|e| BenchError::Invalid(format!("a send task failed: {e}")))??;
        sent.insert(id, at);
    }
    let first = sent.values().min().copied();
    let last = sent.values().max().copied();
    let span = match (first, last) {
        (Some(first), Some(last)) => last.saturating_duration_since(first),
        _ => Duration::ZERO,
    };
    Ok((sent, span))
}

/// What [`arrivals`] saw.
pub(super) struct Arrived {
    /// Each awaited event's time from its send to its arrival, sorted.
    pub latencies: Vec<Duration>,
    /// When the last of them arrived.
    pub last: Instant,
}

/// Waits until every receipt id in `sent` has arrived at the recorder
/// (events with other ids, such as a late one of an earlier part, are
/// passed over), checking that `worker` still runs; at most `patience`.
pub(super) async fn arrivals(
    receipts: &Receipts,
    sent: &Sent,
    worker: &mut Spawned,
    patience: Duration,
) -> Result<Arrived, BenchError> {
    let begun = Instant::now();
    let mut seen: HashMap<&str, Duration> = HashMap::with_capacity(sent.len());
    let mut last: Option<Instant> = None;
    while seen.len() < sent.len() {
        for (id, at) in receipts.take() {
            if let Some((key, sent_at)) = sent.get_key_value(&id) {
                if seen
                    .insert(key, at.saturating_duration_since(*sent_at))
                    .is_none()
                {
                    last = last.max(Some(at));
                }
            }
        }
        if seen.len() == sent.len() {
            break;
        }
        worker.ensure_running()?;
        if begun.elapsed() > patience {
            return Err(BenchError::Invalid(format!(
                "{} of {} events reached the stand-in within {} s",
                seen.len(),
                sent.len(),
                patience.as_secs()
            )));
        }
        // Bounded, so a missed notification costs a millisecond, not the run.
        let _ = tokio::time::timeout(Duration::from_millis(5), receipts.arrived.notified()).await;
    }
    let mut latencies: Vec<Duration> = seen.into_values().collect();
    latencies.sort_unstable();
    Ok(Arrived {
        latencies,
        last: last.unwrap_or(begun),
    })
}
