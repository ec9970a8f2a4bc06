//! [`WorkerDriver`]: what a worker's backend does around its jobs —
//! register, heartbeat, fetch ahead, acknowledge behind — without making
//! a job wait for any of it.
//!
//! apalis's own `Persisted` runs these steps in series with the jobs: when
//! its batch runs out it records the finished jobs, then fetches the next
//! batch, and no job starts while either call is in flight (about a tenth
//! of a busy worker's time here). The driver runs each step alongside:
//!
//! - **Fetch ahead** ([`leases`]). Once fewer than half a batch of leased
//!   jobs are left to start, the next batch is fetched while they run.
//!   Only after a full batch: a short one means the queue is drained, and
//!   the next fetch waits until the worker has nothing left to start (then
//!   it happens once woken: see [`wakeup`]).
//! - **Acknowledge behind** ([`acknowledger`]). Finished jobs (reported by
//!   [`super::AckLayer`]) are recorded one call in flight at a time: what
//!   finished goes at once when no call is in flight, and what finishes
//!   during a call goes with the next one, so batches grow with the load
//!   and a lone job is never held back. Jobs keep starting meanwhile. A
//!   job's hand-offs are enqueued by its acknowledgement
//!   ([`super::handoff`]), so its successor waits at most one round trip
//!   behind the call in flight.
//! - **Wait when idle** ([`wakeup`]). A worker whose queue is empty
//!   blocks on the queue's wake list in Redis, so a job enqueued by any
//!   process starts within a round trip, without polling.
//! - **Heartbeat** ([`presence`]), with the orphan recovery it carries, in
//!   the background.
//!
//! Each part is a small state machine over its own calls; this module
//! decides when each one runs. They share, per poll, the borrowed
//! [`shared::Shared`]: the connection, the worker, and the ids the worker
//! holds.
//!
//! Fetching stops while more than [`MAX_UNACKED_BATCHES`](acknowledger::MAX_UNACKED_BATCHES) batches of
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

mod acknowledger;
mod leases;
mod presence;
mod shared;
mod wakeup;

use std::{
    collections::HashSet,
    task::{Context, Poll},
};

use apalis_core::{
    backend::future::BoxSyncFuture,
    task::{status::Status, Task},
    worker::context::WorkerContext,
};
use tokio::sync::mpsc;

use self::{
    acknowledger::Acknowledger,
    leases::{FetchNews, Leases},
    presence::Presence,
    shared::Shared,
    wakeup::Wakeup,
};
use super::{
    ack::{AckLayer, Finished},
    decode::UndecodablePayload,
    persistence::QueuePersistence,
    redis_retry::RedisHealth,
    QueueError,
};

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

/// The worker side of a [`super::RedisQueue`]; see the module docs.
pub(super) struct WorkerDriver {
    persistence: QueuePersistence,
    presence: Presence,
    leases: Leases,
    acks: Acknowledger,
    wakeup: Wakeup,
    /// See [`Shared::held`].
    held: HashSet<String>,
    health: RedisHealth,
}

/// Borrows the driver's parts apart from the [`Shared`] state they use,
/// so a part can be driven while it borrows the rest.
macro_rules! split {
    ($driver:ident, $worker:expr) => {
        (
            &mut $driver.presence,
            &mut $driver.leases,
            &mut $driver.acks,
            &mut $driver.wakeup,
            Shared {
                persistence: &$driver.persistence,
                worker: $worker,
                health: &mut $driver.health,
                held: &mut $driver.held,
            },
        )
    };
}

impl WorkerDriver {
    /// A driver for a worker of the queue `persistence` talks to.
    pub(super) fn new(persistence: QueuePersistence) -> Self {
        Self {
            persistence,
            presence: Presence::new(),
            leases: Leases::new(),
            acks: Acknowledger::new(),
            wakeup: Wakeup::new(),
            held: HashSet::new(),
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
        self.acks.listen(receiver);
        // Hand-offs keep their predecessors' order (see `AckLayer`).
        AckLayer::new(sender, self.persistence.downstream.is_some())
    }

    /// Records `task` dead without running it: its payload cannot become
    /// the worker's arguments. The record goes out with the next
    /// acknowledgement batch, like any finished job's.
    pub(super) fn reject(&mut self, task: Task<Vec<u8>>, reason: UndecodablePayload) {
        let Some(task_id) = task.task_id().cloned() else {
            return;
        };
        let attempt = task.attempt() + 1;
        let since = Finished::since_of(task.ctx().metadata());
        tracing::warn!(
            job_id = %task_id,
            queue = %self.persistence.config.name,
            attempt,
            error = %reason,
            "job rejected before it ran: its payload cannot be decoded; recorded dead"
        );
        self.acks.push(Finished {
            task_id,
            attempt,
            status: Status::Killed,
            result: Err(reason.to_string()),
            handoff: None,
            not_before: None,
            deferred: None,
            since,
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
        let (presence, leases, acks, _wakeup, mut shared) = split!(self, worker);
        if presence.poll_registered(cx, &mut shared).is_pending() {
            // Jobs already leased keep being acknowledged meanwhile.
            acks.drive(cx, &mut shared);
            return Poll::Pending;
        }
        presence.drive_heartbeat(cx, &mut shared);
        if leases.drive(cx, &mut shared) == FetchNews::Forgotten {
            presence.forgotten();
        }
        acks.drive(cx, &mut shared);
        Poll::Ready(Ok(()))
    }

    /// The next leased job; fetches when none is left (and ahead of time
    /// after a full batch). Pending while the queue is empty or Redis is
    /// away; never an error.
    pub(super) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<Task<Vec<u8>>, QueueError>>> {
        let (presence, leases, acks, wakeup, mut shared) = split!(self, worker);
        if !presence.is_registered() {
            // poll_ready registers first; until then there is nothing.
            return Poll::Pending;
        }
        loop {
            if leases.drive(cx, &mut shared) == FetchNews::Forgotten {
                presence.forgotten();
            }
            if let Some(task) = leases.pop() {
                let lagging = acks.lagging(shared.batch_size());
                leases.fetch_ahead(cx, &shared, lagging);
                if leases.drive(cx, &mut shared) == FetchNews::Forgotten {
                    presence.forgotten();
                }
                return Poll::Ready(Some(Ok(task)));
            }
            // Nothing leased. Record what finished before waiting.
            acks.drive(cx, &mut shared);
            if leases.in_flight() {
                // In flight; its answer wakes this worker.
                return Poll::Pending;
            }
            if !presence.is_registered() {
                // Redis forgot this worker; poll_ready registers it again.
                return Poll::Pending;
            }
            if acks.lagging(shared.batch_size()) {
                // An acknowledgement finishing wakes this worker.
                return Poll::Pending;
            }
            if leases.queue_empty() {
                // The queue was empty just now: wait to be woken.
                if wakeup
                    .poll_woken(cx, &shared, leases.next_due())
                    .is_pending()
                {
                    return Poll::Pending;
                }
                leases.woken();
            }
            if !leases.may_fetch(cx) {
                return Poll::Pending;
            }
            leases.start_fetch(&shared);
        }
    }

    /// Waits for the calls in flight, releases every leased job that never
    /// started, and records every finished job, trying again while Redis
    /// is away.
    pub(super) fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), QueueError>> {
        let (presence, leases, acks, _wakeup, mut shared) = split!(self, worker);
        std::task::ready!(presence.poll_settled(cx));
        std::task::ready!(leases.poll_released(cx, &mut shared));
        std::task::ready!(acks.poll_flushed(cx, &mut shared));
        Poll::Ready(Ok(()))
    }
}
