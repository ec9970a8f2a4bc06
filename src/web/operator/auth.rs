//! Who may use the dashboard and its API, and what they may do there.
//!
//! Operators authenticate with a token: the configured `web.token` (an
//! operator named `web.token`), or an operator token of their own
//! (`herald token create --operator NAME --role viewer|operator`, kept in
//! MongoDB as a digest, see [`crate::store::operators`]). API clients send
//! it as `Authorization: Bearer TOKEN`; people sign in at `/login` and get
//! a session ([`super::session`]) in an `HttpOnly`, `SameSite=Strict`
//! cookie, `Secure` over HTTPS.
//!
//! [`require`] resolves the credentials of every guarded request into an
//! [`Operator`] (who, with what role, from where) that the handlers find in
//! the request's extensions, and enforces the role: a *viewer* gets every
//! `GET` and nothing else (403).
//!
//! Guessing is throttled per client address ([`crate::web::throttle`]); a token
//! is compared with the configured one through SHA-256 digests in constant
//! time, so neither its content nor its length shows in the answer's time;
//! a token of the wrong form never reaches MongoDB.
//!
//! Cross-site requests: every state-changing route is POST only; a POST
//! authenticated by the cookie must also carry the header
//! `X-Herald-Csrf: 1`, which a cross-site form cannot set and a cross-site
//! script cannot send without a CORS preflight this server never grants, and
//! its `Origin`, when present, must be this server.

use std::{net::IpAddr, sync::Arc};

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::session::{Credential, Session, Sessions, SESSION_COOKIE};
use crate::web::{
    client::Client,
    problem::Problem,
    throttle::{too_many, Throttle},
};
use crate::{
    secret::{digest, is_well_formed},
    store::{
        audit::Actor,
        operators::{OperatorTokenStore, Role, OPERATOR_PREFIX},
        StoreError,
    },
};

/// Header a cookie-authenticated POST must carry.
pub const CSRF_HEADER: &str = "x-herald-csrf";

/// The name the configured `web.token` acts under.
pub const CONFIGURED_NAME: &str = "web.token";

/// Compares two secrets in time that depends on neither their content nor
/// their lengths: their SHA-256 digests are compared in constant time.
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.ct_eq(&b).into()
}

/// How an operator was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `Authorization: Bearer`.
    Token,
    /// The session cookie.
    Session,
}

impl Via {
    /// As the audit trail names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Token => "token",
            Via::Session => "session",
        }
    }
}

/// Who is acting, as [`require`] found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// Their name (`web.token` for the configured token).
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// How they were authenticated.
    pub via: Via,
    /// Where from.
    pub client: Client,
}

impl Operator {
    /// How the audit trail names them.
    pub fn actor(&self) -> Actor {
        Actor {
            name: self.name.clone(),
            role: self.role.as_str().to_owned(),
            via: self.via.as_str().to_owned(),
            from: self.client.shown.clone(),
        }
    }

    /// 403 unless they may change things (or hand data out).
    pub fn must_act(&self) -> Result<(), Problem> {
        if self.role.may_act() {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{} is a viewer: viewers see everything and change nothing",
                    self.name
                ),
            ))
        }
    }
}

/// A token's owner, once found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    /// Who holds it.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// The credential, as sessions remember it.
    pub credential: Credential,
}

/// The guard's state.
#[derive(Debug)]
pub struct Auth {
    configured: Option<SecretString>,
    operators: OperatorTokenStore,
    /// Dashboard sessions.
    pub sessions: Sessions,
    /// Failed-credentials throttle and unknown-token cache.
    pub throttle: Throttle,
    trusted_proxies: Vec<IpAddr>,
    secure_cookies: bool,
}

/// What a request's credentials came to.
enum Credentials {
    Operator(Operator),
    Wrong,
    Missing,
}

impl Auth {
    /// Guards with the configured token `configured` (if any), the
    /// operator tokens of `operators`, and `sessions`.
    pub fn new(
        configured: Option<SecretString>,
        operators: OperatorTokenStore,
        sessions: Sessions,
        throttle: Throttle,
        trusted_proxies: Vec<IpAddr>,
        secure_cookies: bool,
    ) -> Self {
        Self {
            configured,
            operators,
            sessions,
            throttle,
            trusted_proxies,
            secure_cookies,
        }
    }

    /// Proxies whose `X-Forwarded-For` is believed.
    pub fn trusted_proxies(&self) -> &[IpAddr] {
        &self.trusted_proxies
    }

    /// Whether `candidate` is the configured token.
    pub fn is_configured(&self, candidate: &str) -> bool {
        self.configured.as_ref().is_some_and(|token| {
            secrets_equal(candidate.as_bytes(), token.expose_secret().as_bytes())
        })
    }

    /// The owner of operator token `candidate`: the configured token, or
    /// one of the operator tokens. A token of the wrong form, or one found
    /// unknown in the last minute, is refused without a query.
    pub async fn token_owner(&self, candidate: &str) -> Result<Option<TokenOwner>, StoreError> {
        if self.is_configured(candidate) {
            return Ok(Some(TokenOwner {
                name: CONFIGURED_NAME.to_owned(),
                role: Role::Operator,
                credential: Credential::Configured {
                    digest: digest(candidate),
                },
            }));
        }
        if !is_well_formed(candidate, OPERATOR_PREFIX) || self.throttle.known_unknown(candidate) {
            return Ok(None);
        }
        match self.operators.find(candidate).await? {
            Some(token) => Ok(Some(TokenOwner {
                name: token.name,
                role: token.role,
                credential: Credential::Operator {
                    id: token.id.to_hex(),
                },
            })),
            None => {
                self.throttle.remember_unknown(candidate);
                Ok(None)
            }
        }
    }

    /// Whether session `session` is still good: a session of the
    /// configured token ends when the configured token changes.
    fn still_good(&self, session: &Session) -> bool {
        match &session.credential {
            Credential::Configured { digest: signed_in } => {
                self.configured.as_ref().is_some_and(|token| {
                    digest(token.expose_secret())
                        .as_bytes()
                        .ct_eq(signed_in.as_bytes())
                        .into()
                })
            }
            Credential::Operator { .. } => true,
        }
    }

    /// The `Set-Cookie` value that signs a browser in with session `id`;
    /// `Secure` when configured or when the request came over HTTPS.
    pub fn session_cookie(&self, id: &str, headers: &HeaderMap) -> String {
        let secure = if self.secure_cookies || came_over_https(headers) {
            "; Secure"
        } else {
            ""
        };
        format!(
            "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
            self.sessions.ttl().as_secs()
        )
    }

    /// The `Set-Cookie` value that signs a browser out.
    pub fn cleared_cookie() -> String {
        format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
    }

    async fn credentials(
        &self,
        headers: &HeaderMap,
        client: &Client,
    ) -> Result<Credentials, Problem> {
        if let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let Some(token) = value.strip_prefix("Bearer ") else {
                return Ok(Credentials::Wrong);
            };
            return Ok(match self.token_owner(token.trim()).await? {
                Some(owner) => Credentials::Operator(Operator {
                    name: owner.name,
                    role: owner.role,
                    via: Via::Token,
                    client: client.clone(),
                }),
                None => Credentials::Wrong,
            });
        }
        let Some(id) = session_id(headers) else {
            return Ok(Credentials::Missing);
        };
        let session = self
            .sessions
            .find(&id)
            .await
            .map_err(|e| Problem::unavailable(&e))?;
        Ok(match session {
            Some(session) if self.still_good(&session) => Credentials::Operator(Operator {
                name: session.name,
                role: session.role,
                via: Via::Session,
                client: client.clone(),
            }),
            _ => Credentials::Wrong,
        })
    }
}

/// The session id in the request's cookie, if there is one.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// Whether a TLS proxy in front says the request came over HTTPS.
fn came_over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// Whether the request carries credentials at all.
fn has_credentials(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION) || session_id(headers).is_some()
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
/// for cookie-authenticated POSTs, proof that it is same-site), and only
/// what the operator's role allows; the [`Operator`] goes into the
/// request's extensions.
pub async fn require(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let (mut parts, body) = request.into_parts();
    let client = Client::of(&parts, auth.trusted_proxies());
    if has_credentials(&parts.headers) {
        if let Some(wait) = auth.throttle.wait(client.ip) {
            return too_many(wait);
        }
    }
    let credentials = match auth.credentials(&parts.headers, &client).await {
        Ok(credentials) => credentials,
        Err(problem) => return problem.into_response(),
    };
    let operator = match credentials {
        Credentials::Operator(operator) => operator,
        Credentials::Wrong => {
            auth.throttle.failed(client.ip);
            tracing::warn!(client = %client.shown, path = %parts.uri.path(), "invalid operator credentials");
            return refuse(api, StatusCode::UNAUTHORIZED, "invalid credentials");
        }
        Credentials::Missing => {
            return refuse(
                api,
                StatusCode::UNAUTHORIZED,
                "credentials required: Authorization: Bearer TOKEN",
            )
        }
    };
    let reads = matches!(parts.method, Method::GET | Method::HEAD);
    if operator.via == Via::Session && !reads && !same_site(&parts.headers) {
        return refuse(
            api,
            StatusCode::FORBIDDEN,
            "cross-site request refused: send X-Herald-Csrf: 1 from this site",
        );
    }
    if !reads {
        if let Err(problem) = operator.must_act() {
            return problem.into_response();
        }
    }
    parts.extensions.insert(operator);
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn secrets_compare_by_digest() {
        assert!(secrets_equal(b"s3cret", b"s3cret"));
        assert!(!secrets_equal(b"s3cret", b"s3cre"));
        assert!(!secrets_equal(b"s3cret", b"s3cret!"));
        assert!(!secrets_equal(b"", b"x"));
    }

    #[test]
    fn the_session_id_is_read_from_the_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; herald_session=abc; c=d"),
        );
        assert_eq!(session_id(&headers).as_deref(), Some("abc"));
        assert_eq!(session_id(&HeaderMap::new()), None);
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
    fn only_https_requests_get_the_secure_flag_unless_configured() {
        let mut headers = HeaderMap::new();
        assert!(!came_over_https(&headers));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(came_over_https(&headers));
    }
}
