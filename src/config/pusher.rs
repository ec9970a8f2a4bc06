//! `[pusher]`: a Pusher Channels HTTP API endpoint (Pusher, Sockudo,
//! soketi, Laravel Reverb) and its app credentials, used when
//! `push.provider` is `pusher`.

use std::time::Duration;

use secrecy::SecretString;

use super::setting::{define_settings, non_empty, Rule, Values};
use super::ConfigError;

define_settings! {
    section "pusher";
    URL: "url" = "http://127.0.0.1:7070", Rule::Form("an http:// or https:// URL"), "Pusher HTTP API base URL, without /apps (the sandbox by default; Pusher: https://api-CLUSTER.pusher.com)";
    APP_ID: "app_id" = "herald-dev", Rule::NonEmpty, "app id (the /apps/{app_id} path)";
    KEY: "key" = "herald-dev-key", Rule::NonEmpty, "app key (auth_key; public)";
    SECRET: "secret" = "herald-dev-secret", Rule::NonEmpty, "app secret that signs requests (never logged)";
    CONNECT_TIMEOUT_MS: "connect_timeout_ms" = "3000", Rule::AtLeast(1), "connect timeout";
    REQUEST_TIMEOUT_MS: "request_timeout_ms" = "10000", Rule::AtLeast(1), "whole-request timeout";
}

/// A Pusher-protocol endpoint and app.
#[derive(Debug, Clone)]
pub struct PusherSettings {
    /// Base URL, without the `/apps/...` path.
    pub url: reqwest::Url,
    /// Application id.
    pub app_id: String,
    /// Application key (public: browsers use it too).
    pub key: String,
    /// Application secret; never printed.
    pub secret: SecretString,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
}

/// Reads and checks `[pusher]`.
pub(super) fn read(values: &Values) -> Result<PusherSettings, ConfigError> {
    Ok(PusherSettings {
        url: values.checked(&URL, |url| {
            non_empty(url).and_then(|url| super::tuisongbao::http_url(&url))
        })?,
        app_id: values.text(&APP_ID)?,
        key: values.text(&KEY)?,
        secret: SecretString::from(values.text(&SECRET)?),
        connect_timeout: values.millis(&CONNECT_TIMEOUT_MS)?,
        request_timeout: values.millis(&REQUEST_TIMEOUT_MS)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{tests::vars, Settings};

    #[test]
    fn the_secret_never_prints() {
        let s = Settings::load_from(&vars(&[("HERALD_PUSHER_SECRET", "hunter2")])).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn the_url_must_be_http() {
        let err = Settings::load_from(&vars(&[
            ("HERALD_PUSH_PROVIDER", "pusher"),
            ("HERALD_PUSHER_URL", "ws://x"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("HERALD_PUSHER_URL"), "{err}");
    }
}
