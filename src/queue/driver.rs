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
//! **Redis going away stops nothing.** A failed call (Redis restarting, a
//! broken connection, `LOADING` while it reads its AOF) is tried again
//! after a short pause that grows to [`super::redis_retry::RETRY_MAX`],
//! for as long as it takes, by the same worker under the same name, so its
//! leases stay its own:
//!
//! - finished jobs' acknowledgements are kept, in order, and sent again
//!   (their hand-offs carry idempotency keys, and a job an earlier try did
//!   record is simply not recorded twice), before this worker could ever
//!   see one of them again;
//! - leased jobs that have not started yet start as usual, running ones
//!   finish as usual; only fetching more waits for Redis;
//! - a fetch that failed may have leased jobs whose answer never arrived:
//!   before the next fetch, every id leased to this worker that it does not
//!   know is handed back to the head of the queue ([`reconcile`]);
//! - a worker that was presumed dead meanwhile (its registration is gone)
//!   registers again.
//!
//! The first failure is logged at `warn` with what was being done, and the
//! recovery at `info` with how long Redis was away.
//!
//! Shutdown ([`WorkerDriver::poll_close`]) releases the leased jobs that
//! never started and records every finished one before it returns, trying
//! until Redis answers (the worker's shutdown timeout bounds the wait).
//!
//! [`reconcile`]: super::persistence::QueuePersistence::reconcile

use std::{
    collections::{HashSet, VecDeque},
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use apalis_core::{
    backend::future::BoxSyncFuture,
    task::{status::Status, Task},
    worker::context::WorkerContext,
};
use futures::FutureExt;
use tokio::{
    sync::mpsc::{self, UnboundedReceiver},
    time::Sleep,
};

use super::{
    ack::{AckLayer, Finished},
    decode::UndecodablePayload,
    persistence::QueuePersistence,
    redis_retry::{Backoff, RedisHealth},
    QueueError,
};

/// Longest a finished job waits to be acknowledged while the worker is
/// busy with others (an idle worker acknowledges at once).
pub const ACK_DELAY: Duration = Duration::from_millis(20);

/// Batches of finished jobs that may wait for their acknowledgement before
/// the worker stops fetching more.
pub const MAX_UNACKED_BATCHES: usize = 4;

type Fetched = Vec<Task<Vec<u8>>>;
type Events = Vec<Finished>;

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
    /// Not announced to Redis (yet, or again after Redis forgot it).
    Pending,
    /// The register call is in flight.
    Registering(BoxSyncFuture<Result<(), QueueError>>),
    /// Registered; jobs may be fetched.
    Registered,
}

/// The worker side of a [`super::RedisQueue`]; see the module docs.
pub(super) struct WorkerDriver {
    persistence: QueuePersistence,
    /// Finished jobs, from the [`AckLayer`] this driver handed out.
    finished: Option<UnboundedReceiver<Finished>>,
    registration: Registration,
    register_backoff: Backoff,
    heartbeat_due: Option<Pin<Box<Sleep>>>,
    heartbeat: Option<BoxSyncFuture<Result<(), QueueError>>>,
    heartbeat_backoff: Backoff,
    /// Leased jobs not yet started, oldest first.
    leased: VecDeque<Task<Vec<u8>>>,
    /// Ids leased to this worker and not yet acknowledged (leased, running
    /// or finished): what [`QueuePersistence::reconcile`] must not hand back.
    held: HashSet<String>,
    fetch: Option<BoxSyncFuture<Result<Fetched, QueueError>>>,
    fetch_backoff: Backoff,
    /// A fetch failed: its jobs may be leased to this worker without this
    /// worker knowing them. Reconcile before fetching again.
    must_reconcile: bool,
    reconcile: Option<BoxSyncFuture<Result<u64, QueueError>>>,
    /// The last fetch came back short: fetch again only once `leased` is
    /// empty.
    drained: bool,
    /// The last fetch came back empty: fetch again on the next wake-up,
    /// not on the poll that noticed it.
    queue_empty: bool,
    /// Finished jobs not yet recorded in Redis, oldest first.
    unacked: Events,
    ack: Option<BoxSyncFuture<(Events, Result<(), QueueError>)>>,
    ack_due: Option<Pin<Box<Sleep>>>,
    ack_backoff: Backoff,
    /// The acknowledgement in flight is a retry of one that failed.
    ack_retrying: bool,
    release: Option<BoxSyncFuture<Result<u64, QueueError>>>,
    release_backoff: Backoff,
    health: RedisHealth,
}

impl WorkerDriver {
    /// A driver for a worker of the queue `persistence` talks to.
    pub(super) fn new(persistence: QueuePersistence) -> Self {
        Self {
            persistence,
            finished: None,
            registration: Registration::Pending,
            register_backoff: Backoff::default(),
            heartbeat_due: None,
            heartbeat: None,
            heartbeat_backoff: Backoff::default(),
            leased: VecDeque::new(),
            held: HashSet::new(),
            fetch: None,
            fetch_backoff: Backoff::default(),
            must_reconcile: false,
            reconcile: None,
            drained: false,
            queue_empty: false,
            unacked: Vec::new(),
            ack: None,
            ack_due: None,
            ack_backoff: Backoff::default(),
            ack_retrying: false,
            release: None,
            release_backoff: Backoff::default(),
            health: RedisHealth::default(),
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

    fn queue_name(&self) -> &str {
        &self.persistence.config.name
    }

    fn redis_failed(
        &mut self,
        worker: &WorkerContext,
        operation: &'static str,
        error: &QueueError,
    ) {
        let queue = self.persistence.config.name.clone();
        self.health.failed(&queue, worker.name(), operation, error);
    }

    fn redis_answered(&mut self, worker: &WorkerContext) {
        let queue = self.persistence.config.name.clone();
        self.health.answered(&queue, worker.name());
    }

    /// Records `task` dead without running it: its payload cannot become
    /// the worker's arguments. The record goes out with the next
    /// acknowledgement batch, like any finished job's.
    pub(super) fn reject(&mut self, task: Task<Vec<u8>>, reason: UndecodablePayload) {
        let Some(task_id) = task.task_id().cloned() else {
            return;
        };
        let attempt = task.attempt() + 1;
        tracing::warn!(
            job_id = %task_id,
            queue = self.queue_name(),
            attempt,
            error = %reason,
            "job rejected before it ran: its payload cannot be decoded; recorded dead"
        );
        self.unacked.push(Finished {
            task_id,
            attempt,
            status: Status::Killed,
            result: Err(reason.to_string()),
            handoff: None,
        });
    }

    /// Registers the worker first; afterwards keeps the heartbeat, the
    /// acknowledgements and a fetch ahead moving. Ready once registered;
    /// never an error (failed calls are tried again, see the module docs).
    pub(super) fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), QueueError>> {
        if self.poll_registration(cx, worker).is_pending() {
            // Jobs already leased keep being acknowledged meanwhile.
            self.drive_acks(cx, worker, false);
            return Poll::Pending;
        }
        self.drive_heartbeat(cx, worker);
        self.drive_fetch(cx, worker);
        self.drive_acks(cx, worker, false);
        Poll::Ready(Ok(()))
    }

    /// Drives the registration; ready once registered.
    fn poll_registration(&mut self, cx: &mut Context<'_>, worker: &WorkerContext) -> Poll<()> {
        loop {
            match &mut self.registration {
                Registration::Registered => return Poll::Ready(()),
                Registration::Pending => {
                    if !self.register_backoff.ready(cx) {
                        return Poll::Pending;
                    }
                    let mut persistence = self.persistence.clone();
                    let worker = worker.clone();
                    self.registration = Registration::Registering(boxed(async move {
                        persistence.register(&worker).await
                    }));
                }
                Registration::Registering(fut) => match fut.poll_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => {
                        self.registration = Registration::Pending;
                        self.redis_failed(worker, "register worker", &e);
                        self.register_backoff.failed(cx);
                    }
                    Poll::Ready(Ok(())) => {
                        self.register_backoff.succeeded();
                        self.redis_answered(worker);
                        worker.heartbeat(cx);
                        self.registration = Registration::Registered;
                        self.arm_heartbeat(self.persistence.config.heartbeat_interval);
                    }
                },
            }
        }
    }

    /// The next leased job; fetches when none is left (and ahead of time
    /// after a full batch). Pending while the queue is empty or Redis is
    /// away; never an error.
    pub(super) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<Task<Vec<u8>>, QueueError>>> {
        if !matches!(self.registration, Registration::Registered) {
            // poll_ready registers first; until then there is nothing.
            return Poll::Pending;
        }
        loop {
            self.drive_fetch(cx, worker);
            if let Some(task) = self.leased.pop_front() {
                self.fetch_ahead(cx, worker);
                self.drive_fetch(cx, worker);
                return Poll::Ready(Some(Ok(task)));
            }
            // Nothing leased. Record what finished before waiting.
            self.drive_acks(cx, worker, true);
            if self.fetch.is_some() || self.reconcile.is_some() {
                // In flight; its answer wakes this worker.
                return Poll::Pending;
            }
            if !matches!(self.registration, Registration::Registered) {
                // Redis forgot this worker; poll_ready registers it again.
                return Poll::Pending;
            }
            if std::mem::take(&mut self.queue_empty) || self.too_many_unacked() {
                // The queue was empty just now (or acknowledgements lag):
                // wait for a wake-up (the poll interval, the doorbell, a job
                // or an acknowledgement finishing).
                return Poll::Pending;
            }
            if !self.fetch_backoff.ready(cx) {
                return Poll::Pending;
            }
            self.start_fetch(worker);
        }
    }

    /// Waits for the fetch in flight, releases every leased job that never
    /// started, and records every finished job, trying again while Redis
    /// is away.
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
        if self.fetch.is_some() || self.reconcile.is_some() {
            self.drive_fetch(cx, worker);
            if self.fetch.is_some() || self.reconcile.is_some() {
                return Poll::Pending;
            }
        }
        loop {
            if let Some(released) = std::task::ready!(poll_slot(&mut self.release, cx)) {
                match released {
                    Ok(_) => {
                        self.release_backoff.succeeded();
                        self.redis_answered(worker);
                        for task in self.leased.drain(..) {
                            if let Some(id) = task.task_id() {
                                self.held.remove(&id.to_string());
                            }
                        }
                    }
                    Err(e) => {
                        self.redis_failed(worker, "release unstarted jobs", &e);
                        self.release_backoff.failed(cx);
                    }
                }
            }
            if self.leased.is_empty() {
                break;
            }
            if !self.release_backoff.ready(cx) {
                return Poll::Pending;
            }
            let mut persistence = self.persistence.clone();
            let owner = worker.clone();
            let ids: Vec<String> = self
                .leased
                .iter()
                .filter_map(|t| t.task_id().map(|id| id.to_string()))
                .collect();
            self.release = Some(boxed(
                async move { persistence.release_ids(&ids, &owner).await },
            ));
        }
        loop {
            self.drive_acks(cx, worker, true);
            if self.ack.is_some() {
                return Poll::Pending;
            }
            self.take_finished();
            if self.unacked.is_empty() {
                return Poll::Ready(Ok(()));
            }
            if !self.ack_backoff.ready(cx) {
                return Poll::Pending;
            }
        }
    }

    fn arm_heartbeat(&mut self, after: Duration) {
        self.heartbeat_due = Some(Box::pin(tokio::time::sleep(after)));
    }

    fn drive_heartbeat(&mut self, cx: &mut Context<'_>, worker: &WorkerContext) {
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
        match poll_slot(&mut self.heartbeat, cx) {
            Poll::Ready(Some(Ok(()))) => {
                self.heartbeat_backoff.succeeded();
                self.redis_answered(worker);
                worker.heartbeat(cx);
                self.arm_heartbeat(self.persistence.config.heartbeat_interval);
            }
            Poll::Ready(Some(Err(e))) => {
                self.redis_failed(worker, "heartbeat", &e);
                // Beat again soon: a long gap would make this worker look dead.
                let pause = self.heartbeat_backoff.next_pause();
                self.arm_heartbeat(pause);
                self.drive_heartbeat(cx, worker);
            }
            Poll::Ready(None) | Poll::Pending => {}
        }
    }

    fn too_many_unacked(&self) -> bool {
        self.unacked.len() >= MAX_UNACKED_BATCHES * self.batch_size()
    }

    /// Starts the next fetch, or first the reconciliation a failed fetch
    /// calls for.
    fn start_fetch(&mut self, worker: &WorkerContext) {
        let mut persistence = self.persistence.clone();
        let worker = worker.clone();
        if self.must_reconcile {
            let held = self.held.clone();
            self.reconcile = Some(boxed(
                async move { persistence.reconcile(&held, &worker).await },
            ));
        } else {
            self.fetch = Some(boxed(async move { persistence.fetch_next(&worker).await }));
        }
    }

    /// Starts the next fetch while leased jobs remain, after a full batch.
    fn fetch_ahead(&mut self, cx: &mut Context<'_>, worker: &WorkerContext) {
        let low = self.leased.len() < self.batch_size().div_ceil(2);
        let idle = self.fetch.is_none() && self.reconcile.is_none();
        if low && !self.drained && idle && !self.too_many_unacked() && self.fetch_backoff.ready(cx)
        {
            self.start_fetch(worker);
        }
    }

    /// Polls the fetch (or reconciliation) in flight; fetched jobs join the
    /// leased ones.
    fn drive_fetch(&mut self, cx: &mut Context<'_>, worker: &WorkerContext) {
        match poll_slot(&mut self.reconcile, cx) {
            Poll::Ready(Some(Ok(returned))) => {
                self.must_reconcile = false;
                self.fetch_backoff.succeeded();
                self.redis_answered(worker);
                if returned > 0 {
                    tracing::info!(
                        queue = self.queue_name(),
                        worker = worker.name(),
                        jobs = returned,
                        "handed back jobs a failed fetch had leased to this worker"
                    );
                }
            }
            Poll::Ready(Some(Err(e))) => {
                self.redis_failed(worker, "reconcile leases", &e);
                self.fetch_backoff.failed(cx);
            }
            Poll::Ready(None) | Poll::Pending => {}
        }
        match poll_slot(&mut self.fetch, cx) {
            Poll::Ready(Some(Ok(fetched))) => {
                self.fetch_backoff.succeeded();
                self.redis_answered(worker);
                self.drained = fetched.len() < self.batch_size();
                self.queue_empty = fetched.is_empty();
                self.held.extend(
                    fetched
                        .iter()
                        .filter_map(|t| t.task_id().map(|id| id.to_string())),
                );
                self.leased.extend(fetched);
            }
            Poll::Ready(Some(Err(e))) => {
                if e.is_unregistered() {
                    // Presumed dead while Redis was away (or paused): this
                    // worker's leases went to others. Register again.
                    tracing::warn!(
                        queue = self.queue_name(),
                        worker = worker.name(),
                        "this worker was presumed dead and forgotten; registering again"
                    );
                    self.registration = Registration::Pending;
                } else {
                    self.redis_failed(worker, "fetch", &e);
                    self.must_reconcile = true;
                }
                self.fetch_backoff.failed(cx);
            }
            Poll::Ready(None) | Poll::Pending => {}
        }
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
        let owner = worker.clone();
        let retrying = self.ack_retrying;
        self.ack_due = None;
        self.ack = Some(boxed(async move {
            let recorded = persistence.acknowledge(&events, &owner, retrying).await;
            (events, recorded)
        }));
    }

    /// Polls the acknowledgement in flight and starts the next one when
    /// it is due; `idle` says the worker has nothing left to start.
    fn drive_acks(&mut self, cx: &mut Context<'_>, worker: &WorkerContext, idle: bool) {
        loop {
            match poll_slot(&mut self.ack, cx) {
                Poll::Pending => return,
                Poll::Ready(Some((events, Ok(())))) => {
                    self.ack_backoff.succeeded();
                    self.ack_retrying = false;
                    self.redis_answered(worker);
                    for finished in &events {
                        self.held.remove(&finished.task_id.to_string());
                    }
                }
                Poll::Ready(Some((mut events, Err(e)))) => {
                    self.redis_failed(worker, "acknowledge", &e);
                    // Kept, ahead of the jobs that finished since.
                    events.append(&mut self.unacked);
                    self.unacked = events;
                    self.ack_retrying = true;
                    self.ack_backoff.failed(cx);
                }
                Poll::Ready(None) => {}
            }
            self.take_finished();
            if self.unacked.is_empty() {
                self.ack_due = None;
                return;
            }
            if !self.ack_backoff.ready(cx) {
                return;
            }
            let idle = idle || self.leased.is_empty();
            let full = self.unacked.len() >= self.batch_size();
            let due = self
                .ack_due
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(ACK_DELAY)))
                .as_mut()
                .poll(cx)
                .is_ready();
            if !(idle || full || due || self.ack_retrying) {
                return;
            }
            self.start_ack(worker);
        }
    }
}
