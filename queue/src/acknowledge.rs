//! Acknowledging: finished jobs recorded by the complete script, after
//! their hand-offs are enqueued on the downstream queue.
//!
//! Each [`Finished`] report becomes one [`Ack`]: the retry policy's
//! verdict ([`Outcome`]), the status and result to record, and a history
//! entry. A successful job's [`super::Handoff`] becomes jobs for the
//! enqueue script, and its record keeps only their ids. A job its error
//! deferred ([`super::retry::Defer`]) is scheduled again with its attempt
//! count unchanged: the run that was deferred does not count.

use std::sync::LazyLock;

use apalis_core::{task::status::Status, worker::context::WorkerContext};
use redis::Script;
use serde_json::Value;

use super::{
    ack::Finished,
    dead_index::{encode_labels, error_group, with_dead_index},
    enqueue::{enqueue, NewJob},
    now_secs,
    persistence::QueuePersistence,
    retry::Outcome,
    QueueError, COMPLETE_CHUNK, HISTORY_LEN,
};

static COMPLETE: LazyLock<Script> =
    LazyLock::new(|| with_dead_index(include_str!("lua/complete.lua")));

/// One acknowledgement, ready for the complete script.
struct Ack {
    id: String,
    outcome: Outcome,
    status: &'static str,
    attempts: usize,
    result: String,
    history: String,
    /// The error group of a job that is dead ("" otherwise).
    error_group: String,
    /// When it could first run ([`Finished::since`]; "" when unknown).
    since: String,
}

impl QueuePersistence {
    /// The acknowledgement of `finished`. A success that hands jobs off has
    /// them appended to `handed_off` and records only their ids; a hand-off
    /// that cannot be honoured fails the job instead, so its successor is
    /// never dropped silently.
    fn ack(&self, finished: &Finished, now: f64, handed_off: &mut Vec<NewJob>) -> Ack {
        if let (Err(error), Some(delay), false) = (
            &finished.result,
            finished.deferred,
            matches!(finished.status, Status::Killed),
        ) {
            // Not a failure: the run does not count, and leaves no history.
            return Ack {
                id: finished.task_id.to_string(),
                outcome: Outcome::Retry(delay),
                status: "Pending",
                attempts: finished.attempt.saturating_sub(1),
                result: serde_json::to_string(error).unwrap_or_else(|_| "null".into()),
                history: String::new(),
                error_group: String::new(),
                since: String::new(),
            };
        }
        let handed = match (&finished.result, &finished.handoff) {
            (Ok(_), Some(handoff)) => Some(self.take_handoff(handoff, now, handed_off)),
            _ => None,
        };
        let recorded = handed.as_ref().unwrap_or(&finished.result);
        let succeeded = recorded.is_ok();
        let aborted = matches!(finished.status, Status::Killed);
        let retry = &self.config.retry;
        let outcome = retry.not_sooner(
            retry.outcome(succeeded, aborted, finished.attempt, fastrand::f64()),
            finished.not_before,
        );
        let status = match (outcome, aborted) {
            (Outcome::Done, _) => "Done",
            (Outcome::Retry(_), _) => "Pending",
            (Outcome::Dead, true) => "Killed",
            (Outcome::Dead, false) => "Failed",
        };
        // Successful first runs need no history: the metadata says it all.
        let history = match recorded.as_ref() {
            Ok(_) if finished.attempt <= 1 => String::new(),
            outcome => serde_json::json!({
                "attempt": finished.attempt,
                "at": now,
                "status": status,
                "error": outcome.as_ref().err(),
            })
            .to_string(),
        };
        let error_group = match (outcome, recorded) {
            (Outcome::Dead, Err(error)) => error_group(error),
            _ => String::new(),
        };
        Ack {
            error_group,
            id: finished.task_id.to_string(),
            outcome,
            status,
            attempts: finished.attempt,
            result: serde_json::to_string(recorded).unwrap_or_else(|_| "null".into()),
            history,
            since: finished.since.clone().unwrap_or_default(),
        }
    }

    /// Moves the jobs of `handoff` into `handed_off`; returns what to
    /// record as the job's result.
    fn take_handoff(
        &self,
        handoff: &super::Handoff,
        now: f64,
        handed_off: &mut Vec<NewJob>,
    ) -> Result<Value, String> {
        let Some((downstream, _)) = &self.downstream else {
            return Err(format!(
                "the job handed off {} job(s) but {} has no downstream queue",
                handoff.jobs.len(),
                self.config.name
            ));
        };
        handed_off.extend(handoff.jobs.iter().map(|job| NewJob {
            id: job.id.clone(),
            payload: job.payload.clone(),
            run_at: 0,
            idempotency_key: job.idempotency_key.clone(),
            metadata: NewJob::metadata(0, downstream.retry.max_attempts, &job.idempotency_key, now),
        }));
        Ok(handoff.summary(&downstream.name))
    }

    /// Records finished jobs: enqueues their hand-offs, then their outcomes,
    /// in bounded calls. Safe to call again with the same reports after a
    /// failure (`retrying`): hand-offs are enqueued under idempotency keys,
    /// and a job an earlier try already recorded is not recorded twice.
    pub(super) async fn acknowledge(
        &mut self,
        reports: &[Finished],
        worker: &WorkerContext,
        retrying: bool,
    ) -> Result<(), QueueError> {
        let now = now_secs();
        let mut handed_off = Vec::new();
        let acks: Vec<Ack> = reports
            .iter()
            .map(|finished| self.ack(finished, now, &mut handed_off))
            .collect();
        // Successors first: a job is recorded done only once they are queued.
        if let (Some((downstream, doorbell)), false) = (&self.downstream, handed_off.is_empty()) {
            enqueue(&mut self.conn, downstream, &handed_off, now).await?;
            doorbell.ring();
        }
        let earliest_retry = acks
            .iter()
            .filter_map(|ack| match ack.outcome {
                Outcome::Retry(delay) => Some(now + delay.as_secs_f64()),
                _ => None,
            })
            .min_by(f64::total_cmp);
        let labels = encode_labels(&self.config.dead_labels);
        for chunk in acks.chunks(COMPLETE_CHUNK) {
            let mut call = COMPLETE.prepare_invoke();
            call.key(self.config.inflight_key(worker.name()))
                .key(self.config.done_key())
                .key(self.config.dead_key())
                .key(self.config.scheduled_key())
                .key(self.config.data_key())
                .key(self.config.wake_key())
                .arg(format!("{now:.3}"))
                .arg(self.config.meta_prefix())
                .arg(self.config.history_prefix())
                .arg(HISTORY_LEN)
                .arg(self.config.stats_prefix())
                .arg(&labels);
            for ack in chunk {
                let outcome = match ack.outcome {
                    Outcome::Done => "done",
                    Outcome::Retry(_) => "retry",
                    Outcome::Dead => "dead",
                };
                let retry_at = match ack.outcome {
                    Outcome::Retry(delay) => now + delay.as_secs_f64(),
                    _ => 0.0,
                };
                call.arg(&ack.id)
                    .arg(outcome)
                    .arg(ack.status)
                    .arg(ack.attempts)
                    .arg(&ack.result)
                    .arg(format!("{retry_at:.3}"))
                    .arg(&ack.history)
                    .arg(&ack.error_group)
                    .arg(&ack.since);
            }
            let (_recorded, lost): (u64, u64) = call
                .invoke_async(&mut self.conn)
                .await
                .map_err(self.command_error("acknowledge"))?;
            if lost > 0 && retrying {
                tracing::info!(
                    queue = %self.config.name,
                    worker = worker.name(),
                    jobs = lost,
                    "already recorded by the try whose answer was lost (or handed to another worker meanwhile)"
                );
            } else if lost > 0 {
                tracing::warn!(
                    queue = %self.config.name,
                    worker = worker.name(),
                    jobs = lost,
                    "results ignored: these jobs were handed to another worker while this one was presumed dead"
                );
            }
        }
        // This worker fetched before these retries were scheduled: tell it
        // when the first falls due, or it would learn only at its next fetch.
        if let Some(at) = earliest_retry {
            self.doorbell.expect_due(at);
        }
        Ok(())
    }
}
