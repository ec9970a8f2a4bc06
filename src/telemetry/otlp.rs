//! The optional OTLP export of Herald's trace spans (`[trace]`).
//!
//! Herald's spans already are spans of W3C traces: the request span of
//! `herald web` and each job's span carry `trace_id`, `span_id` and
//! `parent_span_id` fields ([`super::record_trace`]), and the job carries
//! its `traceparent` to the next process. Those ids are the ones in the
//! logs and in the jobs, so the exported spans must have them too, or a
//! trace found in the collector would not lead to its log lines.
//!
//! That is why this module is a `tracing` layer of its own rather than
//! `tracing-opentelemetry` with an SDK tracer: the SDK's tracer draws a new
//! span id for every span it starts and takes no id from outside. This
//! layer builds the finished span itself, with Herald's ids, as the SDK's
//! [`SpanData`], and hands it to the SDK's [`BatchSpanProcessor`] and the
//! OTLP/HTTP exporter of `opentelemetry-otlp`: batching, the protocol,
//! retries and the `OTEL_BSP_*` / `OTEL_EXPORTER_OTLP_HEADERS` variables
//! are theirs.
//!
//! What is exported:
//! - only spans that declare a `trace_id` field (the `request` span, kind
//!   server, and the job spans, kind consumer), once they have ids;
//! - their other fields as attributes (`job_id`, `queue`, `account_id`,
//!   `request_id`, ...), as the logs show them;
//! - a `WARN` or `ERROR` event inside one as a span event, and an `ERROR`
//!   as the span's status;
//! - a trace only when its flags say sampled (a caller's unsampled
//!   `traceparent` stays unexported) and its id falls within
//!   `trace.sample_ratio` ([`kept`]): the rule reads only the id, so every
//!   process keeps or drops a whole trace alike.
//!
//! An unreachable collector costs the work nothing: the processor queues at
//! most `OTEL_BSP_MAX_QUEUE_SIZE` spans on its own thread and drops the
//! rest, and each failed export is an error line in Herald's log.

use std::{
    borrow::Cow,
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use opentelemetry::{
    trace::{Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState},
    InstrumentationScope, KeyValue,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{
    trace::{BatchSpanProcessor, SpanData, SpanEvents, SpanExporter, SpanLinks, SpanProcessor},
    Resource,
};
use tracing::{
    field::{Field, Visit},
    span::{Attributes, Id, Record},
    Level, Metadata, Subscriber,
};
use tracing_subscriber::{layer::Context, registry::LookupSpan, Layer};

use crate::config::TraceExportSettings;

/// The name of the span `herald web` runs each request in: exported as a
/// server span, every other one as a consumer span (a job).
pub const REQUEST_SPAN: &str = "request";

/// How long one export call may take before the exporter gives it up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the flush at shutdown may take.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// The export could not be set up, or (for [`probe`]) was refused.
#[derive(Debug, thiserror::Error)]
#[error("the OTLP trace export to {url} failed: {reason}")]
pub struct ExportSetupError {
    url: String,
    reason: String,
}

/// The layer that exports finished trace spans; cheap to clone.
#[derive(Clone)]
pub struct SpanExport {
    processor: Arc<BatchSpanProcessor>,
    scope: InstrumentationScope,
    sample_ratio: f64,
}

impl fmt::Debug for SpanExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanExport")
            .field("sample_ratio", &self.sample_ratio)
            .finish_non_exhaustive()
    }
}

impl SpanExport {
    /// The export `settings` describe, for the process running `command`
    /// (`web` or `worker`, the resource's `herald.command`).
    pub fn start(
        settings: &TraceExportSettings,
        command: &'static str,
    ) -> Result<Self, ExportSetupError> {
        let resource = resource(settings, command);
        let processor = on_plain_thread(settings, move |exporter| {
            let mut processor = BatchSpanProcessor::builder(exporter).build();
            processor.set_resource(&resource);
            Ok(processor)
        })?;
        Ok(Self {
            processor: Arc::new(processor),
            scope: scope(),
            sample_ratio: settings.sample_ratio,
        })
    }

    /// Sends what is still queued and stops the processor's thread; blocks
    /// for at most [`SHUTDOWN_FLUSH`], then gives the rest up.
    pub fn shutdown(&self) {
        if let Err(e) = self.processor.shutdown_with_timeout(SHUTDOWN_FLUSH) {
            tracing::warn!(error = %e, "the OTLP trace export did not flush at shutdown");
        }
    }

    /// Whether the layer looks at `metadata` at all: the trace spans, and
    /// events worth a span event.
    pub fn wants(metadata: &Metadata<'_>) -> bool {
        if metadata.is_span() {
            metadata.fields().field("trace_id").is_some()
        } else {
            *metadata.level() <= Level::WARN
        }
    }
}

/// Exports one span, `herald doctor`, of a trace of its own, through the
/// exporter the workers use (its endpoint, timeout and `OTEL_EXPORTER_OTLP_*`
/// headers), and says whether the collector accepted it.
pub fn probe(settings: &TraceExportSettings) -> Result<(), ExportSetupError> {
    let resource = resource(settings, "doctor");
    on_plain_thread(settings, move |mut exporter| {
        exporter.set_resource(&resource);
        let root = herald_jobs::TraceParent::new_root();
        let mut span = PendingSpan::new("herald doctor");
        span.set("trace_id", &root.trace_id());
        span.set("span_id", &root.span_id());
        let mut data = span
            .finish(&scope(), 1.0)
            .ok_or_else(|| "the probe span has no ids".to_owned())?;
        data.span_kind = SpanKind::Internal;
        let sent = futures::executor::block_on(exporter.export(vec![data]));
        let _ = exporter.shutdown();
        sent.map_err(|e| e.to_string())
    })
}

/// The resource of the spans a process running `command` exports.
fn resource(settings: &TraceExportSettings, command: &'static str) -> Resource {
    Resource::builder_empty()
        .with_service_name(settings.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("herald.command", command),
        ])
        .build()
}

/// Herald as the instrumentation scope of its spans.
fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("herald")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// Builds the OTLP/HTTP exporter of `settings` and runs `with` on it, on
/// a plain thread: the exporter's blocking HTTP client owns a runtime of
/// its own, which may be neither built nor dropped on a Tokio worker
/// thread.
fn on_plain_thread<T: Send + 'static>(
    settings: &TraceExportSettings,
    with: impl FnOnce(opentelemetry_otlp::SpanExporter) -> Result<T, String> + Send + 'static,
) -> Result<T, ExportSetupError> {
    let url = settings.traces_url.to_string();
    let endpoint = url.clone();
    std::thread::spawn(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        with(exporter)
    })
    .join()
    .map_err(|_| "the exporter panicked".to_owned())
    .and_then(|outcome| outcome)
    .map_err(|reason| ExportSetupError { url, reason })
}

/// Whether a trace whose id is `trace_id` is exported at `ratio`: the
/// id's last 63 bits, read as a number, fall below `ratio` of their range.
/// Trace ids are random, so about `ratio` of the traces are kept, and any
/// process deciding on the same id decides the same.
pub fn kept(trace_id: &[u8; 16], ratio: f64) -> bool {
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    if ratio >= 1.0 {
        return true;
    }
    let value = u64::from_be_bytes(low) >> 1;
    // Compared as integers: the float of a 63-bit value may round up.
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    value < bound
}

/// A span on its way: what its fields said so far, and when it began.
struct PendingSpan {
    name: &'static str,
    start: SystemTime,
    trace_id: Option<[u8; 16]>,
    span_id: Option<[u8; 8]>,
    parent_span_id: Option<[u8; 8]>,
    sampled: bool,
    attributes: Vec<KeyValue>,
    events: Vec<Event>,
    error: Option<String>,
}

impl PendingSpan {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            start: SystemTime::now(),
            trace_id: None,
            span_id: None,
            parent_span_id: None,
            sampled: true,
            attributes: Vec::new(),
            events: Vec::new(),
            error: None,
        }
    }

    /// The finished span, if it has its ids and its trace is exported.
    fn finish(self, scope: &InstrumentationScope, ratio: f64) -> Option<SpanData> {
        let (Some(trace_id), Some(span_id)) = (self.trace_id, self.span_id) else {
            return None;
        };
        if !self.sampled || !kept(&trace_id, ratio) {
            return None;
        }
        let mut events = SpanEvents::default();
        events.events = self.events;
        Some(SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes(trace_id),
                SpanId::from_bytes(span_id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: self
                .parent_span_id
                .map_or(SpanId::INVALID, SpanId::from_bytes),
            // Every parent is in another process (the caller, the job's
            // producer) or reached through the job's traceparent.
            parent_span_is_remote: self.parent_span_id.is_some(),
            span_kind: if self.name == REQUEST_SPAN {
                SpanKind::Server
            } else {
                SpanKind::Consumer
            },
            name: Cow::Borrowed(self.name),
            start_time: self.start,
            end_time: SystemTime::now(),
            attributes: self.attributes,
            dropped_attributes_count: 0,
            events,
            links: SpanLinks::default(),
            status: match self.error {
                Some(description) => Status::error(description),
                None => Status::Unset,
            },
            instrumentation_scope: scope.clone(),
        })
    }
}

/// `text` as `N` bytes of lowercase or uppercase hex.
fn hex_id<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim_matches('"');
    if text.len() != N * 2 {
        return None;
    }
    let mut bytes = [0u8; N];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    (bytes != [0u8; N]).then_some(bytes)
}

impl PendingSpan {
    /// Takes the field `name`'s value: an id, the trace flags, or else an
    /// attribute.
    fn set(&mut self, name: &'static str, value: &str) {
        match name {
            "trace_id" => self.trace_id = hex_id(value),
            "span_id" => self.span_id = hex_id(value),
            "parent_span_id" => self.parent_span_id = hex_id(value),
            "trace_flags" => {
                self.sampled = u8::from_str_radix(value.trim_matches('"'), 16)
                    .is_ok_and(|flags| flags & 1 == 1)
            }
            name => self.attributes.push(KeyValue::new(name, value.to_owned())),
        }
    }
}

impl Visit for PendingSpan {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.attributes.push(KeyValue::new(
            field.name(),
            i64::try_from(value).unwrap_or(i64::MAX),
        ));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }
}

/// An event's message and its other fields.
#[derive(Default)]
struct EventFields {
    message: String,
    attributes: Vec<KeyValue>,
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.message);
        } else {
            self.attributes
                .push(KeyValue::new(field.name(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

impl<S> Layer<S> for SpanExport
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !Self::wants(attrs.metadata()) {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut pending = PendingSpan::new(attrs.metadata().name());
        attrs.record(&mut pending);
        span.extensions_mut().insert(pending);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(pending) = extensions.get_mut::<PendingSpan>() {
            values.record(pending);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            let mut extensions = span.extensions_mut();
            let Some(pending) = extensions.get_mut::<PendingSpan>() else {
                continue;
            };
            let mut fields = EventFields::default();
            event.record(&mut fields);
            fields
                .attributes
                .push(KeyValue::new("level", level.as_str()));
            if level == Level::ERROR {
                pending.error = Some(fields.message.clone());
            }
            pending.events.push(Event::new(
                fields.message,
                SystemTime::now(),
                fields.attributes,
                0,
            ));
            return;
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(pending) = span.extensions_mut().remove::<PendingSpan>() else {
            return;
        };
        if let Some(data) = pending.finish(&self.scope, self.sample_ratio) {
            self.processor.on_end(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace_ending(low: u64) -> [u8; 16] {
        let mut id = [0xabu8; 16];
        id[8..].copy_from_slice(&low.to_be_bytes());
        id
    }

    #[test]
    fn the_ratio_reads_the_trace_ids_low_bits_alike_everywhere() {
        let (low, high) = (trace_ending(1), trace_ending(u64::MAX));
        for ratio in [1.0, 0.5, 0.01] {
            assert!(kept(&low, ratio), "{ratio}");
        }
        assert!(kept(&high, 1.0));
        assert!(!kept(&high, 0.5));
        // Half the range: just below the middle is kept, the middle is not.
        assert!(kept(&trace_ending((1 << 63) - 2), 0.5));
        assert!(!kept(&trace_ending(1 << 63), 0.5));
        // Of 10,000 random ids a quarter, give or take.
        let kept_count = (0..10_000u64)
            .filter(|i| kept(&trace_ending(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)), 0.25))
            .count();
        assert!((2_200..=2_800).contains(&kept_count), "{kept_count}");
    }

    #[test]
    fn hex_ids_parse_and_all_zeros_is_none() {
        assert_eq!(hex_id::<2>("0aFf"), Some([0x0a, 0xff]));
        assert_eq!(hex_id::<2>("\"0aff\""), Some([0x0a, 0xff]));
        assert_eq!(hex_id::<2>("0000"), None);
        assert_eq!(hex_id::<2>("0a"), None);
        assert_eq!(hex_id::<2>("zzzz"), None);
        assert_eq!(hex_id::<2>("éé"), None);
    }

    fn scope() -> InstrumentationScope {
        InstrumentationScope::builder("herald").build()
    }

    #[test]
    fn a_span_with_its_ids_becomes_span_data_with_those_ids() {
        let mut span = PendingSpan::new(REQUEST_SPAN);
        span.trace_id = Some(trace_ending(7));
        span.span_id = Some([1, 2, 3, 4, 5, 6, 7, 8]);
        span.parent_span_id = Some([9; 8]);
        span.error = Some("boom".into());
        let data = span.finish(&scope(), 1.0).expect("exported");
        assert_eq!(
            data.span_context.trace_id(),
            TraceId::from_bytes(trace_ending(7))
        );
        assert_eq!(
            data.span_context.span_id(),
            SpanId::from_bytes([1, 2, 3, 4, 5, 6, 7, 8])
        );
        assert_eq!(data.parent_span_id, SpanId::from_bytes([9; 8]));
        assert!(data.parent_span_is_remote);
        assert_eq!(data.span_kind, SpanKind::Server);
        assert_eq!(data.status, Status::error("boom"));
        assert!(data.start_time <= data.end_time);

        let mut job = PendingSpan::new("push");
        job.trace_id = Some(trace_ending(7));
        job.span_id = Some([3; 8]);
        let data = job.finish(&scope(), 1.0).expect("exported");
        assert_eq!(data.span_kind, SpanKind::Consumer);
        assert_eq!(data.parent_span_id, SpanId::INVALID);
        assert!(!data.parent_span_is_remote);
    }

    #[test]
    fn no_ids_unsampled_or_outside_the_ratio_is_not_exported() {
        let with_ids = |low: u64| {
            let mut span = PendingSpan::new("push");
            span.trace_id = Some(trace_ending(low));
            span.span_id = Some([3; 8]);
            span
        };
        assert!(PendingSpan::new("push").finish(&scope(), 1.0).is_none());
        let mut unsampled = with_ids(1);
        unsampled.set("trace_flags", "00");
        assert!(unsampled.finish(&scope(), 1.0).is_none());
        let mut sampled = with_ids(1);
        sampled.set("trace_flags", "01");
        sampled.set("job_id", "j1");
        let data = sampled.finish(&scope(), 1.0).expect("exported");
        assert_eq!(data.attributes, vec![KeyValue::new("job_id", "j1")]);
        assert!(with_ids(u64::MAX).finish(&scope(), 0.5).is_none());
        assert!(with_ids(1).finish(&scope(), 0.5).is_some());
    }
}
