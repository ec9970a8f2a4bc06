//! The dashboard in a real headless browser: Debian's Chromium driven over
//! WebDriver by chromedriver. The README's test command installs both.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use herald_jobs::{QueueName, SendMessage};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::{
    helpers::{account, env_with, wait_for, ScratchProcess, SECRET, WEB_TOKEN},
    ops::free_port,
};

/// A chromedriver process and the browser profile it uses.
pub type ChromeDriver = ScratchProcess;

/// A chromedriver on a free port and a headless Chromium session through it
/// (also used by the inbox example's test).
pub async fn browser() -> (ChromeDriver, Client) {
    let port = free_port();
    let profile = std::env::temp_dir().join(format!("herald-chromium-{port}"));
    let driver = ScratchProcess::spawn(
        Command::new("chromedriver").arg(format!("--port={port}")),
        profile.clone(),
        "chromedriver (install Debian's chromium and chromium-driver: bash scripts/setup.sh --tests)",
    );
    crate::helpers::wait_for_listener("chromedriver", port, Duration::from_secs(20)).await;
    let options = serde_json::json!({
        "binary": "/usr/bin/chromium",
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--window-size=1280,900",
            format!("--user-data-dir={}", profile.display()),
        ],
    });
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session");
    (driver, client)
}

/// Opens the dashboard, is sent to the login page, and signs in with
/// `token`.
pub(crate) async fn sign_in(client: &Client, web: &str, token: &str) {
    client.goto(web).await.expect("dashboard");
    let url = client.current_url().await.expect("a URL");
    assert!(url.path().ends_with("/login"), "not sent to sign in: {url}");
    let label = client
        .find(Locator::Css("label[for='token']"))
        .await
        .expect("the token's label")
        .text()
        .await
        .expect("the label's text");
    assert!(label.contains("Operator token"), "{label:?}");
    client
        .find(Locator::Css("#token"))
        .await
        .expect("the token field")
        .send_keys(token)
        .await
        .expect("the token typed");
    client
        .find(Locator::Css("#sign-in"))
        .await
        .expect("the sign-in button")
        .click()
        .await
        .expect("the sign-in button clicked");
}

/// Clicks the element `css` finds, waiting for it up to 20 s. The page
/// redraws its tables every two seconds, so an element found just before
/// a redraw is stale by the click: it is found again and clicked again.
pub(crate) async fn click(client: &Client, css: &str) {
    let start = Instant::now();
    loop {
        let error = match client.find(Locator::Css(css)).await {
            Ok(element) => match element.click().await {
                Ok(()) => return,
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{css} cannot be clicked: {error}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the text of `css` satisfies `check`; returns it.
async fn wait_for_text(client: &Client, css: &str, check: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        if let Ok(element) = client.find(Locator::Css(css)).await {
            if let Ok(text) = element.text().await {
                if check(&text) {
                    return text;
                }
                if start.elapsed() > Duration::from_secs(20) {
                    panic!("{css} still reads {text:?}");
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{css} never appeared"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many elements `css` finds.
async fn count(client: &Client, css: &str) -> usize {
    client
        .find_all(Locator::Css(css))
        .await
        .map_or(0, |found| found.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_sees_the_failed_push_and_retries_it() {
    // A push that failed for good: the worker had the wrong secret.
    let mut env = env_with(&[("HERALD_TUISONGBAO_SECRET", "wrong")]).await;
    env.start_worker().await;
    env.enqueue(SendMessage::new(account(), "from the browser", "test"))
        .await;
    let dead = wait_for("the failed push", || async {
        env.queue_set(QueueName::Push, "dead").await.pop()
    })
    .await;
    let web = env.start_web().await;
    let (_driver, client) = browser().await;

    sign_in(&client, &web, WEB_TOKEN).await;

    // The failed push is listed, with its event and error.
    let row_selector = format!("#failed tbody tr[data-id='{dead}']");
    let row = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(&row_selector))
        .await
        .expect("the failed push appears on the dashboard");
    let text = row.text().await.unwrap();
    assert!(
        text.contains("new_message") && text.contains("401"),
        "{text}"
    );

    // The operator fixes the credentials, then clicks Retry.
    env.stop_worker().await.expect("worker stops");
    let mut settings = env.settings.clone();
    settings.tuisongbao.secret = secrecy::SecretString::from(SECRET.to_owned());
    env.start_worker_with(settings).await;
    click(&client, &format!("{row_selector} button.retry")).await;

    // The row leaves the list without a reload, and the event arrives.
    let start = Instant::now();
    loop {
        let rows = client.find_all(Locator::Css(&row_selector)).await.unwrap();
        if rows.is_empty() {
            break;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let message = client
                .find(Locator::Css("#message"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let status = client
                .find(Locator::Css("#status"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            panic!("the retried push stayed listed; page says {message:?} / {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for("the retried event at the sandbox", || async {
        (env.delivered("new_message").await.len() == 1).then_some(())
    })
    .await;
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(std::env::temp_dir().join("herald-dashboard.png"), png);
    }
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pauses_and_resumes_filters_failures_and_retries_a_group() {
    // Three pushes that failed for good (the wrong secret), each of its
    // own account.
    let mut env = env_with(&[("HERALD_TUISONGBAO_SECRET", "wrong")]).await;
    env.start_worker().await;
    let accounts: Vec<_> = (0..3).map(|_| account()).collect();
    for (i, account) in accounts.iter().enumerate() {
        env.enqueue(SendMessage::new(*account, format!("group {i}"), "test"))
            .await;
    }
    wait_for("three failed pushes", || async {
        (env.queue_set(QueueName::Push, "dead").await.len() == 3).then_some(())
    })
    .await;
    let web = env.start_web().await;
    let (_driver, client) = browser().await;
    sign_in(&client, &web, WEB_TOKEN).await;

    // Pause the push queue, see it paused (and Redis agree), resume it.
    let push_row = "#queues tbody tr[data-queue='push']";
    click(&client, &format!("{push_row} button.toggle-pause")).await;
    wait_for_text(&client, &format!("{push_row} td.paused"), |t| {
        t.contains("paused")
    })
    .await;
    let paused_key = format!(
        "{}:paused",
        env.settings.redis.namespace.queue(QueueName::Push)
    );
    let mut conn = herald::queue::connect(env.settings.redis.url.as_str())
        .await
        .unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg(&paused_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(exists, "the pause is kept in Redis");
    click(&client, &format!("{push_row} button.toggle-pause")).await;
    wait_for_text(&client, push_row, |t| t.contains("running")).await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(&paused_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists, "resumed");

    // The charts are drawn (one bar pair per minute of the last hour).
    assert!(count(&client, "#chart-throughput rect").await >= 60);

    // Filter the failures by one account, through the look-up box.
    wait_for_text(&client, "#failed-total", |t| t == "(3)").await;
    let one = accounts[1].to_hex();
    client
        .find(Locator::Css("#lookup-text"))
        .await
        .unwrap()
        .send_keys(&one)
        .await
        .unwrap();
    click(&client, "#lookup-go").await;
    wait_for_text(&client, "#failed-total", |t| t == "(1)").await;
    let row = wait_for_text(&client, "#failed tbody tr", |t| t.contains(&one)).await;
    assert!(row.contains("401"), "{row}");
    click(&client, "#filter-clear").await;
    wait_for_text(&client, "#failed-total", |t| t == "(3)").await;

    // One error group holds the three; the operator fixes the secret and
    // retries the group.
    wait_for_text(&client, "#groups tbody", |t| t.contains("HTTP 401")).await;
    assert_eq!(count(&client, "#groups tbody tr").await, 1);
    env.stop_worker().await.expect("worker stops");
    let mut settings = env.settings.clone();
    settings.tuisongbao.secret = secrecy::SecretString::from(SECRET.to_owned());
    env.start_worker_with(settings).await;
    click(&client, "#groups tbody tr button.retry-group").await;
    client.accept_alert().await.expect("the confirmation");
    wait_for("the group's three pushes delivered", || async {
        (env.delivered("new_message").await.len() == 3).then_some(())
    })
    .await;
    wait_for_text(&client, "#failed-total", |t| t == "(0)").await;
    wait_for_text(&client, "#operations", |t| t.contains("3 of 3")).await;
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(
            std::env::temp_dir().join("herald-dashboard-groups.png"),
            png,
        );
    }
    client.close().await.unwrap();
}
