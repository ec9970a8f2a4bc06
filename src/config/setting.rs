//! What a setting is, how a section declares its settings, and how a
//! section reads and checks them from the merged layers.
//!
//! A section module declares each of its settings once with
//! [`define_settings!`]: the key inside the section, the default (as
//! `config/default.toml` spells it) and a one-line meaning. The macro makes a
//! `const` [`Setting`] per line and the section's `SETTINGS` list; the
//! section's `read` function then turns each one into a typed value through
//! [`Values::checked`] (or [`Values::get`] when any value of the type will do),
//! so every error names the setting and its environment variable.

use std::{net::SocketAddr, time::Duration};

use serde::de::DeserializeOwned;

use super::ConfigError;

/// One setting: its key, its default and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// `section.key`, as the TOML files spell it, e.g. `redis.url`.
    pub key: &'static str,
    /// The value `config/default.toml` gives it, as text (`16`, `true`,
    /// `redis://127.0.0.1:6379`).
    pub default: &'static str,
    /// What it sets, in one line (`docs/configuration.md`'s table shows it).
    pub doc: &'static str,
}

impl Setting {
    /// The environment variable that overrides this setting.
    pub fn env_var(&self) -> String {
        env_var_for(self.key)
    }
}

/// The environment variable that overrides setting `key`:
/// `HERALD_` + the key uppercased with `.` replaced by `_`.
pub fn env_var_for(key: &str) -> String {
    format!("HERALD_{}", key.to_ascii_uppercase().replace('.', "_"))
}

/// Declares a section's settings, one line each:
/// `CONST_NAME: "key" = "default", "meaning";`. Produces one `const`
/// [`Setting`] per line (key `section.key`) and `SETTINGS`, the section's
/// list in declaration order.
macro_rules! define_settings {
    (
        section $section:literal;
        $( $name:ident : $key:literal = $default:literal, $doc:literal; )+
    ) => {
        $(
            #[doc = concat!("`", $section, ".", $key, "` (default `", $default, "`): ", $doc)]
            const $name: $crate::config::Setting = $crate::config::Setting {
                key: concat!($section, ".", $key),
                default: $default,
                doc: $doc,
            };
        )+

        /// This section's settings, in declaration order.
        pub(super) const SETTINGS: &[$crate::config::Setting] = &[$($name),+];
    };
}
pub(super) use define_settings;

/// The merged layers, read one setting at a time.
pub(super) struct Values {
    layers: config::Config,
}

impl Values {
    /// Wraps the merged configuration layers.
    pub(super) fn new(layers: config::Config) -> Self {
        Self { layers }
    }

    /// The compiled defaults alone (`config/default.toml`).
    pub(super) fn defaults() -> Result<Self, ConfigError> {
        let layers = config::Config::builder()
            .add_source(config::File::from_str(
                super::DEFAULTS_TOML,
                config::FileFormat::Toml,
            ))
            .build()?;
        Ok(Self::new(layers))
    }

    /// The setting's value as a `T`; a value of another type is a
    /// [`ConfigError::Load`] naming the key.
    pub(super) fn get<T: DeserializeOwned>(&self, setting: &Setting) -> Result<T, ConfigError> {
        Ok(self.layers.get(setting.key)?)
    }

    /// The setting's value as a `T`, passed through `check`; the reason
    /// `check` gives becomes a [`ConfigError::Invalid`] for this setting.
    pub(super) fn checked<T: DeserializeOwned, U>(
        &self,
        setting: &Setting,
        check: impl FnOnce(T) -> Result<U, String>,
    ) -> Result<U, ConfigError> {
        check(self.get(setting)?).map_err(|reason| ConfigError::invalid(setting, reason))
    }
}

/// Refuses a blank value.
pub(super) fn non_empty(value: String) -> Result<String, String> {
    if value.trim().is_empty() {
        Err("is empty; it must be set".to_owned())
    } else {
        Ok(value)
    }
}

/// Refuses 0.
pub(super) fn positive<T: PartialEq + From<u8>>(value: T) -> Result<T, String> {
    if value == T::from(0) {
        Err("must be greater than 0".to_owned())
    } else {
        Ok(value)
    }
}

/// A positive number of milliseconds.
pub(super) fn millis(value: u64) -> Result<Duration, String> {
    positive(value).map(Duration::from_millis)
}

/// A positive number of seconds.
pub(super) fn secs(value: u64) -> Result<Duration, String> {
    positive(value).map(Duration::from_secs)
}

/// An address like `127.0.0.1:8080`.
pub(super) fn address(value: String) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| format!("'{value}' is not an address like 127.0.0.1:8080"))
}

/// An address like `127.0.0.1:9090`, or `None` for an empty value.
pub(super) fn optional_address(value: String) -> Result<Option<SocketAddr>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        format!("'{value}' is not an address like 127.0.0.1:9090 (or empty to disable)")
    })
}
