//! Authorizing a browser to subscribe to an account's or a user's channel.
//!
//! The events go to `presence-` channels, which a browser joins only with a
//! signature from the app's server. [`ChannelAuthorizer`] produces that
//! signature for the configured provider: for the Pusher protocol,
//! `{"auth": "key:HMAC", "channel_data": "{\"user_id\":...}"}` (see
//! [`super::pusher::signature::channel_auth`]). Tuisongbao's signature
//! algorithm is not documented where the project could read it (DESIGN.md
//! 2.2), so with that provider Herald answers that it cannot sign rather
//! than guess.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::pusher::signature;
use crate::config::{ProviderKind, Settings};

/// Longest user id accepted for a presence channel.
pub const MAX_USER_ID_CHARS: usize = 128;

/// Signs subscriptions for the configured provider.
#[derive(Debug, Clone)]
pub enum ChannelAuthorizer {
    /// The Pusher protocol: the app's key and secret.
    Pusher {
        /// The app key (public).
        key: String,
        /// The app secret; never printed.
        secret: SecretString,
    },
    /// Tuisongbao, whose signature algorithm is undocumented.
    Tuisongbao,
}

/// The provider's authorization answer, as the browser's client library
/// expects it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Authorization {
    /// `key:signature`.
    pub auth: String,
    /// For a presence channel: the member's data, exactly as signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_data: Option<String>,
}

/// Why a subscription is not signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The socket id is not `digits.digits`.
    #[error("socket id {0:?} is not of the form 123.456")]
    InvalidSocketId(String),
    /// A presence channel needs the member's user id.
    #[error("a presence channel needs a user id of 1 to {MAX_USER_ID_CHARS} characters")]
    InvalidUser,
    /// The provider's signature cannot be produced.
    #[error("{0}")]
    Unsupported(&'static str),
}

/// Whether `socket_id` has the protocol's form: digits, a dot, digits.
fn valid_socket_id(socket_id: &str) -> bool {
    let Some((left, right)) = socket_id.split_once('.') else {
        return false;
    };
    [left, right].iter().all(|part| {
        !part.is_empty() && part.len() <= 20 && part.bytes().all(|b| b.is_ascii_digit())
    })
}

impl ChannelAuthorizer {
    /// The authorizer for the provider `settings` choose.
    pub fn from_settings(settings: &Settings) -> Self {
        match settings.push.provider {
            ProviderKind::Pusher => ChannelAuthorizer::Pusher {
                key: settings.pusher.key.clone(),
                secret: settings.pusher.secret.clone(),
            },
            ProviderKind::Tuisongbao => ChannelAuthorizer::Tuisongbao,
        }
    }

    /// Signs `socket_id`'s subscription to `channel`; for a presence
    /// channel, as the member `user_id` with `user_info`.
    pub fn authorize(
        &self,
        socket_id: &str,
        channel: &str,
        user_id: Option<&str>,
        user_info: Option<&serde_json::Value>,
    ) -> Result<Authorization, AuthError> {
        let (key, secret) = match self {
            ChannelAuthorizer::Pusher { key, secret } => (key, secret),
            ChannelAuthorizer::Tuisongbao => {
                return Err(AuthError::Unsupported(
                    "Tuisongbao's channel signature is not documented; Herald signs channels only for the Pusher protocol (push.provider = pusher)",
                ))
            }
        };
        if !valid_socket_id(socket_id) {
            return Err(AuthError::InvalidSocketId(socket_id.to_owned()));
        }
        let channel_data = if channel.starts_with("presence-") {
            let user_id = user_id
                .filter(|id| !id.trim().is_empty() && id.chars().count() <= MAX_USER_ID_CHARS)
                .ok_or(AuthError::InvalidUser)?;
            let mut member = serde_json::json!({ "user_id": user_id });
            if let Some(info) = user_info {
                member["user_info"] = info.clone();
            }
            Some(member.to_string())
        } else {
            None
        };
        Ok(Authorization {
            auth: signature::channel_auth(
                key,
                secret.expose_secret(),
                socket_id,
                channel,
                channel_data.as_deref(),
            ),
            channel_data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pusher() -> ChannelAuthorizer {
        ChannelAuthorizer::Pusher {
            key: "278d425bdf160c739803".into(),
            secret: "7ad3773142a6692b25b8".to_owned().into(),
        }
    }

    #[test]
    fn a_private_channel_is_signed_as_pusher_documents() {
        let answer = pusher()
            .authorize("1234.1234", "private-foobar", None, None)
            .unwrap();
        assert_eq!(
            answer.auth,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        assert_eq!(answer.channel_data, None);
    }

    #[test]
    fn a_presence_channel_signs_the_member_data_it_returns() {
        let info = serde_json::json!({"name": "Ann"});
        let answer = pusher()
            .authorize("1.2", "presence-a", Some("u1"), Some(&info))
            .unwrap();
        let data = answer.channel_data.clone().unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&data).unwrap(),
            serde_json::json!({"user_id": "u1", "user_info": {"name": "Ann"}})
        );
        assert_eq!(
            answer.auth,
            signature::channel_auth(
                "278d425bdf160c739803",
                "7ad3773142a6692b25b8",
                "1.2",
                "presence-a",
                Some(&data)
            )
        );
        assert_eq!(
            pusher().authorize("1.2", "presence-a", None, None),
            Err(AuthError::InvalidUser)
        );
        assert_eq!(
            pusher().authorize("1.2", "presence-a", Some(" "), None),
            Err(AuthError::InvalidUser)
        );
    }

    #[test]
    fn malformed_socket_ids_are_refused() {
        for bad in ["", "1", "1.", ".1", "a.1", "1.2.3", "1:2"] {
            assert!(
                matches!(
                    pusher().authorize(bad, "private-x", None, None),
                    Err(AuthError::InvalidSocketId(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn tuisongbao_is_not_guessed() {
        assert!(matches!(
            ChannelAuthorizer::Tuisongbao.authorize("1.2", "presence-a", Some("u"), None),
            Err(AuthError::Unsupported(_))
        ));
    }
}
