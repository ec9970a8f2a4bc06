//! `[tuisongbao]`: the push provider's REST endpoint and credentials.

use std::time::Duration;

use secrecy::SecretString;

use super::setting::{define_settings, millis, non_empty, Values};
use super::ConfigError;

define_settings! {
    section "tuisongbao";
    URL: "url" = "http://127.0.0.1:7070", "push API base URL (the sandbox by default)";
    APP_ID: "app_id" = "herald-dev", "Basic auth user";
    SECRET: "secret" = "herald-dev-secret", "Basic auth password (never logged)";
    CONNECT_TIMEOUT_MS: "connect_timeout_ms" = "3000", "connect timeout";
    REQUEST_TIMEOUT_MS: "request_timeout_ms" = "10000", "whole-request timeout";
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

/// Reads and checks `[tuisongbao]`.
pub(super) fn read(values: &Values) -> Result<TuisongbaoSettings, ConfigError> {
    Ok(TuisongbaoSettings {
        url: values.checked(&URL, |url| non_empty(url).and_then(|url| http_url(&url)))?,
        app_id: values.checked(&APP_ID, non_empty)?,
        secret: SecretString::from(values.checked(&SECRET, non_empty)?),
        connect_timeout: values.checked(&CONNECT_TIMEOUT_MS, millis)?,
        request_timeout: values.checked(&REQUEST_TIMEOUT_MS, millis)?,
    })
}

pub(super) fn http_url(text: &str) -> Result<reqwest::Url, String> {
    reqwest::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| format!("'{text}' is not an http:// or https:// URL"))
}

#[cfg(test)]
mod tests {
    use crate::config::{tests::vars, Settings};

    #[test]
    fn the_secret_never_prints() {
        let s = Settings::load_from(&vars(&[("HERALD_TUISONGBAO_SECRET", "hunter2")])).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
