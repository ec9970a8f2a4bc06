//! The inbox example (`examples/inbox`) end to end, with nothing stood in:
//! the real `herald worker` and `herald web` processes, a real
//! Pusher-protocol server this project did not write (Sockudo), and the
//! real pusher-js client in headless Chromium joining the account's
//! presence channel through `POST /v1/push/auth`.
//!
//! The page reads `/v1` only when it loads, when its subscription succeeds
//! and when an event tells it to: a message that appears, or a progress bar
//! that moves, got there through Sockudo's WebSocket.

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};

use crate::{
    browser::browser,
    helpers::{account, env_with, HeraldProcess, TestEnv},
    ops::free_port,
    sockudo_server::{SockudoServer, APP_KEY},
};

/// How long the page may take to show what the test waits for: a deadline
/// against hangs, not a speed requirement.
const PATIENCE: Duration = Duration::from_secs(40);

/// Older messages written straight into the collection, so that the export
/// has enough rows for several `export_progress` events.
const OLD_MESSAGES: usize = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_page_shows_a_new_message_live_and_an_export_with_progress_and_its_link() {
    let sockudo = SockudoServer::start().await;
    let web_port = free_port().to_string();
    let mut vars: Vec<(&str, String)> = sockudo.vars();
    vars.extend([
        ("HERALD_WEB_BIND", format!("127.0.0.1:{web_port}")),
        ("HERALD_WEB_EXAMPLES", "true".to_owned()),
        // Progress often and in small batches: several events per export.
        ("HERALD_EXPORT_PROGRESS_INTERVAL_MS", "20".to_owned()),
        ("HERALD_EXPORT_BATCH_SIZE", "200".to_owned()),
    ]);
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let env = env_with(&pairs).await;
    let logs = Logs::new(&env);
    let _worker = env.spawn_herald_logged(&["worker"], &[], &logs.worker);
    let _web: HeraldProcess = env.spawn_herald_logged(&["web"], &[], &logs.web);
    let web = format!("http://127.0.0.1:{web_port}");
    wait_for_port(&web_port).await;

    // The signed-in user's account, and a Herald token bound to it.
    let account = account();
    let user = ObjectId::new().to_hex();
    let token = run_ok(
        &env,
        &[
            "token",
            "create",
            "--name",
            "inbox",
            "--account",
            &account.to_hex(),
        ],
    );
    let (_driver, client) = browser().await;
    let page = format!(
        "{web}/examples/inbox/#account={}&user={user}&token={token}&key={APP_KEY}\
         &wsHost=127.0.0.1&wsPort={}",
        account.to_hex(),
        sockudo.port
    );
    client.goto(&page).await.expect("the inbox page");
    let check = Check {
        client: &client,
        sockudo: &sockudo,
        logs: &logs,
    };

    // pusher-js connects to Sockudo and joins the presence channel with
    // Herald's signature; the empty inbox shows 0.
    check
        .attr("#connection", "data-state", |s| s == "subscribed")
        .await;
    check
        .attr("#unread-count", "data-count", |c| c == "0")
        .await;

    // A message enqueued with the CLI appears live, and the bell counts it.
    let id = run_ok(
        &env,
        &[
            "enqueue",
            "message",
            "--account",
            &account.to_hex(),
            "--title",
            "Quota at 90%",
            "--content",
            "Upgrade before the end of the month",
            "--status",
            "warning",
        ],
    );
    let item = format!("#messages li[data-id='{id}']");
    check.attr(&item, "data-read", |r| r == "false").await;
    let text = check.text(&item).await;
    assert!(text.contains("Quota at 90%"), "{text}");
    check
        .attr("#unread-count", "data-count", |c| c == "1")
        .await;

    // Mark read: the item and the bell follow.
    check.click(&format!("{item} button.mark-read")).await;
    check.attr(&item, "data-read", |r| r == "true").await;
    check
        .attr("#unread-count", "data-count", |c| c == "0")
        .await;

    // An export of the account's messages: the bar moves with
    // export_progress, then export_finish shows the link.
    insert_old_messages(&env, account.object_id()).await;
    check.click("#export-start").await;
    check.shown("#export-download").await;
    let history = check.attr_value("#export-bar", "data-history").await;
    let shown: Vec<u32> = history.split(',').filter_map(|v| v.parse().ok()).collect();
    assert_eq!(shown.last(), Some(&100), "the bar ends full: {history}");
    assert!(
        shown.iter().any(|p| (1..100).contains(p)),
        "the bar showed no progress between 0 and 100 (values shown: {history})"
    );

    // The link downloads the file, through the page's own code (with the
    // token) and over HTTP.
    let key = check.attr_value("#export-download", "data-key").await;
    let csv = client
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             window.heraldInbox.download(arguments[0]).then(done, e => done('failed: ' + e));",
            vec![serde_json::Value::String(key.clone())],
        )
        .await
        .expect("the page's download runs");
    // (Blob.text() decodes UTF-8 and drops the byte order mark.)
    let csv = csv.as_str().unwrap_or_default();
    assert!(
        csv.starts_with("Created,Title,Status,Read\n"),
        "{:?}",
        &csv[..csv.len().min(200)]
    );
    assert_eq!(csv.lines().count(), OLD_MESSAGES + 2, "header, new, old");
    let href = check.property("#export-download", "href").await;
    let file = env
        .http
        .get(&href)
        .bearer_auth(&token)
        .send()
        .await
        .expect("herald web answers");
    assert!(file.status().is_success(), "{}", file.status());
    let bytes = file.bytes().await.expect("the file's bytes");
    assert!(
        bytes.starts_with("\u{feff}Created,".as_bytes()),
        "UTF-8 with a BOM"
    );

    // Two more arrive: counted, and listed newest first.
    let mut newest = String::new();
    for (title, status) in [("Import failed", "error"), ("Export ready", "success")] {
        newest = run_ok(
            &env,
            &[
                "enqueue",
                "message",
                "--account",
                &account.to_hex(),
                "--title",
                title,
                "--content",
                "customers.csv",
                "--status",
                status,
            ],
        );
        check
            .attr(
                &format!("#messages li[data-id='{newest}']"),
                "data-read",
                |r| r == "false",
            )
            .await;
    }
    check
        .attr("#unread-count", "data-count", |c| c == "2")
        .await;
    check
        .attr("#messages li:first-child", "data-id", |first| {
            first == newest
        })
        .await;

    // docs/inbox.png is this screen: HERALD_INBOX_SCREENSHOT=PATH writes it.
    if let Some(path) = std::env::var_os("HERALD_INBOX_SCREENSHOT") {
        let png = client.screenshot().await.expect("a screenshot");
        std::fs::write(path, png).expect("the screenshot is written");
    }
    client.close().await.expect("the browser closes");
}

/// Where the worker and `herald web` log (removed when the test ends).
struct Logs {
    worker: std::path::PathBuf,
    web: std::path::PathBuf,
}

impl Logs {
    fn new(env: &TestEnv) -> Self {
        let dir = std::env::temp_dir();
        Self {
            worker: dir.join(format!("{}-inbox-worker.log", env.namespace)),
            web: dir.join(format!("{}-inbox-web.log", env.namespace)),
        }
    }

    fn tail(path: &std::path::Path) -> String {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Logs {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.worker);
        let _ = std::fs::remove_file(&self.web);
    }
}

/// The page, polled until it shows what is expected; a timeout reports the
/// page's notice and every process's log.
struct Check<'a> {
    client: &'a Client,
    sockudo: &'a SockudoServer,
    logs: &'a Logs,
}

impl Check<'_> {
    /// Waits until the element `css` has `attribute` and `ok` accepts its
    /// value; returns the value.
    async fn attr(&self, css: &str, attribute: &str, ok: impl Fn(&str) -> bool) -> String {
        let what = format!("{css} [{attribute}]");
        self.until(&what, || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            let value = element.attr(attribute).await.ok().flatten()?;
            ok(&value).then_some(value)
        })
        .await
    }

    /// The value of `attribute` on `css`, once it has one.
    async fn attr_value(&self, css: &str, attribute: &str) -> String {
        self.attr(css, attribute, |_| true).await
    }

    /// The DOM property `name` of `css` (a link's resolved `href`).
    async fn property(&self, css: &str, name: &str) -> String {
        self.until(&format!("{css} .{name}"), || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            element.prop(name).await.ok().flatten()
        })
        .await
    }

    /// Waits until the element `css` exists without a `hidden` attribute.
    async fn shown(&self, css: &str) {
        self.until(&format!("{css} shown"), || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            match element.attr("hidden").await {
                Ok(None) => Some(()),
                _ => None,
            }
        })
        .await
    }

    /// Polls `check` every 100 ms until it gives a value, or fails after
    /// [`PATIENCE`] saying what never came.
    async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let start = Instant::now();
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if start.elapsed() > PATIENCE {
                self.fail(what).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => self.fail(css).await,
        }
    }

    async fn click(&self, css: &str) {
        let clicked = match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.click().await.is_ok(),
            Err(_) => false,
        };
        if !clicked {
            self.fail(&format!("a clickable {css}")).await;
        }
    }

    async fn fail(&self, what: &str) -> ! {
        let notice = match self.client.find(Locator::Css("#notice")).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let state = match self.client.find(Locator::Css("#connection")).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        panic!(
            "the page never showed {what} (connection {state:?}, notice {notice:?})\n\
             --- worker log ---\n{}\n--- web log ---\n{}\n--- sockudo log ---\n{}",
            Logs::tail(&self.logs.worker),
            Logs::tail(&self.logs.web),
            self.sockudo.log()
        )
    }
}

/// Runs `herald ARGS` and returns its standard output, trimmed.
fn run_ok(env: &TestEnv, args: &[&str]) -> String {
    let output = env.run_herald(args, &[]);
    assert!(
        output.status.success(),
        "herald {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

async fn wait_for_port(port: &str) {
    let port: u16 = port.parse().expect("a port number");
    crate::helpers::wait_for_listener("herald web", port, crate::helpers::PATIENCE).await;
}

/// Writes [`OLD_MESSAGES`] read messages of `account`, a day old, straight
/// into the `message` collection, as the worker would have stored them.
async fn insert_old_messages(env: &TestEnv, account: ObjectId) {
    let day_ago = DateTime::from_millis(DateTime::now().timestamp_millis() - 86_400_000);
    let documents: Vec<Document> = (0..OLD_MESSAGES)
        .map(|i| {
            doc! {
                "_id": ObjectId::new(),
                "accountId": account,
                "title": format!("Weekly report {i}"),
                "content": "Numbers of the week",
                "sender": { "id": "system", "from": "system" },
                "to": { "id": account, "target": "account" },
                "status": "success",
                "isRead": true,
                "createdAt": day_ago,
                "readAt": day_ago,
            }
        })
        .collect();
    for chunk in documents.chunks(5_000) {
        env.messages()
            .insert_many(chunk.to_vec())
            .await
            .expect("old messages written");
    }
}
