//! `POST /v1/push/auth`: a browser's subscription signed for its own
//! account's channel only.

use herald::push::{account_channel, pusher::signature};
use herald_push_sandbox::DEFAULT_PUSHER_KEY;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{account, env_with, SECRET};

/// Posts `body` to `/v1/push/auth` on `url` with `token`.
async fn ask(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut request = http.post(format!("{url}/v1/push/auth")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("web answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_gets_its_own_accounts_channel_signed_and_no_other() {
    let env = env_with(&[("HERALD_PUSH_PROVIDER", "pusher")]).await;
    let url = env.start_web().await;
    let own = account();
    let bound = env.account_token("php-app", own).await;
    let channel = account_channel(own);

    let (status, answer) = ask(
        &env.http,
        &url,
        Some(&bound),
        json!({"socketId": "1234.5678", "channelName": channel, "userId": "65a1f0c2e4b0a1b2c3d4e5f6"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let channel_data = answer["channel_data"].as_str().expect("channel_data");
    let member: Value = serde_json::from_str(channel_data).expect("JSON member data");
    assert_eq!(member["user_id"], json!("65a1f0c2e4b0a1b2c3d4e5f6"));
    // What a Pusher server checks: key:HMAC(secret, socket:channel:data).
    assert_eq!(
        answer["auth"].as_str(),
        Some(
            signature::channel_auth(
                DEFAULT_PUSHER_KEY,
                SECRET,
                "1234.5678",
                &channel,
                Some(channel_data)
            )
            .as_str()
        )
    );

    // Another account's channel: 403 in the problem body.
    let other = account_channel(account());
    let (status, answer) = ask(
        &env.http,
        &url,
        Some(&bound),
        json!({"socketId": "1234.5678", "channelName": other, "userId": "u"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not allowed"),
        "{answer}"
    );
    assert!(answer.get("auth").is_none());

    // A channel that is no account's: 403 too.
    let (status, answer) = ask(
        &env.http,
        &url,
        Some(&bound),
        json!({"socketId": "1234.5678", "channelName": "presence-admins", "userId": "u"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");

    // Bad fields are named.
    let (status, answer) = ask(
        &env.http,
        &url,
        Some(&bound),
        json!({"socketId": "nope", "channelName": channel, "userId": "u"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["fields"]["socketId"].is_string(), "{answer}");
    let (status, answer) = ask(
        &env.http,
        &url,
        Some(&bound),
        json!({"socketId": "1.2", "channelName": channel}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["fields"]["userId"].is_string(), "{answer}");
    let (status, answer) = ask(
        &env.http,
        &url,
        Some(&bound),
        json!({"socketId": "1.2", "channelName": channel, "userId": "  "}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["fields"]["userId"].is_string(), "{answer}");

    // No token: 401.
    let (status, _) = ask(
        &env.http,
        &url,
        None,
        json!({"socketId": "1.2", "channelName": channel, "userId": "u"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tuisongbao_the_signature_is_not_guessed() {
    let env = env_with(&[]).await;
    let url = env.start_web().await;
    let own = account();
    let bound = env.account_token("php-app", own).await;
    let (status, answer) = ask(
        &env.http,
        &url,
        Some(&bound),
        json!({"socketId": "1.2", "channelName": account_channel(own), "userId": "u"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap_or_default()
        .contains("Tuisongbao"));
}
