//! The push sandbox as a user scripts it over HTTP.

use crate::helpers::{env, APP_ID, SECRET};
use serde_json::json;

fn event() -> serde_json::Value {
    json!({ "name": "ping", "data": { "n": 1 }, "channels": ["c1"] })
}

/// POSTs `body` to the sandbox's events endpoint with `secret` (if any).
async fn send(
    env: &crate::helpers::TestEnv,
    secret: Option<&str>,
    body: &serde_json::Value,
) -> reqwest::Response {
    let mut request = env
        .http
        .post(format!("{}/v2/open/engine/events", env.sandbox_url))
        .json(body);
    if let Some(secret) = secret {
        request = request.basic_auth(APP_ID, Some(secret));
    }
    request.send().await.expect("sandbox answers")
}

#[tokio::test]
async fn it_accepts_the_right_credentials_rejects_wrong_ones_and_records_both() {
    let env = env().await;
    let ok = send(&env, Some(SECRET), &event()).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "OK");

    let denied = send(&env, Some("nope"), &event()).await;
    assert_eq!(denied.status(), 401);
    let anonymous = send(&env, None, &event()).await;
    assert_eq!(anonymous.status(), 401);

    let recorded = env.sandbox_requests().await;
    let statuses: Vec<u16> = recorded.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 401, 401]);
    assert_eq!(recorded[0].name.as_deref(), Some("ping"));
    assert_eq!(recorded[0].channels, vec!["c1".to_owned()]);
    assert_eq!(recorded[0].data, json!({ "n": 1 }));
    assert!(!recorded[2].authorized);
}

#[tokio::test]
async fn malformed_events_get_400() {
    let env = env().await;
    for body in [
        json!({"name": "x"}),
        json!({"name": "", "data": {}, "channels": ["c"]}),
        json!({"name": "x", "data": {}, "channels": []}),
    ] {
        let response = send(&env, Some(SECRET), &body).await;
        assert_eq!(response.status(), 400, "{body}");
    }
}

#[tokio::test]
async fn scripted_failures_apply_to_the_next_n_requests_then_stop() {
    let env = env().await;
    env.script_failures(Some(503), 0, 2).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = send(&env, Some(SECRET), &event()).await;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, vec![503, 503, 200]);

    // A delay without a status answers normally, late.
    env.script_failures(None, 300, 1).await;
    let start = std::time::Instant::now();
    let response = send(&env, Some(SECRET), &event()).await;
    assert_eq!(response.status(), 200);
    assert!(start.elapsed() >= std::time::Duration::from_millis(300));
}

#[tokio::test]
async fn the_page_and_the_clear_endpoint_work() {
    let env = env().await;
    let page = env.http.get(&env.sandbox_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Herald push sandbox"));

    send(&env, Some(SECRET), &event()).await;
    assert_eq!(env.sandbox_requests().await.len(), 1);
    let cleared = env
        .http
        .delete(format!("{}/_sandbox/events", env.sandbox_url))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);
    assert!(env.sandbox_requests().await.is_empty());
}
