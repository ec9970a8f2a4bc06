//! Settings, loaded in layers and checked once at start-up.
//!
//! The layers are: the defaults compiled from `config/default.toml`, the same
//! file on disk, `config/$HERALD_ENV.toml`, then one `HERALD_<SECTION>_<KEY>`
//! environment variable per setting. [`Settings::load`] returns either settings
//! that are known to be usable or a [`ConfigError`] that names the setting and
//! the variable that sets it.
//!
//! Each TOML section has its own module (`redis`, `mongodb`, `push`,
//! `tuisongbao`, `pusher`, `worker`, `queues` with one table per queue,
//! `retention`, `message`, `log`, `web`, `export`) holding the section's
//! settings, declared once each with `define_settings!` (key, default,
//! rule, meaning), its typed struct, and the `read` function that builds
//! that struct, through readers that apply each declared rule. [`all_settings`]
//! lists every setting from those declarations; the loader takes the
//! environment variables from it, and the tests hold `config/default.toml`,
//! the rules and the table of variables in `docs/configuration.md` to it.
//!
//! Adding a setting: a line in its section's `define_settings!`, a field in
//! the section's struct filled in its `read`, and the key with its comment
//! in `config/default.toml`; then `herald config --markdown` prints the
//! table `docs/configuration.md` holds. The tests in `tests.rs` fail until
//! the file and the page agree with the declaration.

mod export;
mod log;
mod message;
mod mongodb;
mod push;
mod pusher;
mod queues;
mod redis;
mod retention;
mod setting;
#[cfg(test)]
mod tests;
mod trace;
mod tuisongbao;
mod web;
mod worker;

use std::{collections::HashMap, path::PathBuf};

use herald_jobs::MessageLimits;

use self::setting::Values;
pub use self::{
    export::{ExportSettings, S3Settings, StorageKind},
    log::{LogFormat, LogSettings},
    message::MessageRetention,
    mongodb::{MongoSettings, WriteAcknowledgment},
    push::{ProviderKind, PushSettings, RateLimitSettings},
    pusher::PusherSettings,
    queues::{QueueSettings, QueuesSettings, RENAMED},
    redis::RedisSettings,
    retention::RetentionSettings,
    setting::{env_var_for, Rule, Setting},
    trace::TraceExportSettings,
    tuisongbao::TuisongbaoSettings,
    web::WebSettings,
    worker::WorkerSettings,
};

/// The defaults, compiled in so the binary starts without a config directory.
const DEFAULTS_TOML: &str = include_str!("../../config/default.toml");

/// Every section's settings, in the order of `config/default.toml`.
const SECTIONS: &[&[Setting]] = &[
    redis::SETTINGS,
    mongodb::SETTINGS,
    push::SETTINGS,
    tuisongbao::SETTINGS,
    pusher::SETTINGS,
    worker::SETTINGS,
    queues::SEND_MESSAGE,
    queues::PUSH,
    queues::EXPORT,
    retention::SETTINGS,
    message::SETTINGS,
    log::SETTINGS,
    trace::SETTINGS,
    web::SETTINGS,
    export::SETTINGS,
];

/// Every setting Herald reads, section by section.
pub fn all_settings() -> impl Iterator<Item = &'static Setting> {
    SECTIONS.iter().flat_map(|section| section.iter())
}

/// The reference table of every setting: its key, its environment
/// variable, its default, what it allows and what it sets, in Markdown, one
/// row per setting in declaration order. `docs/configuration.md` holds this
/// table as `herald config --markdown` prints it (a test keeps the two
/// equal).
pub fn reference_table() -> String {
    let mut table = String::from(
        "| setting | variable | default | allowed | meaning |\n|---|---|---|---|---|\n",
    );
    let cell = |text: &str| text.replace('|', "\\|");
    for setting in all_settings() {
        table.push_str(&format!(
            "| `{}` | `{}` | `{}` | {} | {} |\n",
            setting.key,
            setting.env_var(),
            setting.default,
            cell(&setting.rule.describe()),
            cell(setting.doc)
        ));
    }
    table
}

/// Every setting as plain text: the key, environment variable and default
/// on one line, what it allows and what it sets on the next (`herald
/// config`).
pub fn reference_text() -> String {
    all_settings()
        .map(|setting| {
            format!(
                "{} = {:?} ({})\n    allowed: {}; {}\n",
                setting.key,
                setting.default,
                setting.env_var(),
                setting.rule.describe(),
                setting.doc
            )
        })
        .collect()
}

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A configuration file exists but cannot be read or parsed, or a value
    /// has the wrong type. The cause is in the message, not a `source`, so
    /// a printed chain states it once.
    #[error("configuration could not be read: {0}")]
    Load(config::ConfigError),
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

impl From<config::ConfigError> for ConfigError {
    fn from(error: config::ConfigError) -> Self {
        ConfigError::Load(error)
    }
}

impl ConfigError {
    fn invalid(setting: &Setting, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: setting.key,
            var: setting.env_var(),
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
    /// Which push provider is used.
    pub push: PushSettings,
    /// The Tuisongbao provider.
    pub tuisongbao: TuisongbaoSettings,
    /// The Pusher-protocol provider.
    pub pusher: PusherSettings,
    /// Worker process tuning shared by every queue.
    pub worker: WorkerSettings,
    /// Each queue's own options.
    pub queues: QueuesSettings,
    /// What the queues keep of finished jobs.
    pub retention: RetentionSettings,
    /// Limits applied to message jobs.
    pub message: MessageLimits,
    /// How long stored messages are kept (`[message]`'s `keep_days`).
    pub message_retention: MessageRetention,
    /// Log output.
    pub log: LogSettings,
    /// The OTLP export of trace spans (`[trace]`); `None`: off.
    pub trace_export: Option<TraceExportSettings>,
    /// The dashboard and API server.
    pub web: WebSettings,
    /// Export jobs.
    pub export: ExportSettings,
    /// Keys the configuration files set, and `HERALD_<SECTION>_*`
    /// variables, that are not settings (a typo, a setting this version no
    /// longer has, or an earlier name of one in [`RENAMED`], which is read
    /// under its new name); the long-running commands warn about each
    /// ([`Settings::warn_unknown`]).
    pub unknown_keys: Vec<String>,
}

/// Settings earlier versions had, and what took their place.
const RETIRED: &[(&str, &str)] = &[(
    "worker.poll_interval_ms",
    "idle workers wake as soon as a job is enqueued; worker.idle_wait_ms is the fallback",
)];

/// The variables of `vars` named like a setting's (`HERALD_<SECTION>_...`
/// for a section that exists) that name none.
fn unknown_variables(vars: &HashMap<String, String>) -> Vec<String> {
    let known: std::collections::HashSet<String> = all_settings().map(Setting::env_var).collect();
    let prefixes: std::collections::HashSet<String> = all_settings()
        .filter_map(|s| s.key.split_once('.'))
        .map(|(section, _)| format!("HERALD_{}_", section.to_ascii_uppercase()))
        .collect();
    let mut unknown: Vec<String> = vars
        .keys()
        .filter(|var| {
            prefixes
                .iter()
                .any(|prefix| var.starts_with(prefix.as_str()))
        })
        .filter(|var| !known.contains(var.as_str()))
        .cloned()
        .collect();
    unknown.sort();
    unknown
}

/// Every value `layers` holds, by its dotted key (`redis.url`,
/// `queues.push.concurrency`): tables are walked to their leaves.
fn flatten(layers: &config::Config) -> std::collections::BTreeMap<String, config::Value> {
    fn walk(
        prefix: String,
        value: config::Value,
        out: &mut std::collections::BTreeMap<String, config::Value>,
    ) {
        match value.clone().into_table() {
            Ok(table) => {
                for (key, value) in table {
                    let key = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(key, value, out);
                }
            }
            Err(_) => {
                out.insert(prefix, value);
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    if let Ok(root) = layers.clone().try_deserialize::<config::Value>() {
        walk(String::new(), root, &mut out);
    }
    out
}

/// The dotted keys in `layers` that no setting declares.
fn unknown_keys(layers: &config::Config) -> Vec<String> {
    let known: std::collections::HashSet<&str> = all_settings().map(|s| s.key).collect();
    flatten(layers)
        .into_keys()
        .filter(|key| !known.contains(key.as_str()))
        .collect()
}

/// One configuration file as a layer, its [`RENAMED`] keys also set under
/// their new names (unless the file sets the new name too), so an old name
/// overrides what earlier layers say as the new one would.
fn file_layer(
    file: config::File<config::FileSourceFile, config::FileFormat>,
) -> Result<config::Config, ConfigError> {
    let layer = config::Config::builder().add_source(file).build()?;
    let mut renamed = config::Config::builder().add_source(layer.clone());
    let mut any = false;
    for (old, new) in RENAMED {
        if let (Ok(value), Err(_)) = (
            layer.get::<config::Value>(old),
            layer.get::<config::Value>(new),
        ) {
            renamed = renamed.set_override(*new, value)?;
            any = true;
        }
    }
    Ok(if any { renamed.build()? } else { layer })
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
            .add_source(file_layer(
                config::File::from(dir.join("default.toml")).required(false),
            )?);

        let env_file = dir.join(format!("{env}.toml"));
        if explicit_env.is_some() && !env_file.exists() {
            return Err(ConfigError::MissingEnvironmentFile {
                env: env.to_owned(),
                path: env_file.display().to_string(),
            });
        }
        builder = builder.add_source(file_layer(
            config::File::from(env_file.as_path()).required(false),
        )?);

        for setting in all_settings() {
            if let Some(value) = vars.get(&setting.env_var()) {
                builder = builder.set_override(setting.key, value.as_str())?;
            }
        }
        for (old, new) in RENAMED {
            if let (Some(value), None) = (vars.get(&env_var_for(old)), vars.get(&env_var_for(new)))
            {
                builder = builder.set_override(*new, value.as_str())?;
            }
        }

        let layers = builder.build()?;
        let mut unknown_keys = unknown_keys(&layers);
        unknown_keys.extend(unknown_variables(vars));
        let mut settings = Self::read(&Values::new(layers))?;
        settings.unknown_keys = unknown_keys;
        Ok(settings)
    }

    /// Logs a warning for each key of the configuration files that is not
    /// a setting, naming what replaced it when it is a retired or renamed
    /// one.
    pub fn warn_unknown(&self) {
        let names = |name: &str, key: &str| name == key || env_var_for(name) == key;
        for key in &self.unknown_keys {
            if let Some((_, instead)) = RETIRED.iter().find(|(retired, _)| names(retired, key)) {
                tracing::warn!(key = %key, "setting no longer used and ignored: {instead}");
            } else if let Some((_, new)) = RENAMED.iter().find(|(old, _)| names(old, key)) {
                tracing::warn!(
                    key = %key,
                    "an earlier name of `{new}` (env {}): read as it unless that is set too; rename it",
                    env_var_for(new)
                );
            } else {
                tracing::warn!(key = %key, "not a setting; ignored (a typo?)");
            }
        }
    }

    /// Checks every section; the first unusable setting is the error.
    /// Only the chosen provider's section must be usable: the other one,
    /// if it is not (production leaves both blank), takes the compiled
    /// defaults, which nothing sends to.
    fn read(values: &Values) -> Result<Self, ConfigError> {
        let push = push::read(values)?;
        let tuisongbao = match tuisongbao::read(values) {
            Err(_) if push.provider != ProviderKind::Tuisongbao => {
                tuisongbao::read(&Values::defaults()?)?
            }
            read => read?,
        };
        let pusher = match pusher::read(values) {
            Err(_) if push.provider != ProviderKind::Pusher => pusher::read(&Values::defaults()?)?,
            read => read?,
        };
        Ok(Settings {
            redis: redis::read(values)?,
            mongodb: mongodb::read(values)?,
            push,
            tuisongbao,
            pusher,
            log: log::read(values)?,
            trace_export: trace::read(values)?,
            worker: worker::read(values)?,
            queues: queues::read(values)?,
            retention: retention::read(values)?,
            message: message::read(values)?,
            message_retention: message::read_retention(values)?,
            web: web::read(values)?,
            export: export::read(values)?,
            unknown_keys: Vec::new(),
        })
    }
}
