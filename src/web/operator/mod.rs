//! The operators' side of `herald web`: the dashboard's pages and scripts,
//! its JSON API under `/api/v1`, signing in, sessions and the audit trail.
//! The producers' side is [`super::v1`]; what both use (error bodies,
//! throttling, client addresses, the accept loop) is in [`super`].
//!
//! - [`auth`]: operators' tokens and roles, and the guard; [`session`]:
//!   sign-ins kept in Redis; [`login`]: signing in and out.
//! - [`audit`]: the audit trail's routes and the wrapper every operator
//!   action runs in.
//! - [`api`]: JSON routes under `/api/v1` — queue counts and history, job
//!   pages, the failed list with its filters and error groups, retry and
//!   discard (one, chosen, or in bulk with progress), pause and resume.
//! - [`exports_admin`]: every account's exports for the dashboard — list,
//!   cancel, download.
//! - pages: `/` (queues, the last hour's charts, failed jobs and their
//!   groups, queue pages, exports; refreshing itself) and
//!   `/jobs/{queue}/{id}` (payload and run history), static HTML that calls
//!   the API; no external CDN, so it works offline.

pub mod api;
pub mod audit;
pub mod auth;
pub mod exports_admin;
pub mod login;
pub mod session;

use std::sync::Arc;

use axum::{
    middleware,
    response::Html,
    routing::{get, post},
    Router,
};

use super::WebState;

/// The routes only a signed-in operator reaches (the guard enforces the
/// role on each); a path no route has stays a 404 for everyone, rather
/// than a sign-in page.
pub(super) fn guarded_routes(auth: Arc<auth::Auth>) -> Router<WebState> {
    Router::new()
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
        .merge(audit::routes())
        .route_layer(middleware::from_fn_with_state(auth, auth::require))
}

/// The routes open to everyone: the sign-in page and the dashboard's
/// scripts.
pub(super) fn open_routes() -> Router<WebState> {
    Router::new()
        .route("/login", get(login::page).post(login::login))
        .route("/logout", post(login::logout))
        .route("/assets/{file}", get(assets::serve))
}

/// The dashboard's scripts, served as files so that no page needs inline
/// script (see [`super::CONTENT_SECURITY_POLICY`]).
mod assets {
    use axum::{
        extract::Path,
        http::header,
        response::{IntoResponse, Response},
    };

    use crate::web::problem::Problem;

    /// `GET /assets/{file}`.
    pub async fn serve(Path(file): Path<String>) -> Response {
        let body = match file.as_str() {
            "dashboard.js" => include_str!("assets/dashboard.js"),
            "job.js" => include_str!("assets/job.js"),
            _ => return Problem::not_found("no such file").into_response(),
        };
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            body,
        )
            .into_response()
    }
}
