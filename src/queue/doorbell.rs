//! [`Doorbell`]: wakes a queue's worker in this process when this process
//! enqueues onto that queue.
//!
//! An idle worker fetches again only on its poll interval
//! (`worker.poll_interval_ms`). That is the right wait for jobs other
//! processes enqueue, but a job this process enqueues itself — a
//! `send_message` job's push, an export's `export_finish` — would wait up to
//! a whole interval for nothing. Every clone of a [`super::RedisQueue`]
//! shares one doorbell: the worker consuming the queue registers itself
//! when it polls for jobs, and an enqueue through any clone (or a hand-off
//! onto the queue) rings it.
//!
//! One consuming worker per queue per process is assumed (as `herald
//! worker` runs); another one would still be woken by its poll interval.

use std::{sync::Arc, task::Waker};

use futures::task::AtomicWaker;

/// Wakes the local worker of one queue; clones ring the same bell.
#[derive(Debug, Clone, Default)]
pub struct Doorbell(Arc<AtomicWaker>);

impl Doorbell {
    /// Remembers `waker` as the worker to wake.
    pub fn register(&self, waker: &Waker) {
        self.0.register(waker);
    }

    /// Wakes the registered worker, if any, so it fetches now.
    pub fn ring(&self) {
        self.0.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_ring_through_any_clone_wakes_the_registered_worker() {
        let bell = Doorbell::default();
        bell.ring(); // nobody registered: nothing happens
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        bell.register(&Waker::from(counter.clone()));
        bell.clone().ring();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    }
}
