//! [`Wakeup`]: how a worker whose queue is empty waits for work, and what
//! wakes it.
//!
//! A worker whose last fetch came back empty fetches again as soon as the
//! first of these happens:
//!
//! - **the queue's wake list** gets a token: every script that makes jobs
//!   ready pushes one when the list is empty (`enqueue.lua` has the
//!   protocol). The worker blocks on it with `BLPOP` on a connection of
//!   its own, so a job enqueued by any process starts within a round trip;
//!   Redis hands one token to one blocked worker, so one job wakes one
//!   worker, not all of them;
//! - **the doorbell** rings: this process enqueued onto the queue
//!   ([`crate::Doorbell`]);
//! - **a scheduled job falls due**: the fetch said when the earliest one
//!   is due, or this process's acknowledgement scheduled a retry since and
//!   told the doorbell when ([`crate::Doorbell::expect_due`]), and a timer
//!   fires then;
//! - **the idle wait** ([`crate::QueueConfig::idle_wait`]) ends
//!   without any of these: the fallback that makes a missed token (say, a
//!   job written by a producer that does not push tokens) cost at most
//!   that long.
//!
//! The `BLPOP` is never cancelled: a worker woken by its doorbell leaves it
//! waiting, and when it answers later the worker just fetches once more.
//! Dropping it midway would leave the server-side wait behind, to swallow
//! the next token for nobody.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use apalis_core::backend::future::BoxSyncFuture;
use futures::FutureExt;
use herald_jobs::{Patience, RedisConnection};
use tokio::time::Sleep;

use super::{poll_slot, shared::Shared};
use crate::now_secs;

/// Pause after a failed wait before the worker fetches anyway (a failing
/// Redis is noticed, and retried with backoff, by the fetch).
const FAILED_WAIT_PAUSE: Duration = Duration::from_secs(1);

/// The blocking connection between two waits, `None` until opened.
type Listener = Option<RedisConnection>;

/// The waiting side of one worker; see the module docs.
pub(super) struct Wakeup {
    /// The wait on the wake list in flight; it hands its connection back.
    listen: Option<BoxSyncFuture<Listener>>,
    /// The blocking connection while no wait is in flight.
    conn: Listener,
    /// The timer for the earliest scheduled job, and the due time it is for.
    due: Option<(f64, Pin<Box<Sleep>>)>,
    /// The due time a timer last fired for: a job that stays due (the
    /// queue is paused) does not wake the worker twice.
    fired_for: Option<f64>,
    /// The earliest due time the doorbell told of and no timer has fired
    /// for yet.
    told_due: Option<f64>,
}

impl Wakeup {
    /// Not waiting yet.
    pub fn new() -> Self {
        Self {
            listen: None,
            conn: None,
            due: None,
            fired_for: None,
            told_due: None,
        }
    }

    /// Ready once the worker should fetch again; `next_due` is when the
    /// earliest scheduled job is due, as of the last fetch.
    pub fn poll_woken(
        &mut self,
        cx: &mut Context<'_>,
        shared: &Shared<'_>,
        next_due: Option<f64>,
    ) -> Poll<()> {
        if shared.persistence.doorbell.take_rung() {
            return Poll::Ready(());
        }
        if let Some(told) = shared.persistence.doorbell.take_due() {
            self.told_due = Some(self.told_due.map_or(told, |t| t.min(told)));
        }
        if self
            .poll_due(cx, earliest(next_due, self.told_due))
            .is_ready()
        {
            return Poll::Ready(());
        }
        if self.listen.is_none() {
            self.listen = Some(self.start_listening(shared));
        }
        match poll_slot(&mut self.listen, cx) {
            Poll::Ready(Some(conn)) => {
                self.conn = conn;
                Poll::Ready(())
            }
            _ => Poll::Pending,
        }
    }

    /// Ready when the timer for `next_due` fires (once per due time).
    fn poll_due(&mut self, cx: &mut Context<'_>, next_due: Option<f64>) -> Poll<()> {
        let Some(due) = next_due.filter(|due| self.fired_for != Some(*due)) else {
            self.due = None;
            return Poll::Pending;
        };
        if self.due.as_ref().map(|(at, _)| *at) != Some(due) {
            // A millisecond late, so the fetch it causes finds the job due.
            let delay = (due - now_secs()).max(0.0) + 0.001;
            let timer = Box::pin(tokio::time::sleep(Duration::from_secs_f64(delay)));
            self.due = Some((due, timer));
        }
        let fired = self
            .due
            .as_mut()
            .is_some_and(|(_, timer)| timer.as_mut().poll(cx).is_ready());
        if !fired {
            return Poll::Pending;
        }
        self.due = None;
        self.fired_for = Some(due);
        // The fetch this causes reads the queue's own earliest due time.
        if self.told_due.is_some_and(|told| told <= due) {
            self.told_due = None;
        }
        Poll::Ready(())
    }

    /// The next wait: `BLPOP` on the wake list for at most the idle wait,
    /// or, for a queue built without a wake URL, a plain sleep as long.
    fn start_listening(&mut self, shared: &Shared<'_>) -> BoxSyncFuture<Listener> {
        let config = shared.config();
        let wait = config.idle_wait;
        let key = config.wake_key();
        let queue = config.name.clone();
        let url = shared.persistence.wake_url.clone();
        let conn = self.conn.take();
        async move {
            let Some(url) = url else {
                tokio::time::sleep(wait).await;
                return None;
            };
            let mut conn = match conn {
                Some(conn) => conn,
                None => match open(&url, wait).await {
                    Ok(conn) => conn,
                    Err(error) => {
                        tracing::debug!(%queue, %error, "cannot open the wake-up connection; fetching without it");
                        tokio::time::sleep(FAILED_WAIT_PAUSE.min(wait)).await;
                        return None;
                    }
                },
            };
            let answer = redis::cmd("BLPOP")
                .arg(&key)
                .arg(format!("{:.3}", wait.as_secs_f64()))
                .query_async::<Option<(String, String)>>(&mut conn)
                .await;
            if let Err(error) = answer {
                tracing::debug!(%queue, %error, "waiting on the wake list failed; fetching anyway");
                tokio::time::sleep(FAILED_WAIT_PAUSE.min(wait)).await;
            }
            Some(conn)
        }
        .boxed()
        .into()
    }
}

/// The earlier of two optional due times.
fn earliest(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Opens the blocking connection: its answers may take the whole wait.
async fn open(url: &Arc<str>, wait: Duration) -> redis::RedisResult<RedisConnection> {
    let patience = Patience {
        response: wait + Duration::from_secs(5),
        ..Patience::default()
    };
    RedisConnection::open(url, patience).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_due(wakeup: &mut Wakeup, next_due: Option<f64>) -> Poll<()> {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        wakeup.poll_due(&mut cx, next_due)
    }

    #[tokio::test(start_paused = true)]
    async fn a_scheduled_job_wakes_the_worker_once_when_it_falls_due() {
        let mut wakeup = Wakeup::new();
        let due = now_secs() + 2.0;
        assert!(poll_due(&mut wakeup, Some(due)).is_pending());
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert!(poll_due(&mut wakeup, Some(due)).is_pending());
        tokio::time::advance(Duration::from_millis(600)).await;
        assert!(poll_due(&mut wakeup, Some(due)).is_ready());
        // Still due (a paused queue keeps it): no second wake-up for it.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(poll_due(&mut wakeup, Some(due)).is_pending());
        // A new earliest time sets a new timer; none at all clears it.
        assert!(poll_due(&mut wakeup, Some(due + 1.0)).is_pending());
        assert!(poll_due(&mut wakeup, None).is_pending());
        assert!(wakeup.due.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_time_told_by_the_doorbell_wakes_the_worker_before_the_fetch_knows() {
        let mut wakeup = Wakeup::new();
        // The last fetch knew of nothing scheduled; a retry was told since.
        wakeup.told_due = Some(now_secs() + 1.0);
        let told = earliest(None, wakeup.told_due);
        assert!(poll_due(&mut wakeup, told).is_pending());
        tokio::time::advance(Duration::from_millis(1_100)).await;
        assert!(poll_due(&mut wakeup, told).is_ready());
        assert_eq!(wakeup.told_due, None, "fired for: forgotten");
        // A later fetch's own earlier time wins over a time told.
        assert_eq!(earliest(Some(5.0), Some(7.0)), Some(5.0));
        assert_eq!(earliest(Some(9.0), Some(7.0)), Some(7.0));
        assert_eq!(earliest(None, None), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_already_due_wakes_the_worker_at_once() {
        let mut wakeup = Wakeup::new();
        let due = now_secs() - 5.0;
        assert!(poll_due(&mut wakeup, Some(due)).is_pending());
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(poll_due(&mut wakeup, Some(due)).is_ready());
    }
}
