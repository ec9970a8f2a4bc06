//! `herald web`: the operators' dashboard and API, and the producers' API.
//!
//! - [`operator`]: the dashboard's pages, its JSON API under `/api/v1`,
//!   operators' sign-in, roles, sessions and the audit trail.
//! - [`v1`]: the producers' API under `/v1` (its own tokens, see
//!   [`v1::caller`]) and its OpenAPI document at `/openapi.json`.
//! - What both use: [`problem`], the one JSON error body of every API
//!   route; [`request`], each request's id; [`throttle`], failed
//!   credentials slowed per client address; [`client`], the client's
//!   address; [`server`], the accept loop (header-read timeout, connection
//!   cap); [`router`] adds the request timeout, body limit and security
//!   headers.
//! - `/healthz`, `/readyz`, `/metrics`: [`crate::ops`], open like `/login`.
//! - [`examples`]: the inbox example page at `/examples/inbox/`, only with
//!   `web.examples` on.

pub mod client;
pub mod examples;
pub mod operator;
pub mod problem;
pub mod request;
pub mod server;
pub mod throttle;
pub mod v1;

use operator::{auth, session};

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use axum::{
    extract::DefaultBodyLimit,
    http::{header, HeaderValue, StatusCode},
    middleware,
    routing::get,
    Router,
};
use herald_jobs::RedisConnection;
use secrecy::SecretString;
use tower_http::{set_header::SetResponseHeaderLayer, timeout::TimeoutLayer};

use crate::{
    config::Settings,
    export::{
        status::ExportStatusStore,
        storage::{ConfiguredStorage, StorageError},
    },
    queue::admin::QueueAdmin,
    store::{audit::AuditLog, operators::OperatorTokenStore, ApiTokenStore, Inbox},
};

/// The Content-Security-Policy of every answer: scripts and styles from
/// this server only (no inline script; inline style attributes allowed),
/// WebSockets to any host (the inbox example's Pusher-protocol server), no
/// framing by other sites, forms posting here only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self' ws: wss:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct WebState {
    /// Admin access per queue, by short name (`push`, `send_message`).
    pub queues: Arc<BTreeMap<String, QueueAdmin>>,
    /// The guard.
    pub auth: Arc<auth::Auth>,
    /// What the producers' API needs.
    pub api: Arc<v1::ApiState>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// `/healthz`, `/readyz` and `/metrics` (open, like the login page).
    pub ops: crate::ops::OpsState,
    /// Whether `/readyz` and `/metrics` are on their own listener
    /// (`web.ops_bind`) rather than this one.
    pub ops_apart: bool,
    /// Whether the example pages are served (`web.examples`).
    pub examples: bool,
    /// The audit trail.
    pub audit: AuditLog,
    /// Longest a request may take before its answer starts.
    pub request_timeout: Duration,
    /// What the `message` collection holds, for the dashboard.
    pub messages: crate::store::MessageExpiry,
    /// `message.keep_days`, for the dashboard: `None` keeps messages.
    pub message_keep: Option<Duration>,
}

impl WebState {
    /// State for `settings`' queues on `conn` and data in `database`,
    /// guarded by the configured token `configured` (if any) and the
    /// operator tokens in `database`; fails when the export storage cannot
    /// be set up.
    pub fn new(
        conn: RedisConnection,
        database: &mongodb::Database,
        settings: &Settings,
        configured: Option<SecretString>,
    ) -> Result<Self, StorageError> {
        let admins = crate::queues::admins(&conn, settings);
        let queues = admins
            .iter()
            .map(|(name, admin)| ((*name).to_owned(), admin.clone()))
            .collect();
        let api = v1::ApiState {
            producer: herald_jobs::Producer::from_connection(
                conn.clone(),
                &settings.redis.namespace,
            )
            .with_limits(settings.message),
            inbox: Inbox::new(database),
            tokens: ApiTokenStore::new(database),
            exports: ExportStatusStore::new(database),
            storage: Arc::new(ConfiguredStorage::from_settings(&settings.export)?),
            presign: settings.export.presign,
            message_limits: settings.message,
            export_limits: settings.export.limits.clone(),
            channels: crate::push::auth::ChannelAuthorizer::from_settings(settings),
            users: settings.push.user_channels.clone(),
            push_dedup: crate::queues::rerun_window(settings),
        };
        let auth = auth::Auth::new(
            configured,
            OperatorTokenStore::new(database),
            session::Sessions::new(
                conn.clone(),
                &settings.redis.namespace,
                settings.web.session_ttl,
            ),
            throttle::Throttle::new(settings.web.failed_logins_per_minute),
            settings.web.trusted_proxies.clone(),
            settings.web.secure_cookies,
        );
        Ok(Self {
            messages: crate::store::MessageExpiry::new(database),
            message_keep: settings.message_retention.keep,
            queues: Arc::new(queues),
            auth: Arc::new(auth),
            api: Arc::new(api),
            max_body_bytes: settings.web.max_body_bytes,
            ops: crate::ops::OpsState::new(
                crate::ops::Metrics::new(),
                conn.clone(),
                admins,
                settings,
                Some(database.clone()),
            ),
            ops_apart: settings.web.ops_bind.is_some(),
            examples: settings.web.examples,
            audit: AuditLog::new(database),
            request_timeout: settings.web.request_timeout,
        })
    }
}

/// Every route: the guarded dashboard and its API, the producers' API (which
/// checks its own tokens), the OpenAPI document, the open login page and,
/// with `web.examples`, the example pages (public files: the data they show
/// comes from `/v1` with the visitor's token); and around them, for every
/// route, the body limit, the request timeout, the security headers and
/// the request's id.
pub fn router(state: WebState) -> Router {
    let (producers, openapi) = v1::routes(state.max_body_bytes, &state.api);
    let openapi = Arc::new(openapi);
    let guarded = operator::guarded_routes(state.auth.clone());
    let examples = if state.examples {
        examples::routes()
    } else {
        Router::new()
    };
    let ops = if state.ops_apart {
        crate::ops::health_router()
    } else {
        crate::ops::router(state.ops.clone())
    };
    let (body_limit, timeout) = (state.max_body_bytes, state.request_timeout);
    hardened(
        Router::new()
            .route(
                "/openapi.json",
                get(move || {
                    let openapi = openapi.clone();
                    async move { axum::Json(openapi.as_ref().clone()) }
                }),
            )
            .merge(operator::open_routes())
            .merge(producers)
            .merge(ops)
            .merge(examples)
            .merge(guarded)
            .with_state(state),
        body_limit,
        timeout,
    )
}

/// `router` with the layers every route gets: bodies over `body_limit`
/// refused (413), answers not started within `timeout` cut off (408), the
/// security headers on every answer, and the request's id.
fn hardened(router: Router, body_limit: usize, timeout: Duration) -> Router {
    let header = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    router
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(header("content-security-policy", CONTENT_SECURITY_POLICY))
        .layer(header("x-content-type-options", "nosniff"))
        .layer(header("x-frame-options", "DENY"))
        .layer(header("referrer-policy", "no-referrer"))
        .layer(header("cross-origin-opener-policy", "same-origin"))
        .layer(middleware::from_fn(request::with_id))
}

/// Where and how `herald web` serves.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// The connection limits.
    pub limits: server::Limits,
    /// How long the audit trail is kept; `None`: not swept by this process.
    pub audit_keep: Option<Duration>,
}

impl ServeOptions {
    /// The options `settings` choose.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            limits: server::Limits {
                header_timeout: settings.web.header_timeout,
                max_connections: settings.web.max_connections,
            },
            audit_keep: Some(settings.web.audit_keep),
        }
    }
}

/// How often the audit trail is swept.
const AUDIT_SWEEP_EVERY: Duration = Duration::from_secs(60 * 60);

/// Serves the dashboard on `listener` until `shutdown` completes, with the
/// default connection limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: WebState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let options = ServeOptions {
        limits: server::Limits {
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
        },
        audit_keep: None,
    };
    serve_with(listener, state, options, shutdown).await
}

/// Serves the dashboard on `listener` with `options` until `shutdown`
/// completes; meanwhile the audit trail is swept of records older than
/// `options.audit_keep`, at start and hourly.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: WebState,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sweeper = options.audit_keep.map(|keep| {
        let audit = state.audit.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(AUDIT_SWEEP_EVERY);
            loop {
                every.tick().await;
                match audit.sweep(keep).await {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "audit trail swept"),
                    Err(error) => {
                        tracing::warn!(%error, "audit trail not swept; the next hour tries again")
                    }
                }
            }
        })
    });
    let served = server::serve(listener, router(state), options.limits, shutdown).await;
    if let Some(sweeper) = sweeper {
        sweeper.abort();
    }
    served
}
