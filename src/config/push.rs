//! `[push]`: which provider delivers realtime events.

use super::setting::{define_settings, Values};
use super::ConfigError;

define_settings! {
    section "push";
    PROVIDER: "provider" = "tuisongbao", "realtime provider: tuisongbao or pusher (Pusher Channels, Sockudo, soketi, Reverb)";
}

/// The realtime providers Herald speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Tuisongbao's REST API (`[tuisongbao]`).
    Tuisongbao,
    /// The Pusher Channels HTTP API (`[pusher]`).
    Pusher,
}

/// `[push]`, checked.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// The provider events go to.
    pub provider: ProviderKind,
}

/// Reads and checks `[push]`.
pub(super) fn read(values: &Values) -> Result<PushSettings, ConfigError> {
    Ok(PushSettings {
        provider: values.checked(&PROVIDER, |name: String| {
            match name.trim().to_ascii_lowercase().as_str() {
                "tuisongbao" => Ok(ProviderKind::Tuisongbao),
                "pusher" => Ok(ProviderKind::Pusher),
                _ => Err(format!("is '{name}'; expected tuisongbao or pusher")),
            }
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::ProviderKind;
    use crate::config::{tests::vars, Settings};

    #[test]
    fn tuisongbao_is_the_default_and_pusher_can_be_chosen() {
        let s = Settings::load_from(&vars(&[])).unwrap();
        assert_eq!(s.push.provider, ProviderKind::Tuisongbao);
        let s = Settings::load_from(&vars(&[("HERALD_PUSH_PROVIDER", "Pusher")])).unwrap();
        assert_eq!(s.push.provider, ProviderKind::Pusher);
        let err = Settings::load_from(&vars(&[("HERALD_PUSH_PROVIDER", "ably")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_PUSH_PROVIDER"), "{err}");
    }
}
