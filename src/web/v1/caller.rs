//! Who is calling the producers' API, and what they may reach.
//!
//! Callers send `Authorization: Bearer TOKEN`. What a token reaches is its
//! [`TokenScope`]: the operator token (`web.token`) and API tokens created
//! without an account reach every account; a token bound to an account
//! reaches that account's messages, exports and users' inboxes; a token
//! bound to a user reaches only that user's inbox and channels — it
//! enqueues nothing, reads no export and no colleague's messages. A
//! request without a valid token gets 401 before its body is read; a token
//! that may not reach what the request names gets 403, decided from the
//! token and the names in the request alone, never from stored data, so
//! the answer tells nothing of what exists.
//!
//! Guessing is throttled as on the dashboard (`web.failed_logins_per_minute`
//! per client address, then 429 with `Retry-After` before any check), a
//! token of the wrong form never reaches MongoDB, and one found unknown is
//! answered from a cache for a minute.

use axum::{extract::FromRequestParts, http::request::Parts, http::StatusCode};
use herald_jobs::{AccountId, UserId};

use axum::response::IntoResponse;

use super::problem::Problem;
use crate::{
    secret::is_well_formed,
    store::{tokens::TOKEN_PREFIX, TokenScope},
    web::{client::Client, throttle::too_many, WebState},
};

/// An authenticated caller: what their token reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller(pub TokenScope);

fn forbidden(message: String) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, message)
}

impl Caller {
    /// Whether this caller may act for `account` as a whole: enqueue its
    /// messages and exports, read its exports and its whole message list.
    pub fn may_reach(&self, account: AccountId) -> bool {
        match self.0 {
            TokenScope::AnyAccount => true,
            TokenScope::Account(own) => own == account,
            TokenScope::User(..) => false,
        }
    }

    /// 403 unless this caller may act for `account` as a whole.
    pub fn check(&self, account: AccountId) -> Result<(), Problem> {
        match self.0 {
            _ if self.may_reach(account) => Ok(()),
            TokenScope::User(..) => Err(forbidden(
                "a user's token reaches only that user's inbox and channels".to_owned(),
            )),
            _ => Err(forbidden(format!(
                "this token is not allowed to reach account {account}"
            ))),
        }
    }

    /// 403 unless this caller may read and mark `user`'s inbox in
    /// `account` and sign their channels.
    pub fn check_user(&self, account: AccountId, user: UserId) -> Result<(), Problem> {
        match self.0 {
            TokenScope::AnyAccount => Ok(()),
            TokenScope::Account(own) if own == account => Ok(()),
            TokenScope::User(own, me) if own == account && me == user => Ok(()),
            TokenScope::User(own, _) if own == account => Err(forbidden(format!(
                "this token is not allowed to reach user {user}"
            ))),
            _ => Err(forbidden(format!(
                "this token is not allowed to reach account {account}"
            ))),
        }
    }

    /// The account a request is about: the one it names, which this caller
    /// must reach, or, when it names none, the caller's own.
    pub fn account_for(&self, named: Option<AccountId>) -> Result<AccountId, Problem> {
        match (named, self.0) {
            (Some(account), _) => self.check(account).map(|()| account),
            (None, TokenScope::Account(own)) => Ok(own),
            (None, TokenScope::User(own, _)) => self.check(own).map(|()| own),
            (None, TokenScope::AnyAccount) => Err(Problem::invalid([(
                "accountId".to_owned(),
                "is required with a token that is not bound to an account".to_owned(),
            )])),
        }
    }

    /// Whether this caller may choose a message's `_id` itself: only one
    /// that writes for every account. Any other could take the id of
    /// another account's message first.
    pub fn may_choose_message_ids(&self) -> bool {
        self.0 == TokenScope::AnyAccount
    }
}

fn unauthorized(message: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, message)
}

impl FromRequestParts<WebState> for Caller {
    type Rejection = axum::response::Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<Self, axum::response::Response> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("send Authorization: Bearer TOKEN").into_response())?;
        let client = Client::of(parts, state.auth.trusted_proxies());
        if let Some(wait) = state.auth.throttle.wait(client.ip) {
            return Err(too_many(wait));
        }
        let failed = || {
            state.auth.throttle.failed(client.ip);
            unauthorized("that token is not valid").into_response()
        };
        let Some(token) = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
        else {
            state.auth.throttle.failed(client.ip);
            return Err(
                unauthorized("the Authorization header must be Bearer TOKEN").into_response(),
            );
        };
        if state.auth.is_configured(token) {
            return Ok(Caller(TokenScope::AnyAccount));
        }
        if !is_well_formed(token, TOKEN_PREFIX) || state.auth.throttle.known_unknown(token) {
            return Err(failed());
        }
        match state.api.tokens.find(token).await {
            Ok(Some(found)) => Ok(Caller(found.scope)),
            Ok(None) => {
                state.auth.throttle.remember_unknown(token);
                Err(failed())
            }
            Err(error) => Err(Problem::from(error).into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (AccountId, AccountId, UserId, UserId) {
        (
            AccountId::parse("5f0c8a3e2b1d4c0012345678").unwrap(),
            AccountId::parse("5f0c8a3e2b1d4c0087654321").unwrap(),
            UserId::parse("5f0c8a3e2b1d4c00aaaaaaaa").unwrap(),
            UserId::parse("5f0c8a3e2b1d4c00bbbbbbbb").unwrap(),
        )
    }

    #[test]
    fn a_bound_token_reaches_its_account_only() {
        let (own, other, user, _) = ids();
        let bound = Caller(TokenScope::Account(own));
        assert!(bound.may_reach(own));
        assert!(!bound.may_reach(other));
        assert!(bound.check_user(own, user).is_ok());
        assert_eq!(
            bound.check_user(other, user).unwrap_err().status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(bound.account_for(None).unwrap(), own);
        assert_eq!(
            bound.account_for(Some(other)).unwrap_err().status(),
            StatusCode::FORBIDDEN
        );
        assert!(!bound.may_choose_message_ids());
        let any = Caller(TokenScope::AnyAccount);
        assert!(any.may_reach(other));
        assert!(any.may_choose_message_ids());
        assert_eq!(
            any.account_for(None).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn a_user_token_reaches_its_users_inbox_only() {
        let (own, other, me, colleague) = ids();
        let mine = Caller(TokenScope::User(own, me));
        assert!(mine.check_user(own, me).is_ok());
        for (account, user) in [(own, colleague), (other, me), (other, colleague)] {
            assert_eq!(
                mine.check_user(account, user).unwrap_err().status(),
                StatusCode::FORBIDDEN
            );
        }
        // It acts for no account as a whole: no enqueue, no export.
        assert!(!mine.may_reach(own));
        assert_eq!(mine.check(own).unwrap_err().status(), StatusCode::FORBIDDEN);
        assert_eq!(
            mine.account_for(None).unwrap_err().status(),
            StatusCode::FORBIDDEN
        );
        assert!(!mine.may_choose_message_ids());
    }
}
