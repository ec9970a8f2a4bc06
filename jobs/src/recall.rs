//! Recalling a scheduled message before it is sent.
//!
//! A message enqueued with `sendAt` waits in its queue's scheduled set
//! under a job id made from its message id
//! ([`crate::MessageId::scheduled_job_id`]), so it can be found from the
//! id its producer holds. The recall script (`lua/recall.lua`) removes the
//! job atomically if it has never started; a worker's fetch is atomic too,
//! so a job is either taken or recalled, never both: a recalled message is
//! never stored nor pushed, and a message whose job started is stored and
//! pushed as usual.

use std::sync::LazyLock;

use redis::{aio::ConnectionLike, RedisResult, Script};

use crate::queue::{queue_key, suffix};

static RECALL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/recall.lua")));

/// What a recall found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recall {
    /// The job had not started; it is gone, and the message will never be
    /// stored nor pushed.
    Recalled,
    /// The job has started (it is running, ran, or is waiting to run again
    /// after a failure): the message is or will be stored and pushed.
    Started,
    /// No scheduled job of the account has this id on the queue: it was
    /// never scheduled, was recalled already, or finished and was removed
    /// by retention.
    Absent,
}

/// Recalls job `job_id` of `account_hex` from the queue whose full name is
/// `queue`.
pub async fn recall<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: &str,
    job_id: &str,
    account_hex: &str,
) -> RedisResult<Recall> {
    let outcome: String = RECALL
        .prepare_invoke()
        .key(queue_key(queue, suffix::DATA))
        .key(queue_key(queue, suffix::ACTIVE))
        .key(queue_key(queue, suffix::SCHEDULED))
        .arg(queue_key(queue, suffix::META))
        .arg(job_id)
        .arg(account_hex)
        .invoke_async(conn)
        .await?;
    Ok(match outcome.as_str() {
        "recalled" => Recall::Recalled,
        "started" => Recall::Started,
        _ => Recall::Absent,
    })
}
