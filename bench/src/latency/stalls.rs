//! Stalls of the machine during a measurement, seen from outside Herald.
//!
//! On a machine of two cores shared by Redis, MongoDB, `herald web`,
//! `herald worker` and the benchmark, the scheduler sometimes leaves a
//! process waiting for tens of milliseconds, and under other load for a few
//! hundred. Such a stall delays every message in flight at once, whichever
//! way it came in: measured here with a CPU hog on one core, a probe process
//! saw Redis `PING` and MongoDB inserts take 30 to 250 ms at the moments the
//! light-load series (HTTP and producer alike) got their worst latencies.
//! At 50 messages a second, one stall of 100 ms covers five messages, which
//! is the whole 1% tail of 500.
//!
//! [`StallMeter`] is a thread of its own (not a task of the benchmark's
//! runtime, so a busy runtime does not count as a stall) that asks to sleep
//! 1 ms, over and over, and records how much longer each sleep took. A
//! series whose run saw a stall longer than its p99 allowance cannot tell
//! Herald's tail from the machine's, and the target says so
//! ([`crate::report::Verdict::Inconclusive`]).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// How long the meter asks to sleep each time.
const TICK: Duration = Duration::from_millis(1);

/// Oversleeps shorter than this are ordinary timer slack, not stalls.
const NOTICED: Duration = Duration::from_millis(5);

/// What the meter saw while it ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stalls {
    /// The longest stall (time beyond the requested sleep).
    pub longest: Duration,
    /// Stalls of at least 5 ms.
    pub count: u64,
}

/// A running stall meter; [`StallMeter::stop`] ends it and tells what it
/// saw.
pub struct StallMeter {
    running: Arc<AtomicBool>,
    thread: JoinHandle<Stalls>,
}

impl StallMeter {
    /// Starts measuring on a thread of its own.
    pub fn start() -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let flag = running.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Stalls::default();
            while flag.load(Ordering::Relaxed) {
                let asked = Instant::now();
                std::thread::sleep(TICK);
                seen.add(asked.elapsed().saturating_sub(TICK));
            }
            seen
        });
        Self { running, thread }
    }

    /// Stops the meter; what it saw (nothing if its thread panicked).
    pub fn stop(self) -> Stalls {
        self.running.store(false, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

impl Stalls {
    /// Counts an oversleep of `late`.
    fn add(&mut self, late: Duration) {
        if late >= NOTICED {
            self.count += 1;
        }
        self.longest = self.longest.max(late);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_oversleeps_of_five_ms_or_more_count_and_the_longest_is_kept() {
        let mut seen = Stalls::default();
        for ms in [0, 1, 4, 5, 120, 7] {
            seen.add(Duration::from_millis(ms));
        }
        assert_eq!(seen.count, 3);
        assert_eq!(seen.longest, Duration::from_millis(120));
    }
}
