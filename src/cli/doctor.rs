//! `herald doctor`: one line per dependency, non-zero exit if any fails;
//! the trace collector is one only when `trace.otlp_endpoint` is set.

use std::process::ExitCode;

use herald::{
    config::Settings,
    push::{rate_limit::RateLimiter, Event, EventPusher, Provider},
    queue, store,
};

/// A channel nobody subscribes to, so the check disturbs no user.
const DOCTOR_CHANNEL: &str = "private-herald-doctor";

pub async fn run(settings: &Settings) -> ExitCode {
    let mut checks = vec![
        ("redis", check_redis(settings).await),
        ("mongodb", check_mongodb(settings).await),
        ("push", check_push(settings).await),
    ];
    if let Some(export) = &settings.trace_export {
        checks.push(("traces", check_traces(export).await));
    }
    let mut failed = false;
    for (name, result) in &checks {
        match result {
            Ok(detail) => println!("{name:<8} ok    {detail}"),
            Err(reason) => {
                failed = true;
                println!("{name:<8} FAIL  {reason}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn check_redis(settings: &Settings) -> Result<String, String> {
    let mut conn = queue::connect(settings.redis.url.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let configured = settings.redis.queue_shards;
    let shards = match herald::queues::shards::stored(&mut conn, &settings.redis.namespace)
        .await
        .map_err(|e| e.to_string())?
    {
        None => format!("{configured} queue shards; no worker has run yet"),
        Some(stored) if stored == configured => format!("{configured} queue shards"),
        Some(stored) => format!(
            "{configured} queue shards configured but the workers use {stored}: producers follow the workers; set the same HERALD_REDIS_QUEUE_SHARDS everywhere"
        ),
    };
    Ok(format!(
        "{} answers PING (namespace {}, {shards})",
        herald_jobs::redact_url(&settings.redis.url),
        settings.redis.namespace
    ))
}

async fn check_mongodb(settings: &Settings) -> Result<String, String> {
    let database = store::connect(&settings.mongodb)
        .await
        .map_err(|e| e.to_string())?;
    let facts = store::MessageExpiry::new(&database).facts().await;
    store::close(&database).await;
    let facts = facts.map_err(|e| e.to_string())?;
    let oldest = facts
        .oldest
        .and_then(herald::message::rfc3339)
        .map_or_else(|| "none stored".to_owned(), |at| format!("oldest {at}"));
    let kept = match settings.message_retention.keep {
        None => "kept until their expiresAt, else forever".to_owned(),
        Some(keep) => format!("kept {} days", keep.as_secs() / 86_400),
    };
    Ok(format!(
        "{} answers ping (database {}; message: {} documents, {:.1} MiB, {oldest}; {kept})",
        herald_jobs::redact_url(&settings.mongodb.url),
        settings.mongodb.database,
        facts.documents,
        facts.bytes as f64 / 1_048_576.0,
    ))
}

async fn check_push(settings: &Settings) -> Result<String, String> {
    // One request: it does not wait for a turn of the shared rate limit.
    let client = Provider::from_settings(settings, None, RateLimiter::unlimited())
        .map_err(|e| e.to_string())?;
    let (app_id, credentials) = match &client {
        Provider::Tuisongbao(_) => (
            &settings.tuisongbao.app_id,
            "HERALD_TUISONGBAO_APP_ID and HERALD_TUISONGBAO_SECRET",
        ),
        Provider::Pusher(_) => (
            &settings.pusher.app_id,
            "HERALD_PUSHER_APP_ID, HERALD_PUSHER_KEY and HERALD_PUSHER_SECRET",
        ),
    };
    let event = Event {
        name: "herald_doctor".to_owned(),
        data: serde_json::json!({ "check": "herald doctor" }),
        channels: vec![DOCTOR_CHANNEL.to_owned()],
    };
    match client.send(&event).await {
        Ok(()) => Ok(format!(
            "{} accepted a test event (app id {})",
            client.endpoint(),
            app_id
        )),
        Err(e) if matches!(e.status(), Some(401 | 404)) => {
            Err(format!("{e} (check {credentials})"))
        }
        Err(e) if e.status() == Some(403) => Err(format!(
            "{e} (the app is over its call limit or quota; pushes are retried until it is not)"
        )),
        Err(e) => Err(e.to_string()),
    }
}

async fn check_traces(export: &herald::config::TraceExportSettings) -> Result<String, String> {
    let probe = export.clone();
    match tokio::task::spawn_blocking(move || herald::telemetry::otlp::probe(&probe)).await {
        Ok(Ok(())) => Ok(format!(
            "{} accepted a test span (OTLP/HTTP, service.name {})",
            export.traces_url, export.service_name
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the probe panicked".to_owned()),
    }
}
