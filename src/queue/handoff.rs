//! Hand-offs: jobs a finished job passes to the next queue, enqueued by the
//! same acknowledgement that records it done.
//!
//! A `send_message` job ends by scheduling a `push`. Doing that inside the
//! job costs a Redis round trip on the job's own critical path, once per
//! message. Instead the job *returns* its push as a [`Handoff`]: apalis
//! carries the result to the backend with the acknowledgement, and
//! [`super::RedisQueue`] enqueues every hand-off of an acknowledgement
//! batch with one script call, on the downstream queue, before it records
//! those jobs done. So:
//!
//! - a job's successor is enqueued once the job's work is done, never
//!   before (the order the contracts ask for);
//! - a crash before the acknowledgement leaves the job leased, so it runs
//!   again and hands off again; the successor's idempotency key makes the
//!   second enqueue a no-op. Nothing is lost and nothing is doubled;
//! - if the enqueue fails, the jobs are not recorded done either (they are
//!   recovered and re-run like any job whose acknowledgement failed).
//!
//! What a job's record keeps as its result is the list of ids it handed
//! off, not the payloads.

use serde::{Deserialize, Serialize};

/// The field of a job's JSON result that carries its hand-offs.
const FIELD: &str = "handoff";

/// What a job returns when its success must enqueue jobs on the queue
/// downstream of its own (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handoff {
    /// The jobs to enqueue, in order.
    pub handoff: Vec<HandoffJob>,
}

/// One job handed to the downstream queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandoffJob {
    /// The new job's id (a ULID).
    pub id: String,
    /// The new job's arguments, as the downstream worker decodes them.
    pub payload: serde_json::Value,
    /// Claimed when enqueued; a second hand-off with the same key is
    /// skipped (see the push script).
    pub idempotency_key: String,
}

impl Handoff {
    /// Hands `args` on as one job with `idempotency_key`.
    pub fn one<T: Serialize>(args: &T, idempotency_key: &str) -> Result<Self, serde_json::Error> {
        Ok(Self {
            handoff: vec![HandoffJob {
                id: ulid::Ulid::generate().to_string(),
                payload: serde_json::to_value(args)?,
                idempotency_key: idempotency_key.to_owned(),
            }],
        })
    }

    /// The hand-offs in a job's JSON result, if it carries any. A result
    /// whose `handoff` field does not decode is reported as an error: its
    /// jobs must not be dropped silently.
    pub fn in_result(result: &serde_json::Value) -> Option<Result<Self, serde_json::Error>> {
        let field = result.as_object()?.get(FIELD)?;
        Some(
            serde_json::from_value::<Vec<HandoffJob>>(field.clone())
                .map(|handoff| Self { handoff }),
        )
    }

    /// What the job's record keeps instead of the payloads.
    pub fn summary(&self, downstream: &str) -> serde_json::Value {
        let ids: Vec<String> = self
            .handoff
            .iter()
            .map(|job| format!("{downstream}:{}", job.id))
            .collect();
        serde_json::json!({ "handedOff": ids })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handoff_survives_the_json_result_and_is_found_there() {
        let handoff = Handoff::one(&serde_json::json!({"event": "e"}), "new_message:1").unwrap();
        let result = serde_json::to_value(&handoff).unwrap();
        let found = Handoff::in_result(&result).unwrap().unwrap();
        assert_eq!(found, handoff);
        assert_eq!(found.handoff[0].payload, serde_json::json!({"event": "e"}));
        assert_eq!(found.handoff[0].id.len(), 26, "a ULID");
    }

    #[test]
    fn results_without_a_handoff_field_carry_none() {
        assert!(Handoff::in_result(&serde_json::json!(null)).is_none());
        assert!(Handoff::in_result(&serde_json::json!({"rows": 3})).is_none());
        assert!(Handoff::in_result(&serde_json::json!([1, 2])).is_none());
    }

    #[test]
    fn a_malformed_handoff_is_an_error_not_nothing() {
        let bad = serde_json::json!({"handoff": [{"id": 1}]});
        assert!(Handoff::in_result(&bad).unwrap().is_err());
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
