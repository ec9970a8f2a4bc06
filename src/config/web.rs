//! `[web]`: the dashboard and API server.

use std::{net::IpAddr, net::SocketAddr, num::NonZeroU32, time::Duration};

use secrecy::SecretString;

use super::setting::{address, define_settings, optional_address, Rule, Values};
use super::ConfigError;

/// Shortest `web.token` accepted: a token an attacker cannot guess in the
/// time the throttle leaves them.
pub const MIN_TOKEN_CHARS: usize = 32;

define_settings! {
    section "web";
    BIND: "bind" = "127.0.0.1:8080", Rule::Form("an address"), "where `herald web` listens";
    TOKEN: "token" = "", Rule::Form("empty, or 32 characters or more"),
        "the configured operator token (at least 32 characters): dashboard sign-in and `Authorization: Bearer` on /api/v1 and /v1, as an operator named web.token; `herald web` needs it, or an operator token made with `herald token create --operator`, or web.dev";
    DEV: "dev" = "false", Rule::Any,
        "development mode: with no operator credentials, `herald web` makes a random operator token for this run and prints it, with a warning at every start; never in production";
    MAX_BODY_BYTES: "max_body_bytes" = "1048576", Rule::AtLeast(1),
        "largest request body of any route (413 above)";
    EXAMPLES: "examples" = "false", Rule::Any,
        "serve the inbox example page at /examples/inbox/ (development and demos)";
    SESSION_TTL_SECS: "session_ttl_secs" = "28800", Rule::AtLeast(1),
        "how long a dashboard sign-in lasts (then the operator signs in again)";
    SECURE_COOKIES: "secure_cookies" = "false", Rule::Any,
        "mark the session cookie Secure on every answer (it is marked anyway when the request came over HTTPS: X-Forwarded-Proto: https)";
    TRUSTED_PROXIES: "trusted_proxies" = "", Rule::Form("IP addresses, comma-separated"),
        "addresses of reverse proxies whose X-Forwarded-For names the client (comma-separated IPs); the client's address is the connection's otherwise";
    FAILED_LOGINS_PER_MINUTE: "failed_logins_per_minute" = "10", Rule::Between(1, u32::MAX as u64),
        "failed sign-ins and token checks one client address may make per minute; beyond them it gets 429 with Retry-After";
    REQUEST_TIMEOUT_SECS: "request_timeout_secs" = "30", Rule::AtLeast(1),
        "longest a request may take before its answer starts (408 after it; a download's body may stream longer)";
    HEADER_TIMEOUT_SECS: "header_timeout_secs" = "10", Rule::AtLeast(1),
        "longest a client may take to send a request's headers; the connection is closed after it";
    MAX_CONNECTIONS: "max_connections" = "1024", Rule::AtLeast(1),
        "most client connections at once; more wait to be accepted";
    OPS_BIND: "ops_bind" = "", Rule::Form("an address, or empty"),
        "a second listener for /metrics, /readyz and /healthz (e.g. 127.0.0.1:9090), kept internal; when set, the main listener no longer serves /metrics and /readyz";
    AUDIT_KEEP_DAYS: "audit_keep_days" = "365", Rule::AtLeast(1),
        "how long the audit trail of operator actions is kept, in days";
}

/// `herald web` settings.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// The configured operator token; `None` when unset.
    pub token: Option<SecretString>,
    /// Development mode (see `web.dev`).
    pub dev: bool,
    /// Largest request body accepted on any route, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Whether `herald web` serves the example pages (`examples/inbox`, at
    /// `/examples/inbox/`). Off by default: they are for development and
    /// demos, not a product's pages.
    pub examples: bool,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
    /// Whether the session cookie is always marked `Secure`.
    pub secure_cookies: bool,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Failed sign-ins and token checks per minute per client address.
    pub failed_logins_per_minute: NonZeroU32,
    /// Longest a request may take before its answer starts.
    pub request_timeout: Duration,
    /// Longest a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// Most client connections at once.
    pub max_connections: usize,
    /// The internal listener for `/metrics`, `/readyz`, `/healthz`.
    pub ops_bind: Option<SocketAddr>,
    /// How long the audit trail is kept.
    pub audit_keep: Duration,
}

/// A token of at least [`MIN_TOKEN_CHARS`], or nothing.
fn token(value: String) -> Result<Option<SecretString>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let chars = value.chars().count();
    if chars < MIN_TOKEN_CHARS {
        return Err(format!(
            "is {chars} characters long; an operator token needs at least {MIN_TOKEN_CHARS} (e.g. `openssl rand -hex 32`)"
        ));
    }
    Ok(Some(SecretString::from(value.to_owned())))
}

/// Comma-separated IP addresses.
fn addresses(value: String) -> Result<Vec<IpAddr>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse()
                .map_err(|_| format!("'{a}' is not an IP address like 10.0.0.5"))
        })
        .collect()
}

/// Reads and checks `[web]`. An empty token is not an error here: only
/// `herald web` needs operator credentials, and it refuses to start
/// without them (see `herald::web::credentials`).
pub(super) fn read(values: &Values) -> Result<WebSettings, ConfigError> {
    Ok(WebSettings {
        bind: values.checked(&BIND, address)?,
        token: values.checked(&TOKEN, token)?,
        dev: values.get(&DEV)?,
        max_body_bytes: values.whole(&MAX_BODY_BYTES)?,
        examples: values.get(&EXAMPLES)?,
        session_ttl: values.secs(&SESSION_TTL_SECS)?,
        secure_cookies: values.get(&SECURE_COOKIES)?,
        trusted_proxies: values.checked(&TRUSTED_PROXIES, addresses)?,
        // The rule keeps it at 1 or more.
        failed_logins_per_minute: NonZeroU32::new(values.whole(&FAILED_LOGINS_PER_MINUTE)?)
            .unwrap_or(NonZeroU32::MIN),
        request_timeout: values.secs(&REQUEST_TIMEOUT_SECS)?,
        header_timeout: values.secs(&HEADER_TIMEOUT_SECS)?,
        max_connections: values.whole(&MAX_CONNECTIONS)?,
        ops_bind: values.checked(&OPS_BIND, optional_address)?,
        audit_keep: values.days(&AUDIT_KEEP_DAYS)?,
    })
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use crate::config::{tests::vars, Settings};

    #[test]
    fn a_short_token_is_refused_naming_the_setting_and_none_is_no_default() {
        let settings = Settings::load_from(&vars(&[])).unwrap();
        assert!(settings.web.token.is_none(), "no token is built in");
        assert!(!settings.web.dev);
        let err = Settings::load_from(&vars(&[("HERALD_WEB_TOKEN", "short")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_WEB_TOKEN"), "{err}");
        assert!(err.to_string().contains("at least 32"), "{err}");
        let long = "x".repeat(32);
        let settings = Settings::load_from(&vars(&[("HERALD_WEB_TOKEN", &long)])).unwrap();
        assert_eq!(
            settings
                .web
                .token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            Some(long)
        );
        let err = Settings::load_from(&vars(&[("HERALD_WEB_TRUSTED_PROXIES", "10.0.0.1,nope")]))
            .unwrap_err();
        assert!(
            err.to_string().contains("HERALD_WEB_TRUSTED_PROXIES"),
            "{err}"
        );
    }
}
