//! `[log]`: log output.

use super::setting::{define_settings, Rule, Values};
use super::ConfigError;

define_settings! {
    section "log";
    FORMAT: "format" = "pretty", Rule::Form("`pretty` or `json`"), "`pretty` or `json` (`json` in production)";
    LEVEL: "level" = "info", Rule::Form("a tracing filter such as `info` or `warn,herald=debug`"), "tracing filter; `RUST_LOG` overrides it";
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
        level: values.checked(&LEVEL, |text: String| {
            tracing_subscriber::EnvFilter::try_new(&text)
                .map(|_| text)
                .map_err(|e| format!("is not a tracing filter ({e})"))
        })?,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{tests::vars, Settings};

    #[test]
    fn a_level_that_is_no_filter_is_refused_naming_the_setting() {
        let err =
            Settings::load_from(&vars(&[("HERALD_LOG_LEVEL", "loud[")])).expect_err("not a filter");
        assert!(err.to_string().contains("log.level"), "{err}");
        for level in ["warn", "info,herald=debug", "herald::push=trace"] {
            let settings =
                Settings::load_from(&vars(&[("HERALD_LOG_LEVEL", level)])).expect("a filter");
            assert_eq!(settings.log.level, level);
        }
    }
}
