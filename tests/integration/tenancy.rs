//! Tenants and users, tried as an attacker holding one account's token
//! would: two accounts, two users each, over `/v1`, the `herald-jobs`
//! producer and the CLI.
//!
//! - no account can suppress, replace or probe another's messages;
//! - export keys belong to their account;
//! - an export's cost is bounded, each refusal naming its setting;
//! - a user's message reaches that user only, and read state is per user,
//!   kept in sync by `message_read`;
//! - the smaller points: tokens that fail closed, a worker that records
//!   nothing under an unchecked key, header cells neutralised, records of
//!   an earlier release adopted.

use std::{collections::HashSet, time::Duration};

use herald::{
    push::{account_channel, UserChannels},
    store::{ApiTokenStore, TokenScope},
};
use herald_jobs::{AccountId, MessageId, QueueName, SendMessage, UserId};
use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    export_helpers::{status_of, wait_status},
    helpers::{account, call_json, env_with, wait_for, TestEnv, WEB_TOKEN},
};

/// One account with two users, and tokens for the account and each user.
pub(crate) struct Tenant {
    pub account: AccountId,
    pub users: [UserId; 2],
    pub token: String,
    pub user_tokens: [String; 2],
}

/// A running `herald web` (and, when asked, a worker) and two tenants.
pub(crate) struct World {
    pub env: TestEnv,
    pub url: String,
    pub a: Tenant,
    pub b: Tenant,
}

async fn tenant(tokens: &ApiTokenStore) -> Tenant {
    let account = account();
    let users = [UserId::from(ObjectId::new()), UserId::from(ObjectId::new())];
    let create = |scope| async move { tokens.create("tenant", scope).await.expect("token").1 };
    Tenant {
        account,
        users,
        token: create(TokenScope::Account(account)).await,
        user_tokens: [
            create(TokenScope::User(account, users[0])).await,
            create(TokenScope::User(account, users[1])).await,
        ],
    }
}

pub(crate) async fn world(extra: &[(&str, &str)], worker: bool) -> World {
    let mut env = env_with(extra).await;
    if worker {
        env.start_worker().await;
    }
    let url = env.start_web().await;
    let tokens = ApiTokenStore::new(&env.database);
    tokens.ensure_indexes().await.expect("token index");
    let a = tenant(&tokens).await;
    let b = tenant(&tokens).await;
    World { env, url, a, b }
}

impl World {
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.url);
        crate::helpers::call_json(&self.env.http, method, &url, token, body).await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// The user's inbox path.
    pub(crate) fn inbox(tenant: &Tenant, user: usize) -> String {
        format!(
            "/v1/accounts/{}/users/{}/messages",
            tenant.account, tenant.users[user]
        )
    }

    /// What `user` of `tenant` has not read, asked with `token`.
    async fn unread(&self, tenant: &Tenant, user: usize) -> u64 {
        let path = format!("{}/unread-count", Self::inbox(tenant, user));
        let (status, answer) = self.get(&path, &tenant.user_tokens[user]).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["unread"].as_u64().expect("a count")
    }

    /// The ids in `user`'s inbox.
    async fn inbox_ids(&self, tenant: &Tenant, user: usize) -> HashSet<String> {
        let path = format!("{}?limit=100", Self::inbox(tenant, user));
        let (status, page) = self.get(&path, &tenant.user_tokens[user]).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| m["id"].as_str().expect("an id").to_owned())
            .collect()
    }
}

/// The error a dead job of `queue` recorded, for the only dead job there.
async fn dead_reason(env: &TestEnv, queue: QueueName) -> String {
    let dead = wait_for("one dead job", || async {
        let dead = env.queue_set(queue, "dead").await;
        (dead.len() == 1).then_some(dead)
    })
    .await;
    let meta = env.job_meta(queue, &dead[0]).await;
    meta.get("result").cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_account_can_suppress_replace_or_probe_anothers_messages() {
    let w = world(&[], true).await;
    let (a, b) = (&w.a, &w.b);

    // A token bound to an account may not choose ids at all.
    let guessed = MessageId::generate();
    let (status, answer) = w
        .post(
            "/v1/messages",
            &a.token,
            json!({"messageId": guessed.to_hex(), "title": "squat", "content": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");

    // The same idempotency key in two accounts: two messages, each stored
    // and pushed for its own account.
    let body = json!({"idempotencyKey": "order-42:shipped", "title": "Shipped", "content": "x"});
    let (_, first_a) = w.post("/v1/messages", &a.token, body.clone()).await;
    let (_, again_a) = w.post("/v1/messages", &a.token, body.clone()).await;
    let (status, first_b) = w.post("/v1/messages", &b.token, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first_b}");
    assert_eq!(
        first_a["messageId"], again_a["messageId"],
        "a retry is one message"
    );
    assert_ne!(first_a["messageId"], first_b["messageId"]);
    wait_for("both accounts' messages pushed", || async {
        (w.env.delivered("new_message").await.len() == 2).then_some(())
    })
    .await;
    for (tenant, answer) in [(a, &first_a), (b, &first_b)] {
        let id = MessageId::parse(answer["messageId"].as_str().unwrap()).unwrap();
        let stored = w.env.find_message(id).await.expect("stored");
        assert_eq!(
            stored.get_object_id("accountId").unwrap(),
            tenant.account.object_id()
        );
        let pushed: Vec<_> = w
            .env
            .delivered("new_message")
            .await
            .into_iter()
            .filter(|e| e.data["messageId"] == answer["messageId"])
            .collect();
        assert_eq!(pushed.len(), 1);
        assert_eq!(pushed[0].channels, [account_channel(tenant.account)]);
    }

    // Ids Herald makes follow no counter: twenty in a row share no random
    // part and none is one more than the one before.
    let mut generated = Vec::new();
    for i in 0..20 {
        let (_, answer) = w
            .post(
                "/v1/messages",
                &a.token,
                json!({"title": format!("n{i}"), "content": "x"}),
            )
            .await;
        let id = ObjectId::parse_str(answer["messageId"].as_str().unwrap()).unwrap();
        generated.push(id.bytes());
    }
    let randoms: HashSet<[u8; 8]> = generated
        .iter()
        .map(|id| id[4..].try_into().unwrap())
        .collect();
    assert_eq!(randoms.len(), generated.len());
    let tail = |id: &[u8; 12]| u32::from_be_bytes([0, id[9], id[10], id[11]]);
    assert!(generated
        .windows(2)
        .all(|p| tail(&p[1]) != tail(&p[0]).wrapping_add(1)));

    // A trusted producer (the CLI, with Redis access) that reuses another
    // account's id is told so: its job goes dead naming the conflict;
    // nothing is stored or pushed for it and A's message is untouched.
    let taken = first_a["messageId"].as_str().unwrap();
    let output = w.env.run_herald(
        &[
            "enqueue",
            "message",
            "--account",
            &b.account.to_hex(),
            "--title",
            "replacement",
            "--content",
            "x",
            "--message-id",
            taken,
        ],
        &[],
    );
    assert!(output.status.success(), "{output:?}");
    let reason = dead_reason(&w.env, QueueName::SendMessage).await;
    assert!(
        reason.contains("already the id of another message"),
        "{reason}"
    );
    assert!(
        !reason.contains(&a.account.to_hex()),
        "names no account: {reason}"
    );
    let stored = w
        .env
        .find_message(MessageId::parse(taken).unwrap())
        .await
        .expect("still there");
    assert_eq!(stored.get_str("title").unwrap(), "Shipped");
    assert_eq!(
        stored.get_object_id("accountId").unwrap(),
        a.account.object_id()
    );
    assert_eq!(w.env.message_count(doc! {"title": "replacement"}).await, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        w.env.pushes_per_message().await[taken],
        1,
        "not pushed again"
    );

    // No answer to A depends on what B has: B's message id is as unknown to
    // A's routes as an id no one has.
    let b_id = first_b["messageId"].as_str().unwrap();
    let inbox = World::inbox(a, 0);
    for id in [b_id.to_owned(), ObjectId::new().to_hex()] {
        let (status, answer) = w
            .post(&format!("{inbox}/{id}/read"), &a.user_tokens[0], json!({}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
        assert!(!answer["error"].as_str().unwrap().contains("another"));
    }
    let (_, marked) = w
        .post(&format!("{inbox}/read"), &a.token, json!({"ids": [b_id]}))
        .await;
    assert_eq!(marked["updated"], 0);
    let b_doc = w
        .env
        .find_message(MessageId::parse(b_id).unwrap())
        .await
        .unwrap();
    assert!(!b_doc.get_bool("isRead").unwrap(), "B's message untouched");
}

/// A collection `customer` with `rows` documents for each of `accounts`.
async fn seed_customers(env: &TestEnv, accounts: &[AccountId], rows: usize) {
    let collection = env.database.collection::<Document>("customer");
    for account in accounts {
        let documents: Vec<Document> = (0..rows)
            .map(|i| {
                doc! {
                    "accountId": account.object_id(), "seq": i as i32,
                    "name": format!("{account} #{i}"), "tags": ["a", "b"],
                }
            })
            .collect();
        collection.insert_many(documents).await.expect("seed");
    }
}

fn export_body(key: &str) -> Value {
    json!({
        "key": key, "collection": "customer",
        "fields": [{"path": "name", "title": "Name"}, {"path": "seq", "title": "=Seq"}],
        "sort": [{"path": "seq"}],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_keys_belong_to_their_account() {
    let w = world(&[], false).await;
    let (a, b) = (&w.a, &w.b);
    seed_customers(&w.env, &[a.account, b.account], 30).await;

    // Queued (no worker yet): the key is A's, and B's is its own.
    let (status, answer) = w.post("/v1/exports", &a.token, export_body("report")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let (status, answer) = w.post("/v1/exports", &a.token, export_body("report")).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "A's own export is queued: {answer}"
    );
    let (status, answer) = w.post("/v1/exports", &b.token, export_body("report")).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "no oracle, no squatting: {answer}"
    );
    // B cancels its own export of a key A uses too; A's stays queued.
    for tenant in [a, b] {
        let (status, _) = w
            .post("/v1/exports", &tenant.token, export_body("shared"))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (status, record) = w
        .call(Method::DELETE, "/v1/exports/shared", Some(&b.token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(
        status_of(&w.env, a.account, "shared")
            .await
            .get_str("status"),
        Ok("queued")
    );
    assert_eq!(
        status_of(&w.env, b.account, "shared")
            .await
            .get_str("status"),
        Ok("cancelled")
    );
    // A key taken in A and one no one has answer B the same.
    for key in ["report-2", "never-used"] {
        if key == "report-2" {
            w.post("/v1/exports", &a.token, export_body(key)).await;
        }
        let (status, answer) = w.get(&format!("/v1/exports/{key}"), &b.token).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{key}");
        assert_eq!(answer["error"], format!("no export with key '{key}'"));
    }

    // Run them: each file holds its account's rows.
    let mut env = w.env;
    env.start_worker().await;
    for tenant in [a, b] {
        let record = wait_status(&env, tenant.account, "report", "finished").await;
        assert_eq!(record.get_str("key"), Ok("report"));
        assert_eq!(
            record.get_str("fileLocation"),
            Ok(format!("{}/report.csv", tenant.account).as_str())
        );
        let text = std::fs::read_to_string(
            env.settings
                .export
                .dir
                .join(tenant.account.to_hex())
                .join("report.csv"),
        )
        .expect("the file");
        let mut lines = text.lines();
        // The title a spreadsheet would run as a formula is neutralised.
        assert_eq!(lines.next(), Some("\u{feff}Name,'=Seq"));
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), 30);
        assert!(rows.iter().all(|r| r.starts_with(&tenant.account.to_hex())));
    }
    // export_finish went to each account's channel, once (it is pushed
    // after the status record says done, so wait for both).
    let finishes = wait_for("each account's export_finish", || async {
        let finishes = env.delivered("export_finish").await;
        let reached = [a, b].iter().all(|tenant| {
            finishes.iter().any(|e| {
                e.channels == [account_channel(tenant.account)] && e.data["key"] == "report"
            })
        });
        reached.then_some(finishes)
    })
    .await;
    for tenant in [a, b] {
        let mine: Vec<_> = finishes
            .iter()
            .filter(|e| {
                e.channels == [account_channel(tenant.account)] && e.data["key"] == "report"
            })
            .collect();
        assert_eq!(mine.len(), 1);
    }

    // The CLI addresses an account's export by both.
    let output = env.run_herald(
        &[
            "export",
            "status",
            "--account",
            &b.account.to_hex(),
            "report",
        ],
        &[],
    );
    let record: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(record["accountId"]["$oid"], b.account.to_hex());
    assert_eq!(record["key"], "report");
    let output = env.run_herald(&["export", "status", "report"], &[]);
    assert!(!output.status.success(), "--account is required");

    // Keys Herald makes are unpredictable: 24 hex digits, no counter.
    let mut keys = HashSet::new();
    for _ in 0..5 {
        let (_, answer) = env
            .http
            .post(format!("{}/v1/exports", w.url))
            .bearer_auth(&a.token)
            .json(&json!({"collection": "customer", "fields": [{"path": "name", "title": "N"}]}))
            .send()
            .await
            .map(|r| (r.status(), r))
            .expect("answers");
        let key: Value = answer.json().await.expect("JSON");
        let key = key["key"].as_str().expect("a key").to_owned();
        assert_eq!(key.len(), 24);
        keys.insert(key[8..].to_owned());
    }
    assert_eq!(keys.len(), 5);
    env.stop_worker().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costly_export_filters_are_refused_naming_their_setting() {
    let w = world(&[("HERALD_EXPORT_MAX_FIELDS", "3")], false).await;
    let mut deep = json!({"a": 1});
    for _ in 0..8 {
        deep = json!({ "$and": [deep] });
    }
    let cases = [
        (
            json!({"$expr": {"$gt": [{"$size": {"$range": [0, 1_000_000]}}, 0]}}),
            "export.filter_operators",
        ),
        (json!({"$where": "sleep(100)"}), "JavaScript"),
        (
            json!({"name": {"$regex": "(a+)+$".repeat(30)}}),
            "export.max_regex_bytes",
        ),
        (deep, "export.max_filter_depth"),
        (
            json!({"seq": {"$in": (0..5000).collect::<Vec<i32>>()}}),
            "export.max_filter_bytes",
        ),
    ];
    for (filter, setting) in cases {
        let mut body = export_body("costly");
        body["filter"] = filter.clone();
        let (status, answer) = w.post("/v1/exports", &w.a.token, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{filter}: {answer}");
        let reason = answer["fields"]["filter"].as_str().unwrap_or_default();
        assert!(reason.contains(setting), "{filter}: {answer}");
    }
    let mut body = export_body("wide");
    body["fields"] = json!((0..4)
        .map(|i| json!({"path": format!("f{i}"), "title": format!("F{i}")}))
        .collect::<Vec<_>>());
    let (status, answer) = w.post("/v1/exports", &w.a.token, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["fields"]["fields"]
        .as_str()
        .unwrap()
        .contains("export.max_fields"));
    // Nothing was queued or recorded for any of them.
    assert_eq!(
        w.env
            .database
            .collection::<Document>("export")
            .count_documents(doc! {})
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_over_its_time_or_row_limit_fails_naming_the_setting_and_is_not_retried() {
    // An operator who allows expressions still has the time limit.
    let w = world(
        &[
            ("HERALD_EXPORT_FILTER_OPERATORS", "$expr,$gt,$size,$range"),
            ("HERALD_EXPORT_MAX_QUERY_MS", "300"),
            ("HERALD_EXPORT_MAX_ROWS", "50"),
        ],
        true,
    )
    .await;
    let a = &w.a;
    seed_customers(&w.env, &[a.account], 200).await;
    let mut slow = export_body("slow");
    slow["filter"] = json!({"$expr": {"$gt": [{"$size": {"$range": [0, 2_000_000]}}, 0]}});
    let (status, answer) = w.post("/v1/exports", &a.token, slow).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let failed = wait_status(&w.env, a.account, "slow", "failed").await;
    let error = failed.get_str("error").unwrap();
    assert!(error.contains("export.max_query_ms"), "{error}");
    let (status, answer) = w.post("/v1/exports", &a.token, export_body("big")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let failed = wait_status(&w.env, a.account, "big", "failed").await;
    assert!(failed.get_str("error").unwrap().contains("export.max_rows"));
    assert!(!w
        .env
        .settings
        .export
        .dir
        .join(a.account.to_hex())
        .join("big.csv")
        .exists());
    // Each ran once and went dead; export_failed told the account.
    wait_for("both exports dead", || async {
        (w.env.queue_set(QueueName::Export, "dead").await.len() == 2).then_some(())
    })
    .await;
    for id in w.env.queue_set(QueueName::Export, "dead").await {
        assert_eq!(
            w.env.job_meta(QueueName::Export, &id).await["attempts"],
            "1"
        );
    }
    wait_for("two export_failed", || async {
        (w.env.delivered("export_failed").await.len() == 2).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accounts_exports_beyond_its_limit_wait_and_others_run_meanwhile() {
    let w = world(
        &[
            ("HERALD_EXPORT_MAX_RUNNING_PER_ACCOUNT", "1"),
            ("HERALD_QUEUES_EXPORT_CONCURRENCY", "3"),
            ("HERALD_EXPORT_BATCH_SIZE", "50"),
            ("HERALD_EXPORT_PROGRESS_INTERVAL_MS", "1"),
        ],
        true,
    )
    .await;
    let (a, b) = (&w.a, &w.b);
    seed_customers(&w.env, &[a.account, b.account], 1_000).await;
    // Each progress event waits 100 ms at the provider: a run lasts seconds.
    w.env.script_failures(None, 100, 10_000).await;
    for key in ["a1", "a2", "a3"] {
        let (status, _) = w.post("/v1/exports", &a.token, export_body(key)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (status, _) = w.post("/v1/exports", &b.token, export_body("b1")).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let exports = w.env.database.collection::<Document>("export");
    let running = |account: AccountId| {
        let exports = exports.clone();
        async move {
            exports
                .count_documents(doc! {"accountId": account.object_id(), "status": "running"})
                .await
                .unwrap()
        }
    };
    let (mut most_of_a, mut together) = (0, false);
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let (of_a, of_b) = (running(a.account).await, running(b.account).await);
        most_of_a = most_of_a.max(of_a);
        together |= of_a == 1 && of_b == 1;
        let finished = exports
            .count_documents(doc! {"status": "finished"})
            .await
            .unwrap();
        if finished == 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "every export to finish (a deadline against hangs)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(most_of_a, 1, "A never ran two at once");
    assert!(together, "B's export ran while A's were waiting");
    // Waiting cost no attempt and failed nothing.
    assert!(w.env.queue_set(QueueName::Export, "dead").await.is_empty());
    assert_eq!(
        exports
            .count_documents(doc! {"status": "failed"})
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_message_reaches_that_user_only_and_only_they_may_join_its_channel() {
    let w = world(&[("HERALD_PUSH_PROVIDER", "pusher")], true).await;
    let (a, b) = (&w.a, &w.b);
    let channels = UserChannels::default();
    let (u, v) = (a.users[0], a.users[1]);

    // To the whole account, then to U alone.
    w.post(
        "/v1/messages",
        &a.token,
        json!({"title": "To all", "content": "x"}),
    )
    .await;
    let (status, private) = w
        .post(
            "/v1/messages",
            &a.token,
            json!({"title": "Your review", "content": "secret", "to": {"id": u.to_hex(), "target": "user"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{private}");
    let private_id = private["messageId"].as_str().unwrap().to_owned();
    let events = wait_for("three new_message events", || async {
        let events = w.env.delivered("new_message").await;
        (events.len() == 3).then_some(events)
    })
    .await;
    let on = |channel: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e.channels.iter().any(|c| c == channel))
            .map(|e| &e.data)
            .collect()
    };
    let to_u = on(&channels.channel(a.account, u));
    assert_eq!(to_u.len(), 1);
    assert_eq!(to_u[0]["title"], "Your review");
    assert!(on(&channels.channel(a.account, v)).is_empty());
    let everyone = on(&account_channel(a.account));
    assert_eq!(everyone.len(), 2);
    let notice = everyone
        .iter()
        .find(|d| d["messageId"] == private_id.as_str())
        .expect("a notice on the account channel");
    let mut fields: Vec<&str> = notice
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["accountId", "id", "messageId", "sender", "status"]);
    assert!(!notice.to_string().contains("review") && !notice.to_string().contains("secret"));

    // The inboxes: U sees both, V only the one to all.
    assert!(w.inbox_ids(a, 0).await.contains(&private_id));
    let colleague = w.inbox_ids(a, 1).await;
    assert_eq!(colleague.len(), 1);
    assert!(!colleague.contains(&private_id));

    // Channel signatures: a user's channel for that user only.
    let world = &w;
    let auth = |token: &str, channel: String, user: UserId| {
        let body = json!({"socketId": "1.2", "channelName": channel, "userId": user.to_hex()});
        let token = token.to_owned();
        async move { world.post("/v1/push/auth", &token, body).await.0 }
    };
    let u_channel = channels.channel(a.account, u);
    let v_channel = channels.channel(a.account, v);
    let cases = [
        (a.token.as_str(), u_channel.clone(), u, StatusCode::OK),
        (
            a.token.as_str(),
            u_channel.clone(),
            v,
            StatusCode::FORBIDDEN,
        ),
        (
            a.user_tokens[0].as_str(),
            u_channel.clone(),
            u,
            StatusCode::OK,
        ),
        (
            a.user_tokens[1].as_str(),
            u_channel.clone(),
            u,
            StatusCode::FORBIDDEN,
        ),
        (
            a.user_tokens[1].as_str(),
            u_channel.clone(),
            v,
            StatusCode::FORBIDDEN,
        ),
        (
            a.user_tokens[1].as_str(),
            v_channel.clone(),
            v,
            StatusCode::OK,
        ),
        (
            a.user_tokens[1].as_str(),
            account_channel(a.account),
            v,
            StatusCode::OK,
        ),
        (
            a.user_tokens[1].as_str(),
            account_channel(a.account),
            u,
            StatusCode::FORBIDDEN,
        ),
        (
            b.token.as_str(),
            u_channel.clone(),
            u,
            StatusCode::FORBIDDEN,
        ),
        (
            b.user_tokens[0].as_str(),
            account_channel(a.account),
            b.users[0],
            StatusCode::FORBIDDEN,
        ),
        (WEB_TOKEN, u_channel, u, StatusCode::OK),
    ];
    for (i, (token, channel, user, expected)) in cases.into_iter().enumerate() {
        assert_eq!(
            auth(token, channel.clone(), user).await,
            expected,
            "case {i}: {channel}"
        );
    }

    // A user's token reads that user's inbox and nothing else.
    let v_token = &a.user_tokens[1];
    for (method, path, body) in [
        (Method::GET, World::inbox(a, 0), None),
        (
            Method::GET,
            format!("/v1/accounts/{}/messages", a.account),
            None,
        ),
        (
            Method::POST,
            "/v1/messages".to_owned(),
            Some(json!({"title": "t", "content": "c"})),
        ),
        (
            Method::POST,
            "/v1/exports".to_owned(),
            Some(export_body("mine")),
        ),
        (Method::GET, "/v1/exports/mine".to_owned(), None),
        (Method::GET, World::inbox(b, 0), None),
    ] {
        let (status, answer) = w.call(method.clone(), &path, Some(v_token), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
    }
    // No token at all: 401 everywhere.
    let (status, _) = w.call(Method::GET, &World::inbox(a, 0), None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_state_is_per_user_and_each_mark_tells_the_users_other_pages() {
    let w = world(&[], true).await;
    let a = &w.a;
    let channels = UserChannels::default();
    let mut ids = Vec::new();
    for i in 0..3 {
        let (_, answer) = w
            .post(
                "/v1/messages",
                &a.token,
                json!({"title": format!("all {i}"), "content": "x"}),
            )
            .await;
        ids.push(answer["messageId"].as_str().unwrap().to_owned());
    }
    wait_for("three stored", || async {
        (w.env.message_count(doc! {}).await == 3).then_some(())
    })
    .await;
    assert_eq!((w.unread(a, 0).await, w.unread(a, 1).await), (3, 3));

    // U reads one: it stays unread for V.
    let inbox = World::inbox(a, 0);
    let (status, read) = w
        .post(
            &format!("{inbox}/{}/read", ids[0]),
            &a.user_tokens[0],
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!((w.unread(a, 0).await, w.unread(a, 1).await), (2, 3));
    // U reads all; V still has three, B's users nothing of A's.
    let (_, all) = w
        .post(&format!("{inbox}/read-all"), &a.user_tokens[0], json!({}))
        .await;
    assert_eq!(all["updated"], 2);
    assert_eq!(all["unread"], 0);
    assert_eq!((w.unread(a, 0).await, w.unread(a, 1).await), (0, 3));
    // A later message is unread for U again.
    w.post(
        "/v1/messages",
        &a.token,
        json!({"title": "later", "content": "x"}),
    )
    .await;
    wait_for("the later one stored", || async {
        (w.env.message_count(doc! {}).await == 4).then_some(())
    })
    .await;
    assert_eq!((w.unread(a, 0).await, w.unread(a, 1).await), (1, 4));

    // Each mark pushed message_read to U's channel, with the ids (or
    // "all") and the new count; nothing went to V's.
    let reads = wait_for("two message_read events", || async {
        let reads = w.env.delivered("message_read").await;
        (reads.len() == 2).then_some(reads)
    })
    .await;
    let u_channel = channels.channel(a.account, a.users[0]);
    assert!(reads.iter().all(|e| e.channels == [u_channel.clone()]));
    let data: Vec<&Value> = reads.iter().map(|e| &e.data).collect();
    assert!(
        data.contains(&&json!({"ids": [ids[0]], "unread": 2})),
        "{data:?}"
    );
    assert!(
        data.contains(&&json!({"ids": "all", "unread": 0})),
        "{data:?}"
    );
    // A mark that reads nothing new pushes nothing.
    w.post(
        &format!("{inbox}/{}/read", ids[0]),
        &a.user_tokens[0],
        json!({}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.env.delivered("message_read").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_fail_closed_and_the_worker_records_nothing_under_an_unchecked_key() {
    let w = world(&[], true).await;
    // A token record whose account is not an ObjectId reaches nothing.
    let secret = format!("hrd_{}", "ab".repeat(32));
    w.env
        .database
        .collection::<Document>("api_token")
        .insert_one(doc! {
            "_id": ObjectId::new(), "name": "damaged",
            "digest": herald::secret::digest(&secret),
            "accountId": w.a.account.to_hex(), "createdAt": DateTime::now(),
        })
        .await
        .unwrap();
    let body = json!({"title": "t", "content": "c", "accountId": w.b.account.to_hex()});
    let (status, _) = w.post("/v1/messages", &secret, body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // ...and the CLI refuses to make one.
    let output = w.env.run_herald(
        &["token", "create", "--name", "x", "--account", "not-an-id"],
        &[],
    );
    assert!(!output.status.success());
    let output = w.env.run_herald(
        &[
            "token",
            "create",
            "--name",
            "x",
            "--user",
            &ObjectId::new().to_hex(),
        ],
        &[],
    );
    assert!(!output.status.success(), "--user needs --account");

    // An export job written straight to Redis with a key that is a path:
    // dead, nothing recorded, no file anywhere.
    w.env
        .push_raw_to(
            QueueName::Export,
            json!({
                "accountId": w.a.account.to_hex(), "key": "../../../x",
                "collection": "customer", "fields": [{"path": "a", "title": "A"}],
            }),
        )
        .await;
    let reason = dead_reason(&w.env, QueueName::Export).await;
    assert!(reason.contains("key"), "{reason}");
    assert_eq!(
        w.env
            .database
            .collection::<Document>("export")
            .count_documents(doc! {})
            .await
            .unwrap(),
        0
    );
    assert!(w.env.delivered("export_failed").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_earlier_release_left_keeps_working_exports_and_read_state() {
    let mut env = env_with(&[]).await;
    let account = account();
    // Messages to the account as an earlier release left them: read for
    // the whole account, or not.
    let hour_ago = DateTime::from_millis(DateTime::now().timestamp_millis() - 3_600_000);
    let legacy = |i: i64, read: bool| {
        doc! {
            "_id": ObjectId::new(), "accountId": account.object_id(),
            "title": format!("old {i}"), "content": "x",
            "sender": {"id": "system", "from": "system"},
            "to": {"id": account.object_id(), "target": "account"},
            "status": "success", "isRead": read,
            "createdAt": DateTime::from_millis(hour_ago.timestamp_millis() + i * 1000),
            "readAt": if read { mongodb::bson::Bson::DateTime(hour_ago) } else { mongodb::bson::Bson::Null },
        }
    };
    env.messages()
        .insert_many([legacy(0, true), legacy(1, true), legacy(2, false)])
        .await
        .unwrap();
    // As an earlier release left it: `_id` the bare key, an absolute path.
    let folder = env.settings.export.dir.join(account.to_hex());
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("legacy.csv"), "\u{feff}A\n1\n").unwrap();
    let now = DateTime::now();
    env.database
        .collection::<Document>("export")
        .insert_one(doc! {
            "_id": "legacy", "accountId": account.object_id(), "collection": "customer",
            "status": "finished", "processed": 1_i64, "total": 1_i64, "percent": 100.0,
            "rows": 1_i64, "fileName": "legacy.csv", "fileSize": 6_i64,
            "fileLocation": folder.join("legacy.csv").display().to_string(),
            "queuedAt": now, "updatedAt": now, "finishedAt": now,
        })
        .await
        .unwrap();
    env.start_worker().await;
    wait_for("the record adopted", || async {
        (!status_of(&env, account, "legacy").await.is_empty()).then_some(())
    })
    .await;
    let url = env.start_web().await;
    let tokens = ApiTokenStore::new(&env.database);
    let (_, token) = tokens
        .create("t", TokenScope::Account(account))
        .await
        .unwrap();
    let record: Value = env
        .http
        .get(format!("{url}/v1/exports/legacy"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(record["status"], "finished");
    assert_eq!(record["fileLocation"], format!("{account}/legacy.csv"));
    let file = env
        .http
        .get(format!("{url}/v1/exports/legacy/file"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), StatusCode::OK);
    assert_eq!(file.text().await.unwrap(), "\u{feff}A\n1\n");

    // What the account had read stays read for every user; the one it had
    // not is unread for each, and reading it is per user from now on.
    let users = [UserId::from(ObjectId::new()), UserId::from(ObjectId::new())];
    let inbox = |user: UserId| format!("{url}/v1/accounts/{account}/users/{user}/messages");
    let unread = |user: UserId| {
        let (http, path, token) = (env.http.clone(), inbox(user), token.clone());
        async move {
            let path = format!("{path}/unread-count");
            let (_, answer) = call_json(&http, Method::GET, &path, Some(&token), None).await;
            answer["unread"].as_u64().unwrap()
        }
    };
    assert_eq!((unread(users[0]).await, unread(users[1]).await), (1, 1));
    let (_, page) = call_json(&env.http, Method::GET, &inbox(users[0]), Some(&token), None).await;
    let read: Vec<bool> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["isRead"].as_bool().unwrap())
        .collect();
    assert_eq!(read, [false, true, true], "newest first");
    let newest = page["messages"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("{}/{newest}/read", inbox(users[0]));
    let (status, _) = call_json(&env.http, Method::POST, &path, Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((unread(users[0]).await, unread(users[1]).await), (0, 1));
    env.stop_worker().await.expect("stops");
}

/// Sends a message as `SendMessage` to one user through the producer, so
/// the user-addressed path is taken from Rust as well as over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producers_message_to_one_user_is_stored_for_them_alone() {
    let w = world(&[], true).await;
    let a = &w.a;
    let id = w
        .env
        .enqueue(SendMessage::new(a.account, "Only you", "x").to_user(a.users[1]))
        .await;
    wait_for("stored", || async { w.env.find_message(id).await }).await;
    assert!(w.inbox_ids(a, 1).await.contains(&id.to_hex()));
    assert!(!w.inbox_ids(a, 0).await.contains(&id.to_hex()));
    assert_eq!((w.unread(a, 0).await, w.unread(a, 1).await), (0, 1));
}
