//! Dead jobs written in bulk, exactly as the complete script records a job
//! that failed for good (payload, metadata, the dead set and its indexes):
//! how the tests and the benchmark build a failed list of a hundred
//! thousand jobs in seconds. An operator has no use for it.

use std::sync::LazyLock;

use herald_jobs::RedisConnection;
use redis::Script;

use super::{
    dead_index::{encode_labels, error_group, with_dead_index},
    QueueConfig, QueueError,
};

static SEED_DEAD: LazyLock<Script> =
    LazyLock::new(|| with_dead_index(include_str!("lua/seed_dead.lua")));

/// Jobs per script call.
const SEED_CHUNK: usize = 2_000;

/// A dead job to write.
#[derive(Debug, Clone)]
pub struct SeedDeadJob {
    /// Job id.
    pub id: String,
    /// JSON payload.
    pub payload: String,
    /// When it failed (Unix seconds).
    pub failed_at: f64,
    /// Its last error.
    pub error: String,
}

/// Writes `jobs` into the dead set of the queue `config` describes.
pub async fn seed_dead_jobs(
    conn: &mut RedisConnection,
    config: &QueueConfig,
    jobs: &[SeedDeadJob],
) -> Result<u64, QueueError> {
    let labels = encode_labels(&config.dead_labels);
    let mut written = 0;
    for chunk in jobs.chunks(SEED_CHUNK) {
        let mut call = SEED_DEAD.prepare_invoke();
        call.key(config.dead_key())
            .key(config.data_key())
            .arg(config.meta_prefix())
            .arg(&labels);
        for job in chunk {
            call.arg(&job.id)
                .arg(&job.payload)
                .arg(format!("{:.3}", job.failed_at))
                .arg(&job.error)
                .arg(error_group(&job.error));
        }
        written += call
            .invoke_async::<u64>(conn)
            .await
            .map_err(|source| QueueError::Command {
                operation: "seed dead jobs",
                queue: config.name.clone(),
                source,
            })?;
    }
    Ok(written)
}
