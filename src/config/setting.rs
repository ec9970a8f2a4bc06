//! What a setting is, how a section declares its settings, and how a
//! section reads and checks them from the merged layers.
//!
//! A section module declares each of its settings once with
//! [`define_settings!`]: the key inside the section, the default (as
//! `config/default.toml` spells it), the [`Rule`] a value must keep and a
//! one-line meaning. The macro makes a `const` [`Setting`] per line and the
//! section's `SETTINGS` list; the section's `read` function then turns each
//! one into a typed value. Numbers and required text go through the
//! readers that apply the declared rule themselves ([`Values::whole`],
//! [`Values::millis`], [`Values::secs`], [`Values::days`],
//! [`Values::fraction`], [`Values::text`]), so a bound is written once, in
//! the declaration, and the configuration page shows it from there; a value
//! with a form of its own (a URL, an address, a choice) goes through
//! [`Values::checked`] with its parser, and its rule says in words what
//! that parser accepts. Every error names the setting and its environment
//! variable.

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
    /// What a value must be; the numeric readers of [`Values`] enforce it.
    pub rule: Rule,
    /// What it sets, in one line (`docs/configuration.md`'s table shows it).
    pub doc: &'static str,
}

/// What a setting's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Any value of the setting's type: a flag, or text of any form.
    Any,
    /// A whole number from this one up.
    AtLeast(u64),
    /// A whole number from the first to the second, both included.
    Between(u64, u64),
    /// A number above 0 and at most 1.
    Fraction,
    /// Text that is not blank.
    NonEmpty,
    /// A form the section's own parser checks, said in words.
    Form(&'static str),
}

impl Rule {
    /// The rule as the configuration page's "allowed" column shows it.
    pub fn describe(&self) -> String {
        match self {
            Rule::Any => "any".to_owned(),
            Rule::AtLeast(min) => format!("{min} or more"),
            Rule::Between(min, max) => format!("{min} to {max}"),
            Rule::Fraction => "above 0, at most 1".to_owned(),
            Rule::NonEmpty => "not empty".to_owned(),
            Rule::Form(words) => (*words).to_owned(),
        }
    }

    /// Checks a whole number against the rule; the reason when it breaks it.
    fn check_whole(&self, value: u64) -> Result<(), String> {
        match *self {
            Rule::AtLeast(1) if value == 0 => Err("must be greater than 0".to_owned()),
            Rule::AtLeast(min) if value < min => {
                Err(format!("is {value}; it must be at least {min}"))
            }
            Rule::Between(min, max) if !(min..=max).contains(&value) => {
                Err(format!("is {value}; it must be {min} to {max}"))
            }
            Rule::AtLeast(_) | Rule::Between(..) => Ok(()),
            other => Err(format!("is declared {other:?}, not as a whole number")),
        }
    }
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
/// `CONST_NAME: "key" = "default", rule, "meaning";` where `rule` is a
/// [`Rule`]. Produces one `const` [`Setting`] per line (key `section.key`)
/// and `SETTINGS`, the section's list in declaration order.
macro_rules! define_settings {
    (
        section $section:literal;
        $( $name:ident : $key:literal = $default:literal, $rule:expr, $doc:literal; )+
    ) => {
        $(
            #[doc = concat!("`", $section, ".", $key, "` (default `", $default, "`): ", $doc)]
            pub(super) const $name: $crate::config::Setting = $crate::config::Setting {
                key: concat!($section, ".", $key),
                default: $default,
                rule: $rule,
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

    /// A whole number within the setting's declared [`Rule`], as a `T`.
    pub(super) fn whole<T: TryFrom<u64>>(&self, setting: &Setting) -> Result<T, ConfigError> {
        let value: u64 = self.get(setting)?;
        setting
            .rule
            .check_whole(value)
            .map_err(|reason| ConfigError::invalid(setting, reason))?;
        T::try_from(value)
            .map_err(|_| ConfigError::invalid(setting, format!("is {value}, which is too large")))
    }

    /// A whole number of milliseconds within the declared rule.
    pub(super) fn millis(&self, setting: &Setting) -> Result<Duration, ConfigError> {
        self.whole(setting).map(Duration::from_millis)
    }

    /// A whole number of seconds within the declared rule.
    pub(super) fn secs(&self, setting: &Setting) -> Result<Duration, ConfigError> {
        self.whole(setting).map(Duration::from_secs)
    }

    /// A whole number of days within the declared rule.
    pub(super) fn days(&self, setting: &Setting) -> Result<Duration, ConfigError> {
        self.whole::<u64>(setting)
            .map(|days| Duration::from_secs(days.saturating_mul(86_400)))
    }

    /// A fraction above 0 and at most 1 ([`Rule::Fraction`]).
    pub(super) fn fraction(&self, setting: &Setting) -> Result<f64, ConfigError> {
        let value: f64 = self.get(setting)?;
        if setting.rule == Rule::Fraction && value > 0.0 && value <= 1.0 {
            Ok(value)
        } else {
            Err(ConfigError::invalid(
                setting,
                format!("is {value}; it must be a fraction above 0 and at most 1"),
            ))
        }
    }

    /// Text, refused when blank if the rule is [`Rule::NonEmpty`].
    pub(super) fn text(&self, setting: &Setting) -> Result<String, ConfigError> {
        let value: String = self.get(setting)?;
        if setting.rule == Rule::NonEmpty {
            non_empty(value).map_err(|reason| ConfigError::invalid(setting, reason))
        } else {
            Ok(value)
        }
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
