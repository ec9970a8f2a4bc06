//! The guard on an export's helper tasks.
//!
//! An export spawns tasks beside its main loop: the cursor reader, one
//! renderer per batch in flight, the cancellation check, the row count.
//! Each is held as an [`AbortOnDrop`], so an export that ends early (it
//! failed, or was cancelled) stops its helpers with it instead of leaving
//! them reading from the database for nobody.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::task::{JoinError, JoinHandle};

use super::ExportError;

/// A spawned task that is aborted when its handle is dropped. Awaiting it
/// gives the task's result, as awaiting its [`JoinHandle`] does.
#[derive(Debug)]
pub(super) struct AbortOnDrop<T>(JoinHandle<T>);

impl<T: Send + 'static> AbortOnDrop<T> {
    /// Spawns `task` on the runtime.
    pub(super) fn spawn(task: impl Future<Output = T> + Send + 'static) -> Self {
        Self(tokio::spawn(task))
    }
}

impl<T> AbortOnDrop<T> {
    /// Whether the task has ended (awaiting it will not wait).
    pub(super) fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// Waits for the task's result; a task that panicked or was aborted is
    /// an export error.
    pub(super) async fn finish(self) -> Result<T, ExportError> {
        self.await
            .map_err(|e| ExportError::Write(std::io::Error::other(e)))
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_task_is_aborted_and_an_awaited_one_gives_its_result() {
        assert_eq!(AbortOnDrop::spawn(async { 7 }).finish().await.unwrap(), 7);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let waiting = AbortOnDrop::spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(waiting);
        // The task dropped its sender when it was aborted.
        assert!(rx.await.is_err());
    }
}
