//! Who may use the dashboard and the API.
//!
//! One operator token guards both. API clients send it as
//! `Authorization: Bearer TOKEN`. People sign in at `/login` with it and get
//! a session cookie (`HttpOnly`, `SameSite=Strict`) holding a SHA-256 digest
//! of the token, never the token itself.
//!
//! Cross-site requests: every state-changing route is POST only; a POST
//! authenticated by the cookie must also carry the header
//! `X-Herald-Csrf: 1`, which a cross-site form cannot set and a cross-site
//! script cannot send without a CORS preflight this server never grants, and
//! its `Origin`, when present, must be this server.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::problem::Problem;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "herald_session";
/// Header a cookie-authenticated POST must carry.
pub const CSRF_HEADER: &str = "x-herald-csrf";

/// The token and the session value derived from it.
#[derive(Debug, Clone)]
pub struct Auth {
    token: SecretString,
    session: String,
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// Guards with `token`.
    pub fn new(token: SecretString) -> Self {
        let digest = Sha256::digest(format!("herald-session:{}", token.expose_secret()));
        let session = digest.iter().map(|b| format!("{b:02x}")).collect();
        Self { token, session }
    }

    /// Whether `candidate` is the token.
    pub fn token_matches(&self, candidate: &str) -> bool {
        constant_time_eq(candidate.as_bytes(), self.token.expose_secret().as_bytes())
    }

    /// The `Set-Cookie` value that signs a browser in.
    pub fn session_cookie(&self) -> String {
        format!(
            "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
            self.session
        )
    }

    /// The `Set-Cookie` value that signs a browser out.
    pub fn cleared_cookie() -> String {
        format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
    }

    fn credentials(&self, headers: &HeaderMap) -> Credentials {
        if let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            return match value.strip_prefix("Bearer ") {
                Some(token) if self.token_matches(token.trim()) => Credentials::Bearer,
                _ => Credentials::Wrong,
            };
        }
        let session = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .map(|(_, value)| value.to_owned());
        match session {
            Some(value) if constant_time_eq(value.as_bytes(), self.session.as_bytes()) => {
                Credentials::Session
            }
            Some(_) => Credentials::Wrong,
            None => Credentials::Missing,
        }
    }
}

enum Credentials {
    Bearer,
    Session,
    Wrong,
    Missing,
}

/// Whether a cookie-authenticated request is same-site: the CSRF header is
/// present, and `Origin`, if sent, names this host.
fn same_site(headers: &HeaderMap) -> bool {
    let has_header = headers.get(CSRF_HEADER).is_some_and(|v| v == "1");
    let origin_ok = match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            origin
                .split_once("://")
                .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host)
        }
    };
    has_header && origin_ok
}

fn refuse(api: bool, status: StatusCode, message: &str) -> Response {
    if api {
        Problem::new(status, message).into_response()
    } else if status == StatusCode::UNAUTHORIZED {
        Redirect::to("/login").into_response()
    } else {
        (status, message.to_owned()).into_response()
    }
}

/// Middleware: lets a request through only with valid credentials (and,
/// for cookie-authenticated POSTs, proof that it is same-site).
pub async fn require(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    match auth.credentials(request.headers()) {
        Credentials::Bearer => next.run(request).await,
        Credentials::Session => {
            if request.method() != Method::GET && !same_site(request.headers()) {
                return refuse(
                    api,
                    StatusCode::FORBIDDEN,
                    "cross-site request refused: send X-Herald-Csrf: 1 from this site",
                );
            }
            next.run(request).await
        }
        Credentials::Wrong => refuse(api, StatusCode::UNAUTHORIZED, "invalid credentials"),
        Credentials::Missing => refuse(
            api,
            StatusCode::UNAUTHORIZED,
            "credentials required: Authorization: Bearer TOKEN",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn auth() -> Auth {
        Auth::new(SecretString::from("s3cret".to_owned()))
    }

    #[test]
    fn the_session_is_a_digest_not_the_token() {
        let cookie = auth().session_cookie();
        assert!(!cookie.contains("s3cret"));
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    }

    #[test]
    fn bearer_and_session_credentials_are_recognised() {
        let auth = auth();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(matches!(auth.credentials(&headers), Credentials::Bearer));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert!(matches!(auth.credentials(&headers), Credentials::Wrong));

        let mut headers = HeaderMap::new();
        let cookie = format!("a=b; {}", auth.session_cookie().split(';').next().unwrap());
        headers.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        assert!(matches!(auth.credentials(&headers), Credentials::Session));
        assert!(matches!(
            auth.credentials(&HeaderMap::new()),
            Credentials::Missing
        ));
    }

    #[test]
    fn same_site_needs_the_header_and_a_matching_origin() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(!same_site(&headers));
        headers.insert(CSRF_HEADER, HeaderValue::from_static("1"));
        assert!(same_site(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_site(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_site(&headers));
    }

    #[test]
    fn token_comparison_rejects_prefixes_and_extensions() {
        let auth = auth();
        assert!(auth.token_matches("s3cret"));
        assert!(!auth.token_matches("s3cre"));
        assert!(!auth.token_matches("s3cret!"));
    }
}
