//! Readiness: can this process reach Redis and MongoDB right now?
//!
//! Each dependency is pinged with a short deadline, both at once, so a
//! hung server makes `/readyz` answer "not ready" within
//! [`CHECK_TIMEOUT`] instead of hanging the load balancer's probe.
//!
//! `/readyz` is open (a load balancer calls it), so its answer says only
//! which dependency is down and whether it timed out or failed; the
//! driver's error, with hosts and ports, goes to the log.

use std::time::Duration;

use herald_jobs::RedisConnection;
use mongodb::{bson::doc, Database};
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::config::MongoSettings;

/// Longest a single dependency check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One dependency's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependencyStatus {
    /// `up` or `down`.
    pub status: &'static str,
    /// Why it is down, in general terms (absent when up); the details are
    /// in the process's log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DependencyStatus {
    fn from_result(result: Result<(), String>) -> Self {
        match result {
            Ok(()) => Self {
                status: "up",
                error: None,
            },
            Err(error) => Self {
                status: "down",
                error: Some(error),
            },
        }
    }

    /// Whether the dependency answered.
    pub fn is_up(&self) -> bool {
        self.status == "up"
    }
}

/// The body of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// `ready` when every dependency is up, `not ready` otherwise.
    pub status: &'static str,
    /// Redis (the queues).
    pub redis: DependencyStatus,
    /// MongoDB (messages, exports).
    pub mongodb: DependencyStatus,
}

impl Readiness {
    /// Whether every dependency is up.
    pub fn is_ready(&self) -> bool {
        self.redis.is_up() && self.mongodb.is_up()
    }
}

/// Checks the process's Redis and MongoDB.
#[derive(Debug)]
pub struct ReadinessProbe {
    redis: RedisConnection,
    mongo_settings: MongoSettings,
    /// The database handle: the process's own when it has one, otherwise
    /// created on first use (creating it does not contact the server).
    mongo: OnceCell<Database>,
}

impl ReadinessProbe {
    /// A probe over `redis` and MongoDB as `mongo_settings` describe it;
    /// `database` is the process's open handle if it has one.
    pub fn new(
        redis: RedisConnection,
        mongo_settings: MongoSettings,
        database: Option<Database>,
    ) -> Self {
        Self {
            redis,
            mongo_settings,
            mongo: OnceCell::new_with(database),
        }
    }

    /// Pings both dependencies at once.
    pub async fn check(&self) -> Readiness {
        let (redis, mongodb) = tokio::join!(self.check_redis(), self.check_mongo());
        let mut readiness = Readiness {
            status: "not ready",
            redis: DependencyStatus::from_result(redis),
            mongodb: DependencyStatus::from_result(mongodb),
        };
        if readiness.is_ready() {
            readiness.status = "ready";
        }
        readiness
    }

    async fn check_redis(&self) -> Result<(), String> {
        let mut conn = self.redis.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(failed("Redis", &e.to_string())),
            Err(_) => Err(timed_out()),
        }
    }

    async fn check_mongo(&self) -> Result<(), String> {
        let ping = async {
            let database = self
                .mongo
                .get_or_try_init(|| open_lazily(&self.mongo_settings))
                .await?;
            database
                .run_command(doc! { "ping": 1 })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(failed("MongoDB", &error)),
            Err(_) => Err(timed_out()),
        }
    }
}

/// The answer's reason for a dependency that failed with `error`, which is
/// logged.
fn failed(dependency: &str, error: &str) -> String {
    tracing::warn!(error = %error, "{dependency} is not ready");
    "the check failed; the process's log has the error".to_owned()
}

/// The answer's reason for a dependency that did not answer in time.
fn timed_out() -> String {
    format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())
}

/// A database handle whose client connects on first use.
async fn open_lazily(settings: &MongoSettings) -> Result<Database, String> {
    crate::store::open(settings)
        .await
        .map_err(|e| e.to_string())
}
