//! `[web]`: the dashboard and API server.

use std::net::SocketAddr;

use secrecy::SecretString;

use super::setting::{address, define_settings, positive, Values};
use super::ConfigError;

define_settings! {
    section "web";
    BIND: "bind" = "127.0.0.1:8080", "where `herald web` listens";
    TOKEN: "token" = "herald-dev-token",
        "operator token for the dashboard and API (empty in production: must be set)";
    MAX_BODY_BYTES: "max_body_bytes" = "1048576",
        "largest request body of the producers' API (413 above)";
    EXAMPLES: "examples" = "false",
        "serve the inbox example page at /examples/inbox/ (development and demos)";
}

/// `herald web` settings.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// The operator token (API bearer token and dashboard login); `None`
    /// when unset, in which case `herald web` refuses to start.
    pub token: Option<SecretString>,
    /// Largest request body the API accepts, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Whether `herald web` serves the example pages (`examples/inbox`, at
    /// `/examples/inbox/`). Off by default: they are for development and
    /// demos, not a product's pages.
    pub examples: bool,
}

/// Reads and checks `[web]`. An empty token is not an error here: only
/// `herald web` needs one, and it refuses to start without it.
pub(super) fn read(values: &Values) -> Result<WebSettings, ConfigError> {
    let token: String = values.get(&TOKEN)?;
    Ok(WebSettings {
        bind: values.checked(&BIND, address)?,
        token: (!token.trim().is_empty()).then(|| SecretString::from(token)),
        max_body_bytes: values.checked(&MAX_BODY_BYTES, positive)?,
        examples: values.get(&EXAMPLES)?,
    })
}
