//! Each request's id: in its log lines, in its answer's `X-Request-Id`
//! header, and in the body of an error that hides its cause.
//!
//! An answer to a failure inside Herald (a database that did not answer,
//! say) says only that something failed and names the request; the cause
//! — a driver's error, with hosts and ports — goes to the log, under the
//! same id, for the operator. [`current`] gives the id to the code that
//! builds such an answer (`super::problem::Problem::unavailable`).
//!
//! Each request is also a span of a W3C trace: of the caller's, when it
//! sends a `traceparent` header, else of a trace it starts. Its log lines
//! carry `trace_id` and `span_id`, and a job it enqueues carries its
//! `traceparent` ([`trace`]), so the worker's spans continue the trace.
//!
//! Written here rather than with tower-http's request-id layers: those set
//! and copy the header, but the id must also reach an error built deep in
//! a handler, which a task-local does without threading it through every
//! call.

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};
use tracing::Instrument;

/// The header that carries the id.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static CURRENT: String;
    static TRACE: herald_jobs::TraceParent;
}

/// The header a caller's trace context comes in.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The request's span as a `traceparent`, for the jobs it enqueues; `None`
/// outside a request.
pub fn trace() -> Option<herald_jobs::TraceParent> {
    TRACE.try_with(|trace| *trace).ok()
}

/// The id of the request being handled, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Middleware: gives the request an id (a ULID; an id the client sent is
/// not reused, so log lines cannot be made to collide), runs it in a span
/// and a task-local carrying the id, and answers with the id's header.
pub async fn with_id(request: Request, next: Next) -> Response {
    let id = ulid::Ulid::generate().to_string();
    let caller = request
        .headers()
        .get(&TRACEPARENT)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| herald_jobs::TraceParent::parse(text).ok());
    let trace = caller.map_or_else(herald_jobs::TraceParent::new_root, |c| c.child());
    let span = tracing::info_span!(
        crate::telemetry::otlp::REQUEST_SPAN,
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        trace_id = %trace.trace_id(),
        span_id = %trace.span_id(),
        parent_span_id = tracing::field::Empty,
        trace_flags = %crate::telemetry::trace_flags(&trace),
    );
    if let Some(caller) = caller {
        span.record("parent_span_id", tracing::field::display(caller.span_id()));
    }
    let mut response = CURRENT
        .scope(
            id.clone(),
            TRACE.scope(trace, next.run(request).instrument(span)),
        )
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    response
}
