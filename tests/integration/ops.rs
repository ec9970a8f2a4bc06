//! Operations endpoints: /healthz, /readyz and /metrics on the worker and
//! on `herald web`, and `herald web` under SIGTERM.

use std::{collections::HashMap, time::Duration};

use herald::export::status::ExportStatusStore;
use herald_jobs::{Export, Producer, QueueName, SendMessage};
use serde_json::{json, Value};

use crate::helpers::{account, env_with, exited, redis_url, signal, wait_for, TestEnv, WEB_TOKEN};

/// A port nobody listens on right now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One sample line of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Parses the exposition text strictly enough to catch malformed output:
/// every sample belongs to a family declared by `# TYPE`, every line is a
/// comment or `name{labels} value`, and the text ends with `# EOF`.
fn parse_metrics(text: &str) -> (HashMap<String, String>, Vec<Sample>) {
    let mut types = HashMap::new();
    let mut samples = Vec::new();
    assert_eq!(text.lines().last(), Some("# EOF"), "{text}");
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "type of {name}: {kind}"
            );
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# UNIT ") || line == "# EOF",
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let labels = body
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').expect("label=value");
                        let v = v
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .expect("quoted label value");
                        (k.to_owned(), v.to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), HashMap::new()),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name}"
        );
        let family = types
            .keys()
            .find(|family| {
                name == **family
                    || ["_total", "_bucket", "_sum", "_count", "_created"]
                        .iter()
                        .any(|suffix| name == format!("{family}{suffix}"))
            })
            .unwrap_or_else(|| panic!("{name} has no # TYPE"));
        assert!(!family.is_empty());
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    (types, samples)
}

/// The value of `name` with exactly these labels (0 when absent).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .unwrap_or(0.0)
}

async fn get(env: &TestEnv, url: &str) -> (u16, String) {
    let response = env.http.get(url).send().await.expect("answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

async fn scrape(env: &TestEnv, base: &str) -> (HashMap<String, String>, Vec<Sample>) {
    let response = env
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    parse_metrics(&response.text().await.unwrap())
}

/// Enqueues an export of `account`'s messages (their titles) under a new
/// key, with its status record queued as `/v1/exports` would.
pub async fn enqueue_title_export(env: &TestEnv, account: herald_jobs::AccountId) {
    let key = mongodb::bson::oid::ObjectId::new().to_hex();
    ExportStatusStore::new(&env.database)
        .queued(
            account,
            &herald_jobs::ExportKey::parse(&key).expect("export key"),
            "message",
        )
        .await
        .expect("status record");
    let export: Export = serde_json::from_value(json!({
        "accountId": account.to_hex(),
        "key": key,
        "collection": "message",
        "fields": [{ "path": "title", "title": "Title" }],
    }))
    .expect("export job");
    Producer::connect(&redis_url(), &env.settings.redis.namespace)
        .await
        .expect("producer")
        .enqueue_export(export)
        .await
        .expect("enqueue export");
}

/// Waits until `{base}/healthz` answers 200.
pub async fn wait_healthy(env: &TestEnv, base: &str, what: &str) {
    wait_for(what, || async {
        let response = env.http.get(format!("{base}/healthz")).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_serves_health_readiness_and_job_metrics() {
    let port = free_port().to_string();
    let bind = format!("127.0.0.1:{port}");
    let mut env = env_with(&[("HERALD_WORKER_OPS_BIND", &bind)]).await;
    let base = format!("http://{bind}");
    env.start_worker().await;
    wait_healthy(&env, &base, "the ops listener").await;

    let (status, body) = get(&env, &format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({"status": "ready", "redis": {"status": "up"}, "mongodb": {"status": "up"}})
    );

    let (types, before) = scrape(&env, &base).await;
    for (family, kind) in [
        ("herald_jobs_done", "counter"),
        ("herald_jobs_failed", "counter"),
        ("herald_job_duration_seconds", "histogram"),
        ("herald_push_duration_seconds", "histogram"),
        ("herald_export_rows", "counter"),
        ("herald_message_insert_batch_size", "histogram"),
        ("herald_message_insert_seconds", "histogram"),
        ("herald_queue_jobs", "gauge"),
        ("herald_queue_workers", "gauge"),
    ] {
        assert_eq!(
            types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    assert_eq!(
        value(&before, "herald_jobs_done_total", &[("queue", "push")]),
        0.0
    );

    // Three good messages and one that fails validation.
    let account = account();
    for i in 0..3 {
        env.enqueue(SendMessage::new(account, format!("m{i}"), "body"))
            .await;
    }
    env.push_raw(json!({"accountId": "nope"})).await;
    wait_for("three pushes and one dead job", || async {
        let dead = env.queue_set(QueueName::SendMessage, "dead").await.len();
        (env.delivered("new_message").await.len() == 3 && dead == 1).then_some(())
    })
    .await;
    // And an export of those three messages.
    enqueue_title_export(&env, account).await;
    wait_for("export_finish", || async {
        (env.delivered("export_finish").await.len() == 1).then_some(())
    })
    .await;

    let samples = wait_for("the counters to include every run", || async {
        let (_, samples) = scrape(&env, &base).await;
        let pushed = value(&samples, "herald_jobs_done_total", &[("queue", "push")]);
        (pushed == 4.0).then_some(samples)
    })
    .await;
    let q = |queue: &'static str| [("queue", queue)];
    assert_eq!(
        value(&samples, "herald_jobs_done_total", &q("send_message")),
        3.0
    );
    // Every stored message was in one insert_many (the fourth job's
    // message was refused before the store).
    assert_eq!(
        value(&samples, "herald_message_insert_batch_size_sum", &[]),
        3.0
    );
    let inserts = value(&samples, "herald_message_insert_seconds_count", &[]);
    assert_eq!(
        inserts,
        value(&samples, "herald_message_insert_batch_size_count", &[]),
        "each insert_many timed once"
    );
    assert!(inserts >= 1.0);
    assert!(value(&samples, "herald_message_insert_seconds_sum", &[]) > 0.0);
    assert_eq!(
        value(&samples, "herald_jobs_failed_total", &q("send_message")),
        1.0
    );
    assert_eq!(value(&samples, "herald_jobs_failed_total", &q("push")), 0.0);
    assert_eq!(
        value(
            &samples,
            "herald_job_duration_seconds_count",
            &q("send_message")
        ),
        4.0
    );
    assert_eq!(
        value(&samples, "herald_job_duration_seconds_count", &q("push")),
        4.0
    );
    assert_eq!(value(&samples, "herald_jobs_done_total", &q("export")), 1.0);
    assert_eq!(value(&samples, "herald_export_rows_total", &[]), 3.0);
    // Every call to the provider: three new_message and the export_finish
    // through the push queue, and the export's one progress report (a run
    // shorter than the progress interval reports once, at its end), sent
    // inline.
    assert_eq!(env.delivered("export_progress").await.len(), 1);
    assert_eq!(
        value(
            &samples,
            "herald_push_duration_seconds_count",
            &[("outcome", "ok")]
        ),
        5.0
    );
    assert_eq!(
        value(
            &samples,
            "herald_queue_jobs",
            &[("queue", "send_message"), ("state", "failed")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "herald_queue_jobs",
            &[("queue", "push"), ("state", "pending")]
        ),
        0.0
    );
    assert_eq!(value(&samples, "herald_queue_workers", &q("push")), 1.0);

    // The listener stops with the worker.
    env.stop_worker().await.expect("clean stop");
    assert!(env
        .http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_ops_address_is_taken_refuses_to_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = taken.local_addr().unwrap().to_string();
    let env = env_with(&[("HERALD_WORKER_OPS_BIND", &bind)]).await;
    let err = herald::worker::run(env.settings.clone(), std::future::pending())
        .await
        .expect_err("the address is in use");
    let text = err.to_string();
    assert!(
        text.contains(&bind) && text.contains("HERALD_WORKER_OPS_BIND"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_is_not_ready_without_mongodb_and_stops_gracefully_on_sigterm() {
    // MongoDB on a port nobody listens on: `herald web` still starts (it
    // needs only Redis for the dashboard) but is not ready.
    let mongo = format!("mongodb://127.0.0.1:{}", free_port());
    let bind = format!("127.0.0.1:{}", free_port());
    let env = env_with(&[("HERALD_WEB_BIND", &bind), ("HERALD_WEB_TOKEN", WEB_TOKEN)]).await;
    let log = std::env::temp_dir().join(format!("{}-web.log", env.namespace));
    let mut web = env.spawn_herald_logged(&["web"], &[("HERALD_MONGODB_URL", &mongo)], &log);
    let base = format!("http://{bind}");
    wait_healthy(&env, &base, "herald web to listen").await;

    let (status, body) = get(&env, &format!("{base}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["redis"], json!({"status": "up"}));
    assert_eq!(body["mongodb"]["status"], "down");
    assert!(body["mongodb"]["error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));

    // /metrics needs no token and shows the queues; the API still does.
    env.push_raw(json!({"accountId": "nope"})).await;
    let (_, samples) = scrape(&env, &base).await;
    assert_eq!(
        value(
            &samples,
            "herald_queue_jobs",
            &[("queue", "send_message"), ("state", "pending")]
        ),
        1.0
    );
    let (status, _) = get(&env, &format!("{base}/api/v1/queues")).await;
    assert_eq!(status, 401);

    // A readiness check takes up to its 2 s timeout against the closed port:
    // SIGTERM arrives while it is in flight, and it still gets its answer.
    let in_flight = tokio::spawn({
        let http = env.http.clone();
        let url = format!("{base}/readyz");
        async move { http.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&web, "TERM");
    assert_eq!(in_flight.await.unwrap().expect("answered"), 503);
    let status = exited(&mut web).await;
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    assert!(stderr.contains("dashboard stopped"), "{stderr}");
}
