//! [`Recorder`]: the push sandbox behind a layer that notes when each
//! accepted event arrived and what it carries: a `new_message` event's
//! message id, or another event's name and export key (see [`receipt_id`]).

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Instant,
};

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use herald::{config::Settings, push::NEW_MESSAGE_EVENT};
use herald_push_sandbox as sandbox;
use secrecy::ExposeSecret;
use serde::Deserialize;
use tokio::sync::Notify;

use crate::queue::BenchError;

/// What the recording layer saw: accepted events and when they arrived.
#[derive(Debug, Default)]
pub(crate) struct Receipts {
    /// Events accepted so far.
    pub count: AtomicU64,
    times: Mutex<Vec<(String, Instant)>>,
    /// Notified on each accepted event.
    pub arrived: Notify,
}

impl Receipts {
    /// The receipt ids ([`receipt_id`]) and arrival times noted since the
    /// last call.
    pub fn take(&self) -> Vec<(String, Instant)> {
        std::mem::take(&mut *self.times.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// What a receipt names: a `new_message` event's message id; for any other
/// event (an export's `export_progress`, `export_finish`, ...) its name and
/// the export key it carries, as `NAME:KEY`.
pub(crate) fn receipt_id(name: &str, message_id: Option<String>, key: Option<String>) -> String {
    match message_id {
        Some(id) if name == NEW_MESSAGE_EVENT || name.is_empty() => id,
        _ => format!("{name}:{}", key.unwrap_or_default()),
    }
}

/// The push sandbox behind a layer that timestamps each accepted event.
pub(crate) struct Recorder {
    addr: SocketAddr,
    /// What the layer saw.
    pub receipts: Arc<Receipts>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    name: String,
    #[serde(default)]
    data: ProbeData,
}

#[derive(Default, Deserialize)]
struct ProbeData {
    #[serde(rename = "messageId", default)]
    message_id: Option<String>,
    #[serde(default)]
    key: Option<String>,
}

impl Recorder {
    /// A sandbox with the recording layer on a free loopback port.
    pub async fn spawn(settings: &Settings) -> Result<Self, BenchError> {
        let receipts = Arc::new(Receipts::default());
        let router = sandbox::router(sandbox::SandboxCredentials {
            app_id: settings.tuisongbao.app_id.clone(),
            secret: settings.tuisongbao.secret.expose_secret().to_owned(),
        })
        .layer(axum::middleware::from_fn_with_state(
            receipts.clone(),
            record,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(Self {
            addr,
            receipts,
            task,
        })
    }

    /// The sandbox's base URL.
    pub fn url(&self) -> Result<reqwest::Url, BenchError> {
        reqwest::Url::parse(&format!("http://{}", self.addr))
            .map_err(|e| BenchError::Enqueue(e.to_string()))
    }

    /// Stops serving.
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// The sandbox's Tuisongbao route.
const EVENTS_ROUTE: &str = "/v2/open/engine/events";

/// Notes the arrival time and message id of every event the sandbox accepts.
async fn record(State(receipts): State<Arc<Receipts>>, request: Request, next: Next) -> Response {
    let at = Instant::now();
    if request.uri().path() != EVENTS_ROUTE {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(_) => return next.run(Request::from_parts(parts, Body::empty())).await,
    };
    let id = serde_json::from_slice::<Probe>(&bytes)
        .map(|p| receipt_id(&p.name, p.data.message_id, p.data.key))
        .unwrap_or_default();
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if response.status().is_success() {
        receipts
            .times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, at));
        receipts.count.fetch_add(1, Ordering::Release);
        receipts.arrived.notify_one();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_names_the_message_or_the_event_and_its_export() {
        let id = || Some("65a1f0c2e4b0a1b2c3d4e5f6".to_owned());
        assert_eq!(
            receipt_id("new_message", id(), None),
            "65a1f0c2e4b0a1b2c3d4e5f6"
        );
        assert_eq!(
            receipt_id("export_finish", None, Some("k1".to_owned())),
            "export_finish:k1"
        );
        assert_eq!(
            receipt_id("export_progress", None, None),
            "export_progress:"
        );
    }
}
