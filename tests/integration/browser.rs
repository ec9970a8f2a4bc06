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
        "chromedriver (install Debian's chromium and chromium-driver: bash scripts/setup.sh --browser)",
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

    // Signing in.
    client.goto(&web).await.expect("dashboard");
    assert!(client
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/login"));
    client
        .find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(WEB_TOKEN)
        .await
        .unwrap();
    client
        .find(Locator::Css("#sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

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
    client
        .find(Locator::Css(&format!("{row_selector} button.retry")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

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
