//! The producers' API under `/v1`: JSON over HTTP for web apps in any
//! language (the first producers are PHP).
//!
//! - [`messages`]: `POST /v1/messages` enqueues a message.
//! - [`exports`]: enqueue, follow, download and cancel exports.
//! - [`inbox`]: the read side: a user's inbox, unread count and read marks,
//!   and the account's whole list.
//! - [`inbox_actions`]: a user's archive, unarchive, delete and mark unread
//!   (and mark read), by ids or by a filter.
//! - [`push_auth`]: signs a browser's subscription to its account's channel
//!   or its user's own.
//! - [`caller`]: bearer tokens, and the account or user a token may reach.
//! - [`fields`]: optional body properties, left out rather than `null`.
//! - [`problem`]: error answers naming the wrong fields; the JSON extractor
//!   (shared with the dashboard's API).
//! - [`schema`]: the rules the server checks, as the document's schemas.
//!
//! The routes are registered through `utoipa-axum`, so the OpenAPI document
//! served at `/openapi.json` is built from the same list that routes the
//! requests and cannot drift from it; [`schema::Rules`] writes the request
//! rules in from the running settings.

pub mod caller;
pub mod exports;
pub mod fields;
pub mod inbox;
pub mod inbox_actions;
pub mod messages;
pub mod push_auth;
pub mod schema;

pub use super::problem;

use std::sync::Arc;

use axum::{extract::DefaultBodyLimit, routing::any, Router};
use herald_jobs::{ExportLimits, MessageLimits, Producer};
use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::WebState;
use crate::{
    export::{status::ExportStatusStore, storage::ExportFiles},
    store::{ApiTokenStore, Inbox},
};

/// What the `/v1` handlers need.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// Enqueues jobs.
    pub producer: Producer,
    /// Reads messages and marks them read.
    pub inbox: Inbox,
    /// Finds API tokens.
    pub tokens: ApiTokenStore,
    /// Export status records.
    pub exports: ExportStatusStore,
    /// Where finished export files are, whichever storage holds them.
    pub storage: Arc<dyn ExportFiles>,
    /// How long a presigned download URL is valid (`export.presign_secs`);
    /// `None`: downloads stream through this server.
    pub presign: Option<std::time::Duration>,
    /// The worker's message limits, applied before enqueueing.
    pub message_limits: MessageLimits,
    /// The worker's export allow-list and default time zone.
    pub export_limits: ExportLimits,
    /// Signs browsers' channel subscriptions for the configured provider.
    pub channels: crate::push::auth::ChannelAuthorizer,
    /// Each user's channel (`push.user_channel`).
    pub users: crate::push::UserChannels,
    /// How long a queued push's idempotency key is kept (the re-run window).
    pub push_dedup: std::time::Duration,
}

/// The document's frame: title, version and the bearer scheme.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald producers' API",
        description = "Enqueue messages and exports, read and mark a user's messages. \
                       Authenticate with `Authorization: Bearer TOKEN`: a token reaches every \
                       account, one account, or one user of one account."
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "messages", description = "Enqueue messages"),
        (name = "inbox", description = "The read side of messages"),
        (name = "exports", description = "CSV exports"),
        (name = "push", description = "Realtime channel authorization"),
    )
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "token",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// The `/v1` routes with their documentation, before the settings' rules.
fn documented_routes() -> OpenApiRouter<WebState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(messages::enqueue))
        .routes(routes!(messages::recall))
        .routes(routes!(exports::enqueue))
        .routes(routes!(exports::status, exports::cancel))
        .routes(routes!(exports::file))
        .routes(routes!(inbox::account_list))
        .routes(routes!(inbox::list))
        .routes(routes!(inbox::unread_count))
        .routes(routes!(inbox::unread_counts))
        .routes(routes!(inbox::mark_read))
        .routes(routes!(inbox_actions::mark_several_read))
        .routes(routes!(inbox_actions::archive))
        .routes(routes!(inbox_actions::unarchive))
        .routes(routes!(inbox_actions::mark_unread))
        .routes(routes!(inbox_actions::delete))
        .routes(routes!(inbox_actions::archive_several))
        .routes(routes!(inbox_actions::unarchive_several))
        .routes(routes!(inbox_actions::mark_several_unread))
        .routes(routes!(inbox_actions::delete_several))
        .routes(routes!(inbox::mark_all_read))
        .routes(routes!(push_auth::authorize))
}

/// The `/v1` routes, bodies limited to `max_body_bytes`, and their OpenAPI
/// document stating the rules `state` enforces.
pub fn routes(
    max_body_bytes: usize,
    state: &ApiState,
) -> (Router<WebState>, utoipa::openapi::OpenApi) {
    let (router, mut api) = documented_routes().split_for_parts();
    schema::Rules {
        message: &state.message_limits,
        export: &state.export_limits,
        users: &state.users,
    }
    .apply(&mut api);
    let router = router
        .route(
            "/v1/{*rest}",
            any(|| async { problem::Problem::not_found("no such route under /v1") }),
        )
        .layer(DefaultBodyLimit::max(max_body_bytes));
    (router, api)
}

/// The document `routes` serves for `rules`.
#[cfg(test)]
pub(crate) fn document(rules: &schema::Rules<'_>) -> utoipa::openapi::OpenApi {
    let (_, mut api) = documented_routes().split_for_parts();
    rules.apply(&mut api);
    api
}
