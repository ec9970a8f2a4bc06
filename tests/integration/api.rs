//! The producers' API (/v1) over real HTTP: enqueueing messages and exports,
//! the read side, tokens bound to accounts, refusals, and the OpenAPI
//! document checked against the routes.

use std::collections::BTreeSet;

use herald::store::{ApiTokenStore, MessageBatcher};
use herald_jobs::{AccountId, MessageId, QueueName, SendMessage, UserId};
use mongodb::bson::{doc, oid::ObjectId};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{account, env_with, wait_for, TestEnv, WEB_TOKEN};

/// A running web server and a token bound to `own`.
struct Api {
    env: TestEnv,
    url: String,
    own: AccountId,
    bound: String,
}

async fn api_with(extra: &[(&str, &str)]) -> Api {
    let env = env_with(extra).await;
    let url = env.start_web().await;
    let own = account();
    let bound = env.account_token("test", own).await;
    Api {
        env,
        url,
        own,
        bound,
    }
}

async fn api() -> Api {
    api_with(&[]).await
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.url);
        crate::helpers::call_json(&self.env.http, method, &url, token, body).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// Sends `body` as it is, with a content type.
    async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let response = self
            .env
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.bound)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("web answers");
        let status = response.status();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Jobs waiting on `queue` (pending or scheduled), as the dashboard counts them.
    async fn queued_jobs(&self, queue: QueueName) -> u64 {
        let conn = herald::queue::connect(self.env.settings.redis.url.as_str())
            .await
            .expect("redis");
        let admin = herald::queue::admin::QueueAdmin::new(
            conn,
            herald::queues::config(&self.env.settings, queue),
        );
        let stats = admin.stats().await.expect("stats");
        stats.pending + stats.scheduled
    }
}

fn field_names(body: &Value) -> Vec<String> {
    body["fields"]
        .as_object()
        .map(|f| f.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn messages_enqueued_over_http_are_stored_and_pushed() {
    let mut api = api().await;
    api.env.start_worker().await;
    let user = UserId::from(ObjectId::new());
    // A bound token may leave accountId out; the operator token names it.
    let (status, first) = api
        .post(
            "/v1/messages",
            &api.bound.clone(),
            json!({"title": "Hi", "content": "<b>one</b>"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let chosen = MessageId::generate();
    let (status, second) = api
        .post(
            "/v1/messages",
            WEB_TOKEN,
            json!({
                "messageId": chosen.to_hex(), "accountId": api.own.to_hex(),
                "title": "To a user", "content": "two", "status": "warning",
                "sender": {"id": user.to_hex(), "from": "user"},
                "to": {"id": user.to_hex(), "target": "user"},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    assert_eq!(second["messageId"], chosen.to_hex());
    let ids = [
        first["messageId"].as_str().unwrap().to_owned(),
        chosen.to_hex(),
    ];
    // The message to one user is two events: in full on the user's channel,
    // a notice on the account's.
    wait_for("both messages stored and pushed", || async {
        (api.env.delivered("new_message").await.len() == 3).then_some(())
    })
    .await;
    assert_eq!(
        api.env.pushes_per_message().await,
        [(ids[0].clone(), 1), (ids[1].clone(), 2)]
            .into_iter()
            .collect()
    );
    for id in &ids {
        let stored = api
            .env
            .find_message(MessageId::parse(id).unwrap())
            .await
            .expect("stored");
        assert_eq!(
            stored.get_object_id("accountId").unwrap(),
            api.own.object_id()
        );
    }
    let second_doc = api.env.find_message(chosen).await.unwrap();
    assert_eq!(second_doc.get_str("status").unwrap(), "warning");
    assert_eq!(
        second_doc
            .get_document("to")
            .unwrap()
            .get_str("target")
            .unwrap(),
        "user"
    );
    // The same id again is accepted and stays one message; a token bound to
    // an account may not choose ids at all (it could take another's).
    let (status, _) = api
        .post(
            "/v1/messages",
            WEB_TOKEN,
            json!({
                "messageId": chosen.to_hex(), "accountId": api.own.to_hex(),
                "title": "again", "content": "x",
                "to": {"id": user.to_hex(), "target": "user"},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, refused) = api
        .post(
            "/v1/messages",
            &api.bound.clone(),
            json!({"messageId": MessageId::generate().to_hex(), "title": "mine", "content": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(refused["error"]
        .as_str()
        .unwrap()
        .contains("idempotencyKey"));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(api.env.message_count(doc! {}).await, 2);
}

#[tokio::test]
async fn bad_message_bodies_are_refused_naming_each_field_and_nothing_is_enqueued() {
    let api = api_with(&[("HERALD_WEB_MAX_BODY_BYTES", "4096")]).await;
    let token = api.bound.clone();
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "wrong type",
            json!({"title": 5, "content": "c"}),
            vec!["title"],
        ),
        ("missing field", json!({"content": "c"}), vec!["title"]),
        (
            "unknown field",
            json!({"title": "t", "content": "c", "colour": "red"}),
            vec!["colour"],
        ),
        (
            "nested unknown field",
            json!({"title": "t", "content": "c", "to": {"id": "x", "target": "user", "x": 1}}),
            vec!["to.x"],
        ),
        (
            "nested wrong type",
            json!({"title": "t", "content": "c", "sender": {"id": 1, "from": "user"}}),
            vec!["sender.id"],
        ),
        (
            "several invalid values",
            json!({"title": " ", "content": "c", "status": "fine", "idempotencyKey": "no spaces",
                   "sender": {"id": "nothex", "from": "user"}, "to": {"id": "1", "target": "group"}}),
            vec![
                "idempotencyKey",
                "sender.id",
                "status",
                "title",
                "to.target",
            ],
        ),
        ("not a JSON object", json!([1, 2]), vec!["body"]),
        // serde's array form of the fields, in order: still not an object.
        (
            "the fields as an array",
            json!([null, "t", "c", null, null, null]),
            vec!["body"],
        ),
    ];
    for (what, body, fields) in cases {
        let (status, answer) = api.post("/v1/messages", &token, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        assert_eq!(field_names(&answer), fields, "{what}: {answer}");
        assert!(answer["error"].is_string(), "{what}: {answer}");
    }
    let (status, answer) = api
        .post_raw(
            "/v1/messages",
            "application/json",
            b"{\"title\": \"t\",".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"].as_str().unwrap().contains("not valid JSON"),
        "{answer}"
    );
    let (status, _) = api
        .post_raw(
            "/v1/messages",
            "text/plain",
            b"{\"title\": \"t\", \"content\": \"c\"}".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = json!({"title": "t", "content": "x".repeat(5000)});
    let (status, answer) = api
        .post_raw(
            "/v1/messages",
            "application/json",
            big.to_string().into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(answer["error"].is_string());
    // Over the content limit but under the body limit: a field error.
    let api_small = api_with(&[("HERALD_MESSAGE_MAX_CONTENT_BYTES", "10")]).await;
    let (status, answer) = api_small
        .post(
            "/v1/messages",
            &api_small.bound.clone(),
            json!({"title": "t", "content": "12345678901"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field_names(&answer), ["content"]);
    assert_eq!(api.queued_jobs(QueueName::SendMessage).await, 0);
    assert_eq!(api_small.queued_jobs(QueueName::SendMessage).await, 0);
}

#[tokio::test]
async fn missing_wrong_revoked_and_foreign_tokens_are_refused() {
    let api = api().await;
    let other = account();
    let tokens = ApiTokenStore::new(&api.env.database);
    let (revoked, revoked_secret) = tokens
        .create("old", herald::store::TokenScope::AnyAccount)
        .await
        .unwrap();
    assert!(tokens.revoke(revoked.id).await.unwrap());
    let body = json!({"title": "t", "content": "c", "accountId": api.own.to_hex()});
    for (what, token) in [
        ("no token", None),
        ("wrong token", Some("hrd_0000")),
        ("operator-looking wrong token", Some("not-the-token")),
        ("revoked token", Some(revoked_secret.as_str())),
    ] {
        let (status, answer) = api
            .call(Method::POST, "/v1/messages", token, Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {answer}");
        assert!(answer["error"].is_string());
    }
    let response = api
        .env
        .http
        .post(format!("{}/v1/messages", api.url))
        .header("authorization", format!("Basic {}", api.bound))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // A 401 comes before the body is even read.
    let (status, _) = api
        .call(Method::POST, "/v1/messages", None, Some(json!("junk")))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The bound token and another account.
    let foreign = json!({"title": "t", "content": "c", "accountId": other.to_hex()});
    let (status, _) = api.post("/v1/messages", &api.bound, foreign.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let user = ObjectId::new().to_hex();
    let listing = format!("/v1/accounts/{}/messages", other.to_hex());
    let inbox = format!("/v1/accounts/{}/users/{user}/messages", other.to_hex());
    for path in [listing, inbox.clone(), format!("{inbox}/unread-count")] {
        let (status, _) = api.get(&path, &api.bound).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "GET {path}");
    }
    let (status, _) = api
        .post(&format!("{inbox}/read-all"), &api.bound, json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // An unbound API token reaches any account.
    let (_, unbound) = tokens
        .create("backend", herald::store::TokenScope::AnyAccount)
        .await
        .unwrap();
    let (status, answer) = api.post("/v1/messages", &unbound, foreign).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    // ...but must say which.
    let (status, answer) = api
        .post(
            "/v1/messages",
            &unbound,
            json!({"title": "t", "content": "c"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field_names(&answer), ["accountId"]);
    // API tokens do not open the operator's dashboard API.
    let (status, _) = api.get("/api/v1/queues", &unbound).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Stores `count` messages for `account` through the worker's own store;
/// every third is to `user` and has status `error`. Returns ids oldest first.
async fn store_messages(
    env: &TestEnv,
    account: AccountId,
    user: UserId,
    count: usize,
) -> Vec<String> {
    let store = MessageBatcher::spawn(&env.database);
    let mut ids = Vec::new();
    for i in 0..count {
        let mut job = SendMessage::new(account, format!("message {i}"), "c");
        if i % 3 == 0 {
            job = job.to_user(user).status(herald_jobs::MessageStatus::Error);
        }
        let valid = job.validate(&Default::default()).unwrap();
        ids.push(valid.id.to_hex());
        store.insert(valid).await.expect("insert");
    }
    ids
}

#[tokio::test]
async fn the_read_side_pages_filters_counts_and_marks_read() {
    let api = api().await;
    let user = UserId::from(ObjectId::new());
    let colleague = UserId::from(ObjectId::new());
    // 25 messages: every third (9) to `user` with status error, 16 to all.
    let mut ids = store_messages(&api.env, api.own, user, 25).await;
    // Another account's messages never show.
    store_messages(&api.env, account(), user, 3).await;
    ids.reverse(); // newest first
    let account_list = format!("/v1/accounts/{}/messages", api.own.to_hex());
    let inbox_of = |who: UserId| format!("/v1/accounts/{}/users/{who}/messages", api.own.to_hex());
    let base = inbox_of(user);

    // Pages of 10 of the user's inbox: 10, 10, 5, each newest first,
    // nothing twice or missed.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut sizes = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}?limit=10&cursor={c}"),
            // An empty cursor is the first page.
            None => format!("{base}?limit=10&cursor="),
        };
        let (status, page) = api.get(&path, &api.bound).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let messages = page["messages"].as_array().unwrap();
        sizes.push(messages.len());
        seen.extend(
            messages
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(sizes, [10, 10, 5]);
    // Same millisecond ties are broken by id, so compare as a set and by
    // createdAt order.
    assert_eq!(
        seen.iter().collect::<BTreeSet<_>>(),
        ids.iter().collect::<BTreeSet<_>>()
    );
    let (_, all) = api.get(&format!("{base}?limit=100"), &api.bound).await;
    let times: Vec<&str> = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["createdAt"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let first = &all["messages"][0];
    assert_eq!(first["accountId"], api.own.to_hex());
    assert_eq!(first["isRead"], false);
    assert_eq!(first["readAt"], Value::Null);
    assert_eq!(first["sender"], json!({"id": "system", "from": "system"}));

    // Filters: the user's inbox, a colleague's, the account's whole list.
    let count = |v: &Value| v["messages"].as_array().unwrap().len();
    for (path, expected) in [
        (format!("{base}?status=error"), 9),
        (format!("{base}?status=success"), 16),
        (inbox_of(colleague), 16),
        (format!("{}?status=error", inbox_of(colleague)), 0),
        (account_list.clone(), 25),
        (format!("{account_list}?to={user}"), 9),
        (format!("{account_list}?status=error"), 9),
    ] {
        let (status, page) = api
            .get(
                &format!(
                    "{path}{}limit=100",
                    if path.contains('?') { '&' } else { '?' }
                ),
                &api.bound,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        assert_eq!(count(&page), expected, "{path}");
    }

    // Unread counts are per user; marking one message to everyone read
    // reads it for this user alone.
    let api = &api;
    let unread_of = |who: UserId| {
        let path = format!("{}/unread-count", inbox_of(who));
        async move {
            api.get(&path, &api.bound).await.1["unread"]
                .as_u64()
                .unwrap()
        }
    };
    assert_eq!(unread_of(user).await, 25);
    assert_eq!(unread_of(colleague).await, 16);
    let target = &ids[1]; // i = 23: to everyone
    let (status, marked) = api
        .post(&format!("{base}/{target}/read"), &api.bound, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{marked}");
    assert_eq!(marked["isRead"], true);
    assert_eq!(marked["to"]["target"], "account");
    let read_at = marked["readAt"].as_str().expect("readAt set").to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (_, again) = api
        .post(&format!("{base}/{target}/read"), &api.bound, json!({}))
        .await;
    assert_eq!(again["readAt"], read_at, "the first readAt is kept");
    assert_eq!(unread_of(user).await, 24);
    assert_eq!(
        unread_of(colleague).await,
        16,
        "still unread for the colleague"
    );
    let (_, read) = api.get(&format!("{base}?isRead=true"), &api.bound).await;
    assert_eq!(count(&read), 1);
    let (_, unread_page) = api
        .get(&format!("{base}?isRead=false&limit=100"), &api.bound)
        .await;
    assert_eq!(count(&unread_page), 24);
    let (_, colleagues) = api
        .get(&format!("{}?isRead=true", inbox_of(colleague)), &api.bound)
        .await;
    assert_eq!(count(&colleagues), 0);
    // The document says someone in the account read it (`docs/security.md`, "Read state per user").
    let stored = api
        .env
        .find_message(MessageId::parse(target).unwrap())
        .await
        .unwrap();
    assert!(stored.get_bool("isRead").unwrap());

    // Several at once, then all of one status, then all.
    let several = [ids[0].clone(), ids[2].clone(), ObjectId::new().to_hex()];
    let (status, marked) = api
        .post(
            &format!("{base}/read"),
            &api.bound,
            json!({ "ids": several }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{marked}");
    assert_eq!(marked["updated"], 2, "the unknown id changes nothing");
    assert_eq!(marked["unread"], 22);
    let (status, errors_read) = api
        .post(
            &format!("{base}/read-all?status=error"),
            &api.bound,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{errors_read}");
    // ids[0] (i = 24) was one of the 9 to the user.
    assert_eq!(errors_read["updated"], 8);
    assert_eq!(errors_read["unread"], 14);
    let (_, all_read) = api
        .post(&format!("{base}/read-all"), &api.bound, json!({}))
        .await;
    assert_eq!(all_read["updated"], 14);
    assert_eq!(all_read["unread"], 0);
    assert_eq!(unread_of(user).await, 0);
    assert_eq!(unread_of(colleague).await, 16);

    // Unknown message, a colleague's message, another account's, bad
    // parameters.
    let colleagues_view = inbox_of(colleague);
    let users_own = &ids[0];
    for path in [
        format!("{base}/{}/read", ObjectId::new().to_hex()),
        format!("{colleagues_view}/{users_own}/read"),
    ] {
        let (status, answer) = api.post(&path, &api.bound, json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {answer}");
    }
    for (query, field) in [
        ("isRead=maybe", "isRead"),
        ("status=fine", "status"),
        ("limit=0", "limit"),
        ("limit=1000", "limit"),
        ("cursor=bogus", "cursor"),
        ("to=12", "query"),
        ("colour=red", "query"),
    ] {
        let (status, answer) = api.get(&format!("{base}?{query}"), &api.bound).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
        assert_eq!(field_names(&answer), [field], "{query}: {answer}");
    }
    let (status, answer) = api.get(&format!("{account_list}?to=12"), &api.bound).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field_names(&answer), ["to"]);
    let (status, answer) = api.get("/v1/accounts/nothex/messages", WEB_TOKEN).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field_names(&answer), ["accountId"]);
    let (status, answer) = api
        .get(
            &format!("/v1/accounts/{}/users/x/messages", api.own.to_hex()),
            WEB_TOKEN,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field_names(&answer), ["userId"]);
    for body in [
        json!({"ids": []}),
        json!({"ids": ["nothex"]}),
        json!({"ids": [1]}),
    ] {
        let (status, answer) = api
            .post(&format!("{base}/read"), &api.bound, body.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
    }
    let (status, _) = api
        .post(&format!("{base}/nothex/read"), &api.bound, json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

fn export_body(key: &str) -> Value {
    json!({
        "key": key, "collection": "message",
        "fields": [{"path": "title", "title": "Title"}, {"path": "status", "title": "Status"}],
        "sort": [{"path": "title"}],
    })
}

#[tokio::test]
async fn exports_are_enqueued_followed_downloaded_and_cancelled_over_http() {
    let mut api = api().await;
    let user = UserId::from(ObjectId::new());
    store_messages(&api.env, api.own, user, 30).await;
    let other = account();
    store_messages(&api.env, other, user, 5).await;

    // Queued without a worker: a second claim on the key conflicts, a
    // cancel works, the file is not there.
    let (status, accepted) = api
        .post("/v1/exports", &api.bound, export_body("first"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["key"], "first");
    let (status, _) = api
        .post("/v1/exports", &api.bound, export_body("first"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, record) = api.get("/v1/exports/first", &api.bound).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["status"], "queued");
    assert_eq!(record["accountId"], api.own.to_hex());
    let (status, _) = api.get("/v1/exports/first/file", &api.bound).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, record) = api
        .call(Method::DELETE, "/v1/exports/first", Some(&api.bound), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["status"], "cancelled");
    let (status, _) = api
        .call(Method::DELETE, "/v1/exports/first", Some(&api.bound), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // With a worker: the export runs; the file streams back.
    api.env.start_worker().await;
    let (status, accepted) = api
        .post(
            "/v1/exports",
            &api.bound,
            json!({
                "collection": "message", "fields": [{"path": "title", "title": "Title"}],
                "sort": [{"path": "title", "order": "asc"}], "filter": {"status": "error"},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let key = accepted["key"].as_str().unwrap().to_owned();
    let record = wait_for("the export to finish", || async {
        let (_, record) = api.get(&format!("/v1/exports/{key}"), &api.bound).await;
        (record["status"] == "finished").then_some(record)
    })
    .await;
    assert_eq!(record["rows"], 10);
    assert_eq!(record["percent"], 100.0);
    let response = api
        .env
        .http
        .get(format!("{}/v1/exports/{key}/file", api.url))
        .bearer_auth(&api.bound)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert!(response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains(&format!("{key}.csv")));
    let bytes = response.bytes().await.unwrap();
    assert!(bytes.starts_with("\u{feff}Title".as_bytes()));
    assert_eq!(String::from_utf8_lossy(&bytes).lines().count(), 11);
    assert_eq!(record["fileSize"].as_u64().unwrap(), bytes.len() as u64);
    // A finished export cannot be cancelled; it can be run again.
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/v1/exports/{key}"),
            Some(&api.bound),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Another account's token sees none of it: the key is its own, free.
    let tokens = ApiTokenStore::new(&api.env.database);
    let (_, foreign) = tokens
        .create("other", herald::store::TokenScope::Account(other))
        .await
        .unwrap();
    for (method, path) in [
        (Method::GET, format!("/v1/exports/{key}")),
        (Method::GET, format!("/v1/exports/{key}/file")),
        (Method::DELETE, format!("/v1/exports/{key}")),
        (Method::GET, "/v1/exports/no-such-key".to_owned()),
    ] {
        let (status, _) = api.call(method.clone(), &path, Some(&foreign), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let own = api.own.to_hex();
    for (method, path) in [
        (Method::GET, format!("/v1/exports/{key}?accountId={own}")),
        (Method::DELETE, format!("/v1/exports/{key}?accountId={own}")),
    ] {
        let (status, _) = api.call(method.clone(), &path, Some(&foreign), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    let (status, answer) = api.post("/v1/exports", &foreign, export_body(&key)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let (_, theirs) = api.get(&format!("/v1/exports/{key}"), &foreign).await;
    assert_eq!(theirs["accountId"], other.to_hex());
    let (_, mine) = api.get(&format!("/v1/exports/{key}"), &api.bound).await;
    assert_eq!(
        mine["status"], "finished",
        "untouched by the other's export"
    );
    let mut foreign_body = export_body("x1");
    foreign_body["accountId"] = json!(api.own.to_hex());
    let (status, _) = api.post("/v1/exports", &foreign, foreign_body).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The operator's token names the account.
    let (status, answer) = api.get(&format!("/v1/exports/{key}"), WEB_TOKEN).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field_names(&answer), ["accountId"]);
    let (status, record) = api
        .get(&format!("/v1/exports/{key}?accountId={own}"), WEB_TOKEN)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["accountId"], own);
    assert_eq!(
        record["fileLocation"],
        format!("{own}/{key}.csv"),
        "no path of the server"
    );

    // Bad export bodies: every wrong field at once.
    let (status, answer) = api
        .post(
            "/v1/exports",
            &api.bound,
            json!({
                "key": "bad key!", "collection": "secrets", "filter": {"$where": "1"},
                "fields": [], "sort": [{"path": "a", "order": "up"}], "timeZone": "Mars/Olympus",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        field_names(&answer),
        [
            "collection",
            "fields",
            "filter",
            "key",
            "sort.order",
            "timeZone"
        ]
    );
    let (status, answer) = api
        .post(
            "/v1/exports",
            &api.bound,
            json!({"collection": "message", "fields": "title"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field_names(&answer), ["fields"]);
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let api = api().await;
    let response = api
        .env
        .http
        .get(format!("{}/openapi.json", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                operations.insert(format!("{} {path}", method.to_uppercase()));
                assert!(
                    operation["security"].is_array(),
                    "{method} {path} names its security"
                );
                assert!(
                    operation["responses"]["401"].is_object(),
                    "{method} {path} documents 401"
                );
            }
        }
    }
    let expected: BTreeSet<String> = [
        "POST /v1/messages",
        "POST /v1/accounts/{accountId}/messages/{messageId}/recall",
        "POST /v1/exports",
        "GET /v1/exports/{key}",
        "DELETE /v1/exports/{key}",
        "GET /v1/exports/{key}/file",
        "GET /v1/accounts/{accountId}/messages",
        "GET /v1/accounts/{accountId}/users/{userId}/messages",
        "GET /v1/accounts/{accountId}/users/{userId}/messages/unread-count",
        "GET /v1/accounts/{accountId}/users/{userId}/messages/unread-counts",
        "POST /v1/accounts/{accountId}/users/{userId}/messages/{messageId}/read",
        "POST /v1/accounts/{accountId}/users/{userId}/messages/read",
        "POST /v1/accounts/{accountId}/users/{userId}/messages/read-all",
        "POST /v1/accounts/{accountId}/users/{userId}/messages/{messageId}/archive",
        "POST /v1/accounts/{accountId}/users/{userId}/messages/{messageId}/unarchive",
        "POST /v1/accounts/{accountId}/users/{userId}/messages/{messageId}/unread",
        "DELETE /v1/accounts/{accountId}/users/{userId}/messages/{messageId}",
        "POST /v1/accounts/{accountId}/users/{userId}/messages/archive",
        "POST /v1/accounts/{accountId}/users/{userId}/messages/unarchive",
        "POST /v1/accounts/{accountId}/users/{userId}/messages/unread",
        "POST /v1/accounts/{accountId}/users/{userId}/messages/delete",
        "POST /v1/push/auth",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(operations, expected);
    // Every documented operation is routed: without a token it answers 401
    // (not 404 or 405), with the JSON error shape the document describes.
    for operation in &operations {
        let (method, path) = operation.split_once(' ').unwrap();
        let concrete = path
            .replace("{accountId}", &api.own.to_hex())
            .replace("{userId}", &ObjectId::new().to_hex())
            .replace("{messageId}", &ObjectId::new().to_hex())
            .replace("{key}", "some-key");
        let (status, answer) = api
            .call(method.parse().unwrap(), &concrete, None, Some(json!({})))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{operation}: {answer}");
        assert!(answer["error"].is_string());
    }
    // Schemas of the bodies are in the document.
    for schema in [
        "MessageRequest",
        "ExportRequest",
        "InboxMessage",
        "ProblemBody",
        "ExportRecord",
    ] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "schema {schema}"
        );
    }
    // An unknown /v1 path is a JSON 404.
    let (status, answer) = api.get("/v1/nothing", &api.bound).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(answer["error"].is_string());
}

#[tokio::test]
async fn the_token_cli_creates_lists_and_revokes_tokens_that_work() {
    let api = api().await;
    let output = api.env.run_herald(
        &[
            "token",
            "create",
            "--name",
            "php-shop",
            "--account",
            &api.own.to_hex(),
        ],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let secret = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(secret.starts_with("hrd_"));
    let (status, _) = api
        .post(
            "/v1/messages",
            &secret,
            json!({"title": "t", "content": "c"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let listed = api.env.run_herald(&["token", "list"], &[]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    let line = listed
        .lines()
        .find(|l| l.contains("php-shop"))
        .expect("listed");
    assert!(line.contains(&api.own.to_hex()));
    assert!(!listed.contains(&secret), "the secret is never shown again");
    let id = line.split('\t').next().unwrap();
    let revoked = api.env.run_herald(&["token", "revoke", id], &[]);
    assert!(revoked.status.success());
    let (status, _) = api
        .post(
            "/v1/messages",
            &secret,
            json!({"title": "t", "content": "c"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let again = api.env.run_herald(&["token", "revoke", id], &[]);
    assert!(!again.status.success());
    let bad = api.env.run_herald(
        &["token", "create", "--name", "x", "--account", "nothex"],
        &[],
    );
    assert!(!bad.status.success());
}

#[tokio::test]
async fn a_message_enqueued_over_http_while_the_worker_is_down_runs_when_it_starts() {
    let mut api = api().await;
    let (status, accepted) = api
        .post(
            "/v1/messages",
            &api.bound.clone(),
            json!({"title": "later", "content": "c"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(api.queued_jobs(QueueName::SendMessage).await, 1);
    api.env.start_worker().await;
    let id = MessageId::parse(accepted["messageId"].as_str().unwrap()).unwrap();
    wait_for("the message stored", || async {
        api.env.find_message(id).await
    })
    .await;
}
