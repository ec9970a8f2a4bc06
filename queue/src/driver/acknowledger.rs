//! [`Acknowledger`]: records finished jobs in Redis behind the jobs, in
//! batches, one call in flight at a time.
//!
//! Batches adapt to the load the way Nagle's algorithm does on a TCP
//! line: when no call is in flight, whatever has finished goes at once —
//! a lone job's acknowledgement (and the hand-off it carries, such as a
//! stored message's push) never waits for a timer — and while a call is
//! in flight, the jobs finishing meanwhile gather into the next one. Under
//! load a batch is therefore as large as the jobs that finish during one
//! round trip, and at light load it is one job. A failed call keeps its
//! jobs, ahead of those that finished since, and sends them again after a
//! pause: their hand-offs carry idempotency keys, and a job an earlier try
//! did record is not recorded twice.

use std::task::{Context, Poll};

use apalis_core::backend::future::BoxSyncFuture;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{poll_slot, shared::Shared};
use crate::{ack::Finished, redis_retry::Backoff, QueueError};

/// Batches of finished jobs that may wait for their acknowledgement before
/// the worker stops fetching more.
pub const MAX_UNACKED_BATCHES: usize = 4;

type Events = Vec<Finished>;

/// The finished jobs of one worker on their way to Redis.
pub(super) struct Acknowledger {
    /// Finished jobs, from the [`crate::AckLayer`] the driver
    /// handed out.
    finished: Option<UnboundedReceiver<Finished>>,
    /// Finished jobs not yet recorded in Redis, oldest first.
    unacked: Events,
    in_flight: Option<BoxSyncFuture<(Events, Result<(), QueueError>)>>,
    backoff: Backoff,
    /// The call in flight is a retry of one that failed.
    retrying: bool,
}

impl Acknowledger {
    /// Nothing finished yet.
    pub fn new() -> Self {
        Self {
            finished: None,
            unacked: Vec::new(),
            in_flight: None,
            backoff: Backoff::default(),
            retrying: false,
        }
    }

    /// Receives finished jobs from `receiver` (the other end of the
    /// worker's ack layer).
    pub fn listen(&mut self, receiver: UnboundedReceiver<Finished>) {
        self.finished = Some(receiver);
    }

    /// Queues a finished job that did not come through the ack layer.
    pub fn push(&mut self, finished: Finished) {
        self.unacked.push(finished);
    }

    /// Whether so many finished jobs wait to be recorded that the worker
    /// should stop fetching more.
    pub fn lagging(&self, batch_size: usize) -> bool {
        self.unacked.len() >= MAX_UNACKED_BATCHES * batch_size
    }

    /// Takes every finished job reported so far; once none is left, the
    /// next report wakes the worker, so it is sent at once.
    fn take_finished(&mut self, cx: &mut Context<'_>) {
        if let Some(finished) = &mut self.finished {
            while let Poll::Ready(Some(event)) = finished.poll_recv(cx) {
                self.unacked.push(event);
            }
        }
    }

    fn start(&mut self, shared: &Shared<'_>) {
        let events = std::mem::take(&mut self.unacked);
        let retrying = self.retrying;
        self.in_flight = Some(shared.start(move |mut p, owner| async move {
            let recorded = p.acknowledge(&events, &owner, retrying).await;
            (events, recorded)
        }));
    }

    /// Polls the call in flight and, once none is, sends what finished
    /// meanwhile.
    pub fn drive(&mut self, cx: &mut Context<'_>, shared: &mut Shared<'_>) {
        loop {
            match poll_slot(&mut self.in_flight, cx) {
                Poll::Pending => return,
                Poll::Ready(Some((events, Ok(())))) => {
                    self.backoff.succeeded();
                    self.retrying = false;
                    shared.answered();
                    for finished in &events {
                        shared.held.remove(&finished.task_id.to_string());
                    }
                }
                Poll::Ready(Some((mut events, Err(e)))) => {
                    shared.failed("acknowledge", &e);
                    // Kept, ahead of the jobs that finished since.
                    events.append(&mut self.unacked);
                    self.unacked = events;
                    self.retrying = true;
                    self.backoff.failed(cx);
                }
                Poll::Ready(None) => {}
            }
            self.take_finished(cx);
            if self.unacked.is_empty() || !self.backoff.ready(cx) {
                return;
            }
            self.start(shared);
        }
    }

    /// On shutdown: records every finished job, trying until Redis
    /// answers.
    pub fn poll_flushed(&mut self, cx: &mut Context<'_>, shared: &mut Shared<'_>) -> Poll<()> {
        loop {
            self.drive(cx, shared);
            if self.in_flight.is_some() {
                return Poll::Pending;
            }
            self.take_finished(cx);
            if self.unacked.is_empty() {
                return Poll::Ready(());
            }
            if !self.backoff.ready(cx) {
                return Poll::Pending;
            }
        }
    }
}
