//! `[tuisongbao]`: the push provider's REST endpoint and credentials.

use std::time::Duration;

use secrecy::SecretString;

use super::setting::{define_settings, non_empty, Rule, Values};
use super::ConfigError;

define_settings! {
    section "tuisongbao";
    URL: "url" = "http://127.0.0.1:7070", Rule::Form("an http:// or https:// URL"), "push API base URL (the sandbox by default)";
    APP_ID: "app_id" = "herald-dev", Rule::NonEmpty, "Basic auth user";
    SECRET: "secret" = "herald-dev-secret", Rule::NonEmpty, "Basic auth password (never logged)";
    CONNECT_TIMEOUT_MS: "connect_timeout_ms" = "3000", Rule::AtLeast(1), "connect timeout";
    REQUEST_TIMEOUT_MS: "request_timeout_ms" = "10000", Rule::AtLeast(1), "whole-request timeout";
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
        app_id: values.text(&APP_ID)?,
        secret: SecretString::from(values.text(&SECRET)?),
        connect_timeout: values.millis(&CONNECT_TIMEOUT_MS)?,
        request_timeout: values.millis(&REQUEST_TIMEOUT_MS)?,
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
