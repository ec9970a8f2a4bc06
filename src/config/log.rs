//! `[log]`: log output.

use super::setting::{define_settings, Rule, Values};
use super::ConfigError;

define_settings! {
    section "log";
    FORMAT: "format" = "pretty", Rule::Form("`pretty` or `json`"), "`pretty` or `json` (`json` in production)";
    LEVEL: "level" = "info", Rule::Any, "tracing filter; `RUST_LOG` overrides it";
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

/// Reads and checks `[log]`.
pub(super) fn read(values: &Values) -> Result<LogSettings, ConfigError> {
    Ok(LogSettings {
        format: values.checked(&FORMAT, |text: String| match text.as_str() {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("'{other}' must be \"pretty\" or \"json\"")),
        })?,
        level: values.get(&LEVEL)?,
    })
}
