//! Job ids that sort in the order one process created them.
//!
//! A job's id is a ULID. Jobs reach a queue's ready list in the order they
//! were enqueued whatever their ids, but delayed jobs and retries wait in
//! the scheduled set, which orders jobs due in the same second by id, and
//! operators read listings sorted by id. A plain ULID's random part makes
//! the order of ids minted within one millisecond arbitrary: a bulk enqueue
//! of a thousand messages would list shuffled.
//!
//! [`next_task_id`] hands out ULIDs from one monotonic generator per
//! process instead: each id is greater than the previous one. Ids from
//! different processes interleave by their millisecond.

use std::sync::Mutex;

use ulid::{Generator, Ulid};

/// The process's generator; every [`crate::Producer`] shares it, so the
/// order holds across producers (and clones) in one process.
static GENERATOR: Mutex<Generator> = Mutex::new(Generator::new());

/// The next job id: a ULID greater than every one this process generated
/// before it.
pub fn next_task_id() -> Ulid {
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
