//! Signing in to the dashboard and out again.
//!
//! `POST /login` takes an operator token from the form; if it is good, a
//! new session is made ([`super::session`]), the sign-in is recorded in the
//! audit trail, and the browser gets the session's cookie. A wrong token
//! counts against the client's address ([`crate::web::throttle`]); a throttled
//! address is answered 429 without the token being checked. `POST /logout`
//! ends the session and records it.

use axum::{
    extract::{FromRequest, Request, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    Form,
};
use serde::Deserialize;

use super::auth::{session_id, Auth, Operator, Via};
use super::session::Session;
use crate::web::{client::Client, throttle::too_many, WebState};

/// The sign-in page.
pub async fn page() -> Html<&'static str> {
    Html(include_str!("assets/login.html"))
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// The sign-in page again, with `message` and `status`.
fn refused(status: StatusCode, message: &str) -> Response {
    (
        status,
        Html(
            include_str!("assets/login.html")
                .replace("<!--error-->", &format!("<p class=\"error\">{message}</p>")),
        ),
    )
        .into_response()
}

/// `POST /login`.
pub async fn login(State(state): State<WebState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let client = Client::of(&parts, state.auth.trusted_proxies());
    if let Some(wait) = state.auth.throttle.wait(client.ip) {
        return too_many(wait);
    }
    let form =
        match Form::<LoginForm>::from_request(Request::from_parts(parts.clone(), body), &state)
            .await
        {
            Ok(Form(form)) => form,
            Err(_) => return refused(StatusCode::BAD_REQUEST, "Send the token in the form."),
        };
    let owner = match state.auth.token_owner(form.token.trim()).await {
        Ok(owner) => owner,
        Err(error) => {
            tracing::error!(%error, "sign-in could not check the token");
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "Herald cannot check tokens right now; try again.",
            );
        }
    };
    let Some(owner) = owner else {
        state.auth.throttle.failed(client.ip);
        tracing::warn!(client = %client.shown, "failed sign-in");
        return refused(StatusCode::UNAUTHORIZED, "That token is not valid.");
    };
    let operator = Operator {
        name: owner.name.clone(),
        role: owner.role,
        via: Via::Session,
        client,
    };
    let session = Session {
        name: owner.name,
        role: owner.role,
        credential: owner.credential,
        created_ms: now_ms(),
    };
    let audit = match state
        .audit
        .begin(&operator.actor(), "sign_in", serde_json::json!({}))
        .await
    {
        Ok(audit) => audit,
        Err(error) => {
            tracing::error!(%error, "sign-in not recorded; refused");
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "Herald cannot record the sign-in right now; try again.",
            );
        }
    };
    let id = match state.auth.sessions.create(&session).await {
        Ok(id) => id,
        Err(error) => {
            tracing::error!(%error, "no session made");
            let _ = state
                .audit
                .finish(audit, Err("no session could be made".to_owned()))
                .await;
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "Herald cannot sign you in right now; try again.",
            );
        }
    };
    if let Err(error) = state.audit.finish(audit, Ok(1)).await {
        tracing::warn!(%error, "sign-in recorded as started only");
    }
    tracing::info!(operator = %operator.name, role = %operator.role, client = %operator.client.shown, "signed in");
    (
        [(
            header::SET_COOKIE,
            state.auth.session_cookie(&id, &parts.headers),
        )],
        Redirect::to("/"),
    )
        .into_response()
}

/// `POST /logout`: ends the browser's session, if it has one.
pub async fn logout(State(state): State<WebState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    if let Some(id) = session_id(&parts.headers) {
        sign_out(
            &state,
            &id,
            Client::of(&parts, state.auth.trusted_proxies()),
        )
        .await;
    }
    (
        [(header::SET_COOKIE, Auth::cleared_cookie())],
        Redirect::to("/login"),
    )
        .into_response()
}

/// Ends session `id` and records it.
async fn sign_out(state: &WebState, id: &str, client: Client) {
    let Ok(Some(session)) = state.auth.sessions.find(id).await else {
        return;
    };
    let operator = Operator {
        name: session.name,
        role: session.role,
        via: Via::Session,
        client,
    };
    let audit = state
        .audit
        .begin(&operator.actor(), "sign_out", serde_json::json!({}))
        .await;
    let ended = state.auth.sessions.end(id).await;
    if let Ok(audit) = audit {
        let outcome = match &ended {
            Ok(_) => Ok(1),
            Err(error) => Err(error.to_string()),
        };
        let _ = state.audit.finish(audit, outcome).await;
    }
    if let Err(error) = ended {
        tracing::error!(%error, "session not ended");
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
