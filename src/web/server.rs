//! Accepting connections with limits a public listener needs.
//!
//! `axum::serve` has no setting for how long a client may take to send its
//! headers, nor for how many connections it holds, so `herald web` runs its
//! own accept loop over hyper-util's connection builder:
//!
//! - **Header-read timeout** (`web.header_timeout_secs`): a client that
//!   trickles its request headers (slowloris) is cut off when it runs out,
//!   instead of holding a connection and a task for as long as it likes.
//! - **Connection cap** (`web.max_connections`): a semaphore permit per
//!   connection; past the cap, new connections wait in the listen backlog
//!   rather than each getting a task.
//! - **The peer's address** goes into every request ([`PeerAddr`]), for
//!   the throttle and the audit trail.
//! - **Graceful shutdown**: when `shutdown` completes, no connection is
//!   accepted any more, and those open finish their requests (bounded by
//!   [`DRAIN`]).
//!
//! Request timeouts, body limits and headers are tower layers on the router
//! (see `super::hardened`).

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use axum::{extract::Request, Router};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{net::TcpListener, sync::Semaphore};
use tower::ServiceExt;

use super::client::PeerAddr;

/// Longest the open connections get to finish after shutdown begins.
pub const DRAIN: Duration = Duration::from_secs(10);

/// The connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// Most connections at once.
    pub max_connections: usize,
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait a little and go on
                    // rather than stop serving.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                let router = router.clone();
                async move {
                    let response = router.oneshot(request.map(axum::body::Body::new)).await;
                    Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
                }
            });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open {} s after shutdown began; closing them",
            DRAIN.as_secs()
        );
    }
    Ok(())
}
