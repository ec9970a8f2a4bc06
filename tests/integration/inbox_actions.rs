//! Inbox actions: archive, unarchive, mark unread and delete, one message
//! at a time or in bulk (by ids or by a filter), for one user of an account
//! while the account's other user and a second account see nothing of it.
//!
//! - by id: lists (inbox and `?archived=true`), read state and counts move
//!   for the acting user only, for a message to that user and for one to
//!   the whole account; 404 for what this user's inbox does not hold;
//! - the tokens each route admits (the account's, the user's own) and
//!   refuses (a colleague's, another account's: 403; none: 401);
//! - bulk by filter: `updated` counts what changed, counts per category,
//!   and the read-all watermark neither undoes an archive or a delete nor
//!   keeps a message marked unread read;
//! - delete: a tombstone that a re-run of the storing job cannot bring
//!   back, and that nothing marks again;
//! - bad input refused naming the field, never showing internals;
//! - a stored message cannot be recalled: the answer names the delete route.

use std::{collections::BTreeSet, time::Duration};

use herald::push::{account_channel, UserChannels};
use herald_jobs::{MessageId, QueueName, SendMessage};
use mongodb::bson::{doc, DateTime, Document};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    helpers::{wait_for, WEB_TOKEN},
    tenancy::{world, Tenant, World},
};

/// The actions on one message that answer the message (`POST P/{id}/...`).
const ONE: [&str; 3] = ["archive", "unarchive", "unread"];

/// The bulk actions (`POST P/...`), the existing mark-read among them.
const BULK: [&str; 5] = ["archive", "unarchive", "unread", "delete", "read"];

/// `to` for `user` of `tenant` alone.
fn to_user(tenant: &Tenant, user: usize) -> Value {
    json!({ "target": "user", "id": tenant.users[user].to_hex() })
}

/// A message body: to the whole account unless `to` is given.
fn message(title: &str, category: Option<&str>, status: &str, to: Option<Value>) -> Value {
    let mut body = json!({ "title": title, "content": "c", "status": status });
    if let Some(category) = category {
        body["category"] = json!(category);
    }
    if let Some(to) = to {
        body["to"] = to;
    }
    body
}

/// Enqueues `body` for `tenant`'s account over `/v1/messages`; its id.
async fn send(w: &World, tenant: &Tenant, mut body: Value) -> String {
    body["accountId"] = json!(tenant.account.to_hex());
    let (status, answer) = w.post("/v1/messages", &tenant.token, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    answer["messageId"].as_str().expect("an id").to_owned()
}

/// Waits until the database holds `n` messages.
async fn wait_stored(w: &World, n: u64) {
    wait_for(&format!("{n} messages stored"), || async {
        (w.env.message_count(doc! {}).await == n).then_some(())
    })
    .await;
}

/// The path of one message of `user`'s inbox, with `suffix` (`/archive`...).
fn one(tenant: &Tenant, user: usize, id: &str, suffix: &str) -> String {
    format!("{}/{id}{suffix}", World::inbox(tenant, user))
}

/// A page of `user`'s list (`query` added), asked with the user's token.
async fn listed(w: &World, tenant: &Tenant, user: usize, query: &str) -> Vec<Value> {
    let path = format!("{}?limit=100&{query}", World::inbox(tenant, user));
    let (status, page) = w.get(&path, &tenant.user_tokens[user]).await;
    assert_eq!(status, StatusCode::OK, "{path}: {page}");
    page["messages"].as_array().expect("messages").clone()
}

fn ids_of(messages: &[Value]) -> BTreeSet<String> {
    messages
        .iter()
        .map(|m| m["id"].as_str().expect("an id").to_owned())
        .collect()
}

fn set<const N: usize>(ids: [&String; N]) -> BTreeSet<String> {
    ids.into_iter().cloned().collect()
}

/// The ids of `user`'s inbox (without the archived).
async fn inbox(w: &World, tenant: &Tenant, user: usize) -> BTreeSet<String> {
    let messages = listed(w, tenant, user, "").await;
    for m in &messages {
        assert!(m.get("archivedAt").is_none(), "in the inbox: {m}");
    }
    ids_of(&messages)
}

/// The ids of `user`'s archived messages.
async fn archived(w: &World, tenant: &Tenant, user: usize) -> BTreeSet<String> {
    let messages = listed(w, tenant, user, "archived=true").await;
    for m in &messages {
        assert_rfc3339(&m["archivedAt"]);
    }
    ids_of(&messages)
}

/// The message `id` as `user`'s list (inbox or archived) shows it.
async fn shown(w: &World, tenant: &Tenant, user: usize, id: &str) -> Value {
    for query in ["", "archived=true"] {
        if let Some(m) = listed(w, tenant, user, query)
            .await
            .into_iter()
            .find(|m| m["id"] == id)
        {
            return m;
        }
    }
    panic!("{id} is not listed for user {user}");
}

/// The account's back-office list, asked with the account's token.
async fn back_office(w: &World, tenant: &Tenant) -> Vec<Value> {
    let path = format!("/v1/accounts/{}/messages?limit=100", tenant.account);
    let (status, page) = w.get(&path, &tenant.token).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["messages"].as_array().expect("messages").clone()
}

async fn unread(w: &World, tenant: &Tenant, user: usize) -> u64 {
    let path = format!("{}/unread-count", World::inbox(tenant, user));
    let (status, answer) = w.get(&path, &tenant.user_tokens[user]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["unread"].as_u64().expect("a count")
}

async fn counts(w: &World, tenant: &Tenant, user: usize) -> Value {
    let path = format!("{}/unread-counts", World::inbox(tenant, user));
    let (status, answer) = w.get(&path, &tenant.user_tokens[user]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

/// `POST P/{id}/{action}` with the user's own token.
async fn act(
    w: &World,
    tenant: &Tenant,
    user: usize,
    id: &str,
    action: &str,
) -> (StatusCode, Value) {
    w.post(
        &one(tenant, user, id, &format!("/{action}")),
        &tenant.user_tokens[user],
        json!({}),
    )
    .await
}

/// [`act`], which must answer 200; the message it answers.
async fn acted(w: &World, tenant: &Tenant, user: usize, id: &str, action: &str) -> Value {
    let (status, answer) = act(w, tenant, user, id, action).await;
    assert_eq!(status, StatusCode::OK, "{action} {id}: {answer}");
    assert_eq!(answer["id"], id, "{action}: {answer}");
    answer
}

/// `DELETE P/{id}` with the user's own token.
async fn delete(w: &World, tenant: &Tenant, user: usize, id: &str) -> (StatusCode, Value) {
    w.call(
        Method::DELETE,
        &one(tenant, user, id, ""),
        Some(&tenant.user_tokens[user]),
        None,
    )
    .await
}

/// [`delete`], which must answer 204 without a body.
async fn deleted(w: &World, tenant: &Tenant, user: usize, id: &str) {
    let (status, answer) = delete(w, tenant, user, id).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "delete {id}: {answer}");
    assert_eq!(answer, json!(""), "no body");
}

/// `POST P/{action}` with `body` and the user's own token.
async fn bulk(
    w: &World,
    tenant: &Tenant,
    user: usize,
    action: &str,
    body: Value,
) -> (StatusCode, Value) {
    let path = format!("{}/{action}", World::inbox(tenant, user));
    w.post(&path, &tenant.user_tokens[user], body).await
}

/// [`bulk`], which must answer 200; `(updated, unread)`.
async fn bulked(w: &World, tenant: &Tenant, user: usize, action: &str, body: Value) -> (u64, u64) {
    let (status, answer) = bulk(w, tenant, user, action, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{action} {body}: {answer}");
    let number = |name: &str| {
        answer[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{action} {body}: {name} in {answer}"))
    };
    (number("updated"), number("unread"))
}

fn assert_rfc3339(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("an RFC 3339 time, not {value}"));
    chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
}

/// An error answer: `{"error": ...}`, with nothing of the server's insides.
fn assert_no_internals(answer: &Value) {
    assert!(answer["error"].is_string(), "an error answer: {answer}");
    let text = answer.to_string();
    let lower = text.to_lowercase();
    for inside in [
        "mongo",
        "bson",
        "objectid(",
        "panicked",
        "src/",
        ".rs:",
        "herald::",
        "storeerror",
        "error {",
        "kind:",
        "backtrace",
        "redis",
        "127.0.0.1",
        "message_read",
        "inbox_state",
    ] {
        assert!(!lower.contains(inside), "'{inside}' in {text}");
    }
}

/// The names of the wrong fields of a 400.
fn fields_of(answer: &Value) -> Vec<String> {
    answer["fields"]
        .as_object()
        .map(|fields| fields.keys().cloned().collect())
        .unwrap_or_default()
}

/// A 400 whose `fields` name one of `names` (a key containing it).
fn assert_refused_naming(status: StatusCode, answer: &Value, names: &[&str], what: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
    assert_no_internals(answer);
    let fields = fields_of(answer);
    assert!(
        fields.iter().any(|f| names.iter().any(|n| f.contains(n))),
        "{what}: fields {fields:?} name none of {names:?}: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_unarchive_unread_and_delete_by_id_are_per_user_and_cross_no_account() {
    let w = world(&[], true).await;
    let (a, b) = (&w.a, &w.b);
    let private0 = send(
        &w,
        a,
        message("for user 0", None, "success", Some(to_user(a, 0))),
    )
    .await;
    let private1 = send(
        &w,
        a,
        message("for user 1", None, "success", Some(to_user(a, 1))),
    )
    .await;
    let everyone = send(&w, a, message("for all", Some("news"), "warning", None)).await;
    let other = send(&w, b, message("for b", None, "success", None)).await;
    wait_stored(&w, 4).await;
    assert_eq!(inbox(&w, a, 0).await, set([&private0, &everyone]));
    assert_eq!(inbox(&w, a, 1).await, set([&private1, &everyone]));
    assert_eq!((unread(&w, a, 0).await, unread(&w, a, 1).await), (2, 2));

    // (a) A message to user 0 alone. Archived: out of the inbox, on the
    // archived list, read.
    let archive = acted(&w, a, 0, &private0, "archive").await;
    assert_eq!(archive["isRead"], true, "{archive}");
    assert_rfc3339(&archive["archivedAt"]);
    assert_rfc3339(&archive["readAt"]);
    assert_eq!(inbox(&w, a, 0).await, set([&everyone]));
    assert_eq!(
        ids_of(&listed(&w, a, 0, "archived=false").await),
        set([&everyone])
    );
    let shelf = listed(&w, a, 0, "archived=true").await;
    assert_eq!(ids_of(&shelf), set([&private0]));
    assert_eq!(shelf[0]["isRead"], true);
    assert_eq!(shelf[0]["archivedAt"], archive["archivedAt"]);
    assert_eq!(unread(&w, a, 0).await, 1);
    // Archiving it again changes nothing.
    let again = acted(&w, a, 0, &private0, "archive").await;
    assert_eq!(again["archivedAt"], archive["archivedAt"], "{again}");
    assert_eq!(unread(&w, a, 0).await, 1);
    // Unarchived: back in the inbox, still read.
    let back = acted(&w, a, 0, &private0, "unarchive").await;
    assert_eq!(back["isRead"], true, "{back}");
    assert!(back.get("archivedAt").is_none(), "{back}");
    assert_eq!(inbox(&w, a, 0).await, set([&private0, &everyone]));
    assert!(archived(&w, a, 0).await.is_empty());
    assert_eq!(unread(&w, a, 0).await, 1);
    // Marked unread.
    let fresh = acted(&w, a, 0, &private0, "unread").await;
    assert_eq!(fresh["isRead"], false, "{fresh}");
    assert_eq!(fresh["readAt"], Value::Null, "{fresh}");
    assert_eq!(unread(&w, a, 0).await, 2);
    assert_eq!(shown(&w, a, 0, &private0).await["isRead"], false);
    // An archived message marked unread moves back to the inbox.
    acted(&w, a, 0, &private0, "archive").await;
    assert_eq!(unread(&w, a, 0).await, 1);
    let fresh = acted(&w, a, 0, &private0, "unread").await;
    assert_eq!(fresh["isRead"], false, "{fresh}");
    assert!(fresh.get("archivedAt").is_none(), "{fresh}");
    assert_eq!(inbox(&w, a, 0).await, set([&private0, &everyone]));
    assert!(archived(&w, a, 0).await.is_empty());
    assert_eq!(unread(&w, a, 0).await, 2);
    // User 1 saw none of it.
    assert_eq!(inbox(&w, a, 1).await, set([&private1, &everyone]));
    assert_eq!(unread(&w, a, 1).await, 2);
    // Deleted: 204 without a body, gone from every list and count, and
    // nothing acts on it again.
    deleted(&w, a, 0, &private0).await;
    assert_eq!(inbox(&w, a, 0).await, set([&everyone]));
    assert!(archived(&w, a, 0).await.is_empty());
    assert_eq!(unread(&w, a, 0).await, 1);
    for action in ONE.iter().chain(&["read"]) {
        let (status, answer) = act(&w, a, 0, &private0, action).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}: {answer}");
        assert_no_internals(&answer);
    }
    let (status, answer) = delete(&w, a, 0, &private0).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_no_internals(&answer);
    let office = ids_of(&back_office(&w, a).await);
    assert_eq!(
        office,
        set([&private1, &everyone]),
        "tombstones are not listed"
    );

    // (b) A message to the whole account: user 0's actions are user 0's.
    let archive = acted(&w, a, 0, &everyone, "archive").await;
    assert_eq!(archive["isRead"], true, "{archive}");
    assert_rfc3339(&archive["archivedAt"]);
    assert!(inbox(&w, a, 0).await.is_empty());
    assert_eq!(archived(&w, a, 0).await, set([&everyone]));
    assert_eq!(unread(&w, a, 0).await, 0);
    let theirs = shown(&w, a, 1, &everyone).await;
    assert_eq!(theirs["isRead"], false, "{theirs}");
    assert!(theirs.get("archivedAt").is_none(), "{theirs}");
    assert_eq!(inbox(&w, a, 1).await, set([&private1, &everyone]));
    assert_eq!(
        counts(&w, a, 1).await,
        json!({"unread": 2, "categories": {"news": 1}, "uncategorized": 1})
    );
    let listed_for_office = back_office(&w, a).await;
    let office_copy = listed_for_office
        .iter()
        .find(|m| m["id"] == everyone.as_str())
        .expect("the back office lists it");
    assert!(
        office_copy.get("archivedAt").is_none(),
        "one user's archive is not the account's: {office_copy}"
    );
    let back = acted(&w, a, 0, &everyone, "unarchive").await;
    assert_eq!(back["isRead"], true, "{back}");
    assert!(back.get("archivedAt").is_none(), "{back}");
    assert_eq!(inbox(&w, a, 0).await, set([&everyone]));
    assert_eq!(unread(&w, a, 0).await, 0);
    let fresh = acted(&w, a, 0, &everyone, "unread").await;
    assert_eq!(fresh["isRead"], false, "{fresh}");
    assert_eq!(fresh["readAt"], Value::Null, "{fresh}");
    assert_eq!((unread(&w, a, 0).await, unread(&w, a, 1).await), (1, 2));
    // User 1 reads it: user 0's unread mark stays.
    let (status, read) = w
        .post(&one(a, 1, &everyone, "/read"), &a.user_tokens[1], json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!((unread(&w, a, 0).await, unread(&w, a, 1).await), (1, 1));
    assert_eq!(shown(&w, a, 0, &everyone).await["isRead"], false);
    // User 0 archives and deletes it: hidden for user 0 alone.
    acted(&w, a, 0, &everyone, "archive").await;
    deleted(&w, a, 0, &everyone).await;
    assert!(inbox(&w, a, 0).await.is_empty());
    assert!(archived(&w, a, 0).await.is_empty());
    assert_eq!(
        counts(&w, a, 0).await,
        json!({"unread": 0, "categories": {}, "uncategorized": 0})
    );
    assert_eq!(inbox(&w, a, 1).await, set([&private1, &everyone]));
    assert_eq!(shown(&w, a, 1, &everyone).await["isRead"], true);
    assert_eq!(
        counts(&w, a, 1).await,
        json!({"unread": 1, "categories": {}, "uncategorized": 1})
    );
    let office = back_office(&w, a).await;
    assert_eq!(ids_of(&office), set([&private1, &everyone]));
    let office_copy = office
        .iter()
        .find(|m| m["id"] == everyone.as_str())
        .unwrap();
    assert_eq!(office_copy["title"], "for all", "{office_copy}");
    let stored = w
        .env
        .find_message(MessageId::parse(&everyone).unwrap())
        .await
        .expect("the document stays");
    assert_eq!(stored.get_str("title"), Ok("for all"));
    assert!(stored.get("deletedAt").is_none(), "{stored}");
    // Its per-user state is beside it, in message_read.
    let marks = w
        .env
        .database
        .collection::<Document>("message_read")
        .count_documents(doc! {
            "messageId": MessageId::parse(&everyone).unwrap().object_id(),
            "userId": a.users[0].object_id(),
        })
        .await
        .unwrap();
    assert_eq!(marks, 1, "user 0's state of the account-wide message");
    for action in ONE.iter().chain(&["read"]) {
        let (status, answer) = act(&w, a, 0, &everyone, action).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}: {answer}");
        assert_no_internals(&answer);
    }
    let (status, answer) = delete(&w, a, 0, &everyone).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    for action in BULK {
        assert_eq!(
            bulked(&w, a, 0, action, json!({"ids": [everyone]})).await,
            (0, 0),
            "{action}"
        );
    }
    // User 1 may still archive it, for themselves.
    acted(&w, a, 1, &everyone, "archive").await;
    assert_eq!(archived(&w, a, 1).await, set([&everyone]));
    assert!(archived(&w, a, 0).await.is_empty());

    // A colleague's message and another account's are not in user 0's
    // inbox: 404 with user 0's token and with the account's, and the
    // answer does not tell them from an id no one has.
    for id in [&private1, &other] {
        for token in [&a.user_tokens[0], &a.token] {
            for action in ONE.iter().chain(&["read"]) {
                let (status, answer) = w
                    .post(&one(a, 0, id, &format!("/{action}")), token, json!({}))
                    .await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{action} {id}: {answer}");
                assert_no_internals(&answer);
                assert!(!answer.to_string().contains("another"), "{answer}");
            }
            let (status, answer) = w
                .call(Method::DELETE, &one(a, 0, id, ""), Some(token), None)
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "delete {id}: {answer}");
            assert_no_internals(&answer);
        }
    }
    for action in BULK {
        assert_eq!(
            bulked(&w, a, 0, action, json!({"ids": [private1, other]})).await,
            (0, 0),
            "{action}"
        );
    }
    let theirs = shown(&w, a, 1, &private1).await;
    assert_eq!(theirs["isRead"], false, "{theirs}");
    assert!(theirs.get("archivedAt").is_none(), "{theirs}");
    assert_eq!(inbox(&w, a, 1).await, set([&private1]));
    assert_eq!(unread(&w, a, 1).await, 1);
    // Nothing crossed to account B.
    for user in 0..2 {
        assert_eq!(inbox(&w, b, user).await, set([&other]));
        assert!(archived(&w, b, user).await.is_empty());
        assert_eq!(unread(&w, b, user).await, 1);
    }
    let office_b = back_office(&w, b).await;
    assert_eq!(ids_of(&office_b), set([&other]));
    assert_eq!(office_b[0]["title"], "for b");
    let b_doc = w
        .env
        .find_message(MessageId::parse(&other).unwrap())
        .await
        .unwrap();
    assert!(!b_doc.get_bool("isRead").unwrap(), "B's message untouched");
    assert!(b_doc.get("deletedAt").is_none());

    // The actions told user 0's pages (and, for the archive at the end,
    // user 1's), nobody else's.
    let channels = UserChannels::default();
    let (u0, u1) = (
        channels.channel(a.account, a.users[0]),
        channels.channel(a.account, a.users[1]),
    );
    let changes = wait_for("inbox_changed for both users", || async {
        let changes = w.env.delivered("inbox_changed").await;
        let told = |channel: &str, id: &str| {
            changes.iter().any(|e| {
                e.channels.iter().any(|c| c == channel)
                    && e.data["ids"]
                        .as_array()
                        .is_some_and(|ids| ids.iter().any(|i| i == id))
            })
        };
        (told(&u0, &private0) && told(&u0, &everyone) && told(&u1, &everyone)).then_some(changes)
    })
    .await;
    for change in &changes {
        assert!(
            change.channels == [u0.clone()] || change.channels == [u1.clone()],
            "{change:?}"
        );
        assert!(change.data["action"].is_string(), "{:?}", change.data);
        assert!(change.data["unread"].is_u64(), "{:?}", change.data);
        assert!(!change.channels.contains(&account_channel(a.account)));
        let text = change.data.to_string();
        assert!(
            !text.contains("for user 0") && !text.contains(&private1),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_action_route_admits_the_account_and_the_user_and_refuses_everyone_else() {
    let w = world(&[], true).await;
    let (a, b) = (&w.a, &w.b);
    // Per route kind, one message for the user's own token, one for the
    // account's.
    let mut ids = Vec::new();
    for i in 0..4 {
        let to = (i % 2 == 0).then(|| to_user(a, 0));
        ids.push(send(&w, a, message(&format!("m{i}"), None, "success", to)).await);
    }
    wait_stored(&w, 4).await;
    let (by_id, by_id_account, bulk_own, bulk_account) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    let inbox_path = World::inbox(a, 0);
    let mut routes: Vec<(Method, String, Option<Value>)> = Vec::new();
    for action in ONE {
        routes.push((
            Method::POST,
            format!("{inbox_path}/{by_id}/{action}"),
            Some(json!({})),
        ));
    }
    routes.push((Method::DELETE, format!("{inbox_path}/{by_id}"), None));
    for action in BULK {
        routes.push((
            Method::POST,
            format!("{inbox_path}/{action}"),
            Some(json!({"ids": [bulk_own]})),
        ));
    }
    routes.push((
        Method::POST,
        format!("{inbox_path}/archive"),
        Some(json!({"filter": {}})),
    ));
    // Refused first: a colleague's token, another account's, another
    // account's user's (403), none (401); nothing changes.
    for (method, path, body) in &routes {
        for (token, expected) in [
            (Some(a.user_tokens[1].as_str()), StatusCode::FORBIDDEN),
            (Some(b.token.as_str()), StatusCode::FORBIDDEN),
            (Some(b.user_tokens[0].as_str()), StatusCode::FORBIDDEN),
            (None, StatusCode::UNAUTHORIZED),
        ] {
            let (status, answer) = w.call(method.clone(), path, token, body.clone()).await;
            assert_eq!(status, expected, "{method} {path} {token:?}: {answer}");
            assert_no_internals(&answer);
        }
    }
    assert_eq!(inbox(&w, a, 0).await, ids.iter().cloned().collect());
    assert!(archived(&w, a, 0).await.is_empty());
    assert_eq!(unread(&w, a, 0).await, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(w.env.delivered("inbox_changed").await.is_empty());

    // Admitted: the user's own token and the account's.
    for (token, id) in [(&a.user_tokens[0], by_id), (&a.token, by_id_account)] {
        for (action, read) in [("archive", true), ("unarchive", true), ("unread", false)] {
            let (status, answer) = w
                .post(&format!("{inbox_path}/{id}/{action}"), token, json!({}))
                .await;
            assert_eq!(status, StatusCode::OK, "{action}: {answer}");
            assert_eq!(answer["isRead"], read, "{action}: {answer}");
        }
        let (status, answer) = w
            .call(
                Method::DELETE,
                &format!("{inbox_path}/{id}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    }
    for (token, id) in [(&a.user_tokens[0], bulk_own), (&a.token, bulk_account)] {
        for action in ["archive", "unarchive", "unread", "read", "delete"] {
            let (status, answer) = w
                .post(
                    &format!("{inbox_path}/{action}"),
                    token,
                    json!({"ids": [id]}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{action}: {answer}");
            assert_eq!(answer["updated"], 1, "{action}: {answer}");
        }
    }
    assert!(inbox(&w, a, 0).await.is_empty());
    assert_eq!(unread(&w, a, 0).await, 0);
    // The account-wide ones are still user 1's.
    assert_eq!(inbox(&w, a, 1).await, set([by_id_account, bulk_account]));
    assert_eq!(unread(&w, a, 1).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_actions_by_filter_count_what_changed_and_survive_the_read_all_watermark() {
    let w = world(&[], true).await;
    let (a, b) = (&w.a, &w.b);
    let user0 = || Some(to_user(a, 0));
    // Older: two billing messages to everyone, two of user 0's own, one of
    // user 1's, one of account B's.
    let e1 = send(&w, a, message("e1", Some("billing"), "success", None)).await;
    let e2 = send(&w, a, message("e2", Some("billing"), "error", None)).await;
    let u1 = send(&w, a, message("u1", Some("billing"), "warning", user0())).await;
    let u3 = send(&w, a, message("u3", None, "success", user0())).await;
    let c1 = send(
        &w,
        a,
        message("c1", Some("billing"), "error", Some(to_user(a, 1))),
    )
    .await;
    let b1 = send(&w, b, message("b1", Some("billing"), "error", None)).await;
    wait_stored(&w, 6).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Newer: an export message to everyone and one to user 0.
    let e3 = send(&w, a, message("e3", Some("export"), "error", None)).await;
    let u2 = send(&w, a, message("u2", Some("export"), "error", user0())).await;
    wait_stored(&w, 8).await;
    let all = listed(&w, a, 0, "").await;
    assert_eq!(ids_of(&all), set([&e1, &e2, &e3, &u1, &u2, &u3]));
    let created = |id: &String| {
        let m = all.iter().find(|m| m["id"] == id.as_str()).unwrap();
        chrono::DateTime::parse_from_rfc3339(m["createdAt"].as_str().unwrap()).unwrap()
    };
    let cutoff = created(&e3).min(created(&u2));
    for older in [&e1, &e2, &u1, &u3] {
        assert!(created(older) < cutoff, "stored before the newer ones");
    }
    let cutoff = cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(
        counts(&w, a, 0).await,
        json!({"unread": 6, "categories": {"billing": 3, "export": 2}, "uncategorized": 1})
    );
    let user1_counts =
        json!({"unread": 4, "categories": {"billing": 3, "export": 1}, "uncategorized": 0});
    assert_eq!(counts(&w, a, 1).await, user1_counts);

    // Two read, by ids.
    assert_eq!(
        bulked(&w, a, 0, "read", json!({"ids": [u3, e1]})).await,
        (2, 4)
    );
    // Archive billing: e1 (read), e2, u1.
    let billing = json!({"filter": {"category": "billing"}});
    assert_eq!(bulked(&w, a, 0, "archive", billing.clone()).await, (3, 2));
    assert_eq!(
        counts(&w, a, 0).await,
        json!({"unread": 2, "categories": {"export": 2}, "uncategorized": 0})
    );
    assert_eq!(archived(&w, a, 0).await, set([&e1, &e2, &u1]));
    assert_eq!(inbox(&w, a, 0).await, set([&e3, &u2, &u3]));
    for m in listed(&w, a, 0, "archived=true").await {
        assert_eq!(m["isRead"], true, "archiving reads: {m}");
    }
    // Archiving the archived changes nothing.
    assert_eq!(bulked(&w, a, 0, "archive", billing).await, (0, 2));
    assert_eq!(counts(&w, a, 1).await, user1_counts);

    // Unread the errors: e2 (archived, read) comes back unread; e3 and u2
    // were unread already.
    let errors = json!({"filter": {"status": "error"}});
    assert_eq!(bulked(&w, a, 0, "unread", errors).await, (1, 3));
    assert_eq!(
        counts(&w, a, 0).await,
        json!({"unread": 3, "categories": {"billing": 1, "export": 2}, "uncategorized": 0})
    );
    assert_eq!(inbox(&w, a, 0).await, set([&e2, &e3, &u2, &u3]));
    assert_eq!(archived(&w, a, 0).await, set([&e1, &u1]));

    // Delete what is read and archived: e1 (to everyone), u1 (user 0's).
    let shelved = json!({"filter": {"isRead": true, "archived": true}});
    assert_eq!(bulked(&w, a, 0, "delete", shelved.clone()).await, (2, 3));
    assert!(archived(&w, a, 0).await.is_empty());
    assert_eq!(inbox(&w, a, 0).await, set([&e2, &e3, &u2, &u3]));
    assert_eq!(bulked(&w, a, 0, "delete", shelved).await, (0, 3));
    assert_eq!(inbox(&w, a, 1).await, set([&e1, &e2, &e3, &c1]));
    assert_eq!(counts(&w, a, 1).await, user1_counts);

    // Older than the newer ones: e2 (unread, so archiving reads it) and u3.
    let older = json!({"filter": {"olderThan": cutoff}});
    assert_eq!(bulked(&w, a, 0, "archive", older).await, (2, 2));
    assert_eq!(archived(&w, a, 0).await, set([&e2, &u3]));
    assert_eq!(inbox(&w, a, 0).await, set([&e3, &u2]));
    // The cutoff itself is not older than itself.
    let at_cutoff = json!({"filter": {"olderThan": cutoff, "archived": false}});
    assert_eq!(bulked(&w, a, 0, "archive", at_cutoff).await, (0, 2));
    assert_eq!(
        bulked(&w, a, 0, "unarchive", json!({"filter": {"archived": true}})).await,
        (2, 2)
    );
    assert_eq!(shown(&w, a, 0, &e2).await["isRead"], true, "stays read");

    // Read by filter, then everything unread at once.
    let export = json!({"filter": {"category": "export"}});
    assert_eq!(bulked(&w, a, 0, "read", export).await, (2, 0));
    assert_eq!(
        bulked(&w, a, 0, "unread", json!({"filter": {}})).await,
        (4, 4)
    );
    assert_eq!(
        counts(&w, a, 0).await,
        json!({"unread": 4, "categories": {"billing": 1, "export": 2}, "uncategorized": 1})
    );

    // The read-all watermark: it keeps e2 archived and e1 deleted...
    assert_eq!(
        bulked(&w, a, 0, "archive", json!({"ids": [e2]})).await,
        (1, 3)
    );
    let inbox_path = World::inbox(a, 0);
    let (status, all_read) = w
        .post(
            &format!("{inbox_path}/read-all"),
            &a.user_tokens[0],
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{all_read}");
    assert_eq!(all_read, json!({"updated": 3, "unread": 0}));
    assert_eq!(archived(&w, a, 0).await, set([&e2]));
    assert_eq!(inbox(&w, a, 0).await, set([&e3, &u2, &u3]));
    // ...a message under it marked unread counts unread again...
    assert_eq!(
        bulked(&w, a, 0, "unread", json!({"ids": [e3]})).await,
        (1, 1)
    );
    assert_eq!(
        counts(&w, a, 0).await,
        json!({"unread": 1, "categories": {"export": 1}, "uncategorized": 0})
    );
    let e3_shown = shown(&w, a, 0, &e3).await;
    assert_eq!(e3_shown["isRead"], false, "{e3_shown}");
    assert_eq!(e3_shown["readAt"], Value::Null, "{e3_shown}");
    assert_eq!(ids_of(&listed(&w, a, 0, "isRead=false").await), set([&e3]));
    // ...so does an archived one, back in the inbox...
    assert_eq!(
        bulked(&w, a, 0, "unread", json!({"filter": {"archived": true}})).await,
        (1, 2)
    );
    assert!(archived(&w, a, 0).await.is_empty());
    assert_eq!(inbox(&w, a, 0).await, set([&e2, &e3, &u2, &u3]));
    assert_eq!(
        counts(&w, a, 0).await,
        json!({"unread": 2, "categories": {"billing": 1, "export": 1}, "uncategorized": 0})
    );
    // ...and read-all again reads them.
    let (status, all_read) = w
        .post(
            &format!("{inbox_path}/read-all"),
            &a.user_tokens[0],
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{all_read}");
    assert_eq!(all_read, json!({"updated": 2, "unread": 0}));
    for m in listed(&w, a, 0, "").await {
        assert_eq!(m["isRead"], true, "{m}");
    }
    assert_eq!(unread(&w, a, 0).await, 0);

    // User 1 and account B saw none of it.
    assert_eq!(counts(&w, a, 1).await, user1_counts);
    assert_eq!(inbox(&w, a, 1).await, set([&e1, &e2, &e3, &c1]));
    assert!(archived(&w, a, 1).await.is_empty());
    assert_eq!(inbox(&w, b, 0).await, set([&b1]));
    assert_eq!(unread(&w, b, 0).await, 1);

    // Delete everything: every message of user 0's inbox, and no more.
    assert_eq!(
        bulked(&w, a, 0, "delete", json!({"filter": {}})).await,
        (4, 0)
    );
    assert!(inbox(&w, a, 0).await.is_empty());
    assert!(archived(&w, a, 0).await.is_empty());
    assert_eq!(
        counts(&w, a, 0).await,
        json!({"unread": 0, "categories": {}, "uncategorized": 0})
    );
    for action in BULK {
        assert_eq!(
            bulked(&w, a, 0, action, json!({"filter": {}})).await,
            (0, 0),
            "{action}"
        );
    }
    assert_eq!(counts(&w, a, 1).await, user1_counts);
    assert_eq!(
        ids_of(&back_office(&w, a).await),
        set([&e1, &e2, &e3, &c1]),
        "the account's messages stay; user 0's own are tombstones"
    );
    // A later message is not covered by it.
    let e4 = send(&w, a, message("e4", None, "success", None)).await;
    wait_stored(&w, 9).await;
    assert_eq!(inbox(&w, a, 0).await, set([&e4]));
    assert_eq!(unread(&w, a, 0).await, 1);
    assert_eq!(unread(&w, a, 1).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_message_is_a_tombstone_nothing_lists_marks_or_brings_back() {
    let w = world(&[], true).await;
    let a = &w.a;
    let started = DateTime::now();
    let month = chrono::Utc::now() + chrono::Duration::days(30);
    let job = SendMessage::new(a.account, "Salary review", "secret content")
        .to_user(a.users[0])
        .category("hr")
        .action_url("/reviews/1")
        .data(json!({"grade": 3}))
        .expires_at(month);
    let secret = w.env.enqueue(job.clone()).await;
    let plain = w
        .env
        .enqueue(SendMessage::new(a.account, "plain", "x").to_user(a.users[0]))
        .await;
    let all = send(&w, a, message("for all", None, "success", None)).await;
    wait_stored(&w, 3).await;
    let (secret_hex, plain_hex) = (secret.to_hex(), plain.to_hex());
    assert_eq!(inbox(&w, a, 0).await, set([&secret_hex, &plain_hex, &all]));
    assert_eq!(unread(&w, a, 0).await, 3);

    deleted(&w, a, 0, &secret_hex).await;
    assert_eq!(
        bulked(&w, a, 0, "delete", json!({"ids": [plain_hex]})).await,
        (1, 1)
    );
    // The documents stay, emptied, with a near expiry.
    assert_eq!(w.env.message_count(doc! {}).await, 3);
    let week_ahead =
        DateTime::from_millis(DateTime::now().timestamp_millis() + 7 * 86_400_000 + 60_000);
    for id in [secret, plain] {
        let tomb = w.env.find_message(id).await.expect("the tombstone stays");
        let deleted_at = tomb.get_datetime("deletedAt").expect("deletedAt");
        assert!(*deleted_at >= started, "{tomb}");
        assert_eq!(tomb.get_str("title"), Ok(""), "{tomb}");
        assert_eq!(tomb.get_str("content"), Ok(""), "{tomb}");
        assert!(tomb.get("data").is_none(), "{tomb}");
        assert!(tomb.get("actionUrl").is_none(), "{tomb}");
        let expires = tomb.get_datetime("expiresAt").expect("expiresAt");
        assert!(*expires <= week_ahead, "at most 7 days ahead: {tomb}");
        assert_eq!(tomb.get_object_id("accountId"), Ok(a.account.object_id()));
        let to = tomb.get_document("to").unwrap();
        assert_eq!(to.get_object_id("id"), Ok(a.users[0].object_id()));
    }
    // Never listed nor counted.
    for query in [
        "",
        "archived=true",
        "isRead=true",
        "isRead=false",
        "category=hr",
    ] {
        let ids = ids_of(&listed(&w, a, 0, query).await);
        assert!(
            !ids.contains(&secret_hex) && !ids.contains(&plain_hex),
            "{query}: {ids:?}"
        );
    }
    let office = back_office(&w, a).await;
    assert_eq!(ids_of(&office), set([&all]));
    assert!(!serde_json::to_string(&office).unwrap().contains("Salary"));
    assert_eq!(
        counts(&w, a, 0).await,
        json!({"unread": 1, "categories": {}, "uncategorized": 1})
    );
    // Never marked again: 404 one by one, nothing updated in bulk, with
    // the user's token or the account's.
    for token in [&a.user_tokens[0], &a.token] {
        for action in ONE.iter().chain(&["read"]) {
            let (status, answer) = w
                .post(
                    &one(a, 0, &secret_hex, &format!("/{action}")),
                    token,
                    json!({}),
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{action}: {answer}");
            assert_no_internals(&answer);
            assert!(!answer.to_string().contains("Salary"), "{answer}");
        }
        let (status, answer) = w
            .call(
                Method::DELETE,
                &one(a, 0, &secret_hex, ""),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "deleted twice: {answer}");
        assert_no_internals(&answer);
    }
    for action in BULK {
        assert_eq!(
            bulked(&w, a, 0, action, json!({"ids": [secret_hex, plain_hex]})).await,
            (0, 1),
            "{action}"
        );
    }
    let tomb = w.env.find_message(secret).await.unwrap();
    assert_eq!(tomb.get_str("title"), Ok(""), "{tomb}");

    // A re-run of the storing job (a redelivery) does not bring it back.
    w.env.push_raw(serde_json::to_value(&job).unwrap()).await;
    wait_for("the re-run to finish", || async {
        let done = w.env.queue_set(QueueName::SendMessage, "done").await.len();
        let dead = w.env.queue_set(QueueName::SendMessage, "dead").await.len();
        (done + dead == 4).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tomb = w.env.find_message(secret).await.unwrap();
    assert_eq!(tomb.get_str("title"), Ok(""), "{tomb}");
    assert!(tomb.get_datetime("deletedAt").is_ok(), "{tomb}");
    assert_eq!(w.env.message_count(doc! {}).await, 3);
    assert_eq!(inbox(&w, a, 0).await, set([&all]));
    assert_eq!(unread(&w, a, 0).await, 1);

    // Deleting the account-wide one hides it from user 0 alone: its
    // document is as it was.
    let before = w
        .env
        .find_message(MessageId::parse(&all).unwrap())
        .await
        .unwrap();
    deleted(&w, a, 0, &all).await;
    let after = w
        .env
        .find_message(MessageId::parse(&all).unwrap())
        .await
        .unwrap();
    assert_eq!(after.get_str("title"), Ok("for all"));
    assert_eq!(after.get_str("content"), Ok("c"));
    assert!(after.get("deletedAt").is_none(), "{after}");
    assert_eq!(after.get("expiresAt"), before.get("expiresAt"));
    assert!(inbox(&w, a, 0).await.is_empty());
    assert_eq!(inbox(&w, a, 1).await, set([&all]));
    assert_eq!(unread(&w, a, 1).await, 1);
    assert_eq!(ids_of(&back_office(&w, a).await), set([&all]));
    let (status, answer) = delete(&w, a, 0, &all).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(
        bulked(&w, a, 0, "delete", json!({"ids": [all]})).await,
        (0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field_and_showing_no_internals() {
    let w = world(&[], true).await;
    let a = &w.a;
    let mine = send(&w, a, message("mine", None, "success", Some(to_user(a, 0)))).await;
    let all = send(&w, a, message("all", None, "error", None)).await;
    wait_stored(&w, 2).await;
    let many: Vec<String> = (0..101)
        .map(|_| mongodb::bson::oid::ObjectId::new().to_hex())
        .collect();
    let cases: Vec<(Value, &[&str], &str)> = vec![
        (
            json!({"ids": [mine], "filter": {}}),
            &["ids", "filter"],
            "both",
        ),
        (json!({}), &["ids", "filter"], "neither"),
        (json!({"ids": []}), &["ids"], "no ids"),
        (json!({"ids": many}), &["ids"], "101 ids"),
        (json!({"ids": ["not-hex"]}), &["ids"], "a non-hex id"),
        (json!({"ids": [mine, "zz"]}), &["ids"], "one non-hex id"),
        (json!({"ids": "x"}), &["ids"], "ids not a list"),
        (
            json!({"filter": {"colour": "red"}}),
            &["colour"],
            "unknown filter field",
        ),
        (
            json!({"filter": {"olderThan": "yesterday"}}),
            &["olderThan"],
            "bad olderThan",
        ),
        (
            json!({"filter": {"olderThan": 5}}),
            &["olderThan"],
            "olderThan a number",
        ),
        (
            json!({"filter": {"status": "purple"}}),
            &["status"],
            "bad status",
        ),
        (
            json!({"filter": {"category": "two words"}}),
            &["category"],
            "bad category",
        ),
        (
            json!({"filter": {"isRead": "yes"}}),
            &["isRead"],
            "isRead not a bool",
        ),
        (
            json!({"filter": {"archived": 1}}),
            &["archived"],
            "archived not a bool",
        ),
        (
            json!({"filter": "all"}),
            &["filter"],
            "filter not an object",
        ),
        (
            json!({"ids": [mine], "everything": true}),
            &["everything"],
            "unknown field",
        ),
        (json!([mine]), &["body"], "an array"),
    ];
    for action in BULK {
        for (body, names, what) in &cases {
            let (status, answer) = bulk(&w, a, 0, action, body.clone()).await;
            assert_refused_naming(status, &answer, names, &format!("{action}: {what}"));
        }
        // A body that is not JSON at all.
        let response = w
            .env
            .http
            .post(format!("{}{}/{action}", w.url, World::inbox(a, 0)))
            .bearer_auth(&a.user_tokens[0])
            .header("content-type", "application/json")
            .body("archive everything, please")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{action}");
        let answer: Value = response.json().await.expect("a JSON error");
        assert_no_internals(&answer);
        assert!(
            answer["error"].as_str().unwrap().contains("JSON"),
            "{action}: {answer}"
        );
    }
    // The list's archived parameter.
    for value in ["maybe", "yes"] {
        let path = format!("{}?archived={value}", World::inbox(a, 0));
        let (status, answer) = w.get(&path, &a.user_tokens[0]).await;
        assert_refused_naming(status, &answer, &["archived"], &format!("archived={value}"));
    }
    // Ids in the path.
    for action in ONE {
        let (status, answer) = w
            .post(
                &one(a, 0, "not-an-id", &format!("/{action}")),
                &a.user_tokens[0],
                json!({}),
            )
            .await;
        assert_refused_naming(status, &answer, &["messageId"], action);
    }
    let (status, answer) = w
        .call(
            Method::DELETE,
            &one(a, 0, "not-an-id", ""),
            Some(&a.user_tokens[0]),
            None,
        )
        .await;
    assert_refused_naming(status, &answer, &["messageId"], "delete");
    let path = format!("/v1/accounts/{}/users/nobody/messages/archive", a.account);
    let (status, answer) = w.post(&path, &a.token, json!({"ids": [mine]})).await;
    assert_refused_naming(status, &answer, &["userId"], "bulk with a bad user");

    // Nothing changed.
    assert_eq!(inbox(&w, a, 0).await, set([&mine, &all]));
    assert!(archived(&w, a, 0).await.is_empty());
    assert_eq!(unread(&w, a, 0).await, 2);
    assert_eq!(
        w.env
            .message_count(doc! {"deletedAt": {"$exists": true}})
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recalling_a_stored_message_answers_409_naming_the_delete_route() {
    let w = world(&[], true).await;
    let (a, b) = (&w.a, &w.b);
    let mine = send(&w, a, message("mine", None, "success", Some(to_user(a, 0)))).await;
    let all = send(&w, a, message("all", None, "success", None)).await;
    wait_stored(&w, 2).await;
    for id in [&mine, &all] {
        let path = format!("/v1/accounts/{}/messages/{id}/recall", a.account);
        for token in [a.token.as_str(), WEB_TOKEN] {
            let (status, answer) = w.post(&path, token, json!({})).await;
            assert_eq!(status, StatusCode::CONFLICT, "{answer}");
            assert_no_internals(&answer);
            let error = answer["error"].as_str().unwrap();
            assert!(
                error.contains("DELETE /v1/accounts/")
                    && error.contains("/users/")
                    && error.contains("/messages/"),
                "names the delete route: {error}"
            );
        }
        // Another account's token learns nothing.
        let (status, answer) = w.post(&path, &b.token, json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert!(!answer.to_string().contains("DELETE"), "{answer}");
    }
    // Still in the inboxes; a scheduled one is still recallable.
    assert_eq!(inbox(&w, a, 0).await, set([&mine, &all]));
    let mut later = message("later", None, "success", None);
    later["sendAt"] = json!((chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let later = send(&w, a, later).await;
    let path = format!("/v1/accounts/{}/messages/{later}/recall", a.account);
    let (status, answer) = w.post(&path, &a.token, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["messageId"], later.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_action_sent_at_once_from_several_pages_counts_each_change_once() {
    let w = world(&[], true).await;
    let a = &w.a;
    let own = send(&w, a, message("own", None, "success", Some(to_user(a, 0)))).await;
    let all = send(&w, a, message("all", None, "success", None)).await;
    wait_stored(&w, 2).await;
    // A user with several tabs open: each sends the same action at once.
    // Each step changes each message once, so `updated` adds up to one.
    for action in ["archive", "unarchive", "unread", "delete"] {
        for id in [&own, &all] {
            let calls = (0..8).map(|_| bulk(&w, a, 0, action, json!({"ids": [id]})));
            let answers = futures::future::join_all(calls).await;
            let mut total = 0;
            for (status, answer) in &answers {
                assert_eq!(*status, StatusCode::OK, "{action}: {answer}");
                total += answer["updated"].as_u64().expect("updated");
            }
            let kind = if id == &own { "to the user" } else { "to all" };
            assert_eq!(total, 1, "{action} of the message {kind}: {answers:?}");
        }
    }
    assert!(inbox(&w, a, 0).await.is_empty());
    assert!(archived(&w, a, 0).await.is_empty());
    assert_eq!(unread(&w, a, 0).await, 0);
    assert_eq!(unread(&w, a, 1).await, 1);
}
