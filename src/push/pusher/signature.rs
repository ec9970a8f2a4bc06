//! Signing as the Pusher Channels HTTP API specifies.
//!
//! A request carries `auth_key`, `auth_timestamp`, `auth_version=1.0` and
//! `body_md5` (hex MD5 of the body) in its query string, and
//! `auth_signature`: the hex HMAC-SHA256, keyed by the app's secret, of
//! `METHOD\nPATH\nQUERY`, where QUERY is every other parameter sorted by
//! (lowercased) key and joined `key=value&...` without URL escaping.
//!
//! A browser's subscription to a private or presence channel is authorized
//! the same way: `key:HMAC(secret, socket_id:channel[:channel_data])`.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

/// The protocol version Herald signs with.
pub const AUTH_VERSION: &str = "1.0";

/// The hex MD5 of `body`.
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

fn hmac(secret: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length")
}

/// The string signed for a request: method, path and the sorted query.
pub fn string_to_sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<(String, &str)> = params
        .iter()
        .filter(|(k, _)| k != "auth_signature")
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    sorted.sort();
    let query: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{}\n{path}\n{}",
        method.to_ascii_uppercase(),
        query.join("&")
    )
}

/// The `auth_signature` of a request with `params` (any `auth_signature`
/// among them is left out).
pub fn sign(secret: &str, method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut mac = hmac(secret);
    mac.update(string_to_sign(method, path, params).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The signed query parameters of `POST path` with `body`, at `timestamp`
/// (Unix seconds): the authentication ones and `auth_signature` last.
pub fn signed_params(
    key: &str,
    secret: &str,
    path: &str,
    body: &[u8],
    timestamp: u64,
) -> Vec<(String, String)> {
    let mut params = vec![
        ("auth_key".to_owned(), key.to_owned()),
        ("auth_timestamp".to_owned(), timestamp.to_string()),
        ("auth_version".to_owned(), AUTH_VERSION.to_owned()),
        ("body_md5".to_owned(), body_md5(body)),
    ];
    let signature = sign(secret, "POST", path, &params);
    params.push(("auth_signature".to_owned(), signature));
    params
}

/// Whether `params` carry a valid `auth_signature` for `METHOD path`,
/// compared in constant time.
pub fn verify(secret: &str, method: &str, path: &str, params: &[(String, String)]) -> bool {
    let Some(given) = params
        .iter()
        .find(|(k, _)| k == "auth_signature")
        .and_then(|(_, v)| hex::decode(v).ok())
    else {
        return false;
    };
    let mut mac = hmac(secret);
    mac.update(string_to_sign(method, path, params).as_bytes());
    mac.verify_slice(&given).is_ok()
}

/// The `auth` a browser presents to subscribe `socket_id` to `channel`:
/// `key:signature`, the signature covering `channel_data` for a presence
/// channel.
pub fn channel_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    let mut mac = hmac(secret);
    mac.update(socket_id.as_bytes());
    mac.update(b":");
    mac.update(channel.as_bytes());
    if let Some(data) = channel_data {
        mac.update(b":");
        mac.update(data.as_bytes());
    }
    format!("{key}:{}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The credentials of the worked examples in Pusher's documentation.
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_documented_events_example_signs_to_its_documented_values() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(body_md5(body), "ec365a775a4cd0599faeb73354201b6f");
        let signed = signed_params(KEY, SECRET, "/apps/3/events", body, 1_353_088_179);
        assert_eq!(
            signed,
            params(&[
                ("auth_key", KEY),
                ("auth_timestamp", "1353088179"),
                ("auth_version", "1.0"),
                ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
                (
                    "auth_signature",
                    "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
                ),
            ])
        );
        assert!(verify(SECRET, "POST", "/apps/3/events", &signed));
    }

    #[test]
    fn parameters_are_sorted_by_key_before_signing() {
        // The older worked example, with a `name` parameter and the keys
        // given out of order.
        let unsorted = params(&[
            ("name", "foo"),
            ("body_md5", "7b3d404f5cde4a0b9b8fb4789a0098cb"),
            ("auth_version", "1.0"),
            ("auth_timestamp", "1272044395"),
            ("auth_key", KEY),
        ]);
        let path = "/apps/3/channels/test_channel/events";
        assert_eq!(
            string_to_sign("post", path, &unsorted),
            format!("POST\n{path}\nauth_key={KEY}&auth_timestamp=1272044395&auth_version=1.0&body_md5=7b3d404f5cde4a0b9b8fb4789a0098cb&name=foo")
        );
        assert_eq!(
            sign(SECRET, "POST", path, &unsorted),
            "309fc4be20f04e53e011b00744642d3fe66c2c7c5686f35ed6cd2af6f202e445"
        );
    }

    #[test]
    fn a_changed_body_path_or_secret_fails_verification() {
        let body = b"{}";
        let signed = signed_params(KEY, SECRET, "/apps/3/events", body, 1);
        assert!(verify(SECRET, "POST", "/apps/3/events", &signed));
        assert!(!verify("other", "POST", "/apps/3/events", &signed));
        assert!(!verify(SECRET, "POST", "/apps/3/batch_events", &signed));
        let mut tampered = signed.clone();
        tampered[3].1 = body_md5(b"{ }");
        assert!(!verify(SECRET, "POST", "/apps/3/events", &tampered));
        assert!(!verify(SECRET, "POST", "/apps/3/events", &signed[..4]));
    }

    #[test]
    fn the_documented_private_channel_example_authorizes_to_its_documented_value() {
        assert_eq!(
            channel_auth(KEY, SECRET, "1234.1234", "private-foobar", None),
            format!("{KEY}:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4")
        );
    }

    #[test]
    fn presence_channel_data_is_part_of_the_signature() {
        let without = channel_auth(KEY, SECRET, "1.2", "presence-a", None);
        let with = channel_auth(KEY, SECRET, "1.2", "presence-a", Some(r#"{"user_id":"u"}"#));
        assert_ne!(without, with);
        let mut mac = hmac(SECRET);
        mac.update(br#"1.2:presence-a:{"user_id":"u"}"#);
        assert_eq!(
            with,
            format!("{KEY}:{}", hex::encode(mac.finalize().into_bytes()))
        );
    }
}
