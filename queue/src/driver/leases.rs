//! [`Leases`]: the jobs leased to this worker that have not started yet,
//! and the calls that lease, reconcile and release them.
//!
//! - **Fetch ahead.** Once fewer than half a batch of leased jobs are left
//!   to start, the next batch is fetched while they run, but only after a
//!   full batch: a short one means the queue is drained, and the next
//!   fetch waits until the worker has nothing left to start.
//! - **Reconcile after a failed fetch.** A fetch whose answer never
//!   arrived may have leased jobs to this worker all the same. Before the
//!   next fetch, every id leased to this worker that it does not hold is
//!   handed back to the head of the queue
//!   ([`QueuePersistence::reconcile`]).
//! - **Release on shutdown.** Leased jobs that never started go back to
//!   the head of the queue.
//!
//! [`QueuePersistence::reconcile`]: crate::persistence::QueuePersistence::reconcile

use std::{
    collections::VecDeque,
    task::{Context, Poll},
};

use apalis_core::{backend::future::BoxSyncFuture, task::Task};

use super::{poll_slot, shared::Shared};
use crate::{persistence::Fetched, redis_retry::Backoff, QueueError};

/// What [`Leases::drive`] learned that the driver must act on.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FetchNews {
    /// Nothing the driver must act on.
    Nothing,
    /// Redis no longer knows this worker (it was presumed dead while Redis
    /// was away): it must register again before fetching.
    Forgotten,
}

/// The leased jobs not yet started, and the fetch, reconcile and release
/// calls of one worker.
pub(super) struct Leases {
    /// Leased jobs not yet started, oldest first.
    waiting: VecDeque<Task<Vec<u8>>>,
    fetch: Option<BoxSyncFuture<Result<Fetched, QueueError>>>,
    fetch_backoff: Backoff,
    /// A fetch failed: its jobs may be leased to this worker without this
    /// worker knowing them. Reconcile before fetching again.
    must_reconcile: bool,
    reconcile: Option<BoxSyncFuture<Result<u64, QueueError>>>,
    /// The last fetch came back short: fetch again only once `waiting` is
    /// empty.
    drained: bool,
    /// The last fetch came back short (the ready list is empty): fetch
    /// again once woken ([`super::wakeup`]), not as soon as the jobs it
    /// brought have started.
    queue_empty: bool,
    /// When the queue's earliest scheduled job is due (Unix seconds), as
    /// of the last fetch.
    next_due: Option<f64>,
    release: Option<BoxSyncFuture<Result<u64, QueueError>>>,
    release_backoff: Backoff,
}

impl Leases {
    /// No jobs leased, no call in flight.
    pub fn new() -> Self {
        Self {
            waiting: VecDeque::new(),
            fetch: None,
            fetch_backoff: Backoff::default(),
            must_reconcile: false,
            reconcile: None,
            drained: false,
            queue_empty: false,
            next_due: None,
            release: None,
            release_backoff: Backoff::default(),
        }
    }

    /// The next leased job to start, oldest first.
    pub fn pop(&mut self) -> Option<Task<Vec<u8>>> {
        self.waiting.pop_front()
    }

    /// Whether a fetch or a reconciliation is in flight.
    pub fn in_flight(&self) -> bool {
        self.fetch.is_some() || self.reconcile.is_some()
    }

    /// Whether the last fetch emptied the queue (it came back short): the
    /// worker waits to be woken before it fetches again.
    pub fn queue_empty(&self) -> bool {
        self.queue_empty
    }

    /// The worker was woken: the next fetch goes ahead.
    pub fn woken(&mut self) {
        self.queue_empty = false;
    }

    /// When the queue's earliest scheduled job is due (Unix seconds), as
    /// of the last fetch.
    pub fn next_due(&self) -> Option<f64> {
        self.next_due
    }

    /// Whether a fetch may start now; if not, the end of the pause after a
    /// failed one wakes the worker.
    pub fn may_fetch(&mut self, cx: &mut Context<'_>) -> bool {
        self.fetch_backoff.ready(cx)
    }

    /// Starts the next fetch, or first the reconciliation a failed fetch
    /// calls for.
    pub fn start_fetch(&mut self, shared: &Shared<'_>) {
        if self.must_reconcile {
            let held = shared.held.clone();
            self.reconcile = Some(
                shared.start(|mut p, worker| async move { p.reconcile(&held, &worker).await }),
            );
        } else {
            self.fetch =
                Some(shared.start(|mut p, worker| async move { p.fetch_next(&worker).await }));
        }
    }

    /// Starts the next fetch while leased jobs remain, after a full batch,
    /// unless `acks_lag` (finished jobs wait to be recorded).
    pub fn fetch_ahead(&mut self, cx: &mut Context<'_>, shared: &Shared<'_>, acks_lag: bool) {
        let low = self.waiting.len() < shared.batch_size().div_ceil(2);
        if low && !self.drained && !self.in_flight() && !acks_lag && self.fetch_backoff.ready(cx) {
            self.start_fetch(shared);
        }
    }

    /// Polls the fetch (or reconciliation) in flight; fetched jobs join the
    /// waiting ones.
    pub fn drive(&mut self, cx: &mut Context<'_>, shared: &mut Shared<'_>) -> FetchNews {
        match poll_slot(&mut self.reconcile, cx) {
            Poll::Ready(Some(Ok(returned))) => {
                self.must_reconcile = false;
                self.fetch_backoff.succeeded();
                shared.answered();
                if returned > 0 {
                    tracing::info!(
                        queue = shared.queue(),
                        worker = shared.worker.name(),
                        jobs = returned,
                        "handed back jobs a failed fetch had leased to this worker"
                    );
                }
            }
            Poll::Ready(Some(Err(e))) => {
                shared.failed("reconcile leases", &e);
                self.fetch_backoff.failed(cx);
            }
            Poll::Ready(None) | Poll::Pending => {}
        }
        match poll_slot(&mut self.fetch, cx) {
            Poll::Ready(Some(Ok(Fetched {
                tasks: fetched,
                next_due,
            }))) => {
                self.fetch_backoff.succeeded();
                shared.answered();
                self.next_due = next_due;
                self.drained = fetched.len() < shared.batch_size();
                // A short batch emptied the ready list (the fetch script
                // cleared the wake list with it): the next fetch waits to
                // be woken, as after an empty one, instead of asking again
                // when these jobs have started.
                self.queue_empty = self.drained;
                shared.held.extend(
                    fetched
                        .iter()
                        .filter_map(|t| t.task_id().map(|id| id.to_string())),
                );
                self.waiting.extend(fetched);
                FetchNews::Nothing
            }
            Poll::Ready(Some(Err(e))) => {
                self.fetch_backoff.failed(cx);
                if e.is_unregistered() {
                    // Presumed dead while Redis was away (or paused): this
                    // worker's leases went to others.
                    tracing::warn!(
                        queue = shared.queue(),
                        worker = shared.worker.name(),
                        "this worker was presumed dead and forgotten; registering again"
                    );
                    FetchNews::Forgotten
                } else {
                    shared.failed("fetch", &e);
                    self.must_reconcile = true;
                    FetchNews::Nothing
                }
            }
            Poll::Ready(None) | Poll::Pending => FetchNews::Nothing,
        }
    }

    /// On shutdown: waits for the fetch in flight, then hands every leased
    /// job that never started back to the queue, trying until Redis
    /// answers.
    pub fn poll_released(&mut self, cx: &mut Context<'_>, shared: &mut Shared<'_>) -> Poll<()> {
        if self.in_flight() {
            // A worker forgotten meanwhile has no leases left to release.
            let _ = self.drive(cx, shared);
            if self.in_flight() {
                return Poll::Pending;
            }
        }
        loop {
            if let Some(released) = std::task::ready!(poll_slot(&mut self.release, cx)) {
                match released {
                    Ok(_) => {
                        self.release_backoff.succeeded();
                        shared.answered();
                        for task in self.waiting.drain(..) {
                            if let Some(id) = task.task_id() {
                                shared.held.remove(&id.to_string());
                            }
                        }
                    }
                    Err(e) => {
                        shared.failed("release unstarted jobs", &e);
                        self.release_backoff.failed(cx);
                    }
                }
            }
            if self.waiting.is_empty() {
                return Poll::Ready(());
            }
            if !self.release_backoff.ready(cx) {
                return Poll::Pending;
            }
            let ids: Vec<String> = self
                .waiting
                .iter()
                .filter_map(|t| t.task_id().map(|id| id.to_string()))
                .collect();
            self.release =
                Some(shared.start(|mut p, owner| async move { p.release_ids(&ids, &owner).await }));
        }
    }
}
