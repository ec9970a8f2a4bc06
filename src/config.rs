//! Settings, loaded in layers and checked once at start-up.
//!
//! The layers are: the defaults compiled from `config/default.toml`, the same
//! file on disk, `config/$HERALD_ENV.toml`, then one `HERALD_<SECTION>_<KEY>`
//! environment variable per setting. [`Settings::load`] returns either settings
//! that are known to be usable or a [`ConfigError`] that names the setting and
//! the variable that sets it.

use std::{collections::HashMap, path::PathBuf, time::Duration};

use herald_jobs::{MessageLimits, Namespace};
use secrecy::SecretString;
use serde::Deserialize;

/// The defaults, compiled in so the binary starts without a config directory.
const DEFAULTS_TOML: &str = include_str!("../config/default.toml");

/// Every setting key. Each has the environment variable
/// `HERALD_` + the key uppercased with `.` replaced by `_`.
pub const SETTING_KEYS: &[&str] = &[
    "redis.url",
    "redis.namespace",
    "mongodb.url",
    "mongodb.database",
    "mongodb.write_concern",
    "mongodb.write_journal",
    "tuisongbao.url",
    "tuisongbao.app_id",
    "tuisongbao.secret",
    "tuisongbao.connect_timeout_ms",
    "tuisongbao.request_timeout_ms",
    "worker.concurrency",
    "worker.push_concurrency",
    "worker.fetch_batch_size",
    "worker.poll_interval_ms",
    "worker.heartbeat_interval_secs",
    "worker.missed_heartbeats",
    "worker.shutdown_timeout_secs",
    "worker.push_dedup_ttl_secs",
    "worker.retry_base_ms",
    "worker.retry_cap_secs",
    "worker.send_message_max_attempts",
    "worker.push_max_attempts",
    "worker.export_max_attempts",
    "worker.export_concurrency",
    "worker.ops_bind",
    "worker.max_payload_bytes",
    "message.max_content_bytes",
    "message.max_title_bytes",
    "log.format",
    "log.level",
    "web.bind",
    "web.token",
    "web.max_body_bytes",
    "export.dir",
    "export.collections",
    "export.account_field",
    "export.time_zone",
    "export.batch_size",
    "export.progress_interval_ms",
];

/// The environment variable that overrides setting `key`.
pub fn env_var_for(key: &str) -> String {
    format!("HERALD_{}", key.to_ascii_uppercase().replace('.', "_"))
}

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A configuration file exists but cannot be read or parsed, or a value
    /// has the wrong type.
    #[error("configuration could not be read: {0}")]
    Load(#[from] config::ConfigError),
    /// `HERALD_ENV` names an environment with no file.
    #[error("HERALD_ENV is '{env}' but {path} does not exist")]
    MissingEnvironmentFile {
        /// The environment asked for.
        env: String,
        /// The file looked for.
        path: String,
    },
    /// A setting is present but unusable.
    #[error("setting `{key}` (env {var}) {reason}")]
    Invalid {
        /// The setting's key, e.g. `redis.url`.
        key: &'static str,
        /// Its environment variable, e.g. `HERALD_REDIS_URL`.
        var: String,
        /// What is wrong.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(key: &'static str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key,
            var: env_var_for(key),
            reason: reason.into(),
        }
    }
}

/// Everything Herald's processes are configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The Redis server holding the queues.
    pub redis: RedisSettings,
    /// The MongoDB server holding messages.
    pub mongodb: MongoSettings,
    /// The push provider.
    pub tuisongbao: TuisongbaoSettings,
    /// Worker process tuning.
    pub worker: WorkerSettings,
    /// Limits applied to message jobs.
    pub message: MessageLimits,
    /// Log output.
    pub log: LogSettings,
    /// The dashboard and API server.
    pub web: WebSettings,
    /// Export jobs.
    pub export: ExportSettings,
}

/// Export job settings.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// Directory the finished files are stored in (one folder per account).
    pub dir: PathBuf,
    /// What exports may read and how dates are shown by default.
    pub limits: herald_jobs::ExportLimits,
    /// Field holding the account id in exported collections.
    pub account_field: String,
    /// Documents fetched per cursor batch.
    pub batch_size: u32,
    /// Progress is recorded and pushed at most this often.
    pub progress_interval: Duration,
}

/// `herald web` settings.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// Address to listen on.
    pub bind: std::net::SocketAddr,
    /// The operator token (API bearer token and dashboard login); `None`
    /// when unset, in which case `herald web` refuses to start.
    pub token: Option<SecretString>,
    /// Largest request body the API accepts, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
}

/// Redis connection and key namespace.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Connection URL.
    pub url: String,
    /// Prefix of every key.
    pub namespace: Namespace,
}

/// MongoDB connection.
#[derive(Debug, Clone)]
pub struct MongoSettings {
    /// Connection string.
    pub url: String,
    /// Database name.
    pub database: String,
    /// How many members must have a write before it counts as done.
    pub write_concern: WriteAcknowledgment,
    /// Whether a write counts as done only once it is in the journal.
    pub write_journal: bool,
}

/// `mongodb.write_concern`: which members must acknowledge a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteAcknowledgment {
    /// A majority of the replica set's voting members (`"majority"`).
    Majority,
    /// This many members (`"1"`, `"2"`, ...).
    Members(u32),
    /// A custom write concern defined by the replica set's tags.
    Tag(String),
}

impl WriteAcknowledgment {
    /// Parses the setting's text. `"0"` (no acknowledgment) is refused:
    /// Herald pushes a message only once it knows the message is stored.
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        match text {
            "" => Err("must not be empty".to_owned()),
            "majority" => Ok(Self::Majority),
            "0" => Err("'0' would not wait for any acknowledgment; Herald pushes a message only after the database has it (use \"majority\" or 1 and up)".to_owned()),
            number if number.bytes().all(|b| b.is_ascii_digit()) => number
                .parse()
                .map(Self::Members)
                .map_err(|_| format!("'{number}' is not a usable member count")),
            tag => Ok(Self::Tag(tag.to_owned())),
        }
    }
}

/// Tuisongbao REST endpoint and credentials.
#[derive(Debug, Clone)]
pub struct TuisongbaoSettings {
    /// Base URL, without the `/v2/...` path.
    pub url: reqwest::Url,
    /// Application id (Basic auth user).
    pub app_id: String,
    /// Application secret (Basic auth password); never printed.
    pub secret: SecretString,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
}

/// Worker process tuning.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Concurrent send_message jobs.
    pub concurrency: usize,
    /// Concurrent push jobs.
    pub push_concurrency: usize,
    /// Jobs fetched per Redis round trip.
    pub fetch_batch_size: usize,
    /// How often an idle worker looks for new jobs.
    pub poll_interval: Duration,
    /// Liveness heartbeat period.
    pub heartbeat_interval: Duration,
    /// Heartbeats missed before a worker's jobs are re-run elsewhere.
    pub missed_heartbeats: usize,
    /// Grace period for running jobs on shutdown.
    pub shutdown_timeout: Duration,
    /// How long a push's idempotency key lives.
    pub push_dedup_ttl: Duration,
    /// Backoff after a job's first failure (doubling after each further one).
    pub retry_base: Duration,
    /// Longest backoff between two runs of a job.
    pub retry_cap: Duration,
    /// Runs a send_message job gets before it is dead.
    pub send_message_max_attempts: usize,
    /// Runs a push job gets before it is dead.
    pub push_max_attempts: usize,
    /// Runs an export job gets before it is dead.
    pub export_max_attempts: usize,
    /// Exports running at the same time in one worker process.
    pub export_concurrency: usize,
    /// Where the worker serves `/healthz`, `/readyz` and `/metrics`;
    /// `None` when the setting is empty (no listener).
    pub ops_bind: Option<std::net::SocketAddr>,
    /// Largest job payload a worker decodes, in bytes; a larger one is
    /// recorded dead unread.
    pub max_payload_bytes: usize,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Log settings.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Output format.
    pub format: LogFormat,
    /// Default `EnvFilter` directive.
    pub level: String,
}

/// The settings as files and variables spell them, before checking.
#[derive(Debug, Deserialize)]
struct RawSettings {
    redis: RawRedis,
    mongodb: RawMongo,
    tuisongbao: RawTuisongbao,
    worker: RawWorker,
    message: RawMessage,
    log: RawLog,
    web: RawWeb,
    export: RawExport,
}

#[derive(Debug, Deserialize)]
struct RawExport {
    dir: String,
    collections: String,
    account_field: String,
    time_zone: String,
    batch_size: u32,
    progress_interval_ms: u64,
}

#[derive(Debug, Deserialize)]
struct RawWeb {
    bind: String,
    token: String,
    max_body_bytes: usize,
}

#[derive(Debug, Deserialize)]
struct RawRedis {
    url: String,
    namespace: String,
}

#[derive(Debug, Deserialize)]
struct RawMongo {
    url: String,
    database: String,
    write_concern: String,
    write_journal: bool,
}

#[derive(Debug, Deserialize)]
struct RawTuisongbao {
    url: String,
    app_id: String,
    secret: String,
    connect_timeout_ms: u64,
    request_timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
struct RawWorker {
    concurrency: usize,
    push_concurrency: usize,
    fetch_batch_size: usize,
    poll_interval_ms: u64,
    heartbeat_interval_secs: u64,
    missed_heartbeats: usize,
    shutdown_timeout_secs: u64,
    push_dedup_ttl_secs: u64,
    retry_base_ms: u64,
    retry_cap_secs: u64,
    send_message_max_attempts: usize,
    push_max_attempts: usize,
    export_max_attempts: usize,
    export_concurrency: usize,
    ops_bind: String,
    max_payload_bytes: usize,
}

#[derive(Debug, Deserialize)]
struct RawMessage {
    max_content_bytes: usize,
    max_title_bytes: usize,
}

#[derive(Debug, Deserialize)]
struct RawLog {
    format: String,
    level: String,
}

impl Settings {
    /// Loads the settings from `HERALD_CONFIG_DIR` (default `./config`),
    /// `HERALD_ENV` (default `development`) and the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::load_from(&vars)
    }

    /// Loads the settings with `vars` standing in for the process environment.
    pub fn load_from(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let dir = PathBuf::from(
            vars.get("HERALD_CONFIG_DIR")
                .map(String::as_str)
                .unwrap_or("config"),
        );
        let explicit_env = vars.get("HERALD_ENV").filter(|v| !v.is_empty());
        let env = explicit_env.map(String::as_str).unwrap_or("development");

        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULTS_TOML,
                config::FileFormat::Toml,
            ))
            .add_source(config::File::from(dir.join("default.toml")).required(false));

        let env_file = dir.join(format!("{env}.toml"));
        if explicit_env.is_some() && !env_file.exists() {
            return Err(ConfigError::MissingEnvironmentFile {
                env: env.to_owned(),
                path: env_file.display().to_string(),
            });
        }
        builder = builder.add_source(config::File::from(env_file.as_path()).required(false));

        for key in SETTING_KEYS {
            if let Some(value) = vars.get(&env_var_for(key)) {
                builder = builder.set_override(*key, value.as_str())?;
            }
        }

        let raw: RawSettings = builder.build()?.try_deserialize()?;
        raw.check()
    }
}

fn non_empty(key: &'static str, value: String) -> Result<String, ConfigError> {
    if value.trim().is_empty() {
        Err(ConfigError::invalid(key, "is empty; it must be set"))
    } else {
        Ok(value)
    }
}

fn positive(key: &'static str, value: u64) -> Result<u64, ConfigError> {
    if value == 0 {
        Err(ConfigError::invalid(key, "must be greater than 0"))
    } else {
        Ok(value)
    }
}

/// An address like `127.0.0.1:9090`, or `None` for an empty value.
fn optional_address(
    key: &'static str,
    value: &str,
) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        ConfigError::invalid(
            key,
            format!("'{value}' is not an address like 127.0.0.1:9090 (or empty to disable)"),
        )
    })
}

fn positive_usize(key: &'static str, value: usize) -> Result<usize, ConfigError> {
    positive(key, value as u64).map(|_| value)
}

impl RawSettings {
    fn check(self) -> Result<Settings, ConfigError> {
        let redis_url = non_empty("redis.url", self.redis.url)?;
        if herald_jobs::redis_url::is_sentinel_url(&redis_url) {
            herald_jobs::redis_url::SentinelUrl::parse(&redis_url).map_err(|reason| {
                ConfigError::invalid(
                    "redis.url",
                    format!("'{}' {reason}", herald_jobs::redact_url(&redis_url)),
                )
            })?;
        } else if !(redis_url.starts_with("redis://")
            || redis_url.starts_with("rediss://")
            || redis_url.starts_with("redis+unix://")
            || redis_url.starts_with("unix://"))
        {
            return Err(ConfigError::invalid(
                "redis.url",
                format!("'{redis_url}' must start with redis://, rediss://, unix:// or redis+sentinel://"),
            ));
        }
        let namespace = Namespace::parse(&self.redis.namespace)
            .map_err(|e| ConfigError::invalid("redis.namespace", e.reason))?;

        let mongo_url = non_empty("mongodb.url", self.mongodb.url)?;
        if !(mongo_url.starts_with("mongodb://") || mongo_url.starts_with("mongodb+srv://")) {
            return Err(ConfigError::invalid(
                "mongodb.url",
                format!("'{mongo_url}' must start with mongodb:// or mongodb+srv://"),
            ));
        }
        let database = non_empty("mongodb.database", self.mongodb.database)?;
        if database.contains(['/', '\\', '.', ' ', '"', '$']) || database.len() > 63 {
            return Err(ConfigError::invalid(
                "mongodb.database",
                format!("'{database}' is not a valid MongoDB database name"),
            ));
        }

        let push_url_text = non_empty("tuisongbao.url", self.tuisongbao.url)?;
        let push_url = reqwest::Url::parse(&push_url_text)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                ConfigError::invalid(
                    "tuisongbao.url",
                    format!("'{push_url_text}' is not an http:// or https:// URL"),
                )
            })?;

        let format = match self.log.format.as_str() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::invalid(
                    "log.format",
                    format!("'{other}' must be \"pretty\" or \"json\""),
                ))
            }
        };

        Ok(Settings {
            redis: RedisSettings {
                url: redis_url,
                namespace,
            },
            mongodb: MongoSettings {
                url: mongo_url,
                database,
                write_concern: WriteAcknowledgment::parse(&self.mongodb.write_concern)
                    .map_err(|reason| ConfigError::invalid("mongodb.write_concern", reason))?,
                write_journal: self.mongodb.write_journal,
            },
            tuisongbao: TuisongbaoSettings {
                url: push_url,
                app_id: non_empty("tuisongbao.app_id", self.tuisongbao.app_id)?,
                secret: SecretString::from(non_empty("tuisongbao.secret", self.tuisongbao.secret)?),
                connect_timeout: Duration::from_millis(positive(
                    "tuisongbao.connect_timeout_ms",
                    self.tuisongbao.connect_timeout_ms,
                )?),
                request_timeout: Duration::from_millis(positive(
                    "tuisongbao.request_timeout_ms",
                    self.tuisongbao.request_timeout_ms,
                )?),
            },
            worker: WorkerSettings {
                concurrency: positive_usize("worker.concurrency", self.worker.concurrency)?,
                push_concurrency: positive_usize(
                    "worker.push_concurrency",
                    self.worker.push_concurrency,
                )?,
                fetch_batch_size: positive_usize(
                    "worker.fetch_batch_size",
                    self.worker.fetch_batch_size,
                )?,
                poll_interval: Duration::from_millis(positive(
                    "worker.poll_interval_ms",
                    self.worker.poll_interval_ms,
                )?),
                heartbeat_interval: Duration::from_secs(positive(
                    "worker.heartbeat_interval_secs",
                    self.worker.heartbeat_interval_secs,
                )?),
                missed_heartbeats: positive_usize(
                    "worker.missed_heartbeats",
                    self.worker.missed_heartbeats,
                )?,
                shutdown_timeout: Duration::from_secs(self.worker.shutdown_timeout_secs),
                push_dedup_ttl: Duration::from_secs(positive(
                    "worker.push_dedup_ttl_secs",
                    self.worker.push_dedup_ttl_secs,
                )?),
                retry_base: Duration::from_millis(positive(
                    "worker.retry_base_ms",
                    self.worker.retry_base_ms,
                )?),
                retry_cap: Duration::from_secs(positive(
                    "worker.retry_cap_secs",
                    self.worker.retry_cap_secs,
                )?),
                send_message_max_attempts: positive_usize(
                    "worker.send_message_max_attempts",
                    self.worker.send_message_max_attempts,
                )?,
                push_max_attempts: positive_usize(
                    "worker.push_max_attempts",
                    self.worker.push_max_attempts,
                )?,
                export_max_attempts: positive_usize(
                    "worker.export_max_attempts",
                    self.worker.export_max_attempts,
                )?,
                export_concurrency: positive_usize(
                    "worker.export_concurrency",
                    self.worker.export_concurrency,
                )?,
                ops_bind: optional_address("worker.ops_bind", &self.worker.ops_bind)?,
                max_payload_bytes: positive_usize(
                    "worker.max_payload_bytes",
                    self.worker.max_payload_bytes,
                )?,
            },
            message: MessageLimits {
                max_content_bytes: positive_usize(
                    "message.max_content_bytes",
                    self.message.max_content_bytes,
                )?,
                max_title_bytes: positive_usize(
                    "message.max_title_bytes",
                    self.message.max_title_bytes,
                )?,
            },
            log: LogSettings {
                format,
                level: self.log.level,
            },
            web: WebSettings {
                bind: self.web.bind.parse().map_err(|_| {
                    ConfigError::invalid(
                        "web.bind",
                        format!("'{}' is not an address like 127.0.0.1:8080", self.web.bind),
                    )
                })?,
                token: (!self.web.token.trim().is_empty())
                    .then(|| SecretString::from(self.web.token)),
                max_body_bytes: positive_usize("web.max_body_bytes", self.web.max_body_bytes)?,
            },
            export: ExportSettings {
                dir: PathBuf::from(non_empty("export.dir", self.export.dir)?),
                limits: herald_jobs::ExportLimits {
                    collections: self
                        .export
                        .collections
                        .split(',')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    default_time_zone: self.export.time_zone.parse().map_err(|_| {
                        ConfigError::invalid(
                            "export.time_zone",
                            format!("'{}' is not an IANA time zone", self.export.time_zone),
                        )
                    })?,
                },
                account_field: non_empty("export.account_field", self.export.account_field)?,
                batch_size: positive("export.batch_size", self.export.batch_size as u64)? as u32,
                progress_interval: Duration::from_millis(positive(
                    "export.progress_interval_ms",
                    self.export.progress_interval_ms,
                )?),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        // Point at a directory without files so only compiled defaults apply.
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.entry("HERALD_CONFIG_DIR".into())
            .or_insert_with(|| "/nonexistent-herald-config".into());
        map
    }

    #[test]
    fn compiled_defaults_load_without_any_file() {
        let s = Settings::load_from(&vars(&[])).unwrap();
        assert_eq!(s.redis.url, "redis://127.0.0.1:6379");
        assert_eq!(s.redis.namespace.as_str(), "herald");
        assert_eq!(s.mongodb.database, "herald");
        assert_eq!(s.message.max_content_bytes, 64 * 1024);
        assert_eq!(s.log.format, LogFormat::Pretty);
    }

    #[test]
    fn every_named_variable_overrides_its_setting() {
        let s = Settings::load_from(&vars(&[
            ("HERALD_REDIS_URL", "redis://cache:6380/2"),
            ("HERALD_MONGODB_URL", "mongodb://db1,db2/?replicaSet=rs0"),
            ("HERALD_MONGODB_DATABASE", "scrm"),
            ("HERALD_TUISONGBAO_URL", "https://push.example.com"),
            ("HERALD_TUISONGBAO_APP_ID", "app-1"),
            ("HERALD_TUISONGBAO_SECRET", "s3cret"),
            ("HERALD_WORKER_CONCURRENCY", "3"),
            ("HERALD_LOG_FORMAT", "json"),
        ]))
        .unwrap();
        assert_eq!(s.redis.url, "redis://cache:6380/2");
        assert_eq!(s.mongodb.url, "mongodb://db1,db2/?replicaSet=rs0");
        assert_eq!(s.mongodb.database, "scrm");
        assert_eq!(s.tuisongbao.url.as_str(), "https://push.example.com/");
        assert_eq!(s.tuisongbao.app_id, "app-1");
        assert_eq!(s.tuisongbao.secret.expose_secret(), "s3cret");
        assert_eq!(s.worker.concurrency, 3);
        assert_eq!(s.log.format, LogFormat::Json);
    }

    #[test]
    fn every_key_has_a_default() {
        // A key listed without a default would make a variable silently
        // useless or the loader fail; load each with its variable set to a
        // value of the right shape instead.
        let base = Settings::load_from(&vars(&[])).unwrap();
        assert!(base.worker.fetch_batch_size > 0);
        for key in SETTING_KEYS {
            assert!(env_var_for(key).starts_with("HERALD_"));
            assert!(DEFAULTS_TOML.contains(&format!("\n{} =", key.split('.').nth(1).unwrap())));
        }
    }

    #[test]
    fn invalid_values_name_the_setting_and_its_variable() {
        let cases = [
            ("HERALD_REDIS_URL", "http://cache", "redis.url"),
            ("HERALD_REDIS_NAMESPACE", "a:b", "redis.namespace"),
            ("HERALD_MONGODB_URL", "", "mongodb.url"),
            ("HERALD_MONGODB_DATABASE", "a.b", "mongodb.database"),
            ("HERALD_TUISONGBAO_URL", "not a url", "tuisongbao.url"),
            ("HERALD_TUISONGBAO_SECRET", "", "tuisongbao.secret"),
            ("HERALD_WORKER_CONCURRENCY", "0", "worker.concurrency"),
            ("HERALD_LOG_FORMAT", "xml", "log.format"),
            ("HERALD_WORKER_OPS_BIND", "localhost", "worker.ops_bind"),
        ];
        for (var, value, key) in cases {
            let err = Settings::load_from(&vars(&[(var, value)])).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(key) && text.contains(var),
                "{var}={value}: {text}"
            );
        }
    }

    #[test]
    fn a_non_numeric_number_is_a_load_error_naming_the_key() {
        let err = Settings::load_from(&vars(&[("HERALD_WORKER_CONCURRENCY", "many")])).unwrap_err();
        assert!(err.to_string().contains("concurrency"), "{err}");
    }

    #[test]
    fn the_production_file_requires_push_credentials() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
        let err = Settings::load_from(&vars(&[
            ("HERALD_CONFIG_DIR", dir),
            ("HERALD_ENV", "production"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("HERALD_TUISONGBAO_URL"), "{err}");

        let ok = Settings::load_from(&vars(&[
            ("HERALD_CONFIG_DIR", dir),
            ("HERALD_ENV", "production"),
            ("HERALD_TUISONGBAO_URL", "https://api.example.com"),
            ("HERALD_TUISONGBAO_APP_ID", "a"),
            ("HERALD_TUISONGBAO_SECRET", "s"),
        ]))
        .unwrap();
        assert_eq!(ok.log.format, LogFormat::Json);
    }

    #[test]
    fn an_unknown_environment_is_refused() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
        let err = Settings::load_from(&vars(&[
            ("HERALD_CONFIG_DIR", dir),
            ("HERALD_ENV", "staging"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("staging.toml"), "{err}");
    }

    #[test]
    fn the_ops_listener_is_on_by_default_and_empty_disables_it() {
        let s = Settings::load_from(&vars(&[])).unwrap();
        assert_eq!(s.worker.ops_bind, Some("127.0.0.1:9090".parse().unwrap()));
        let s = Settings::load_from(&vars(&[("HERALD_WORKER_OPS_BIND", "")])).unwrap();
        assert_eq!(s.worker.ops_bind, None);
        let s = Settings::load_from(&vars(&[("HERALD_WORKER_OPS_BIND", "0.0.0.0:0")])).unwrap();
        assert_eq!(s.worker.ops_bind, Some("0.0.0.0:0".parse().unwrap()));
    }

    #[test]
    fn sentinel_urls_are_accepted_and_checked() {
        let url = "redis+sentinel://:pw@s1:26379,s2:26379/mymaster/0";
        let s = Settings::load_from(&vars(&[("HERALD_REDIS_URL", url)])).unwrap();
        assert_eq!(s.redis.url, url);
        let err = Settings::load_from(&vars(&[(
            "HERALD_REDIS_URL",
            "redis+sentinel://:pw@s1:26379",
        )]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("HERALD_REDIS_URL") && err.contains("names no service"),
            "{err}"
        );
        assert!(!err.contains(":pw@"), "the password is not shown: {err}");
    }

    #[test]
    fn replica_set_urls_are_accepted() {
        let url = "mongodb://user:pw@db-a:27017,db-b:27017,db-c:27017/?replicaSet=rs0&readPreference=primary";
        let s = Settings::load_from(&vars(&[("HERALD_MONGODB_URL", url)])).unwrap();
        assert_eq!(s.mongodb.url, url);
        let srv = "mongodb+srv://cluster0.example.net/?replicaSet=rs0";
        let s = Settings::load_from(&vars(&[("HERALD_MONGODB_URL", srv)])).unwrap();
        assert_eq!(s.mongodb.url, srv);
    }

    #[test]
    fn the_secret_never_prints() {
        let s = Settings::load_from(&vars(&[("HERALD_TUISONGBAO_SECRET", "hunter2")])).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
