//! One W3C trace from a `/v1` request to the push it caused, across two
//! processes: `herald web` takes the caller's `traceparent`, the
//! `send_message` job carries its request's span, the worker's store span
//! continues it, and the push handed on continues the store's. Each hop is
//! read from the processes' JSON logs: the trace id is the caller's
//! throughout, and each span's parent is the span before it.

use serde_json::{json, Value};

use crate::{
    helpers::{account, env_with, json_lines, stop_logged, wait_for, WEB_TOKEN},
    ops::free_port,
};

/// The caller's trace: W3C's own example.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The JSON log lines of `log` whose current span is `span` and whose
/// message is `message`.
fn lines<'a>(log: &'a [Value], span: &str, message: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|line| {
            line["span"]["name"] == span && line["fields"]["message"].as_str() == Some(message)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_request_through_the_store_to_the_push() {
    let bind = format!("127.0.0.1:{}", free_port());
    let env = env_with(&[
        ("HERALD_WEB_BIND", &bind),
        ("HERALD_WEB_TOKEN", WEB_TOKEN),
        ("HERALD_WORKER_OPS_BIND", ""),
        ("HERALD_LOG_FORMAT", "json"),
        ("HERALD_LOG_LEVEL", "info"),
    ])
    .await;
    let dir = std::env::temp_dir();
    let (web_log, worker_log) = (
        dir.join(format!("{}-trace-web.log", env.namespace)),
        dir.join(format!("{}-trace-worker.log", env.namespace)),
    );
    let mut web = env.spawn_herald_logged(&["web"], &[], &web_log);
    let mut worker = env.spawn_herald_logged(&["worker"], &[], &worker_log);
    let base = format!("http://{bind}");
    wait_for("herald web to be ready", || async {
        let response = env.http.get(format!("{base}/readyz")).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;

    let caller = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let response = env
        .http
        .post(format!("{base}/v1/messages"))
        .bearer_auth(WEB_TOKEN)
        .header("traceparent", &caller)
        .json(&json!({
            "accountId": account().to_hex(),
            "title": "Traced",
            "content": "from the request to the push",
        }))
        .send()
        .await
        .expect("herald web answers");
    assert_eq!(response.status(), 202);
    wait_for("the new_message push", || async {
        (!env.delivered("new_message").await.is_empty()).then_some(())
    })
    .await;
    // The worker logs the push after the provider answered; give the line
    // a moment to reach the file before stopping.
    wait_for("the push's log line", || async {
        let log = json_lines(&std::fs::read_to_string(&worker_log).unwrap_or_default());
        (!lines(&log, "push", "event delivered").is_empty()).then_some(())
    })
    .await;
    let (_, web_text) = stop_logged(&mut web, &web_log);
    let (_, worker_text) = stop_logged(&mut worker, &worker_log);
    let (web_lines, worker_lines) = (json_lines(&web_text), json_lines(&worker_text));

    let request = lines(&web_lines, "request", "message enqueued over HTTP");
    let [request] = request.as_slice() else {
        panic!("one request line: {web_text}")
    };
    let stored = lines(&worker_lines, "send_message", "message stored");
    let [stored] = stored.as_slice() else {
        panic!("one store line: {worker_text}")
    };
    let pushed = lines(&worker_lines, "push", "event delivered");
    let [pushed] = pushed.as_slice() else {
        panic!("one push line: {worker_text}")
    };
    for line in [request, stored, pushed] {
        assert_eq!(line["span"]["trace_id"], TRACE_ID, "{line}");
        let span = line["span"]["span_id"].as_str().expect("a span id");
        assert_eq!(span.len(), 16, "{line}");
    }
    // Each hop is a child of the one before it.
    let request_span = &request["span"]["span_id"];
    assert_ne!(request_span, CALLER_SPAN);
    assert_eq!(stored["span"]["parent_span_id"], *request_span, "{stored}");
    assert_eq!(
        pushed["span"]["parent_span_id"], stored["span"]["span_id"],
        "{pushed}"
    );
    // The job id and queue ride along, as on every job line.
    let queue = pushed["span"]["queue"].as_str().unwrap_or_default();
    assert!(queue.ends_with(":push}"), "{pushed}");
    assert!(stored["span"]["job_id"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_a_trace_or_with_a_malformed_one_starts_its_own() {
    // A worker alone: the jobs are written to its queue directly.
    let env = env_with(&[
        ("HERALD_WORKER_OPS_BIND", ""),
        ("HERALD_LOG_FORMAT", "json"),
        ("HERALD_LOG_LEVEL", "info"),
    ])
    .await;
    let log = std::env::temp_dir().join(format!("{}-trace-own.log", env.namespace));
    let mut worker = env.spawn_herald_logged(&["worker"], &[], &log);
    // A producer that knows nothing of traces, and one that sends garbage:
    // both are served, each in a trace of its own.
    let owner = account().to_hex();
    for traceparent in [None, Some("00-not-a-trace-01")] {
        let mut job = json!({
            "messageId": mongodb::bson::oid::ObjectId::new().to_hex(),
            "accountId": owner,
            "title": "Untraced", "content": "c",
            "sender": {"id": "system", "from": "system"},
            "to": {"id": owner, "target": "account"},
            "status": "success",
        });
        if let Some(text) = traceparent {
            job["traceparent"] = json!(text);
        }
        env.push_raw_to(herald_jobs::QueueName::SendMessage, job)
            .await;
    }
    wait_for("two pushes", || async {
        (env.delivered("new_message").await.len() == 2).then_some(())
    })
    .await;
    wait_for("the pushes' log lines", || async {
        let lines_now = json_lines(&std::fs::read_to_string(&log).unwrap_or_default());
        (lines(&lines_now, "push", "event delivered").len() == 2).then_some(())
    })
    .await;
    let (_, text) = stop_logged(&mut worker, &log);
    let all = json_lines(&text);
    let stored = lines(&all, "send_message", "message stored");
    assert_eq!(stored.len(), 2, "{text}");
    let traces: Vec<&Value> = stored.iter().map(|l| &l["span"]["trace_id"]).collect();
    assert_ne!(traces[0], traces[1], "each job its own trace");
    for line in &stored {
        assert_eq!(line["span"]["trace_id"].as_str().map(str::len), Some(32));
        assert!(line["span"].get("parent_span_id").is_none(), "{line}");
    }
}
