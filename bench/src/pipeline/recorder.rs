//! [`Recorder`]: the push sandbox behind a layer that notes when each
//! accepted event arrived and which message it carries.

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
use herald::{config::Settings, push::sandbox};
use secrecy::ExposeSecret;
use serde::Deserialize;
use tokio::sync::Notify;

use crate::queue::BenchError;

/// What the recording layer saw: accepted events and when they arrived.
#[derive(Debug, Default)]
pub(super) struct Receipts {
    /// Events accepted so far.
    pub count: AtomicU64,
    times: Mutex<Vec<(String, Instant)>>,
    /// Notified on each accepted event.
    pub arrived: Notify,
}

impl Receipts {
    /// The message ids and arrival times noted since the last call.
    pub fn take(&self) -> Vec<(String, Instant)> {
        std::mem::take(&mut *self.times.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The push sandbox behind a layer that timestamps each accepted event.
pub(super) struct Recorder {
    addr: SocketAddr,
    /// What the layer saw.
    pub receipts: Arc<Receipts>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    data: ProbeData,
}

#[derive(Default, Deserialize)]
struct ProbeData {
    #[serde(rename = "messageId", default)]
    message_id: Option<String>,
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
        .ok()
        .and_then(|p| p.data.message_id)
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
