//! Hand-offs: jobs a finished job passes to the next queue, enqueued by the
//! same acknowledgement that records it done.
//!
//! A job that must schedule a successor on another queue *returns* it as a
//! [`Handoff`] instead of enqueuing it itself (which would cost a Redis
//! round trip on the job's own path). The [`super::AckLayer`] passes the
//! hand-off, typed, with the job's acknowledgement ([`JobOutput`]); the
//! acknowledgement enqueues every hand-off of its batch with one script
//! call on the downstream queue (see [`super::RedisQueue::handing_off_to`]),
//! before it records those jobs done. What that guarantees — a successor
//! is queued only after its job's work, exactly once, in its job's order —
//! is stated in `docs/delivery.md` and explained in
//! `docs/ARCHITECTURE.md`.
//!
//! What a job's record keeps as its result is the list of ids it handed
//! off, not the payloads.

use serde::Serialize;
use serde_json::Value;

/// What a job returns when its success must enqueue jobs on the queue
/// downstream of its own (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Handoff {
    /// The jobs to enqueue, in order.
    pub jobs: Vec<HandoffJob>,
}

/// One job handed to the downstream queue.
#[derive(Debug, Clone, PartialEq)]
pub struct HandoffJob {
    /// The new job's id (a ULID).
    pub id: String,
    /// The new job's arguments, encoded as the downstream worker decodes
    /// them (JSON).
    pub payload: Vec<u8>,
    /// Claimed when enqueued; a second hand-off with the same key is
    /// skipped (see the enqueue script).
    pub idempotency_key: String,
}

impl Handoff {
    /// Hands `args` on as one job with `idempotency_key`.
    pub fn one<T: Serialize>(args: &T, idempotency_key: &str) -> Result<Self, serde_json::Error> {
        Self::many([(args, idempotency_key)])
    }

    /// Hands each `(args, idempotency_key)` on as a job, in order.
    pub fn many<'a, T: Serialize + 'a>(
        jobs: impl IntoIterator<Item = (&'a T, &'a str)>,
    ) -> Result<Self, serde_json::Error> {
        let jobs = jobs
            .into_iter()
            .map(|(args, idempotency_key)| {
                Ok(HandoffJob {
                    id: ulid::Ulid::generate().to_string(),
                    payload: serde_json::to_vec(args)?,
                    idempotency_key: idempotency_key.to_owned(),
                })
            })
            .collect::<Result<_, serde_json::Error>>()?;
        Ok(Self { jobs })
    }

    /// What the job's record keeps instead of the payloads.
    pub fn summary(&self, downstream: &str) -> Value {
        let ids: Vec<String> = self
            .jobs
            .iter()
            .map(|job| format!("{downstream}:{}", job.id))
            .collect();
        serde_json::json!({ "handedOff": ids })
    }
}

/// What a successful job gives its acknowledgement: the result to record
/// and, for a job that hands off, its [`Handoff`]. Implemented for the
/// return types of Herald's handlers; the acknowledgement layer needs no
/// JSON convention to find a hand-off.
pub trait JobOutput: Send {
    /// The result to record (JSON) and the hand-off, if any.
    fn into_ack(self) -> (Value, Option<Handoff>);
}

impl JobOutput for () {
    fn into_ack(self) -> (Value, Option<Handoff>) {
        (Value::Null, None)
    }
}

impl JobOutput for Value {
    fn into_ack(self) -> (Value, Option<Handoff>) {
        (self, None)
    }
}

impl JobOutput for Handoff {
    fn into_ack(self) -> (Value, Option<Handoff>) {
        // The record's result is filled in with the downstream ids when the
        // hand-off is enqueued.
        (Value::Null, Some(self))
    }
}

/// A job that hands on only when it succeeded in a certain way (an export
/// that finished, not one that was cancelled).
impl JobOutput for Option<Handoff> {
    fn into_ack(self) -> (Value, Option<Handoff>) {
        (Value::Null, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handoff_carries_its_job_encoded_once_with_a_fresh_ulid() {
        let handoff = Handoff::one(&serde_json::json!({"event": "e"}), "new_message:1").unwrap();
        let (_, found) = handoff.clone().into_ack();
        assert_eq!(found, Some(handoff.clone()));
        let job = &handoff.jobs[0];
        assert_eq!(job.payload, br#"{"event":"e"}"#);
        assert_eq!(job.id.len(), 26, "a ULID");
        assert_eq!(job.idempotency_key, "new_message:1");
    }

    #[test]
    fn plain_results_hand_nothing_off() {
        assert_eq!(().into_ack(), (Value::Null, None));
        let rows = serde_json::json!({"rows": 3, "handoff": []});
        assert_eq!(rows.clone().into_ack(), (rows, None));
    }

    #[test]
    fn the_record_keeps_ids_not_payloads() {
        let handoff = Handoff::one(&"big payload", "k").unwrap();
        let summary = handoff.summary("ns:push");
        let ids = summary["handedOff"].as_array().unwrap();
        assert_eq!(ids.len(), 1);
        assert!(ids[0].as_str().unwrap().starts_with("ns:push:"));
        assert!(!summary.to_string().contains("big payload"));
    }
}
