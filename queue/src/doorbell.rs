//! [`Doorbell`]: wakes a queue's worker in this process when this process
//! enqueues onto that queue.
//!
//! An idle worker blocks on its queue's wake list in Redis
//! ([`super::QueueConfig::wake_key`]), which every enqueue pushes to, so
//! it wakes for jobs from any process within one Redis round trip. A job
//! this process enqueues itself — a `send_message` job's push, an export's
//! `export_finish` — need not even take that trip: every clone of a
//! [`super::RedisQueue`] shares one doorbell, the worker consuming the
//! queue registers itself when it polls for jobs, and an enqueue through
//! any clone (or a hand-off onto the queue) rings it.
//!
//! A ring is remembered until the worker reads it ([`Doorbell::take_rung`]),
//! so a ring that arrives while the worker is busy still makes it fetch
//! once more before it waits.
//!
//! The bell also carries a time ([`Doorbell::expect_due`]): when this
//! process's acknowledgement schedules a retry, the worker's last fetch
//! came before it, so the worker does not know when that job falls due and
//! would learn it only at its next fetch (at the latest after the idle
//! wait). Told the time, it sets its timer for it as for any scheduled job.
//!
//! One consuming worker per queue per process is assumed (as `herald
//! worker` runs); another one would still be woken through Redis.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    task::Waker,
};

use futures::task::AtomicWaker;

#[derive(Debug, Default)]
struct Bell {
    waker: AtomicWaker,
    rung: AtomicBool,
    /// The earliest due time told and not yet taken, in Unix milliseconds
    /// (0: none).
    due_ms: AtomicU64,
}

/// Wakes the local worker of one queue; clones ring the same bell.
#[derive(Debug, Clone, Default)]
pub struct Doorbell(Arc<Bell>);

impl Doorbell {
    /// Remembers `waker` as the worker to wake.
    pub fn register(&self, waker: &Waker) {
        self.0.waker.register(waker);
    }

    /// Wakes the registered worker, if any, so it fetches now.
    pub fn ring(&self) {
        self.0.rung.store(true, Ordering::Release);
        self.0.waker.wake();
    }

    /// Whether the bell rang since the last call.
    pub fn take_rung(&self) -> bool {
        self.0.rung.swap(false, Ordering::AcqRel)
    }

    /// Tells the worker that a job of its queue falls due at `at` (Unix
    /// seconds): one scheduled after its last fetch, so it cannot know.
    pub fn expect_due(&self, at: f64) {
        // Rounded up: a timer set for it must not fire before the job is due.
        let ms = ((at.max(0.0) * 1_000.0).ceil() as u64).max(1);
        let _ = self
            .0
            .due_ms
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |told| {
                Some(if told == 0 { ms } else { told.min(ms) })
            });
        self.0.waker.wake();
    }

    /// The earliest due time told since the last call (Unix seconds).
    pub fn take_due(&self) -> Option<f64> {
        let ms = self.0.due_ms.swap(0, Ordering::AcqRel);
        (ms != 0).then(|| ms as f64 / 1_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_earliest_due_time_told_is_kept_until_taken_and_wakes_the_worker() {
        let bell = Doorbell::default();
        assert_eq!(bell.take_due(), None);
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        bell.register(&Waker::from(counter.clone()));
        bell.expect_due(1_000.001_5);
        bell.clone().expect_due(2_000.0);
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "one wake per registration"
        );
        // Rounded up to the millisecond, the earlier of the two.
        assert_eq!(bell.take_due(), Some(1_000.002));
        assert_eq!(bell.take_due(), None);
        // A time is no ring: the worker sets a timer, it does not fetch.
        assert!(!bell.take_rung());
    }

    #[test]
    fn a_ring_through_any_clone_wakes_the_registered_worker() {
        let bell = Doorbell::default();
        bell.ring(); // nobody registered: nothing is woken
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        bell.register(&Waker::from(counter.clone()));
        bell.clone().ring();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_ring_is_remembered_until_it_is_read() {
        let bell = Doorbell::default();
        assert!(!bell.take_rung());
        bell.clone().ring();
        bell.ring();
        assert!(bell.take_rung());
        assert!(!bell.take_rung());
    }
}
