//! `herald web`: the operator dashboard and its JSON API.
//!
//! - [`auth`]: the token, the session cookie and the cross-site guard.
//! - [`problem`]: the one JSON error body of every API route.
//! - [`api`]: JSON routes under `/api/v1` — queue counts and history, job
//!   pages, the failed list with its filters and error groups, retry and
//!   discard (one, chosen, or in bulk with progress), pause and resume.
//! - [`exports_admin`]: every account's exports for the dashboard — list,
//!   cancel, download.
//! - pages: `/` (queues, the last hour's charts, failed jobs and their
//!   groups, queue pages, exports; refreshing itself) and
//!   `/jobs/{queue}/{id}` (payload and run history), static HTML that calls
//!   the API; no external CDN, so it works offline.
//! - [`v1`]: the producers' API under `/v1` (its own tokens, see
//!   [`v1::caller`]) and its OpenAPI document at `/openapi.json`.
//! - `/healthz`, `/readyz`, `/metrics`: [`crate::ops`], open like `/login`.
//! - [`examples`]: the inbox example page at `/examples/inbox/`, only with
//!   `web.examples` on.

pub mod api;
pub mod auth;
pub mod examples;
pub mod exports_admin;
pub mod problem;
pub mod v1;

use std::{collections::BTreeMap, future::Future, sync::Arc};

use axum::{
    extract::State,
    http::{header, StatusCode},
    middleware,
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Form, Router,
};
use herald_jobs::QueueName;
use herald_jobs::RedisConnection;
use secrecy::SecretString;

use crate::{
    config::Settings,
    export::{
        status::ExportStatusStore,
        storage::{ConfiguredStorage, StorageError},
    },
    queue::admin::QueueAdmin,
    store::{ApiTokenStore, Inbox},
};

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
    /// Whether the example pages are served (`web.examples`).
    pub examples: bool,
}

impl WebState {
    /// State for `settings`' queues on `conn` and data in `database`,
    /// guarded by `token`; fails when the export storage cannot be set up.
    pub fn new(
        conn: RedisConnection,
        database: &mongodb::Database,
        settings: &Settings,
        token: SecretString,
    ) -> Result<Self, StorageError> {
        let queues = QueueName::ALL
            .iter()
            .map(|queue| {
                (
                    queue.as_str().to_owned(),
                    crate::queues::admin(conn.clone(), settings, *queue),
                )
            })
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
        Ok(Self {
            queues: Arc::new(queues),
            auth: Arc::new(auth::Auth::new(token)),
            api: Arc::new(api),
            max_body_bytes: settings.web.max_body_bytes,
            ops: crate::ops::OpsState::new(
                crate::ops::Metrics::new(),
                conn.clone(),
                settings,
                Some(database.clone()),
            ),
            examples: settings.web.examples,
        })
    }
}

/// Every route: the guarded dashboard and its API, the producers' API (which
/// checks its own tokens), the OpenAPI document, the open login page and,
/// with `web.examples`, the example pages (public files: the data they show
/// comes from `/v1` with the visitor's token).
pub fn router(state: WebState) -> Router {
    let (producers, openapi) = v1::routes(state.max_body_bytes, &state.api);
    let openapi = Arc::new(openapi);
    let guarded = Router::new()
        .route(
            "/",
            get(|| async { Html(include_str!("assets/dashboard.html")) }),
        )
        .route(
            "/jobs/{queue}/{id}",
            get(|| async { Html(include_str!("assets/job.html")) }),
        )
        .merge(api::routes())
        .merge(exports_admin::routes())
        .layer(middleware::from_fn_with_state(
            state.auth.clone(),
            auth::require,
        ));
    let examples = if state.examples {
        examples::routes()
    } else {
        Router::new()
    };
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route(
            "/openapi.json",
            get(move || {
                let openapi = openapi.clone();
                async move { axum::Json(openapi.as_ref().clone()) }
            }),
        )
        .merge(producers)
        .merge(crate::ops::router(state.ops.clone()))
        .merge(examples)
        .merge(guarded)
        .with_state(state)
}

async fn login_page() -> Html<&'static str> {
    Html(include_str!("assets/login.html"))
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(state): State<WebState>, Form(form): Form<LoginForm>) -> Response {
    if state.auth.token_matches(form.token.trim()) {
        (
            [(header::SET_COOKIE, state.auth.session_cookie())],
            Redirect::to("/"),
        )
            .into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Html(include_str!("assets/login.html").replace(
                "<!--error-->",
                "<p class=\"error\">That token is not valid.</p>",
            )),
        )
            .into_response()
    }
}

async fn logout() -> Response {
    (
        [(header::SET_COOKIE, auth::Auth::cleared_cookie())],
        Redirect::to("/login"),
    )
        .into_response()
}

/// Serves the dashboard on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: WebState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
