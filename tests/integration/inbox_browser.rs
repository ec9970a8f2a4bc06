//! The inbox example (`examples/inbox`) end to end, with nothing stood in:
//! the real `herald worker` and `herald web` processes, a real
//! Pusher-protocol server this project did not write (Sockudo), and the
//! real pusher-js client in headless Chromium joining the account's
//! presence channel and the user's private channel through
//! `POST /v1/push/auth`.
//!
//! The page reads `/v1` only when it loads, when its subscriptions succeed
//! and when an event tells it to: a message that appears, a bell that
//! changes, or a progress bar that moves, got there through Sockudo's
//! WebSocket.

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use fantoccini::{Client, Locator};
use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    browser::browser,
    helpers::{account, call_json, env_with, HeraldProcess, TestEnv},
    ops::free_port,
    sockudo_server::{SockudoServer, APP_KEY},
};

/// How long the page may take to show what the test waits for: a deadline
/// against hangs, not a speed requirement.
const PATIENCE: Duration = Duration::from_secs(40);

/// How long a page is watched for a change that must not come.
const QUIET: Duration = Duration::from_secs(2);

/// How far ahead the scheduled message is sent: time enough to watch the
/// page not show it.
const SCHEDULE_LEAD: chrono::Duration = chrono::Duration::seconds(8);

/// Older messages written straight into the collection, so that the export
/// has enough rows for several `export_progress` events.
const OLD_MESSAGES: usize = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_page_shows_a_new_message_live_and_an_export_with_progress_and_its_link() {
    let stack = Stack::start(&[
        // Progress often and in small batches: several events per export.
        ("HERALD_EXPORT_PROGRESS_INTERVAL_MS", "20"),
        ("HERALD_EXPORT_BATCH_SIZE", "200"),
    ])
    .await;
    let env = &stack.env;

    // The signed-in user's account, and a Herald token bound to the account
    // (the page stands in for the app's server: the export needs it).
    let account = account();
    let user = ObjectId::new().to_hex();
    let token = run_ok(
        env,
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
    client
        .goto(&stack.page(&account.to_hex(), &user, &token))
        .await
        .expect("the inbox page");
    let check = stack.check(&client);

    // pusher-js connects to Sockudo and joins the account's presence channel
    // and the user's own, with Herald's signatures; the empty inbox shows 0.
    check
        .attr("#connection", "data-state", |s| s == "subscribed")
        .await;
    check
        .attr("#unread-count", "data-count", |c| c == "0")
        .await;

    // A message enqueued with the CLI appears live, and the bell counts it.
    let id = run_ok(
        env,
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
    let user_id = ObjectId::parse_str(&user).expect("a 24-hex user id");
    insert_old_messages(env, account.object_id(), user_id).await;
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
            env,
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

/// A message to one user reaches only that user's pages, and a user's mark
/// reaches their other pages through `message_read`: two pages of user U
/// (two browsers, as two devices) and one of U's colleague V, each with a
/// token bound to its user, as a browser should hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_users_pages_stay_in_sync_and_a_colleagues_badge_does_not_move() {
    let stack = Stack::start(&[]).await;
    let env = &stack.env;
    let account = account().to_hex();
    let account_channel = format!("presence-message-wm-global{account}");
    let (u, v) = (ObjectId::new().to_hex(), ObjectId::new().to_hex());
    let user_channel = format!("private-message-wm-user-{account}-{u}");
    let token_for = |user: &str| {
        run_ok(
            env,
            &[
                "token",
                "create",
                "--name",
                &format!("inbox-{user}"),
                "--account",
                &account,
                "--user",
                user,
            ],
        )
    };
    let (token_u, token_v) = (token_for(&u), token_for(&v));

    // Three browsers: U's two pages, and V's.
    let (_driver_u1, u1) = browser().await;
    let (_driver_u2, u2) = browser().await;
    let (_driver_v, v1) = browser().await;
    for (client, user, token) in [
        (&u1, &u, &token_u),
        (&u2, &u, &token_u),
        (&v1, &v, &token_v),
    ] {
        client
            .goto(&stack.page(&account, user, token))
            .await
            .expect("the inbox page");
    }
    let (first, second, colleague) = (stack.check(&u1), stack.check(&u2), stack.check(&v1));
    let pages = [&first, &second, &colleague];
    for page in pages {
        page.attr("#connection", "data-state", |s| s == "subscribed")
            .await;
        page.attr("#unread-count", "data-count", |c| c == "0").await;
    }

    // (a) A message to the whole account: on every page, unread for each.
    let everyone = run_ok(
        env,
        &[
            "enqueue",
            "message",
            "--account",
            &account,
            "--title",
            "Maintenance tonight",
            "--content",
            "22:00 to 23:00",
        ],
    );
    let everyone_item = format!("#messages li[data-id='{everyone}']");
    for page in pages {
        page.attr(&everyone_item, "data-read", |r| r == "false")
            .await;
        page.attr("#unread-count", "data-count", |c| c == "1").await;
    }

    // (b) A message to U: on U's two pages, in full over U's channel.
    const PRIVATE: &str = "Contract renewal for Ursula: 3 seats to review";
    let private = run_ok(
        env,
        &[
            "enqueue",
            "message",
            "--account",
            &account,
            "--title",
            PRIVATE,
            "--content",
            "Renew before Friday",
            "--status",
            "warning",
            "--to-user",
            &u,
        ],
    );
    let private_item = format!("#messages li[data-id='{private}']");
    for page in [&first, &second] {
        page.attr(&private_item, "data-read", |r| r == "false")
            .await;
        let text = page.text(&private_item).await;
        assert!(text.contains(PRIVATE), "{text}");
        page.attr("#unread-count", "data-count", |c| c == "2").await;
    }
    let full = second
        .heard("U's channel's new_message", |e| {
            e["channel"] == user_channel.as_str()
                && e["event"] == "new_message"
                && e["data"]["messageId"] == private.as_str()
        })
        .await;
    assert_eq!(full["data"]["title"], PRIVATE, "{full}");

    // V's page hears of it only as a notice on the account's channel,
    // without title or content; the inbox it then reads leaves it out.
    let notice = colleague
        .heard("the notice on the account's channel", |e| {
            e["event"] == "new_message" && e["data"]["messageId"] == private.as_str()
        })
        .await;
    assert_eq!(notice["channel"], account_channel.as_str(), "{notice}");
    let fields = notice["data"].as_object().expect("the notice's data");
    assert!(
        !fields.contains_key("title") && !fields.contains_key("content"),
        "{notice}"
    );
    colleague
        .keeps("V's list without U's message, V's bell at 1", || async {
            let listed = v1.find(Locator::Css(&private_item)).await.is_ok();
            let count = colleague.attr_value("#unread-count", "data-count").await;
            !listed && count == "1"
        })
        .await;
    let source = v1.source().await.expect("V's page source");
    assert!(!source.contains(PRIVATE), "V's page shows U's message");
    let heard = colleague.all_heard().await.to_string();
    assert!(
        !heard.contains(PRIVATE),
        "V's page heard U's title: {heard}"
    );
    assert!(
        !heard.contains(&user_channel),
        "V's page heard U's channel: {heard}"
    );

    // (c) U marks all read on the first page: the second page follows from
    // `message_read` alone, without a reload; V's read state is V's own.
    first.click("#mark-all-read").await;
    second
        .attr("#unread-count", "data-count", |c| c == "0")
        .await;
    let read = second
        .heard("message_read on U's channel", |e| {
            e["event"] == "message_read"
        })
        .await;
    assert_eq!(read["channel"], user_channel.as_str(), "{read}");
    assert_eq!(read["data"]["unread"], 0, "{read}");
    for page in [&first, &second] {
        page.attr("#unread-count", "data-count", |c| c == "0").await;
        page.attr(&everyone_item, "data-read", |r| r == "true")
            .await;
        page.attr(&private_item, "data-read", |r| r == "true").await;
    }
    colleague
        .keeps("V's bell at 1, V's message unread", || async {
            let count = colleague.attr_value("#unread-count", "data-count").await;
            let item = colleague.attr_value(&everyone_item, "data-read").await;
            count == "1" && item == "false"
        })
        .await;
    let heard = colleague.all_heard().await;
    assert!(
        !heard.to_string().contains("message_read"),
        "V's page heard U's mark: {heard}"
    );
    // Herald agrees: the message is still unread for V.
    let unread: serde_json::Value = env
        .http
        .get(format!(
            "{}/v1/accounts/{account}/users/{v}/messages/unread-count",
            stack.web
        ))
        .bearer_auth(&token_v)
        .send()
        .await
        .expect("herald web answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(unread, serde_json::json!({ "unread": 1 }));

    // A token bound to a user starts no export: the page says where exports
    // go, and keeps the button off.
    colleague.click("#export-start").await;
    colleague
        .text_with("#export-status", |t| t.contains("app's server"))
        .await;
    colleague
        .attr("#export-start", "disabled", |d| d == "true")
        .await;

    for client in [u1, u2, v1] {
        client.close().await.expect("the browser closes");
    }
}

/// Categories as tabs: one per category the user's inbox has, each with its
/// unread count from `unread-counts`, that filters the list with
/// `?category=`; and a message's `actionUrl` as a link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_page_has_a_tab_per_category_with_its_unread_count_and_links_actions() {
    let stack = Stack::start(&[]).await;
    let account = account().to_hex();
    let user = ObjectId::new().to_hex();
    // The app's server sends with its token; the page holds the user's.
    let app = stack.token(&account, None);
    let token = stack.token(&account, Some(&user));
    let (_driver, client) = browser().await;
    client
        .goto(&stack.page(&account, &user, &token))
        .await
        .expect("the inbox page");
    let check = stack.check(&client);
    check
        .attr("#connection", "data-state", |s| s == "subscribed")
        .await;
    check
        .attr("#tabs [data-category='']", "data-count", |c| c == "0")
        .await;

    // Two billing messages (one to the user alone), one export message and
    // one without a category; two of them lead somewhere.
    const INVOICE_URL: &str = "https://billing.example.com/invoices/1042?from=inbox";
    let invoice = stack
        .send(
            &app,
            json!({"title": "Invoice 1042 is due", "content": "Pay by Friday",
                   "category": "billing", "actionUrl": INVOICE_URL, "status": "warning"}),
        )
        .await;
    let seats = stack
        .send(
            &app,
            json!({"title": "3 seats renewed", "content": "Until next year", "category": "billing",
                   "to": {"id": user, "target": "user"}}),
        )
        .await;
    let export = stack
        .send(
            &app,
            json!({"title": "Export ready", "content": "customers.csv", "category": "export",
                   "actionUrl": "/exports/customers"}),
        )
        .await;
    let welcome = stack
        .send(
            &app,
            json!({"title": "Welcome", "content": "Glad to have you"}),
        )
        .await;
    let everything = [&invoice, &seats, &export, &welcome];
    check
        .listed("the four messages", |ids| same(ids, &everything))
        .await;
    for (category, count) in [("", "4"), ("billing", "2"), ("export", "1")] {
        check
            .attr(
                &format!("#tabs [data-category='{category}']"),
                "data-count",
                |c| c == count,
            )
            .await;
    }
    let tab = check.text("#tabs [data-category='billing']").await;
    assert!(tab.contains("billing") && tab.contains('2'), "{tab:?}");
    check
        .attr("#tabs [data-category='']", "aria-pressed", |p| p == "true")
        .await;

    // The links: as the producer gave them (a path resolves on the page's
    // own site); a message without one has none.
    let link = |id: &str| format!("{} a.action", item(id));
    let href = check.property(&link(&invoice), "href").await;
    assert_eq!(href, INVOICE_URL);
    let href = check.property(&link(&export), "href").await;
    assert_eq!(href, format!("{}/exports/customers", stack.web));
    assert!(
        client.find(Locator::Css(&link(&welcome))).await.is_err(),
        "a link on a message without actionUrl"
    );

    // A tab filters the list; another changes the filter.
    check.click("#tabs [data-category='billing']").await;
    check
        .attr("#messages", "data-category", |c| c == "billing")
        .await;
    check
        .listed("billing's two", |ids| same(ids, &[&invoice, &seats]))
        .await;
    check
        .attr("#tabs [data-category='billing']", "aria-pressed", |p| {
            p == "true"
        })
        .await;
    check.click("#tabs [data-category='export']").await;
    check
        .attr("#messages", "data-category", |c| c == "export")
        .await;
    check
        .listed("export's one", |ids| same(ids, &[&export]))
        .await;

    // Reading it sets its tab to 0 (kept) and All to 3.
    check
        .click(&format!("{} button.mark-read", item(&export)))
        .await;
    check
        .attr("#tabs [data-category='export']", "data-count", |c| c == "0")
        .await;
    check
        .attr("#tabs [data-category='']", "data-count", |c| c == "3")
        .await;
    check
        .attr("#unread-count", "data-count", |c| c == "3")
        .await;

    // A message of a new category arrives while a tab is on: its tab
    // appears counting it, and the list stays filtered.
    let login = stack
        .send(
            &app,
            json!({"title": "Sign-in from a new device", "content": "Chromium on Linux",
                   "category": "security", "status": "error"}),
        )
        .await;
    check
        .attr("#tabs [data-category='security']", "data-count", |c| {
            c == "1"
        })
        .await;
    check
        .attr("#tabs [data-category='']", "data-count", |c| c == "4")
        .await;
    check
        .keeps("the export tab's list", || async {
            let ids = check.ids().await;
            ids.as_deref().is_some_and(|ids| same(ids, &[&export]))
        })
        .await;

    // All lists everything again.
    check.click("#tabs [data-category='']").await;
    check
        .attr("#messages", "data-category", |c| c.is_empty())
        .await;
    check
        .listed("all five", |ids| {
            same(ids, &[&invoice, &seats, &export, &welcome, &login])
        })
        .await;
    client.close().await.expect("the browser closes");
}

/// Archive, unarchive, mark unread and delete, for the user alone, on one
/// page; the user's other page follows through `inbox_changed`, without a
/// reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_unarchive_mark_unread_and_delete_reach_the_users_other_page() {
    let stack = Stack::start(&[]).await;
    let env = &stack.env;
    let account = account().to_hex();
    let user = ObjectId::new().to_hex();
    let user_channel = format!("private-message-wm-user-{account}-{user}");
    let token = stack.token(&account, Some(&user));
    let (_driver_1, client_1) = browser().await;
    let (_driver_2, client_2) = browser().await;
    for client in [&client_1, &client_2] {
        client
            .goto(&stack.page(&account, &user, &token))
            .await
            .expect("the inbox page");
    }
    let (first, second) = (stack.check(&client_1), stack.check(&client_2));
    let pages = [&first, &second];
    for page in pages {
        page.attr("#connection", "data-state", |s| s == "subscribed")
            .await;
    }

    let mut sent = Vec::new();
    for title in ["Quota at 90%", "Import failed", "Export ready"] {
        sent.push(run_ok(
            env,
            &[
                "enqueue",
                "message",
                "--account",
                &account,
                "--title",
                title,
                "--content",
                "customers.csv",
            ],
        ));
    }
    let [quota, import, export] = [&sent[0], &sent[1], &sent[2]];
    for page in pages {
        page.listed("the three", |ids| same(ids, &[quota, import, export]))
            .await;
        page.attr("#unread-count", "data-count", |c| c == "3").await;
    }
    let changed = |action: &'static str| {
        move |e: &Value| e["event"] == "inbox_changed" && e["data"]["action"] == action
    };

    // (a) Archive on the first page: out of both pages' inbox, and read.
    first
        .click(&format!("{} button.archive", item(quota)))
        .await;
    for page in pages {
        page.listed("the inbox without the archived one", |ids| {
            same(ids, &[import, export])
        })
        .await;
        page.attr("#unread-count", "data-count", |c| c == "2").await;
    }
    let event = second
        .heard("inbox_changed (archive)", changed("archive"))
        .await;
    assert_eq!(event["channel"], user_channel.as_str(), "{event}");
    assert_eq!(event["data"]["ids"], json!([quota]), "{event}");
    assert_eq!(event["data"]["unread"], 2, "{event}");

    // (b) The Archived view lists it, read; Unarchive takes it back to the
    // inbox, still read.
    first.click("#views [data-view='archived']").await;
    first
        .attr("#messages", "data-view", |v| v == "archived")
        .await;
    first
        .listed("the archived one", |ids| same(ids, &[quota]))
        .await;
    first
        .attr(&item(quota), "data-archived", |a| a == "true")
        .await;
    first.attr(&item(quota), "data-read", |r| r == "true").await;
    first
        .click(&format!("{} button.unarchive", item(quota)))
        .await;
    first.listed("nothing archived", <[String]>::is_empty).await;
    first.shown("#empty").await;
    second
        .listed("the three again", |ids| same(ids, &[quota, import, export]))
        .await;
    second
        .heard("inbox_changed (unarchive)", changed("unarchive"))
        .await;
    first.click("#views [data-view='inbox']").await;
    first.attr("#messages", "data-view", |v| v == "inbox").await;
    first
        .listed("the three again", |ids| same(ids, &[quota, import, export]))
        .await;
    first
        .attr(&item(quota), "data-archived", |a| a == "false")
        .await;
    first.attr(&item(quota), "data-read", |r| r == "true").await;
    first
        .attr("#unread-count", "data-count", |c| c == "2")
        .await;

    // (c) Mark unread: the count rises on both pages.
    first
        .click(&format!("{} button.mark-unread", item(quota)))
        .await;
    for page in pages {
        page.attr(&item(quota), "data-read", |r| r == "false").await;
        page.attr("#unread-count", "data-count", |c| c == "3").await;
        page.attr("#tabs [data-category='']", "data-count", |c| c == "3")
            .await;
    }
    let event = second
        .heard("inbox_changed (unread)", changed("unread"))
        .await;
    assert_eq!(event["data"]["unread"], 3, "{event}");

    // (d) On the second page, an archived message marked unread goes back
    // to the inbox, unread.
    second
        .click(&format!("{} button.archive", item(export)))
        .await;
    first
        .listed("the inbox without export", |ids| {
            same(ids, &[quota, import])
        })
        .await;
    second.click("#views [data-view='archived']").await;
    second
        .listed("the archived export", |ids| same(ids, &[export]))
        .await;
    second
        .click(&format!("{} button.mark-unread", item(export)))
        .await;
    second
        .listed("nothing archived", <[String]>::is_empty)
        .await;
    first
        .listed("the three again", |ids| same(ids, &[quota, import, export]))
        .await;
    first
        .attr(&item(export), "data-read", |r| r == "false")
        .await;
    first
        .attr(&item(export), "data-archived", |a| a == "false")
        .await;
    for page in pages {
        page.attr("#unread-count", "data-count", |c| c == "3").await;
    }
    second.click("#views [data-view='inbox']").await;

    // (e) Delete: gone from both pages and uncounted, and still gone after
    // a reload.
    first
        .click(&format!("{} button.delete", item(import)))
        .await;
    for page in pages {
        page.listed("the inbox without the deleted one", |ids| {
            same(ids, &[quota, export])
        })
        .await;
        page.attr("#unread-count", "data-count", |c| c == "2").await;
    }
    let event = second
        .heard("inbox_changed (delete)", changed("delete"))
        .await;
    assert_eq!(event["data"]["ids"], json!([import]), "{event}");
    client_1.refresh().await.expect("the page reloads");
    first
        .attr("#connection", "data-state", |s| s == "subscribed")
        .await;
    first
        .listed("the two left", |ids| same(ids, &[quota, export]))
        .await;
    first
        .attr("#unread-count", "data-count", |c| c == "2")
        .await;
    first.click("#views [data-view='archived']").await;
    first
        .attr("#messages", "data-view", |v| v == "archived")
        .await;
    first.listed("nothing archived", <[String]>::is_empty).await;

    for client in [client_1, client_2] {
        client.close().await.expect("the browser closes");
    }
}

/// A message enqueued with `--send-at` shows on the page live when its time
/// comes, through `new_message`, and not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_message_appears_live_at_its_time_and_not_before() {
    let stack = Stack::start(&[]).await;
    let account = account().to_hex();
    let user = ObjectId::new().to_hex();
    let token = stack.token(&account, Some(&user));
    let (_driver, client) = browser().await;
    client
        .goto(&stack.page(&account, &user, &token))
        .await
        .expect("the inbox page");
    let check = stack.check(&client);
    check
        .attr("#connection", "data-state", |s| s == "subscribed")
        .await;
    check
        .attr("#unread-count", "data-count", |c| c == "0")
        .await;

    let at = Utc::now() + SCHEDULE_LEAD;
    let id = run_ok(
        &stack.env,
        &[
            "enqueue",
            "message",
            "--account",
            &account,
            "--title",
            "Stand-up in 5 minutes",
            "--content",
            "Room 3",
            "--send-at",
            &at.to_rfc3339_opts(SecondsFormat::Millis, true),
        ],
    );
    let scheduled = item(&id);

    // Until a second before its time, it is neither listed nor counted.
    let mut looks = 0;
    while Utc::now() < at - chrono::Duration::seconds(1) {
        let listed = client.find(Locator::Css(&scheduled)).await.is_ok();
        let count = check.attr_value("#unread-count", "data-count").await;
        if listed || count != "0" {
            check
                .report(&format!(
                    "the message due at {at} shown at {} (count {count})",
                    Utc::now()
                ))
                .await;
        }
        looks += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(looks > 0, "enqueueing took until the message's time");

    // Then it arrives live, counted on the bell and the All tab.
    check.attr(&scheduled, "data-read", |r| r == "false").await;
    let text = check.text(&scheduled).await;
    assert!(text.contains("Stand-up in 5 minutes"), "{text}");
    check
        .attr("#unread-count", "data-count", |c| c == "1")
        .await;
    check
        .attr("#tabs [data-category='']", "data-count", |c| c == "1")
        .await;
    check
        .heard("its new_message", |e| {
            e["event"] == "new_message" && e["data"]["messageId"] == id.as_str()
        })
        .await;
    client.close().await.expect("the browser closes");
}

/// Sockudo, and `herald worker` and `herald web` pushing to it, with the
/// example page served. (Fields drop in order: the processes first.)
struct Stack {
    _worker: HeraldProcess,
    _web: HeraldProcess,
    logs: Logs,
    env: TestEnv,
    sockudo: SockudoServer,
    /// `herald web`'s base URL.
    web: String,
}

impl Stack {
    /// Starts them, with `extra` settings for both processes.
    async fn start(extra: &[(&'static str, &str)]) -> Self {
        let sockudo = SockudoServer::start().await;
        let web_port = free_port().to_string();
        let mut vars: Vec<(&str, String)> = sockudo.vars();
        vars.extend([
            ("HERALD_WEB_BIND", format!("127.0.0.1:{web_port}")),
            ("HERALD_WEB_EXAMPLES", "true".to_owned()),
        ]);
        vars.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let env = env_with(&pairs).await;
        let logs = Logs::new(&env);
        let worker = env.spawn_herald_logged(&["worker"], &[], &logs.worker);
        let web = env.spawn_herald_logged(&["web"], &[], &logs.web);
        wait_for_port(&web_port).await;
        Self {
            _worker: worker,
            _web: web,
            logs,
            env,
            sockudo,
            web: format!("http://127.0.0.1:{web_port}"),
        }
    }

    /// The inbox page of `user` of `account`, with `token`.
    fn page(&self, account: &str, user: &str, token: &str) -> String {
        format!(
            "{}/examples/inbox/#account={account}&user={user}&token={token}&key={APP_KEY}\
             &wsHost=127.0.0.1&wsPort={}",
            self.web, self.sockudo.port
        )
    }

    /// A token bound to `account`, or to its `user`, as printed by
    /// `herald token create`.
    fn token(&self, account: &str, user: Option<&str>) -> String {
        let mut args = vec!["token", "create", "--name", "inbox", "--account", account];
        if let Some(user) = user {
            args.extend(["--user", user]);
        }
        run_ok(&self.env, &args)
    }

    /// Sends `message` of the account with the app's `token` over
    /// `POST /v1/messages`; returns its id.
    async fn send(&self, token: &str, message: Value) -> String {
        let url = format!("{}/v1/messages", self.web);
        let (status, answer) = call_json(
            &self.env.http,
            Method::POST,
            &url,
            Some(token),
            Some(message),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        answer["messageId"]
            .as_str()
            .expect("the message id")
            .to_owned()
    }

    fn check<'a>(&'a self, client: &'a Client) -> Check<'a> {
        Check {
            client,
            sockudo: &self.sockudo,
            logs: &self.logs,
        }
    }
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

    /// Waits until the text of `css` satisfies `ok`; returns it.
    async fn text_with(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        self.until(&format!("{css} text"), || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            let text = element.text().await.ok()?;
            ok(&text).then_some(text)
        })
        .await
    }

    /// The ids the list shows, in order (None while the page cannot say).
    async fn ids(&self) -> Option<Vec<String>> {
        let ids = self
            .client
            .execute(
                "return [...document.querySelectorAll('#messages li[data-id]')]\
                 .map(li => li.dataset.id);",
                vec![],
            )
            .await
            .ok()?;
        serde_json::from_value(ids).ok()
    }

    /// Waits until the list shows ids `ok` accepts; returns them.
    async fn listed(&self, what: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
        self.until(&format!("the list with {what}"), || async {
            let ids = self.ids().await?;
            ok(&ids).then_some(ids)
        })
        .await
    }

    /// Every event the page heard (`window.heraldInbox.heard`: channel,
    /// event, data), oldest first.
    async fn all_heard(&self) -> serde_json::Value {
        self.client
            .execute("return window.heraldInbox.heard;", vec![])
            .await
            .expect("the page's events")
    }

    /// Waits until the page has heard an event `ok` accepts; returns it.
    async fn heard(
        &self,
        what: &str,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.until(what, || async {
            let heard = self.all_heard().await;
            heard.as_array()?.iter().find(|e| ok(e)).cloned()
        })
        .await
    }

    /// Checks for [`QUIET`] that `holds` stays true: what must not change,
    /// watched for a while (nothing shows when it will not change).
    async fn keeps<F, Fut>(&self, what: &str, mut holds: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        while start.elapsed() < QUIET {
            if !holds().await {
                self.report(&format!("the page stopped showing {what}"))
                    .await;
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
        self.report(&format!("the page never showed {what}")).await
    }

    /// Panics with `problem`, the page's state and every process's log.
    async fn report(&self, problem: &str) -> ! {
        let notice = match self.client.find(Locator::Css("#notice")).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let state = match self.client.find(Locator::Css("#connection")).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        panic!(
            "{problem} (connection {state:?}, notice {notice:?})\n\
             --- worker log ---\n{}\n--- web log ---\n{}\n--- sockudo log ---\n{}",
            Logs::tail(&self.logs.worker),
            Logs::tail(&self.logs.web),
            self.sockudo.log()
        )
    }
}

/// The list item of message `id`.
fn item(id: &str) -> String {
    format!("#messages li[data-id='{id}']")
}

/// Whether `ids` are `expected`, in any order (messages stored within one
/// millisecond list in any order).
fn same(ids: &[String], expected: &[&String]) -> bool {
    let mut ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut expected: Vec<&str> = expected.iter().map(|id| id.as_str()).collect();
    ids.sort_unstable();
    expected.sort_unstable();
    ids == expected
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

/// Writes [`OLD_MESSAGES`] messages of `account` to `user`, a day old and
/// read by them, straight into the `message` collection, as the worker would
/// have stored them. (A message to one user keeps that user's read state in
/// its own document; one to the whole account would be unread for `user`
/// whatever its `isRead` says, read state being per user.)
async fn insert_old_messages(env: &TestEnv, account: ObjectId, user: ObjectId) {
    let day_ago = DateTime::from_millis(DateTime::now().timestamp_millis() - 86_400_000);
    let documents: Vec<Document> = (0..OLD_MESSAGES)
        .map(|i| {
            doc! {
                "_id": ObjectId::new(),
                "accountId": account,
                "title": format!("Weekly report {i}"),
                "content": "Numbers of the week",
                "sender": { "id": "system", "from": "system" },
                "to": { "id": user, "target": "user" },
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
