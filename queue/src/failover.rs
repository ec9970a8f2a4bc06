//! Noticing a Sentinel failover.
//!
//! A connection opened from a `redis+sentinel://` URL stays on the master
//! that was current when it opened. After a failover that server is gone or
//! has become a read-only replica, and every fetch would fail. Rather than
//! swap connections under running jobs, the worker asks the sentinels
//! every heartbeat whether the master moved, and if it did, stops
//! gracefully with an error so its supervisor starts it again on the new
//! master (the queues' leases make this safe: nothing is lost).

use std::{future::Future, time::Duration};

use herald_jobs::redis_url;
use tokio::sync::oneshot;

/// A stop signal for a long-running process: completes when `shutdown`
/// does, or when the sentinels of `url` (asked every `every`) name a new
/// master. In the second case the receiver holds the description, so the
/// process can exit with a failure for its supervisor to start it again.
pub fn shutdown_or_failover<F>(
    shutdown: F,
    url: String,
    every: Duration,
) -> (
    impl Future<Output = ()> + Send + 'static,
    oneshot::Receiver<String>,
)
where
    F: Future<Output = ()> + Send + 'static,
{
    let (moved_tx, moved_rx) = oneshot::channel::<String>();
    let signal = async move {
        tokio::select! {
            _ = shutdown => {}
            moved = master_changed(url, every) => {
                tracing::error!(reason = %moved, "Redis failover: finishing the work in flight, then exiting");
                let _ = moved_tx.send(moved);
            }
        }
    };
    (signal, moved_rx)
}

/// Completes, with a description, once the sentinels name a master other
/// than the one current at the call; never completes for a URL that is not
/// a Sentinel URL. Sentinels that cannot be reached are logged and asked
/// again on the next round.
pub async fn master_changed(url: String, every: Duration) -> String {
    let first = match redis_url::master_address(&url).await {
        Ok(Some(addr)) => addr,
        Ok(None) => return std::future::pending().await,
        Err(e) => {
            tracing::warn!(error = %e, "cannot ask the sentinels for the master; failover will not be noticed");
            return std::future::pending().await;
        }
    };
    loop {
        tokio::time::sleep(every).await;
        match redis_url::master_address(&url).await {
            Ok(Some(now)) if now != first => {
                return format!("the Redis master moved from {first} to {now}");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot ask the sentinels for the master"),
        }
    }
}
