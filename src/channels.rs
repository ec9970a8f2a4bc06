//! Channel names: the account's, which every signed-in user of the account
//! joins, and each user's own.
//!
//! The account channel is the contract's (`presence-message-wm-global` +
//! the account id). Whatever goes there is seen by all of the account's
//! users, so a message addressed to one user goes in full to that user's
//! channel only, named by the template `push.user_channel`
//! ([`UserChannels`]); the account channel then carries a notice without
//! its title or content (see `push::job`). A browser joins either channel
//! only with a signature from `POST /v1/push/auth`, which signs a user's
//! channel for that user alone.

use herald_jobs::{AccountId, UserId};

/// Prefix of an account's channel; the account id's hex follows it.
pub const ACCOUNT_CHANNEL_PREFIX: &str = "presence-message-wm-global";

/// The default `push.user_channel`.
pub const DEFAULT_USER_CHANNEL: &str = "private-message-wm-user-{account}-{user}";

/// Longest channel name the providers accept (Tuisongbao: 128; Pusher: 164).
pub const MAX_CHANNEL_CHARS: usize = 128;

/// Characters of a hex ObjectId, as a template's placeholders become.
const ID_CHARS: usize = 24;

/// The channel every user of `account` listens on.
pub fn account_channel(account: AccountId) -> String {
    format!("{ACCOUNT_CHANNEL_PREFIX}{account}")
}

/// The account whose channel `channel` is, if it is one.
pub fn channel_account(channel: &str) -> Option<AccountId> {
    channel
        .strip_prefix(ACCOUNT_CHANNEL_PREFIX)
        .and_then(|hex| AccountId::parse(hex).ok())
        .filter(|account| account_channel(*account) == channel)
}

/// One piece of a user channel template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Account,
    User,
}

/// Each user's channel, from the template `push.user_channel`: literal
/// text with `{account}` and `{user}` each once, which become the ids' hex.
///
/// The template must start with `private-` or `presence-` (channels a
/// browser joins only with a signature: on any other, anyone who knows
/// the name could listen), use only the characters every provider accepts
/// (`A-Z a-z 0-9 _ - = @ , . ;`), and give names of at most
/// [`MAX_CHANNEL_CHARS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserChannels {
    template: String,
    pieces: Vec<Piece>,
}

impl Default for UserChannels {
    /// [`DEFAULT_USER_CHANNEL`] (a unit test checks that `parse` gives the same).
    fn default() -> Self {
        Self {
            template: DEFAULT_USER_CHANNEL.to_owned(),
            pieces: vec![
                Piece::Text("private-message-wm-user-".to_owned()),
                Piece::Account,
                Piece::Text("-".to_owned()),
                Piece::User,
            ],
        }
    }
}

impl UserChannels {
    /// Checks `template` (see the type's docs); the error says which rule
    /// it breaks.
    pub fn parse(template: &str) -> Result<Self, String> {
        if !(template.starts_with("private-") || template.starts_with("presence-")) {
            return Err(format!(
                "'{template}' must start with private- or presence- (a channel a browser joins only with a signature)"
            ));
        }
        let mut pieces = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            let (piece, after) = if let Some(after) = rest.strip_prefix("{account}") {
                (Piece::Account, after)
            } else if let Some(after) = rest.strip_prefix("{user}") {
                (Piece::User, after)
            } else {
                let end = rest.find('{').filter(|&i| i > 0).unwrap_or(rest.len());
                let text = &rest[..end];
                if let Some(bad) = text.chars().find(|c| !is_channel_char(*c)) {
                    return Err(format!(
                        "'{template}' has {bad:?}; channel names may only hold A-Z a-z 0-9 _ - = @ , . ; and the placeholders {{account}} and {{user}}"
                    ));
                }
                (Piece::Text(text.to_owned()), &rest[end..])
            };
            pieces.push(piece);
            rest = after;
        }
        let count = |wanted: &Piece| pieces.iter().filter(|p| *p == wanted).count();
        if count(&Piece::Account) != 1 || count(&Piece::User) != 1 {
            return Err(format!(
                "'{template}' must hold {{account}} and {{user}} once each"
            ));
        }
        let length: usize = pieces
            .iter()
            .map(|p| match p {
                Piece::Text(text) => text.len(),
                Piece::Account | Piece::User => ID_CHARS,
            })
            .sum();
        if length > MAX_CHANNEL_CHARS {
            return Err(format!(
                "'{template}' makes channel names of {length} characters, over the providers' limit of {MAX_CHANNEL_CHARS}"
            ));
        }
        Ok(Self {
            template: template.to_owned(),
            pieces,
        })
    }

    /// The template, as configured.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The channel of `user` of `account`.
    pub fn channel(&self, account: AccountId, user: UserId) -> String {
        let mut name = String::with_capacity(MAX_CHANNEL_CHARS);
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => name.push_str(text),
                Piece::Account => name.push_str(&account.to_hex()),
                Piece::User => name.push_str(&user.to_hex()),
            }
        }
        name
    }

    /// The account and user whose channel `channel` is, if it is one
    /// (ids in lowercase hex, as [`Self::channel`] writes them).
    pub fn owner(&self, channel: &str) -> Option<(AccountId, UserId)> {
        let (mut account, mut user) = (None, None);
        let mut rest = channel;
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => rest = rest.strip_prefix(text.as_str())?,
                Piece::Account | Piece::User => {
                    let hex = rest.get(..ID_CHARS)?;
                    if !hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                    {
                        return None;
                    }
                    if *piece == Piece::Account {
                        account = AccountId::parse(hex).ok();
                    } else {
                        user = UserId::parse(hex).ok();
                    }
                    rest = &rest[ID_CHARS..];
                }
            }
        }
        match (rest.is_empty(), account, user) {
            (true, Some(account), Some(user)) => Some((account, user)),
            _ => None,
        }
    }

    /// A regular expression matching exactly the user channels, for the
    /// OpenAPI document.
    pub fn pattern(&self) -> String {
        let mut pattern = String::from("^");
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => {
                    for c in text.chars() {
                        if c == '.' {
                            pattern.push('\\');
                        }
                        pattern.push(c);
                    }
                }
                Piece::Account | Piece::User => pattern.push_str("[0-9a-f]{24}"),
            }
        }
        pattern.push('$');
        pattern
    }
}

/// Whether `c` may appear in a channel name on every provider.
fn is_channel_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-=@,.;".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "5f0c8a3e2b1d4c0012345678";
    const USER: &str = "5f0c8a3e2b1d4c00aaaaaaaa";

    fn ids() -> (AccountId, UserId) {
        (
            AccountId::parse(ACCOUNT).unwrap(),
            UserId::parse(USER).unwrap(),
        )
    }

    #[test]
    fn the_account_channel_is_the_prefix_and_the_hex_id() {
        let (account, _) = ids();
        let channel = account_channel(account);
        assert_eq!(channel, format!("presence-message-wm-global{ACCOUNT}"));
        assert_eq!(channel_account(&channel), Some(account));
        for other in [
            "presence-message-wm-global",
            "presence-message-wm-global5f0c8a3e2b1d4c00123456789",
            "presence-message-wm-global5F0C8A3E2B1D4C0012345678",
            "private-message-wm-global5f0c8a3e2b1d4c0012345678",
        ] {
            assert_eq!(channel_account(other), None, "{other}");
        }
    }

    #[test]
    fn the_default_template_is_valid_and_round_trips() {
        let channels = UserChannels::default();
        assert_eq!(channels.template(), DEFAULT_USER_CHANNEL);
        assert_eq!(
            UserChannels::parse(DEFAULT_USER_CHANNEL),
            Ok(channels.clone())
        );
        let (account, user) = ids();
        let name = channels.channel(account, user);
        assert_eq!(name, format!("private-message-wm-user-{ACCOUNT}-{USER}"));
        assert_eq!(channels.owner(&name), Some((account, user)));
        let regex_like = channels.pattern();
        assert!(regex_like.starts_with("^private-message-wm-user-[0-9a-f]{24}-"));
    }

    #[test]
    fn names_that_are_not_a_users_channel_have_no_owner() {
        let channels = UserChannels::default();
        let (account, user) = ids();
        let name = channels.channel(account, user);
        for other in [
            "",
            name.trim_end_matches('a'),
            &format!("{name}x"),
            &name.to_uppercase(),
            &account_channel(account),
            &name.replace("private-", "presence-"),
        ] {
            assert_eq!(channels.owner(other), None, "{other}");
        }
    }

    #[test]
    fn templates_are_checked() {
        for (template, reason) in [
            ("message-user-{account}-{user}", "private- or presence-"),
            ("private-{account}", "once each"),
            ("private-{user}{user}{account}", "once each"),
            ("private-u/{account}-{user}", "'/'"),
            ("private-{acount}-{user}", "'{'"),
            (
                &format!("private-{}{{account}}{{user}}", "x".repeat(80)),
                "over the providers' limit",
            ),
        ] {
            let err = UserChannels::parse(template).unwrap_err();
            assert!(err.contains(reason), "{template}: {err}");
        }
        let presence = UserChannels::parse("presence-{user}.inbox.{account}").unwrap();
        let (account, user) = ids();
        let name = presence.channel(account, user);
        assert_eq!(name, format!("presence-{USER}.inbox.{ACCOUNT}"));
        assert_eq!(presence.owner(&name), Some((account, user)));
        assert_eq!(
            presence.pattern(),
            "^presence-[0-9a-f]{24}\\.inbox\\.[0-9a-f]{24}$"
        );
    }
}
