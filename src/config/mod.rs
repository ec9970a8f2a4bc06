//! Settings, loaded in layers and checked once at start-up.
//!
//! The layers are: the defaults compiled from `config/default.toml`, the same
//! file on disk, `config/$HERALD_ENV.toml`, then one `HERALD_<SECTION>_<KEY>`
//! environment variable per setting. [`Settings::load`] returns either settings
//! that are known to be usable or a [`ConfigError`] that names the setting and
//! the variable that sets it.
//!
//! Each TOML section has its own module (`redis`, `mongodb`, `push`,
//! `tuisongbao`, `pusher`, `worker`, `retention`, `message`, `log`, `web`,
//! `export`) holding the section's
//! settings, declared once each with `define_settings!` (key, default,
//! meaning), its typed struct, and the `read` function that checks the
//! values and builds that struct. [`all_settings`] lists every setting from
//! those declarations; the loader takes the environment variables from it,
//! and the tests hold `config/default.toml` and the table of variables in
//! `docs/configuration.md` to it.
//!
//! Adding a setting: a line in its section's `define_settings!`, a field in
//! the section's struct filled in its `read`, the key with its comment in
//! `config/default.toml`, and a row in `docs/configuration.md`'s table of variables. The tests
//! in `tests.rs` fail until the last two agree with the first.

mod export;
mod log;
mod message;
mod mongodb;
mod push;
mod pusher;
mod redis;
mod retention;
mod setting;
#[cfg(test)]
mod tests;
mod tuisongbao;
mod web;
mod worker;

use std::{collections::HashMap, path::PathBuf};

use herald_jobs::MessageLimits;

use self::setting::Values;
pub use self::{
    export::{ExportSettings, S3Settings, StorageKind},
    log::{LogFormat, LogSettings},
    mongodb::{MongoSettings, WriteAcknowledgment},
    push::{ProviderKind, PushSettings, RateLimitSettings},
    pusher::PusherSettings,
    redis::RedisSettings,
    retention::RetentionSettings,
    setting::{env_var_for, Setting},
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
    retention::SETTINGS,
    message::SETTINGS,
    log::SETTINGS,
    web::SETTINGS,
    export::SETTINGS,
];

/// Every setting Herald reads, section by section.
pub fn all_settings() -> impl Iterator<Item = &'static Setting> {
    SECTIONS.iter().flat_map(|section| section.iter())
}

/// The reference table of every setting: its environment variable, its
/// default and what it sets, in Markdown, one row per setting in
/// declaration order. `docs/configuration.md` holds this table as
/// `herald config --markdown` prints it (a test keeps the two equal).
pub fn reference_table() -> String {
    let mut table = String::from("| variable | default | meaning |\n|---|---|---|\n");
    for setting in all_settings() {
        table.push_str(&format!(
            "| `{}` | `{}` | {} |\n",
            setting.env_var(),
            setting.default,
            setting.doc.replace('|', "\\|")
        ));
    }
    table
}

/// Every setting as plain text: the environment variable and default on
/// one line, what it sets on the next (`herald config`).
pub fn reference_text() -> String {
    all_settings()
        .map(|setting| {
            format!(
                "{} (default: {:?})\n    {}\n",
                setting.env_var(),
                setting.default,
                setting.doc
            )
        })
        .collect()
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
    /// Worker process tuning.
    pub worker: WorkerSettings,
    /// What the queues keep of finished jobs.
    pub retention: RetentionSettings,
    /// Limits applied to message jobs.
    pub message: MessageLimits,
    /// Log output.
    pub log: LogSettings,
    /// The dashboard and API server.
    pub web: WebSettings,
    /// Export jobs.
    pub export: ExportSettings,
    /// Keys the configuration files set, and `HERALD_<SECTION>_*`
    /// variables, that are not settings (a typo, or a setting this version
    /// no longer has); they are ignored, and the long-running commands
    /// warn about each ([`Settings::warn_unknown`]).
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

/// The `section.key` names in `layers` that no setting declares.
fn unknown_keys(layers: &config::Config) -> Vec<String> {
    let Ok(sections) = layers
        .clone()
        .try_deserialize::<std::collections::BTreeMap<String, config::Value>>()
    else {
        return Vec::new();
    };
    let known: std::collections::HashSet<&str> = all_settings().map(|s| s.key).collect();
    let mut unknown = Vec::new();
    for (section, value) in sections {
        match value.into_table() {
            Ok(table) => unknown.extend(
                table
                    .into_keys()
                    .map(|key| format!("{section}.{key}"))
                    .filter(|key| !known.contains(key.as_str())),
            ),
            Err(_) => unknown.push(section),
        }
    }
    unknown.sort();
    unknown
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

        for setting in all_settings() {
            if let Some(value) = vars.get(&setting.env_var()) {
                builder = builder.set_override(setting.key, value.as_str())?;
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
    /// a setting, naming what replaced it when it is a retired one.
    pub fn warn_unknown(&self) {
        for key in &self.unknown_keys {
            let retired = RETIRED
                .iter()
                .find(|(retired, _)| retired == key || env_var_for(retired) == *key);
            match retired {
                Some((_, instead)) => {
                    tracing::warn!(key = %key, "setting no longer used and ignored: {instead}")
                }
                None => tracing::warn!(key = %key, "not a setting; ignored (a typo?)"),
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
            worker: worker::read(values)?,
            retention: retention::read(values)?,
            message: message::read(values)?,
            web: web::read(values)?,
            export: export::read(values)?,
            unknown_keys: Vec::new(),
        })
    }
}
