//! The OTLP trace export (`HERALD_TRACE_OTLP_ENDPOINT`), checked at the
//! protocol level against real `herald web` and `herald worker` processes.
//!
//! No OpenTelemetry collector can be installed here (none is packaged for
//! Debian, PyPI or npm in a form these tests can start), so the test is the
//! collector: a small OTLP/HTTP receiver in the test process that accepts
//! `POST /v1/traces`, decodes each body as the protobuf
//! `ExportTraceServiceRequest` a collector would, answers with an empty
//! `ExportTraceServiceResponse`, and keeps every span with its resource.
//!
//! What is checked: the spans Herald exports are the spans of its JSON
//! logs, with the same ids (the caller's trace id throughout, each span a
//! child of the one before it: caller → `request` → `send_message` →
//! `push`), of the right kinds, on resources that name the service and the
//! command; a caller's unsampled trace and a trace the sample ratio drops
//! are not exported; a WARN inside a span becomes a span event and an ERROR
//! also marks the span failed; and a collector that is down or never
//! answers costs the work nothing: the message is stored and pushed once
//! and the worker stops cleanly on SIGTERM.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    http::{header, HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Router,
};
use mongodb::bson::{doc, oid::ObjectId};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{any_value, KeyValue},
    trace::v1::{span::SpanKind, status::StatusCode as SpanStatus, Span},
};
use prost::Message;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::{
    helpers::{
        account, env_with, exited, json_lines, signal, stop_logged, wait_for, TestEnv, WEB_TOKEN,
    },
    ops::free_port,
};

/// The caller's sampled trace: W3C's own example.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
/// Another caller's trace, sent with flags `00` (not sampled).
const UNSAMPLED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const UNSAMPLED_CALLER_SPAN: &str = "b7ad6b7169203331";

/// The span names Herald exports (its own trace spans, nothing else).
const HERALD_SPANS: [&str; 4] = ["request", "send_message", "push", "export"];

/// One request the receiver got, as a collector would see it.
#[derive(Debug, Clone)]
struct Post {
    method: Method,
    path: String,
    content_type: Option<String>,
    content_encoding: Option<String>,
    /// The body's decoding: the number of spans, or the decoder's error.
    decoded: Result<usize, String>,
}

/// One exported span with its resource's attributes.
#[derive(Debug, Clone)]
struct Exported {
    resource: Vec<KeyValue>,
    span: Span,
}

impl Exported {
    fn trace_id(&self) -> String {
        hex::encode(&self.span.trace_id)
    }

    fn span_id(&self) -> String {
        hex::encode(&self.span.span_id)
    }

    fn parent_span_id(&self) -> String {
        hex::encode(&self.span.parent_span_id)
    }

    fn attribute(&self, key: &str) -> Option<String> {
        attribute(&self.span.attributes, key)
    }

    fn resource_attribute(&self, key: &str) -> Option<String> {
        attribute(&self.resource, key)
    }

    fn event_names(&self) -> Vec<&str> {
        self.span.events.iter().map(|e| e.name.as_str()).collect()
    }

    fn status_code(&self) -> i32 {
        self.span.status.as_ref().map_or(0, |s| s.code)
    }

    /// One line for a failure message: what a reader needs to see why.
    fn describe(&self) -> String {
        let attributes: Vec<String> = self
            .span
            .attributes
            .iter()
            .map(|kv| {
                format!(
                    "{}={}",
                    kv.key,
                    attribute(&self.span.attributes, &kv.key).unwrap_or_default()
                )
            })
            .collect();
        format!(
            "{} trace={} span={} parent={} kind={} start={} end={} status={:?} events={:?} attributes=[{}] resource=[{}]",
            self.span.name,
            self.trace_id(),
            self.span_id(),
            self.parent_span_id(),
            self.span.kind,
            self.span.start_time_unix_nano,
            self.span.end_time_unix_nano,
            self.span.status,
            self.event_names(),
            attributes.join(" "),
            self.resource
                .iter()
                .map(|kv| format!("{}={}", kv.key, attribute(&self.resource, &kv.key).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(" "),
        )
    }
}

/// A key's value among `attributes`, as text.
fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

fn describe(spans: &[Exported]) -> String {
    spans
        .iter()
        .map(Exported::describe)
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, Default)]
struct Received {
    posts: Vec<Post>,
    spans: Vec<Exported>,
}

/// The test's OTLP/HTTP collector. It runs on a thread and runtime of its
/// own, so the test blocking on a process's exit (`stop_logged`) never
/// keeps it from answering that process's last export.
struct Collector {
    endpoint: String,
    received: Arc<Mutex<Received>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Collector {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr: SocketAddr = listener.local_addr().expect("address");
        let received = Arc::new(Mutex::new(Received::default()));
        let (stop, stopped) = oneshot::channel::<()>();
        let app = Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&received));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the collector's runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Collector {
            endpoint: format!("http://{addr}"),
            received,
            stop: Some(stop),
        }
    }

    fn spans(&self) -> Vec<Exported> {
        self.received.lock().unwrap().spans.clone()
    }

    fn posts(&self) -> Vec<Post> {
        self.received.lock().unwrap().posts.clone()
    }

    /// The spans of trace `trace` (hex).
    fn trace(&self, trace: &str) -> Vec<Exported> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id() == trace)
            .collect()
    }

    /// Fails unless no span of trace `trace` arrived (`why` it must not).
    fn assert_none_of(&self, trace: &str, why: &str) {
        let leaked = self.trace(trace);
        assert!(leaked.is_empty(), "{why}:\n{}", describe(&leaked));
    }

    /// Waits until trace `trace` has at least `count` spans named each of
    /// `names`, and returns the trace's spans.
    async fn wait_for_trace(&self, trace: &str, names: &[(&str, usize)]) -> Vec<Exported> {
        wait_for(&format!("the spans {names:?} of trace {trace}"), || async {
            let spans = self.trace(trace);
            names
                .iter()
                .all(|(name, count)| {
                    spans.iter().filter(|s| s.span.name == *name).count() >= *count
                })
                .then_some(spans)
        })
        .await
    }

    /// Every request was an OTLP/HTTP protobuf export to `/v1/traces` that
    /// decoded, and there was at least one.
    fn assert_protocol(&self) {
        let posts = self.posts();
        assert!(!posts.is_empty(), "no export reached the collector");
        for post in &posts {
            assert_eq!(post.method, Method::POST, "{post:?}");
            assert_eq!(post.path, "/v1/traces", "{post:?}");
            assert_eq!(
                post.content_type.as_deref(),
                Some("application/x-protobuf"),
                "{post:?}"
            );
            // The receiver decodes plain protobuf: a compressed body would
            // be a setting nobody asked for.
            assert_eq!(post.content_encoding, None, "{post:?}");
            assert!(post.decoded.is_ok(), "{post:?}");
        }
        // Herald's own trace spans, nothing else (no SDK or library spans).
        for span in self.spans() {
            assert!(
                HERALD_SPANS.contains(&span.span.name.as_str()),
                "not one of Herald's trace spans: {}",
                span.describe()
            );
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The collector's one handler: records every request, and answers an
/// export to `/v1/traces` as OTLP/HTTP says (200, an empty
/// `ExportTraceServiceResponse`).
async fn receive(
    axum::extract::State(received): axum::extract::State<Arc<Mutex<Received>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let decoded = ExportTraceServiceRequest::decode(body.as_ref());
    let mut received = received.lock().unwrap();
    received.posts.push(Post {
        method: method.clone(),
        path: uri.path().to_owned(),
        content_type: header(header::CONTENT_TYPE),
        content_encoding: header(header::CONTENT_ENCODING),
        decoded: decoded
            .as_ref()
            .map(|r| {
                r.resource_spans
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .map(|ss| ss.spans.len())
                    .sum()
            })
            .map_err(ToString::to_string),
    });
    match decoded {
        Ok(request) if method == Method::POST && uri.path() == "/v1/traces" => {
            for resource_spans in request.resource_spans {
                let resource = resource_spans
                    .resource
                    .map(|r| r.attributes)
                    .unwrap_or_default();
                for scope_spans in resource_spans.scope_spans {
                    for span in scope_spans.spans {
                        received.spans.push(Exported {
                            resource: resource.clone(),
                            span,
                        });
                    }
                }
            }
            (
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
                .into_response()
        }
        Ok(_) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

/// The JSON log lines of `log` in span `span` of trace `trace` whose
/// message is `message`.
fn lines<'a>(log: &'a [Value], span: &str, trace: &str, message: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|line| {
            line["span"]["name"] == span
                && line["span"]["trace_id"] == trace
                && line["fields"]["message"].as_str() == Some(message)
        })
        .collect()
}

/// The one such line (the test fails naming the whole log otherwise).
fn one_line<'a>(log: &'a [Value], text: &str, span: &str, trace: &str, message: &str) -> &'a Value {
    match lines(log, span, trace, message).as_slice() {
        [line] => line,
        other => panic!(
            "{} lines in span {span} of trace {trace} saying {message:?}:\n{text}",
            other.len()
        ),
    }
}

/// Waits until the log file at `log` has `count` lines in span `span` of
/// trace `trace` saying `message`.
async fn wait_for_line(
    log: &std::path::Path,
    span: &str,
    trace: &str,
    message: &str,
    count: usize,
) {
    wait_for(
        &format!("{count} {span} line(s) {message:?} of trace {trace}"),
        || async {
            let now = json_lines(&std::fs::read_to_string(log).unwrap_or_default());
            (lines(&now, span, trace, message).len() >= count).then_some(())
        },
    )
    .await;
}

/// The one exported span named `name` among `spans`.
fn one_span<'a>(spans: &'a [Exported], name: &str) -> &'a Exported {
    match spans
        .iter()
        .filter(|s| s.span.name == name)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [span] => span,
        other => panic!("{} {name} spans:\n{}", other.len(), describe(spans)),
    }
}

/// Posts one message to `herald web` at `base` with `traceparent`.
async fn post_message(env: &TestEnv, base: &str, traceparent: &str, title: &str) {
    let response = env
        .http
        .post(format!("{base}/v1/messages"))
        .bearer_auth(WEB_TOKEN)
        .header("traceparent", traceparent)
        .json(&json!({
            "accountId": account().to_hex(),
            "title": title,
            "content": "traced to the collector",
        }))
        .send()
        .await
        .expect("herald web answers");
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
}

/// A send_message job as a producer writes it, with `traceparent`; returns
/// its message id.
async fn push_job(env: &TestEnv, traceparent: &str, title: &str) -> ObjectId {
    let id = ObjectId::new();
    let owner = account().to_hex();
    env.push_raw_to(
        herald_jobs::QueueName::SendMessage,
        json!({
            "messageId": id.to_hex(),
            "accountId": owner,
            "title": title, "content": "c",
            "sender": {"id": "system", "from": "system"},
            "to": {"id": owner, "target": "account"},
            "status": "success",
            "traceparent": traceparent,
        }),
    )
    .await;
    id
}

/// The variables that turn the export on, towards `endpoint`, with a
/// short batch delay so spans arrive soon after they end.
fn export_to(endpoint: &str) -> [(&str, &str); 2] {
    [
        ("HERALD_TRACE_OTLP_ENDPOINT", endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]
}

/// `herald web` and `herald worker` with JSON logs, exporting to
/// `collector`, plus `extra` variables: the environment, the processes,
/// their logs and web's base URL.
struct Pair {
    env: TestEnv,
    web: crate::helpers::HeraldProcess,
    worker: crate::helpers::HeraldProcess,
    web_log: std::path::PathBuf,
    worker_log: std::path::PathBuf,
    base: String,
}

async fn start_pair(collector: &Collector, extra: &[(&str, &str)]) -> Pair {
    let bind = format!("127.0.0.1:{}", free_port());
    let mut vars = vec![
        ("HERALD_WEB_BIND", bind.as_str()),
        ("HERALD_WEB_TOKEN", WEB_TOKEN),
        ("HERALD_WORKER_OPS_BIND", ""),
        ("HERALD_LOG_FORMAT", "json"),
        ("HERALD_LOG_LEVEL", "info"),
    ];
    vars.extend(export_to(&collector.endpoint));
    vars.extend_from_slice(extra);
    let env = env_with(&vars).await;
    let dir = std::env::temp_dir();
    let web_log = dir.join(format!("{}-otlp-web.log", env.namespace));
    let worker_log = dir.join(format!("{}-otlp-worker.log", env.namespace));
    let web = env.spawn_herald_logged(&["web"], &[], &web_log);
    let worker = env.spawn_herald_logged(&["worker"], &[], &worker_log);
    let base = format!("http://{bind}");
    wait_for("herald web to be ready", || async {
        let response = env.http.get(format!("{base}/readyz")).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    Pair {
        env,
        web,
        worker,
        web_log,
        worker_log,
        base,
    }
}

impl Pair {
    /// Stops both processes with SIGTERM (each flushes its pending spans
    /// on the way out); checks they exited 0; returns their logs.
    fn stop(&mut self) -> (String, String) {
        let (web_status, web_text) = stop_logged(&mut self.web, &self.web_log);
        let (worker_status, worker_text) = stop_logged(&mut self.worker, &self.worker_log);
        assert!(web_status.success(), "web: {web_status}\n{web_text}");
        assert!(
            worker_status.success(),
            "worker: {worker_status}\n{worker_text}"
        );
        (web_text, worker_text)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spans_of_a_sampled_trace_reach_the_collector_with_the_ids_the_logs_carry() {
    let collector = Collector::start();
    let mut pair = start_pair(&collector, &[]).await;
    let env = &pair.env;

    post_message(
        env,
        &pair.base,
        &format!("00-{TRACE_ID}-{CALLER_SPAN}-01"),
        "Sampled",
    )
    .await;
    post_message(
        env,
        &pair.base,
        &format!("00-{UNSAMPLED_TRACE}-{UNSAMPLED_CALLER_SPAN}-00"),
        "Unsampled",
    )
    .await;
    wait_for("both new_message pushes", || async {
        (env.delivered("new_message").await.len() == 2).then_some(())
    })
    .await;
    for trace in [TRACE_ID, UNSAMPLED_TRACE] {
        wait_for_line(&pair.worker_log, "push", trace, "event delivered", 1).await;
    }
    collector
        .wait_for_trace(
            TRACE_ID,
            &[("request", 1), ("send_message", 1), ("push", 1)],
        )
        .await;
    let (web_text, worker_text) = pair.stop();
    let (web_lines, worker_lines) = (json_lines(&web_text), json_lines(&worker_text));
    collector.assert_protocol();

    let spans = collector.trace(TRACE_ID);
    let all = describe(&spans);
    eprintln!("the trace the collector received:\n{all}");
    let request = one_span(&spans, "request");
    let stored = one_span(&spans, "send_message");
    let pushed = one_span(&spans, "push");
    assert_eq!(spans.len(), 3, "only the three spans of the trace:\n{all}");

    // The same spans as the logs': each exported span's id is the span_id
    // its log lines carry.
    let request_line = one_line(
        &web_lines,
        &web_text,
        "request",
        TRACE_ID,
        "message enqueued over HTTP",
    );
    let stored_line = one_line(
        &worker_lines,
        &worker_text,
        "send_message",
        TRACE_ID,
        "message stored",
    );
    let pushed_line = one_line(
        &worker_lines,
        &worker_text,
        "push",
        TRACE_ID,
        "event delivered",
    );
    for (span, line) in [
        (request, request_line),
        (stored, stored_line),
        (pushed, pushed_line),
    ] {
        assert_eq!(span.trace_id(), TRACE_ID, "{}", span.describe());
        assert_eq!(
            line["span"]["span_id"].as_str(),
            Some(span.span_id().as_str()),
            "log line {line}\nspan {}",
            span.describe()
        );
        assert!(span.span.start_time_unix_nano > 0, "{}", span.describe());
        assert!(
            span.span.start_time_unix_nano <= span.span.end_time_unix_nano,
            "{}",
            span.describe()
        );
        assert_eq!(
            span.resource_attribute("service.name").as_deref(),
            Some("herald"),
            "{}",
            span.describe()
        );
        assert_eq!(
            span.resource_attribute("service.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION")),
            "{}",
            span.describe()
        );
    }

    // Caller → request → send_message → push.
    assert_eq!(request.parent_span_id(), CALLER_SPAN, "{all}");
    assert_eq!(stored.parent_span_id(), request.span_id(), "{all}");
    assert_eq!(pushed.parent_span_id(), stored.span_id(), "{all}");
    assert_ne!(request.span_id(), CALLER_SPAN, "{all}");

    // Kinds, and which process each came from.
    assert_eq!(request.span.kind, SpanKind::Server as i32, "{all}");
    assert_eq!(stored.span.kind, SpanKind::Consumer as i32, "{all}");
    assert_eq!(pushed.span.kind, SpanKind::Consumer as i32, "{all}");
    assert_eq!(
        request.resource_attribute("herald.command").as_deref(),
        Some("web"),
        "{all}"
    );
    for job in [stored, pushed] {
        assert_eq!(
            job.resource_attribute("herald.command").as_deref(),
            Some("worker"),
            "{all}"
        );
    }

    // The spans' attributes are their log fields.
    assert_eq!(
        request.attribute("path").as_deref(),
        Some("/v1/messages"),
        "{all}"
    );
    assert_eq!(
        request.attribute("method").as_deref(),
        Some("POST"),
        "{all}"
    );
    assert_eq!(
        request.attribute("request_id").as_deref(),
        request_line["span"]["request_id"].as_str(),
        "{all}"
    );
    for (span, line) in [(stored, stored_line), (pushed, pushed_line)] {
        for key in ["job_id", "queue"] {
            let logged = line["span"][key].as_str();
            assert!(logged.is_some_and(|v| !v.is_empty()), "{line}");
            assert_eq!(span.attribute(key).as_deref(), logged, "{key}: {all}");
        }
    }
    assert!(
        pushed
            .attribute("queue")
            .is_some_and(|q| q.ends_with(":push}")),
        "{all}"
    );

    // The unsampled trace: its ids are in the logs, and nothing of it was
    // exported by either process.
    one_line(
        &web_lines,
        &web_text,
        "request",
        UNSAMPLED_TRACE,
        "message enqueued over HTTP",
    );
    one_line(
        &worker_lines,
        &worker_text,
        "send_message",
        UNSAMPLED_TRACE,
        "message stored",
    );
    one_line(
        &worker_lines,
        &worker_text,
        "push",
        UNSAMPLED_TRACE,
        "event delivered",
    );
    collector.assert_none_of(UNSAMPLED_TRACE, "the unsampled trace was exported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_ratio_keeps_or_drops_a_whole_trace_by_its_id() {
    // The rule: kept when the id's last 8 bytes, shifted right by one, are
    // below ratio * 2^63. At 0.5: ...0001 → 0, kept; ...ffff → 2^63 - 1,
    // dropped, in both processes alike.
    const KEPT: &str = "4bf92f3577b34da60000000000000001";
    const DROPPED: &str = "4bf92f3577b34da6ffffffffffffffff";
    let collector = Collector::start();
    let mut pair = start_pair(
        &collector,
        &[
            ("HERALD_TRACE_SAMPLE_RATIO", "0.5"),
            ("HERALD_TRACE_SERVICE_NAME", "herald-eu"),
        ],
    )
    .await;
    let env = &pair.env;
    for (trace, title) in [(KEPT, "Kept"), (DROPPED, "Dropped")] {
        post_message(
            env,
            &pair.base,
            &format!("00-{trace}-{CALLER_SPAN}-01"),
            title,
        )
        .await;
    }
    wait_for("both new_message pushes", || async {
        (env.delivered("new_message").await.len() == 2).then_some(())
    })
    .await;
    for trace in [KEPT, DROPPED] {
        wait_for_line(&pair.worker_log, "push", trace, "event delivered", 1).await;
    }
    collector
        .wait_for_trace(KEPT, &[("request", 1), ("send_message", 1), ("push", 1)])
        .await;
    let (web_text, _) = pair.stop();
    collector.assert_protocol();

    let kept = collector.trace(KEPT);
    assert_eq!(kept.len(), 3, "{}", describe(&kept));
    for span in &kept {
        assert_eq!(
            span.resource_attribute("service.name").as_deref(),
            Some("herald-eu"),
            "{}",
            span.describe()
        );
    }
    let stored = one_span(&kept, "send_message");
    assert_eq!(one_span(&kept, "push").parent_span_id(), stored.span_id());
    assert_eq!(
        stored.parent_span_id(),
        one_span(&kept, "request").span_id()
    );
    // The dropped trace ran (its request is in the log) but left no span.
    one_line(
        &json_lines(&web_text),
        &web_text,
        "request",
        DROPPED,
        "message enqueued over HTTP",
    );
    collector.assert_none_of(DROPPED, "the dropped trace was exported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_becomes_a_span_event_and_an_error_also_fails_the_span() {
    const RETRIED: &str = "11111111111111111111111111111111";
    const REFUSED: &str = "22222222222222222222222222222222";
    let collector = Collector::start();
    let mut vars = vec![
        ("HERALD_WORKER_OPS_BIND", ""),
        ("HERALD_LOG_FORMAT", "json"),
        ("HERALD_LOG_LEVEL", "info"),
        ("HERALD_WORKER_RETRY_BASE_MS", "50"),
    ];
    vars.extend(export_to(&collector.endpoint));
    let env = env_with(&vars).await;
    let log = std::env::temp_dir().join(format!("{}-otlp-events.log", env.namespace));
    let mut worker = env.spawn_herald_logged(&["worker"], &[], &log);

    // A provider failure worth a retry (WARN), then a success.
    env.script_failures(Some(500), 0, 1).await;
    push_job(&env, &format!("00-{RETRIED}-{CALLER_SPAN}-01"), "Retried").await;
    wait_for_line(&log, "push", RETRIED, "push failed, will retry", 1).await;
    wait_for_line(&log, "push", RETRIED, "event delivered", 1).await;
    // A refusal not worth one (ERROR).
    env.script_failures(Some(400), 0, 1).await;
    push_job(&env, &format!("00-{REFUSED}-{CALLER_SPAN}-01"), "Refused").await;
    wait_for_line(&log, "push", REFUSED, "push refused, not retrying", 1).await;

    collector
        .wait_for_trace(RETRIED, &[("send_message", 1), ("push", 2)])
        .await;
    collector
        .wait_for_trace(REFUSED, &[("send_message", 1), ("push", 1)])
        .await;
    let (status, text) = stop_logged(&mut worker, &log);
    assert!(status.success(), "{status}\n{text}");
    collector.assert_protocol();

    let retried = collector.trace(RETRIED);
    let all = describe(&retried);
    let stored = one_span(&retried, "send_message");
    let pushes: Vec<&Exported> = retried.iter().filter(|s| s.span.name == "push").collect();
    let [first, second] = pushes.as_slice() else {
        panic!("two push attempts:\n{all}")
    };
    let (first, second) = if first.attribute("attempt").as_deref() == Some("1") {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(first.attribute("attempt").as_deref(), Some("1"), "{all}");
    assert_eq!(second.attribute("attempt").as_deref(), Some("2"), "{all}");
    for push in [first, second] {
        // Each attempt is a span of its own, a child of the store's.
        assert_eq!(push.parent_span_id(), stored.span_id(), "{all}");
    }
    assert_ne!(first.span_id(), second.span_id(), "{all}");
    assert_eq!(first.event_names(), ["push failed, will retry"], "{all}");
    let event = &first.span.events[0];
    assert!(
        (first.span.start_time_unix_nano..=first.span.end_time_unix_nano)
            .contains(&event.time_unix_nano),
        "the event happened within its span: {all}"
    );
    // A warning is an event, not a failed span.
    assert_ne!(first.status_code(), SpanStatus::Error as i32, "{all}");
    assert!(second.event_names().is_empty(), "{all}");
    assert_ne!(second.status_code(), SpanStatus::Error as i32, "{all}");

    let refused = collector.trace(REFUSED);
    let all = describe(&refused);
    let push = one_span(&refused, "push");
    assert_eq!(push.event_names(), ["push refused, not retrying"], "{all}");
    assert_eq!(push.status_code(), SpanStatus::Error as i32, "{all}");
    assert_ne!(
        one_span(&refused, "send_message").status_code(),
        SpanStatus::Error as i32,
        "{all}"
    );
}

/// A worker exporting to `endpoint`, where no collector answers: the
/// message is stored and pushed once, nothing is dead, and the worker stops
/// with status 0 on SIGTERM within the usual patience.
async fn work_goes_on_without_a_collector(endpoint: &str, label: &str) {
    const TRACE: &str = "33333333333333333333333333333333";
    let mut vars = vec![
        ("HERALD_WORKER_OPS_BIND", ""),
        ("HERALD_LOG_FORMAT", "json"),
        ("HERALD_LOG_LEVEL", "info"),
    ];
    vars.extend(export_to(endpoint));
    let env = env_with(&vars).await;
    let log = std::env::temp_dir().join(format!("{}-otlp-{label}.log", env.namespace));
    let mut worker = env.spawn_herald_logged(&["worker"], &[], &log);
    let id = push_job(&env, &format!("00-{TRACE}-{CALLER_SPAN}-01"), label).await;
    wait_for("the new_message push", || async {
        (env.delivered("new_message").await.len() == 1).then_some(())
    })
    .await;
    wait_for_line(&log, "push", TRACE, "event delivered", 1).await;
    // Lets the batch processor try (and fail) a few times before the
    // shutdown's flush tries again; not a timing requirement.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        worker.try_wait().expect("try_wait").is_none(),
        "the worker exited by itself:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    signal(&worker, "TERM");
    let status = exited(&mut worker).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert_eq!(status.code(), Some(0), "{text}");
    // The operator is told: a failed export, or a flush given up at exit.
    assert!(
        text.contains("BatchSpanProcessor.ExportError")
            || text.contains("the OTLP trace export did not flush at shutdown"),
        "no line says the export failed:\n{text}"
    );

    assert_eq!(env.message_count(doc! { "_id": id }).await, 1, "{text}");
    let pushes = env.pushes_per_message().await;
    assert_eq!(pushes.get(&id.to_hex()), Some(&1), "{pushes:?}\n{text}");
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    for queue in [
        herald_jobs::QueueName::SendMessage,
        herald_jobs::QueueName::Push,
    ] {
        assert!(
            env.queue_set(queue, "dead").await.is_empty(),
            "{queue:?}\n{text}"
        );
    }
    let lines = json_lines(&text);
    one_line(&lines, &text, "send_message", TRACE, "message stored");
    one_line(&lines, &text, "push", TRACE, "event delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_the_work_nothing() {
    // Nothing listens there: every export is refused at once.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    work_goes_on_without_a_collector(&endpoint, "down").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_costs_the_work_nothing() {
    // A socket that is bound and listening but never accepts: connections
    // complete in the kernel's backlog and every export waits for an answer
    // that never comes (until the exporter's own timeout).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", silent.local_addr().expect("address"));
    work_goes_on_without_a_collector(&endpoint, "silent").await;
    drop(silent);
}

/// `herald doctor` with an endpoint set checks the collector the way the
/// export uses it: one test span through the same exporter. The three
/// other lines are unchanged; without an endpoint there is no fourth line
/// (tests/integration/cli.rs counts three).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_sends_the_collector_a_test_span_and_says_when_it_cannot() {
    let collector = Collector::start();
    let env = env_with(&[]).await;
    let output = env.run_herald(&["doctor"], &export_to(&collector.endpoint));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{text}");
    let traces = text
        .lines()
        .find(|l| l.starts_with("traces"))
        .unwrap_or_default();
    assert!(
        traces.contains(" ok ") && traces.contains("/v1/traces"),
        "{text}"
    );
    let spans = collector.spans();
    let [probe] = spans.as_slice() else {
        panic!("one test span: {}", describe(&spans))
    };
    assert_eq!(probe.span.name, "herald doctor");
    assert_eq!(
        probe.resource_attribute("herald.command").as_deref(),
        Some("doctor")
    );

    // Nothing listens: the line fails, the exit status is 1, and the
    // reason names the endpoint.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let output = env.run_herald(&["doctor"], &export_to(&dead));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(1), "{text}");
    let traces = text
        .lines()
        .find(|l| l.starts_with("traces"))
        .unwrap_or_default();
    assert!(traces.contains("FAIL") && traces.contains(&dead), "{text}");
}
