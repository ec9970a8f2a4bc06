//! Who is calling the producers' API, and which accounts they may reach.
//!
//! Callers send `Authorization: Bearer TOKEN`. The operator token
//! (`web.token`) and API tokens created without an account reach every
//! account; an API token bound to an account reaches only that one. A
//! request without a valid token gets 401 before its body is read.

use axum::{extract::FromRequestParts, http::request::Parts, http::StatusCode};
use herald_jobs::AccountId;

use super::problem::Problem;
use crate::{store::tokens::TOKEN_PREFIX, web::WebState};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The operator token, or an API token not bound to an account.
    AnyAccount,
    /// An API token bound to this account.
    Account(AccountId),
}

impl Caller {
    /// Whether this caller may read and write `account`'s data.
    pub fn may_reach(&self, account: AccountId) -> bool {
        match self {
            Caller::AnyAccount => true,
            Caller::Account(own) => *own == account,
        }
    }

    /// 403 unless this caller may reach `account`.
    pub fn check(&self, account: AccountId) -> Result<(), Problem> {
        if self.may_reach(account) {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!("this token is not allowed to reach account {account}"),
            ))
        }
    }

    /// The account a request is about: the one it names, which this caller
    /// must reach, or, when it names none, the caller's own.
    pub fn account_for(&self, named: Option<AccountId>) -> Result<AccountId, Problem> {
        match (named, self) {
            (Some(account), _) => self.check(account).map(|()| account),
            (None, Caller::Account(own)) => Ok(*own),
            (None, Caller::AnyAccount) => Err(Problem::invalid([(
                "accountId".to_owned(),
                "is required with a token that is not bound to an account".to_owned(),
            )])),
        }
    }
}

fn unauthorized(message: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, message)
}

impl FromRequestParts<WebState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Problem> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("send Authorization: Bearer TOKEN"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header must be Bearer TOKEN"))?;
        if state.auth.token_matches(token) {
            return Ok(Caller::AnyAccount);
        }
        if !token.starts_with(TOKEN_PREFIX) {
            return Err(unauthorized("that token is not valid"));
        }
        match state.api.tokens.find(token).await? {
            Some(found) => Ok(found.account.map_or(Caller::AnyAccount, Caller::Account)),
            None => Err(unauthorized("that token is not valid")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_token_reaches_its_account_only() {
        let own = AccountId::parse("5f0c8a3e2b1d4c0012345678").unwrap();
        let other = AccountId::parse("5f0c8a3e2b1d4c0087654321").unwrap();
        let bound = Caller::Account(own);
        assert!(bound.may_reach(own));
        assert!(!bound.may_reach(other));
        assert_eq!(bound.account_for(None).unwrap(), own);
        assert_eq!(
            bound.account_for(Some(other)).unwrap_err().status(),
            StatusCode::FORBIDDEN
        );
        assert!(Caller::AnyAccount.may_reach(other));
        assert_eq!(
            Caller::AnyAccount.account_for(None).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }
}
