//! [`WorkerDriver`]: what a worker's backend does around its jobs —
//! register, heartbeat, fetch ahead, acknowledge behind — without making
//! a job wait for any of it.
//!
//! apalis's own `Persisted` runs these steps in series with the jobs: when
//! its batch runs out it records the finished jobs, then fetches the next
//! batch, and no job starts while either call is in flight (about a tenth
//! of a busy worker's time here). The driver runs each step alongside:
//!
//! - **Fetch ahead.** Once fewer than half a batch of leased jobs are left
//!   to start, the next batch is fetched while they run. Only after a full
//!   batch: a short one means the queue is drained, and the next fetch
//!   waits until the worker has nothing left to start (then it happens on
//!   every wake-up: the poll interval, the [`super::Doorbell`], a job
//!   finishing).
//! - **Acknowledge behind.** Finished jobs (reported by [`super::AckLayer`])
//!   are recorded in batches, one call in flight at a time: once a batch's
//!   worth has finished, once nothing is left to start, or [`ACK_DELAY`]
//!   after the first of them finished, whichever comes first. Jobs keep
//!   starting meanwhile. A job's hand-offs are enqueued by its
//!   acknowledgement ([`super::handoff`]), so the delay also bounds how long
//!   a finished job's successor waits under load.
//! - **Heartbeat** (with the orphan recovery it carries) in the background.
//!
//! Fetching stops while more than [`MAX_UNACKED_BATCHES`] batches of
//! finished jobs wait to be recorded, so a Redis that accepts fetches but
//! not acknowledgements cannot make a worker lease without bound.
//!
//! A failed Redis call stops the worker with the error (apalis then
//! rebuilds it under a new name; its leases go back to the queue after the
//! heartbeat timeout, as with a crash). Shutdown ([`WorkerDriver::poll_close`])
//! releases the leased jobs that never started and records every finished
//! one before it returns.

use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use apalis_core::{
    backend::{
        future::BoxSyncFuture,
        persistence::{Persistence, TaskEvent},
    },
    task::Task,
    worker::context::WorkerContext,
};
use futures::FutureExt;
use serde_json::Value;
use tokio::{
    sync::mpsc::{self, UnboundedReceiver},
    time::Sleep,
};

use super::{ack::AckLayer, persistence::QueuePersistence, QueueError};

/// Longest a finished job waits to be acknowledged while the worker is
/// busy with others (an idle worker acknowledges at once).
pub const ACK_DELAY: Duration = Duration::from_millis(20);

/// Batches of finished jobs that may wait for their acknowledgement before
/// the worker stops fetching more.
pub const MAX_UNACKED_BATCHES: usize = 4;

type Fetched = Vec<Task<Vec<u8>>>;

fn boxed<T>(fut: impl Future<Output = T> + Send + 'static) -> BoxSyncFuture<T> {
    fut.boxed().into()
}

/// Polls the call in `slot`, if any, emptying the slot once it is done:
/// `Pending` while it runs, `Ready(None)` when there is none.
fn poll_slot<T>(slot: &mut Option<BoxSyncFuture<T>>, cx: &mut Context<'_>) -> Poll<Option<T>> {
    let Some(fut) = slot else {
        return Poll::Ready(None);
    };
    let output = std::task::ready!(fut.poll_unpin(cx));
    *slot = None;
    Poll::Ready(Some(output))
}

/// Where the worker is in its life.
enum Registration {
    /// Not yet announced to Redis.
    Pending,
    /// The register call is in flight.
    Registering(BoxSyncFuture<Result<(), QueueError>>),
    /// Registered; jobs may be fetched.
    Registered,
    /// A call failed; the worker is stopping.
    Dead,
}

/// The worker side of a [`super::RedisQueue`]; see the module docs.
pub(super) struct WorkerDriver {
    persistence: QueuePersistence,
    /// Finished jobs, from the [`AckLayer`] this driver handed out.
    finished: Option<UnboundedReceiver<TaskEvent<Value>>>,
    registration: Registration,
    heartbeat_due: Option<Pin<Box<Sleep>>>,
    heartbeat: Option<BoxSyncFuture<Result<(), QueueError>>>,
    /// Leased jobs not yet started, oldest first.
    leased: VecDeque<Task<Vec<u8>>>,
    fetch: Option<BoxSyncFuture<Result<Fetched, QueueError>>>,
    /// The last fetch came back short: fetch again only once `leased` is
    /// empty.
    drained: bool,
    /// The last fetch came back empty: fetch again on the next wake-up,
    /// not on the poll that noticed it.
    queue_empty: bool,
    /// Finished jobs not yet sent to Redis.
    unacked: Vec<TaskEvent<Value>>,
    ack: Option<BoxSyncFuture<Result<(), QueueError>>>,
    ack_due: Option<Pin<Box<Sleep>>>,
    release: Option<BoxSyncFuture<Result<u64, QueueError>>>,
}

impl WorkerDriver {
    /// A driver for a worker of the queue `persistence` talks to.
    pub(super) fn new(persistence: QueuePersistence) -> Self {
        Self {
            persistence,
            finished: None,
            registration: Registration::Pending,
            heartbeat_due: None,
            heartbeat: None,
            leased: VecDeque::new(),
            fetch: None,
            drained: false,
            queue_empty: false,
            unacked: Vec::new(),
            ack: None,
            ack_due: None,
            release: None,
        }
    }

    /// The queue's connection and configuration.
    pub(super) fn persistence(&self) -> &QueuePersistence {
        &self.persistence
    }

    /// The layer that reports this worker's finished jobs to this driver.
    pub(super) fn ack_layer(&mut self) -> AckLayer {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.finished = Some(receiver);
        // Hand-offs keep their predecessors' order (see `AckLayer`).
        AckLayer::new(sender, self.persistence.downstream.is_some())
    }

    fn batch_size(&self) -> usize {
        self.persistence.config.batch_size.max(1)
    }

    /// Registers the worker first; afterwards keeps the heartbeat, the
    /// acknowledgements and a fetch ahead moving. Ready unless registering
    /// or a call failed.
    pub(super) fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), QueueError>> {
        loop {
            match &mut self.registration {
                Registration::Pending => {
                    let mut persistence = self.persistence.clone();
                    let worker = worker.clone();
                    self.registration = Registration::Registering(boxed(async move {
                        persistence.register(&worker).await
                    }));
                }
                Registration::Registering(fut) => match fut.poll_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => {
                        self.registration = Registration::Dead;
                        return Poll::Ready(Err(e));
                    }
                    Poll::Ready(Ok(())) => {
                        worker.heartbeat(cx);
                        self.registration = Registration::Registered;
                        self.arm_heartbeat();
                    }
                },
                Registration::Registered => break,
                Registration::Dead => return Poll::Ready(Ok(())),
            }
        }
        let driven = self
            .drive_heartbeat(cx, worker)
            .and_then(|()| self.drive_fetch(cx))
            .and_then(|()| self.drive_acks(cx, worker, false));
        match driven {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => {
                self.registration = Registration::Dead;
                Poll::Ready(Err(e))
            }
        }
    }

    /// The next leased job; fetches when none is left (and ahead of time
    /// after a full batch). Pending while the queue is empty.
    pub(super) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<Task<Vec<u8>>, QueueError>>> {
        if !matches!(self.registration, Registration::Registered) {
            return match self.registration {
                Registration::Dead => Poll::Ready(None),
                // poll_ready registers first; until then there is nothing.
                _ => Poll::Pending,
            };
        }
        loop {
            if let Err(e) = self.drive_fetch(cx) {
                self.registration = Registration::Dead;
                return Poll::Ready(Some(Err(e)));
            }
            if let Some(task) = self.leased.pop_front() {
                self.fetch_ahead(worker);
                if let Err(e) = self.drive_fetch(cx) {
                    self.registration = Registration::Dead;
                    return Poll::Ready(Some(Err(e)));
                }
                return Poll::Ready(Some(Ok(task)));
            }
            // Nothing leased. Record what finished before waiting.
            if let Err(e) = self.drive_acks(cx, worker, true) {
                self.registration = Registration::Dead;
                return Poll::Ready(Some(Err(e)));
            }
            if self.fetch.is_some() {
                // In flight; its answer wakes this worker.
                return Poll::Pending;
            }
            if std::mem::take(&mut self.queue_empty) || self.too_many_unacked() {
                // The queue was empty just now (or acknowledgements lag):
                // wait for a wake-up (the poll interval, the doorbell, a job
                // or an acknowledgement finishing).
                return Poll::Pending;
            }
            self.start_fetch(worker);
        }
    }

    /// Waits for the fetch in flight, releases every leased job that never
    /// started, and records every finished job.
    pub(super) fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), QueueError>> {
        if let Registration::Registering(fut) = &mut self.registration {
            match fut.poll_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(_) => self.registration = Registration::Registered,
            }
        }
        if let Some(fetched) = std::task::ready!(poll_slot(&mut self.fetch, cx)) {
            self.leased.extend(fetched?);
        }
        if self.release.is_none() && !self.leased.is_empty() {
            let mut persistence = self.persistence.clone();
            let worker = worker.clone();
            let tasks: Vec<_> = self.leased.drain(..).collect();
            self.release = Some(boxed(async move {
                persistence.reenqueue_abandoned(tasks, &worker).await
            }));
        }
        if let Some(released) = std::task::ready!(poll_slot(&mut self.release, cx)) {
            released?;
        }
        loop {
            if let Some(acked) = std::task::ready!(poll_slot(&mut self.ack, cx)) {
                acked?;
            }
            self.take_finished();
            if self.unacked.is_empty() {
                return Poll::Ready(Ok(()));
            }
            self.start_ack(worker);
        }
    }

    fn arm_heartbeat(&mut self) {
        let interval = self.persistence.config.heartbeat_interval;
        self.heartbeat_due = Some(Box::pin(tokio::time::sleep(interval)));
    }

    fn drive_heartbeat(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Result<(), QueueError> {
        let due = match &mut self.heartbeat_due {
            Some(sleep) => sleep.as_mut().poll(cx).is_ready(),
            None => false,
        };
        if due {
            self.heartbeat_due = None;
            let mut persistence = self.persistence.clone();
            let worker = worker.clone();
            self.heartbeat = Some(boxed(async move { persistence.heartbeat(&worker).await }));
        }
        if let Poll::Ready(Some(beat)) = poll_slot(&mut self.heartbeat, cx) {
            beat?;
            worker.heartbeat(cx);
            self.arm_heartbeat();
        }
        Ok(())
    }

    fn too_many_unacked(&self) -> bool {
        self.unacked.len() >= MAX_UNACKED_BATCHES * self.batch_size()
    }

    fn start_fetch(&mut self, worker: &WorkerContext) {
        let mut persistence = self.persistence.clone();
        let worker = worker.clone();
        self.fetch = Some(boxed(async move { persistence.fetch_next(&worker).await }));
    }

    /// Starts the next fetch while leased jobs remain, after a full batch.
    fn fetch_ahead(&mut self, worker: &WorkerContext) {
        let low = self.leased.len() < self.batch_size().div_ceil(2);
        if low && !self.drained && self.fetch.is_none() && !self.too_many_unacked() {
            self.start_fetch(worker);
        }
    }

    /// Polls the fetch in flight; its jobs join the leased ones.
    fn drive_fetch(&mut self, cx: &mut Context<'_>) -> Result<(), QueueError> {
        if let Poll::Ready(Some(fetched)) = poll_slot(&mut self.fetch, cx) {
            let fetched = fetched?;
            self.drained = fetched.len() < self.batch_size();
            self.queue_empty = fetched.is_empty();
            self.leased.extend(fetched);
        }
        Ok(())
    }

    fn take_finished(&mut self) {
        if let Some(finished) = &mut self.finished {
            while let Ok(event) = finished.try_recv() {
                self.unacked.push(event);
            }
        }
    }

    fn start_ack(&mut self, worker: &WorkerContext) {
        let events = std::mem::take(&mut self.unacked);
        let mut persistence = self.persistence.clone();
        let worker = worker.clone();
        self.ack_due = None;
        self.ack = Some(boxed(async move {
            persistence.handle_events(events, &worker).await
        }));
    }

    /// Polls the acknowledgement in flight and starts the next one when
    /// it is due; `idle` says the worker has nothing left to start.
    fn drive_acks(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
        idle: bool,
    ) -> Result<(), QueueError> {
        loop {
            match poll_slot(&mut self.ack, cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Some(acked)) => acked?,
                Poll::Ready(None) => {}
            }
            self.take_finished();
            if self.unacked.is_empty() {
                self.ack_due = None;
                return Ok(());
            }
            let idle = idle || self.leased.is_empty();
            let full = self.unacked.len() >= self.batch_size();
            let due = self
                .ack_due
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(ACK_DELAY)))
                .as_mut()
                .poll(cx)
                .is_ready();
            if !(idle || full || due) {
                return Ok(());
            }
            self.start_ack(worker);
        }
    }
}
