//! [`Presence`]: the worker's registration and heartbeat.
//!
//! A worker fetches only once it is registered. The heartbeat (which also
//! carries the orphan recovery, see [`QueuePersistence::heartbeat`]) runs
//! every `heartbeat_interval` in the background; a failed beat is tried
//! again after a short pause, since a long gap would make the worker look
//! dead to the others.
//!
//! [`QueuePersistence::heartbeat`]: crate::persistence::QueuePersistence::heartbeat

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use apalis_core::backend::future::BoxSyncFuture;
use tokio::time::Sleep;

use super::{poll_slot, shared::Shared};
use crate::{redis_retry::Backoff, QueueError};

/// Where the worker is in its life.
enum Registration {
    /// Not announced to Redis (yet, or again after Redis forgot it).
    Pending,
    /// The register call is in flight.
    Registering(BoxSyncFuture<Result<(), QueueError>>),
    /// Registered; jobs may be fetched.
    Registered,
}

/// The registration and the heartbeat of one worker.
pub(super) struct Presence {
    registration: Registration,
    register_backoff: Backoff,
    heartbeat_due: Option<Pin<Box<Sleep>>>,
    heartbeat: Option<BoxSyncFuture<Result<(), QueueError>>>,
    heartbeat_backoff: Backoff,
}

impl Presence {
    /// A worker not yet registered.
    pub fn new() -> Self {
        Self {
            registration: Registration::Pending,
            register_backoff: Backoff::default(),
            heartbeat_due: None,
            heartbeat: None,
            heartbeat_backoff: Backoff::default(),
        }
    }

    /// Whether the worker is registered (and may fetch).
    pub fn is_registered(&self) -> bool {
        matches!(self.registration, Registration::Registered)
    }

    /// Redis forgot this worker (it was presumed dead): register again.
    pub fn forgotten(&mut self) {
        self.registration = Registration::Pending;
    }

    /// Drives the registration; ready once registered. A failed register
    /// call is tried again after a pause.
    pub fn poll_registered(&mut self, cx: &mut Context<'_>, shared: &mut Shared<'_>) -> Poll<()> {
        loop {
            match &mut self.registration {
                Registration::Registered => return Poll::Ready(()),
                Registration::Pending => {
                    if !self.register_backoff.ready(cx) {
                        return Poll::Pending;
                    }
                    self.registration = Registration::Registering(
                        shared.start(|mut p, worker| async move { p.register(&worker).await }),
                    );
                }
                Registration::Registering(fut) => match fut.poll_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => {
                        self.registration = Registration::Pending;
                        shared.failed("register worker", &e);
                        self.register_backoff.failed(cx);
                    }
                    Poll::Ready(Ok(())) => {
                        self.register_backoff.succeeded();
                        shared.answered();
                        shared.worker.heartbeat(cx);
                        self.registration = Registration::Registered;
                        self.arm_heartbeat(shared.config().heartbeat_interval);
                    }
                },
            }
        }
    }

    /// On shutdown: waits for a register call in flight, whatever its
    /// answer, so nothing is left running.
    pub fn poll_settled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Registration::Registering(fut) = &mut self.registration {
            // Its answer does not matter: the worker is going away.
            let _ = std::task::ready!(fut.poll_unpin(cx));
            self.registration = Registration::Registered;
        }
        Poll::Ready(())
    }

    fn arm_heartbeat(&mut self, after: Duration) {
        self.heartbeat_due = Some(Box::pin(tokio::time::sleep(after)));
    }

    /// Beats when due and polls the beat in flight.
    pub fn drive_heartbeat(&mut self, cx: &mut Context<'_>, shared: &mut Shared<'_>) {
        loop {
            let due = match &mut self.heartbeat_due {
                Some(sleep) => sleep.as_mut().poll(cx).is_ready(),
                None => false,
            };
            if due {
                self.heartbeat_due = None;
                self.heartbeat =
                    Some(shared.start(|mut p, worker| async move { p.heartbeat(&worker).await }));
            }
            match poll_slot(&mut self.heartbeat, cx) {
                Poll::Ready(Some(Ok(()))) => {
                    self.heartbeat_backoff.succeeded();
                    shared.answered();
                    shared.worker.heartbeat(cx);
                    // Polled on the next turn, so its end wakes the worker.
                    self.arm_heartbeat(shared.config().heartbeat_interval);
                }
                Poll::Ready(Some(Err(e))) => {
                    shared.failed("heartbeat", &e);
                    // Beat again soon: a long gap would make this worker
                    // look dead.
                    let pause = self.heartbeat_backoff.next_pause();
                    self.arm_heartbeat(pause);
                }
                Poll::Ready(None) | Poll::Pending => return,
            }
        }
    }
}
