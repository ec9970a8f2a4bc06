//! Task ids that keep a producer's jobs in the order it enqueued them.
//!
//! apalis-redis puts every job it is given into the queue's scheduled set,
//! scored by the second it is due (for a job to run now: the current
//! second), and Herald's worker moves due jobs to the queue in the set's
//! order: by score, then by member, the task id, compared as a string.
//! Jobs enqueued within the same second are therefore taken in the order of
//! their ids. apalis-redis's own ids are ULIDs whose random part makes that
//! order arbitrary within a millisecond: a bulk enqueue of a thousand
//! messages would reach the worker shuffled.
//!
//! [`next_task_id`] hands out ULIDs from one monotonic generator per
//! process instead: each id is greater than the previous one, so one
//! producer process's jobs reach the queue in the order it enqueued them.
//! Jobs from different processes interleave by their millisecond.

use std::sync::Mutex;

use apalis::prelude::TaskId;
use ulid::{Generator, Ulid};

/// The process's generator; every [`crate::Producer`] shares it, so the
/// order holds across producers (and clones) in one process.
static GENERATOR: Mutex<Generator> = Mutex::new(Generator::new());

/// The next task id: a ULID greater than every one this process generated
/// before it.
pub fn next_task_id() -> TaskId {
    TaskId::from_string(next_ulid().to_string())
}

fn next_ulid() -> Ulid {
    // A poisoned lock only means another thread panicked while holding it;
    // the generator's state (the previous id) is still valid.
    let mut generator = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
    match generator.generate() {
        Ok(id) => id,
        // 2^80 ids within one millisecond: carry into the next one, which
        // still orders after every earlier id.
        Err(overflow) => overflow.commit_overflow_increment(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_as_strings_in_the_order_they_were_handed_out() {
        // Many ids fall within one millisecond; a plain ULID would order
        // those by its random part.
        let ids: Vec<String> = (0..10_000).map(|_| next_task_id().to_string()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(ids.windows(2).all(|w| w[0] != w[1]), "ids repeat");
    }

    #[test]
    fn ids_parse_back_as_ulids() {
        let id = next_task_id().to_string();
        assert_eq!(id.len(), 26);
        assert!(id.parse::<Ulid>().is_ok(), "{id}");
    }
}
