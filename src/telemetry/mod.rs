//! Logging: one place that builds the tracing subscriber.
//!
//! Every unit of work runs in a span carrying `job_id`, `queue` and
//! `account_id`, so a line can be traced back to its job whichever format is
//! chosen. `RUST_LOG` overrides the configured level.
//!
//! Each job's span is also a span of a W3C trace ([`record_trace`]): a
//! child of the span its job's `traceparent` names (the request or the
//! producer's code that enqueued it, or the job that handed it on), so the
//! log lines of one notification, from the request to the push, carry one
//! `trace_id`, and each its own `span_id`.
//!
//! Those spans can also go to an OpenTelemetry collector, with the same
//! ids ([`otlp`], off unless `trace.otlp_endpoint` is set).
//!
//! Logged values come from outside (a user id in a channel signature, a
//! provider's answer, a job's payload): in the pretty format every control
//! character in them is written escaped (`\n`, `\u{1b}`), so no value can
//! start a line that looks like another log record or move a terminal's
//! cursor. The JSON format escapes them as JSON does.

pub mod otlp;

use tracing_subscriber::{
    field::MakeExt, filter::filter_fn, fmt, layer::SubscriberExt, util::SubscriberInitExt,
    EnvFilter, Layer,
};

use crate::config::{LogFormat, LogSettings, TraceExportSettings};

/// What [`init`] set up that needs an orderly end: the span export, when on.
#[derive(Debug, Default)]
#[must_use = "call shutdown at exit, or spans still queued are lost"]
pub struct Telemetry {
    export: Option<otlp::SpanExport>,
}

impl Telemetry {
    /// Sends the spans still queued for the collector (for at most 5 s);
    /// nothing to do without an export.
    pub async fn shutdown(self) {
        if let Some(export) = self.export {
            let _ = tokio::task::spawn_blocking(move || export.shutdown()).await;
        }
    }
}

/// Installs the global subscriber writing to standard error and, with
/// `export` set, sending trace spans to the collector, for the process
/// running `command` (`web`, `worker`). Calling it twice is harmless (the
/// second call keeps the first subscriber), which lets tests and the binary
/// share code.
///
/// The log level filters the log lines only: a `log.level` of `warn`
/// still exports the spans.
pub fn init(
    settings: &LogSettings,
    export: Option<&TraceExportSettings>,
    command: &'static str,
) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (export, export_error) = match export.map(|s| otlp::SpanExport::start(s, command)) {
        Some(Ok(export)) => (Some(export), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let export_layer = export
        .clone()
        .map(|layer| layer.with_filter(filter_fn(otlp::SpanExport::wants)));
    let registry = tracing_subscriber::registry().with(export_layer);
    let result = match settings.format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                fmt::layer()
                    .with_target(false)
                    .fmt_fields(escaped_fields())
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init(),
    };
    // Already initialised (a test harness or an earlier call): keep that one.
    if result.is_ok() {
        log_panics();
    }
    if let Some(e) = export_error {
        tracing::error!(error = %e, "trace spans are not exported");
    }
    Telemetry { export }
}

/// The pretty format's fields: `name=value`, the message bare, every
/// control character escaped.
fn escaped_fields() -> impl for<'w> fmt::FormatFields<'w> + Send + Sync + 'static {
    fmt::format::debug_fn(|writer, field, value| {
        let raw = format!("{value:?}");
        let text = escape_controls(&raw);
        if field.name() == "message" {
            writer.write_str(&text)
        } else {
            write!(writer, "{}={text}", field.name())
        }
    })
    .delimited(" ")
}

/// `text` with each control character written as its escape.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

/// Sends panics through the log, in its format (a JSON line in
/// production), instead of as plain text on standard error: one `error`
/// event with the panic's message, where it happened and, when
/// `RUST_BACKTRACE` asks for one, the backtrace.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(a panic whose payload is not text)".to_owned());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!(panic = %message, %location, %backtrace, "panicked");
        } else {
            tracing::error!(panic = %message, %location, "panicked");
        }
    }));
}

/// The span a job handler runs in: `name`, with the fields every job's
/// logs carry (`job_id`, `queue`, `attempt`, and `account_id` once the
/// payload is read), plus the handler's own fields, empty until recorded.
///
/// `job_span!("push", task_id, deps.queue, attempt; event, key)`
macro_rules! job_span {
    ($name:literal, $task_id:expr, $queue:expr, $attempt:expr; $($field:ident),*) => {
        tracing::info_span!(
            $name,
            job_id = %$task_id,
            queue = %$queue,
            attempt = $attempt.current(),
            account_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            parent_span_id = tracing::field::Empty,
            trace_flags = tracing::field::Empty,
            $($field = tracing::field::Empty),*
        )
    };
}
pub(crate) use job_span;

/// Records on the current job span ([`job_span!`]) the trace span it is: a
/// child of the span `parent` names (a job's `traceparent`), or the first
/// span of a new trace without one. Returns it, for the jobs the run hands
/// on ([`herald_jobs::TraceParent`]).
pub fn record_trace(parent: Option<herald_jobs::TraceParent>) -> herald_jobs::TraceParent {
    let trace = parent.map_or_else(herald_jobs::TraceParent::new_root, |p| p.child());
    let span = tracing::Span::current();
    span.record("trace_id", tracing::field::display(trace.trace_id()));
    span.record("span_id", tracing::field::display(trace.span_id()));
    span.record("trace_flags", tracing::field::display(trace_flags(&trace)));
    if let Some(parent) = parent {
        span.record("parent_span_id", tracing::field::display(parent.span_id()));
    }
    trace
}

/// The trace flags as a span field shows them: two hex digits.
pub fn trace_flags(trace: &herald_jobs::TraceParent) -> String {
    format!("{:02x}", trace.flags())
}

/// A job's `traceparent` field, when it is one of the W3C form.
pub fn parent_of(traceparent: Option<&str>) -> Option<herald_jobs::TraceParent> {
    traceparent.and_then(|text| herald_jobs::TraceParent::parse(text).ok())
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("plain 用户"), "plain 用户");
        assert_eq!(
            escape_controls("u1\n2026-12-07T00:00:00Z  INFO forged"),
            "u1\\n2026-12-07T00:00:00Z  INFO forged"
        );
        assert_eq!(escape_controls("\u{1b}[2J\r\t"), "\\u{1b}[2J\\r\\t");
    }
}
