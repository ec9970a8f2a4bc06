//! Termination signals.
//!
//! Supervisors stop a process with SIGTERM; a developer presses Ctrl-C
//! (SIGINT). Either one starts a graceful shutdown.

/// Completes when the process receives SIGTERM or SIGINT.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
                    _ = int.recv() => tracing::info!(signal = "SIGINT", "signal received"),
                }
            }
            _ => {
                // Handlers cannot be installed (very unusual); fall back to Ctrl-C.
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
