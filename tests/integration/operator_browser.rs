//! Operators' roles on the dashboard, in a real headless browser (see
//! `browser.rs`): a viewer and an operator, each with a token of their own
//! made by `herald token create`, signed in side by side. The viewer is
//! offered no action and the server refuses them one anyway; the operator
//! retries a failed push, and the audit trail on the page shows who did
//! what.

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use herald_jobs::{QueueName, SendMessage};
use serde_json::{json, Value};

use crate::{
    browser::{browser, click, sign_in},
    helpers::{account, env_with, wait_for, SECRET},
};

/// How long the page may take to show something. A deadline against hangs,
/// not a speed requirement: the page redraws every two seconds.
const PAGE_PATIENCE: Duration = Duration::from_secs(60);

/// Every element a viewer must not be able to use: the per-row, per-group,
/// per-queue and per-export actions and the bulk buttons.
const ACTIONS: &str = "button.retry, button.discard, button.toggle-pause, button.retry-group, \
     button.discard-group, button.cancel-export, a.download, input.select, #select-all, \
     #retry-selected, #retry-all, #discard-all";

/// Waits until `css` finds an element; returns its text (read in the same
/// script, so a redraw in between cannot make it stale).
async fn shown(client: &Client, css: &str) -> String {
    let start = Instant::now();
    loop {
        let text = client
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                vec![json!(css)],
            )
            .await
            .expect("the page runs scripts");
        if let Value::String(text) = text {
            return text;
        }
        assert!(
            start.elapsed() < PAGE_PATIENCE,
            "{css} never appeared; page says {}",
            status(client).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `css` finds nothing.
async fn gone(client: &Client, css: &str) {
    let start = Instant::now();
    while count(client, css).await != 0 {
        assert!(
            start.elapsed() < PAGE_PATIENCE,
            "{css} stayed; page says {}",
            status(client).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `css` finds exactly `n` elements.
async fn wait_count(client: &Client, css: &str, n: usize) {
    let start = Instant::now();
    loop {
        let found = count(client, css).await;
        if found == n {
            return;
        }
        assert!(
            start.elapsed() < PAGE_PATIENCE,
            "{css} finds {found}, not {n}; page says {}",
            status(client).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many elements `css` finds.
async fn count(client: &Client, css: &str) -> usize {
    client
        .execute(
            "return document.querySelectorAll(arguments[0]).length;",
            vec![json!(css)],
        )
        .await
        .expect("the page runs scripts")
        .as_u64()
        .unwrap_or(0) as usize
}

/// The page's status line and message, for failure messages.
async fn status(client: &Client) -> String {
    client
        .execute(
            "return ['#status', '#message', '#audit-error'].map(s => { \
                 const e = document.querySelector(s); return e ? e.textContent : ''; }).join(' / ');",
            vec![],
        )
        .await
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// The actions the page offers: elements of [`ACTIONS`], and buttons or
/// links named for an action, that are shown and enabled.
async fn offered_actions(client: &Client) -> Vec<String> {
    let offered = client
        .execute(
            "const usable = e => e.getClientRects().length > 0 \
                 && getComputedStyle(e).visibility !== 'hidden' && !e.disabled; \
             const named = /retry|discard|pause|resume|cancel|download/i; \
             const found = new Set([...document.querySelectorAll(arguments[0])]); \
             for (const e of document.querySelectorAll('button, a')) \
                 if (named.test(e.textContent)) found.add(e); \
             return [...found].filter(usable).map(e => e.outerHTML);",
            vec![json!(ACTIONS)],
        )
        .await
        .expect("the page runs scripts");
    serde_json::from_value(offered).expect("a list of elements")
}

/// `fetch` from the page itself (its cookie, its origin): the status and
/// the body.
async fn page_fetch(client: &Client, method: &str, path: &str) -> (u64, String) {
    let answer = client
        .execute_async(
            "const [method, path, done] = arguments; \
             fetch(path, { method, headers: { 'X-Herald-Csrf': '1' }, credentials: 'same-origin' }) \
                 .then(async r => done({ status: r.status, body: await r.text() })) \
                 .catch(e => done({ status: 0, body: String(e) }));",
            vec![json!(method), json!(path)],
        )
        .await
        .expect("the page's fetch runs");
    (
        answer["status"].as_u64().unwrap_or(0),
        answer["body"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The audit row of `actor`'s `action`, ended with outcome ok.
fn audit_row(action: &str, actor: &str) -> String {
    format!("#audit tbody tr[data-action='{action}'][data-actor='{actor}'][data-outcome='ok']")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_is_offered_no_action_and_an_operators_retry_is_in_the_audit_trail() {
    // A push that failed for good: the worker had the wrong secret.
    let mut env = env_with(&[("HERALD_TUISONGBAO_SECRET", "wrong")]).await;
    env.start_worker().await;
    env.enqueue(SendMessage::new(account(), "seen by two", "test"))
        .await;
    let dead = wait_for("the failed push", || async {
        env.queue_set(QueueName::Push, "dead").await.pop()
    })
    .await;
    let (_, viewer_token) = env.operator_token("vera", "viewer");
    let (_, operator_token) = env.operator_token("oscar", "operator");
    let web = env.start_web().await;
    let row = format!("#failed tbody tr[data-id='{dead}']");

    // The viewer sees the failed push, and who they are.
    let (_viewer_driver, viewer) = browser().await;
    sign_in(&viewer, &web, &viewer_token).await;
    let who = shown(&viewer, "#whoami[data-role='viewer']").await;
    assert!(who.contains("vera") && who.contains("viewer"), "{who:?}");
    let text = shown(&viewer, &row).await;
    assert!(
        text.contains("new_message") && text.contains("401"),
        "{text}"
    );
    shown(&viewer, "#queues tbody tr[data-queue='push']").await;
    shown(&viewer, "#groups tbody tr").await;

    // ... and is offered nothing to do with it: no retry, discard, pause.
    let offered = offered_actions(&viewer).await;
    assert!(offered.is_empty(), "a viewer is offered {offered:#?}");

    // The server refuses them anyway, even from the page itself.
    let (status, body) = page_fetch(&viewer, "POST", "/api/v1/queues/push/pause").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("viewer"), "{body}");
    let (status, body) = page_fetch(&viewer, "GET", "/api/v1/queues").await;
    assert_eq!(status, 200, "{body}");
    let queues: Value = serde_json::from_str(&body).expect("JSON");
    let push = queues["queues"]
        .as_array()
        .and_then(|all| all.iter().find(|q| q["name"] == "push"))
        .expect("the push queue");
    assert_eq!(push["paused"], json!(false), "{push}");
    let (status, body) = page_fetch(&viewer, "GET", "/api/v1/me").await;
    assert_eq!(status, 200, "{body}");
    let me: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        me,
        json!({"name": "vera", "role": "viewer", "via": "session"})
    );

    // The job's own page knows them too.
    viewer
        .goto(&format!("{web}/jobs/push/{dead}"))
        .await
        .expect("the job's page");
    let who = shown(&viewer, "#whoami[data-role='viewer']").await;
    assert!(who.contains("vera"), "{who:?}");
    let offered = offered_actions(&viewer).await;
    assert!(offered.is_empty(), "a viewer is offered {offered:#?}");
    viewer.goto(&web).await.expect("the dashboard again");
    shown(&viewer, &row).await;

    // The operator, in a browser of their own, is offered the actions.
    let (_operator_driver, operator) = browser().await;
    sign_in(&operator, &web, &operator_token).await;
    let who = shown(&operator, "#whoami[data-role='operator']").await;
    assert!(who.contains("oscar") && who.contains("operator"), "{who:?}");
    shown(&operator, &format!("{row} button.retry")).await;
    shown(
        &operator,
        "#queues tbody tr[data-queue='push'] button.toggle-pause",
    )
    .await;
    let offered = offered_actions(&operator).await;
    assert!(
        offered.iter().any(|e| e.contains("retry-all")),
        "{offered:#?}"
    );

    // They fix the credentials and retry the push with its button.
    env.stop_worker().await.expect("worker stops");
    let mut settings = env.settings.clone();
    settings.tuisongbao.secret = secrecy::SecretString::from(SECRET.to_owned());
    env.start_worker_with(settings).await;
    click(&operator, &format!("{row} button.retry")).await;
    gone(&operator, &row).await;
    wait_for("the retried event at the sandbox", || async {
        (env.delivered("new_message").await.len() == 1).then_some(())
    })
    .await;

    // The audit trail shows the retry, by the operator, ended ok, and
    // both sign-ins; the viewer's refused pause is no action at all.
    let retry = shown(&operator, &audit_row("retry", "oscar")).await;
    assert!(
        retry.contains("queue push") && retry.contains(&dead) && retry.contains("oscar · operator"),
        "{retry:?}"
    );
    shown(&operator, &audit_row("sign_in", "oscar")).await;
    let signed = shown(&operator, &audit_row("sign_in", "vera")).await;
    assert!(signed.contains("vera · viewer"), "{signed:?}");
    assert_eq!(
        count(&operator, "#audit tbody tr[data-action='pause']").await,
        0
    );
    // The viewer sees it as well (viewers see everything).
    shown(&viewer, &audit_row("retry", "oscar")).await;
    gone(&viewer, &row).await;

    // Filtered by action, then by who.
    operator
        .find(Locator::Css("#audit-action"))
        .await
        .expect("the action filter")
        .select_by_value("sign_in")
        .await
        .expect("sign_in is an option");
    wait_count(&operator, "#audit tbody tr", 2).await;
    wait_count(&operator, "#audit tbody tr[data-action='sign_in']", 2).await;
    operator
        .find(Locator::Css("#audit-actor"))
        .await
        .expect("the actor filter")
        .send_keys("vera")
        .await
        .unwrap();
    wait_count(&operator, "#audit tbody tr", 1).await;
    shown(&operator, &audit_row("sign_in", "vera")).await;
    click(&operator, "#audit-clear").await;
    shown(&operator, &audit_row("retry", "oscar")).await;

    // More records than a page: the oldest (the tokens' creation, by the
    // CLI) are one "Older" away.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for _ in 0..50 {
        let signed_in = no_redirects
            .post(format!("{web}/login"))
            .form(&[("token", operator_token.as_str())])
            .send()
            .await
            .expect("herald web answers");
        assert_eq!(signed_in.status(), reqwest::StatusCode::SEE_OTHER);
    }
    wait_count(&operator, "#audit tbody tr", 50).await;
    wait_count(&operator, "#audit tbody tr[data-action='sign_in']", 50).await;
    wait_count(&operator, "#audit tbody tr[data-action='token_create']", 0).await;
    click(&operator, "#audit-older:not([disabled])").await;
    wait_count(&operator, "#audit tbody tr[data-action='token_create']", 2).await;
    shown(&operator, &audit_row("retry", "oscar")).await;
    click(&operator, "#audit-newer:not([disabled])").await;
    wait_count(&operator, "#audit tbody tr[data-action='token_create']", 0).await;
    wait_count(&operator, "#audit tbody tr", 50).await;

    // Delivered once, and no more.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.delivered("new_message").await.len(), 1);
    for (client, name) in [(&viewer, "viewer"), (&operator, "operator")] {
        if let Ok(png) = client.screenshot().await {
            let _ = std::fs::write(
                std::env::temp_dir().join(format!("herald-dashboard-{name}.png")),
                png,
            );
        }
    }
    viewer.close().await.unwrap();
    operator.close().await.unwrap();
}
