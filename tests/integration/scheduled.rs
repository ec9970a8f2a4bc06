//! Scheduled sends (`sendAt`) and recalls, end to end: over HTTP, through
//! the Rust producer and the CLI, with a real worker, Redis, MongoDB and
//! the push sandbox.
//!
//! - a scheduled message waits in the send_message queue's scheduled set,
//!   then is stored once and pushed once, at its time and not before;
//! - a `sendAt` in the past goes at once; one too far ahead, or not RFC
//!   3339, is refused naming `sendAt` and enqueues nothing;
//! - a recalled message is never stored nor pushed; a message that went
//!   cannot be recalled (409); refusals (400, 401, 403, 404) tell nothing
//!   of another account's messages nor of Herald's insides;
//! - a recall racing the worker's fetch ends each message in exactly one
//!   outcome: recalled (never stored, never pushed) or started (stored
//!   once, pushed once).

use std::{collections::HashMap, fmt::Display, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use futures::TryStreamExt;
use herald::store::{ApiTokenStore, TokenScope};
use herald_jobs::{AccountId, MessageId, Producer, QueueName, Recall, SendMessage, UserId};
use mongodb::bson::{doc, oid::ObjectId};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    dashboard::api_get_json,
    helpers::{account, call_json, env_with, wait_within, TestEnv, WEB_TOKEN},
};

/// How long a message may take to arrive once it is due: a deadline
/// against hangs, not a speed requirement.
const ARRIVAL: Duration = Duration::from_secs(15);

/// Messages racing their recalls in each round of the race.
const RACERS: usize = 100;

/// The rounds of the race: when each round's recalls are sent, from the
/// first to the last, in milliseconds from the messages' due time. The
/// later rounds crowd them around the moment the worker's timer fires.
const SPREADS: [(i64, i64); 3] = [(-100, 200), (-30, 30), (-10, 10)];

/// A running worker and `herald web`, and a token bound to `account`.
struct Desk {
    env: TestEnv,
    url: String,
    account: AccountId,
    token: String,
}

async fn open_desk(extra: &[(&str, &str)]) -> Desk {
    let mut env = env_with(extra).await;
    env.start_worker().await;
    let url = env.start_web().await;
    let account = account();
    let token = env.account_token("scheduler", account).await;
    Desk {
        env,
        url,
        account,
        token,
    }
}

impl Desk {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.url);
        call_json(&self.env.http, method, &url, token, body).await
    }

    /// Posts a message with `token`, with the fields of `extra` (`sendAt`).
    async fn send(&self, token: &str, extra: Value) -> (StatusCode, Value) {
        let mut body = json!({"title": "Scheduled", "content": "<p>later</p>"});
        for (field, value) in extra.as_object().expect("extra fields") {
            body[field] = value.clone();
        }
        self.call(Method::POST, "/v1/messages", Some(token), Some(body))
            .await
    }

    /// Schedules a message at `at` with `token` (202, the time echoed);
    /// returns its id.
    async fn schedule(&self, token: &str, at: DateTime<Utc>) -> MessageId {
        let (status, answer) = self.send(token, json!({"sendAt": rfc3339(at)})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert_eq!(answer["sendAt"], rfc3339(at), "{answer}");
        message_id(&answer)
    }

    /// Sends a message at once with `token`; returns its id.
    async fn send_now(&self, token: &str) -> MessageId {
        let (status, answer) = self.send(token, json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert!(answer.get("sendAt").is_none(), "{answer}");
        message_id(&answer)
    }

    /// Asks to recall `message` of `account` (no body).
    async fn recall(
        &self,
        token: Option<&str>,
        account: impl Display,
        message: impl Display,
    ) -> (StatusCode, Value) {
        let path = recall_path(account, message);
        self.call(Method::POST, &path, token, None).await
    }

    /// The dashboard's counts of queue `name` (`send_message`, `push`).
    async fn queue_stats(&self, name: &str) -> Value {
        let all = api_get_json(&self.env, format!("{}/api/v1/queues", self.url)).await;
        all["queues"]
            .as_array()
            .and_then(|queues| queues.iter().find(|q| q["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no queue {name} in {all}"))
    }

    /// Waits until the send_message and push queues hold no job waiting,
    /// scheduled or running, and asserts none failed.
    async fn wait_drained(&self) {
        wait_within(
            "the queues to drain",
            ARRIVAL,
            Duration::from_millis(100),
            || async {
                for name in ["send_message", "push"] {
                    let stats = self.queue_stats(name).await;
                    if ["pending", "scheduled", "running"]
                        .iter()
                        .any(|state| stats[*state] != 0)
                    {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await;
        for name in ["send_message", "push"] {
            let stats = self.queue_stats(name).await;
            assert_eq!(stats["failed"], 0, "{stats}");
        }
    }
}

fn message_id(answer: &Value) -> MessageId {
    MessageId::parse(answer["messageId"].as_str().expect("a messageId")).expect("a message id")
}

/// `offset` from now.
fn from_now(offset: chrono::Duration) -> DateTime<Utc> {
    Utc::now() + offset
}

/// `at` as the API answers it: RFC 3339, UTC, milliseconds, `Z`.
fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// When the job of a message scheduled at `at` is due: Unix seconds,
/// rounded up to a whole second.
fn due_secs(at: DateTime<Utc>) -> f64 {
    (at.timestamp_millis() as u64).div_ceil(1000) as f64
}

fn recall_path(account: impl Display, message: impl Display) -> String {
    format!("/v1/accounts/{account}/messages/{message}/recall")
}

/// The fields a 400 names.
fn field_names(answer: &Value) -> Vec<String> {
    answer["fields"]
        .as_object()
        .map(|fields| fields.keys().cloned().collect())
        .unwrap_or_default()
}

/// Asserts an answer is a problem with status `expected`: an `error`
/// sentence, and nothing of Redis, MongoDB or the server's insides.
fn assert_problem(what: &str, (status, answer): &(StatusCode, Value), expected: StatusCode) {
    assert_eq!(*status, expected, "{what}: {answer}");
    assert!(answer["error"].is_string(), "{what}: {answer}");
    let text = answer.to_string().to_lowercase();
    for inside in [
        "redis",
        "mongo",
        "lua",
        "script",
        "bson",
        "err ",
        "panic",
        "127.0.0.1",
        "herald-test",
        "herald_test",
        "scheduled set",
    ] {
        assert!(!text.contains(inside), "{what} shows {inside:?}: {answer}");
    }
}

/// The send_message queue's scheduled jobs: job id → due time (seconds).
async fn scheduled_jobs(env: &TestEnv) -> HashMap<String, f64> {
    let key = herald::queues::config(&env.settings, QueueName::SendMessage).scheduled_key();
    let mut conn = herald::queue::connect(env.settings.redis.url.as_str())
        .await
        .expect("Redis");
    let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .expect("ZRANGE");
    members.into_iter().collect()
}

/// How many documents of each message id the `message` collection holds.
async fn stored_per_message(env: &TestEnv) -> HashMap<String, usize> {
    let documents: Vec<mongodb::bson::Document> = env
        .messages()
        .find(doc! {})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("documents");
    let mut stored: HashMap<String, usize> = HashMap::new();
    for document in documents {
        let id = document.get_object_id("_id").expect("an ObjectId _id");
        *stored.entry(id.to_hex()).or_default() += 1;
    }
    stored
}

/// How many times message `id` is stored and was pushed (`new_message`
/// accepted by the sandbox).
async fn arrivals(env: &TestEnv, id: MessageId) -> (usize, usize) {
    let hex = id.to_hex();
    let stored = stored_per_message(env).await.get(&hex).copied();
    let pushed = env.pushes_per_message().await.get(&hex).copied();
    (stored.unwrap_or(0), pushed.unwrap_or(0))
}

/// Waits until message `id` is stored and pushed, then asserts it was
/// once each.
async fn wait_arrived(env: &TestEnv, id: MessageId) {
    let seen = wait_within(
        &format!("message {id} stored and pushed"),
        ARRIVAL,
        Duration::from_millis(50),
        || async {
            let seen = arrivals(env, id).await;
            (seen.0 > 0 && seen.1 > 0).then_some(seen)
        },
    )
    .await;
    assert_eq!(seen, (1, 1), "message {id}: (stored, pushed)");
}

/// Asserts every `recalled` message is neither stored nor pushed, every
/// `sent` one stored once and pushed once, and nothing else is there.
async fn assert_outcomes(env: &TestEnv, recalled: &[MessageId], sent: &[MessageId]) {
    let stored = stored_per_message(env).await;
    let pushed = env.pushes_per_message().await;
    for id in recalled {
        let hex = id.to_hex();
        assert_eq!(stored.get(&hex), None, "recalled {id} was stored");
        assert_eq!(pushed.get(&hex), None, "recalled {id} was pushed");
    }
    for id in sent {
        let hex = id.to_hex();
        assert_eq!(stored.get(&hex), Some(&1), "{id} stored");
        assert_eq!(pushed.get(&hex), Some(&1), "{id} pushed");
    }
    assert_eq!(stored.values().sum::<usize>(), sent.len(), "{stored:?}");
    assert_eq!(pushed.values().sum::<usize>(), sent.len(), "{pushed:?}");
}

/// The stored message `id`'s `createdAt`, in Unix milliseconds.
async fn created_at_ms(env: &TestEnv, id: MessageId) -> i64 {
    let stored = env.find_message(id).await.expect("stored");
    stored
        .get_datetime("createdAt")
        .expect("createdAt")
        .timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_scheduled_over_http_is_stored_and_pushed_once_at_its_time_not_before() {
    let desk = open_desk(&[]).await;
    let env = &desk.env;
    let send_at = from_now(chrono::Duration::seconds(3));
    let id = desk.schedule(&desk.token, send_at).await;

    // The dashboard lists it among the scheduled jobs, under the job id its
    // message id gives, due at its time rounded up to a whole second.
    let listing = api_get_json(
        env,
        format!(
            "{}/api/v1/queues/send_message/jobs?state=scheduled",
            desk.url
        ),
    )
    .await;
    assert_eq!(listing["total"], 1, "{listing}");
    let job = &listing["jobs"][0];
    assert_eq!(job["id"], id.scheduled_job_id(), "{listing}");
    assert_eq!(job["payload"]["messageId"], id.to_hex(), "{job}");
    assert_eq!(job["payload"]["accountId"], desk.account.to_hex(), "{job}");
    assert_eq!(job["payload"]["sendAt"], rfc3339(send_at), "{job}");
    assert_eq!(job["run_at"].as_f64(), Some(due_secs(send_at)), "{job}");
    assert_eq!(job["attempts"], 0, "{job}");

    // A second later, still before its time: neither stored nor pushed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let early = (
        stored_per_message(env).await.len(),
        env.sandbox_requests().await.len(),
    );
    if Utc::now() < send_at {
        assert_eq!(early, (0, 0), "(stored, pushes) before sendAt");
    } else {
        println!("the early look came after sendAt (a slow machine): not checked");
    }

    // After its time: stored once, pushed once, and stored no earlier.
    wait_arrived(env, id).await;
    let created = created_at_ms(env, id).await;
    assert!(
        created >= send_at.timestamp_millis(),
        "createdAt {created} is before sendAt {}",
        send_at.timestamp_millis()
    );
    println!(
        "stored {} ms after sendAt",
        created - send_at.timestamp_millis()
    );
    desk.wait_drained().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_outcomes(env, &[], &[id]).await;
    assert_eq!(env.delivered("new_message").await.len(), 1);
    assert!(scheduled_jobs(env).await.is_empty());

    // Its enqueue-to-finish latency counts from when it fell due: counted
    // from its enqueue, 3 s earlier, it would fall in the 5 s bucket.
    let history = api_get_json(
        env,
        format!("{}/api/v1/queues/send_message/history?minutes=5", desk.url),
    )
    .await;
    let p99: Vec<u64> = history["minutes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|minute| minute["latency_p99_ms"].as_u64())
        .collect();
    assert_eq!(p99.len(), 1, "{history}");
    assert!(p99[0] <= 2_500, "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_past_send_at_goes_at_once_and_a_far_or_malformed_one_is_refused_naming_it() {
    let desk = open_desk(&[]).await;
    let env = &desk.env;
    let far = rfc3339(from_now(chrono::Duration::days(31)));
    for (what, send_at) in [
        ("31 days ahead", json!(far)),
        ("a word", json!("tomorrow")),
        ("no offset", json!("2026-12-24T09:00:00")),
        ("a date alone", json!("2026-12-24")),
        ("null", Value::Null),
        ("a number", json!(1_798_102_800)),
    ] {
        let answer = desk.send(&desk.token, json!({ "sendAt": send_at })).await;
        assert_problem(what, &answer, StatusCode::BAD_REQUEST);
        assert_eq!(field_names(&answer.1), ["sendAt"], "{what}: {}", answer.1);
    }
    let stats = desk.queue_stats("send_message").await;
    assert_eq!(
        (&stats["pending"], &stats["scheduled"]),
        (&json!(0), &json!(0))
    );
    assert!(scheduled_jobs(env).await.is_empty());

    // An hour ago: accepted without a sendAt in the answer, sent at once
    // (the worker's idle wait is far longer than the wait here).
    let past = rfc3339(from_now(-chrono::Duration::hours(1)));
    let (status, answer) = desk.send(&desk.token, json!({ "sendAt": past })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert!(answer.get("sendAt").is_none(), "{answer}");
    let at_once = message_id(&answer);
    wait_arrived(env, at_once).await;
    assert!(scheduled_jobs(env).await.is_empty());
    // Sent, it can no longer be recalled.
    let answer = desk.recall(Some(&desk.token), desk.account, at_once).await;
    assert_problem("recall of a message sent", &answer, StatusCode::CONFLICT);

    // 29 days ahead is within the default 30 days.
    let near = from_now(chrono::Duration::days(29));
    let id = desk.schedule(&desk.token, near).await;
    let scheduled = scheduled_jobs(env).await;
    assert_eq!(
        scheduled,
        [(id.scheduled_job_id(), due_secs(near))].into(),
        "{scheduled:?}"
    );

    // message.max_schedule_days sets the limit.
    let short = open_desk(&[("HERALD_MESSAGE_MAX_SCHEDULE_DAYS", "2")]).await;
    let too_far = rfc3339(from_now(chrono::Duration::days(3)));
    let answer = short.send(&short.token, json!({ "sendAt": too_far })).await;
    assert_problem("3 days ahead of 2", &answer, StatusCode::BAD_REQUEST);
    assert_eq!(field_names(&answer.1), ["sendAt"], "{}", answer.1);
    assert!(
        answer.1["fields"]["sendAt"]
            .as_str()
            .is_some_and(|reason| reason.contains("2 days")),
        "{}",
        answer.1
    );
    let tomorrow = from_now(chrono::Duration::days(1));
    let id = short.schedule(&short.token, tomorrow).await;
    let scheduled = scheduled_jobs(&short.env).await;
    assert_eq!(
        scheduled,
        [(id.scheduled_job_id(), due_secs(tomorrow))].into(),
        "{scheduled:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_producer_schedules_and_recalls_messages() {
    let desk = open_desk(&[]).await;
    let env = &desk.env;
    let mut producer = Producer::connect(&env.settings.redis.url, &env.settings.redis.namespace)
        .await
        .expect("producer")
        .with_limits(env.settings.message);
    let (own, other) = (desk.account, account());
    let send_at = from_now(chrono::Duration::seconds(3));
    let kept_job = SendMessage::new(own, "kept", "arrives").send_at(send_at);
    let kept = producer
        .enqueue_message(kept_job.clone())
        .await
        .expect("enqueue");
    // Scheduled twice, it is one job.
    let again = producer.enqueue_message(kept_job).await.expect("enqueue");
    assert_eq!(again, kept);
    let recalled = producer
        .enqueue_message(SendMessage::new(own, "recalled", "never arrives").send_at(send_at))
        .await
        .expect("enqueue");
    let scheduled = scheduled_jobs(env).await;
    let due = due_secs(send_at);
    let expected = [
        (kept.scheduled_job_id(), due),
        (recalled.scheduled_job_id(), due),
    ];
    assert_eq!(scheduled, expected.clone().into(), "{scheduled:?}");

    // To another account the message is not there, and stays scheduled.
    let recall = producer
        .recall_message(other, recalled)
        .await
        .expect("recall");
    assert_eq!(recall, Recall::Absent);
    assert!(scheduled_jobs(env)
        .await
        .contains_key(&recalled.scheduled_job_id()));
    // Its own account takes it back, once.
    let recall = producer
        .recall_message(own, recalled)
        .await
        .expect("recall");
    assert_eq!(recall, Recall::Recalled);
    let scheduled = scheduled_jobs(env).await;
    assert_eq!(scheduled, [expected[0].clone()].into(), "{scheduled:?}");
    let recall = producer
        .recall_message(own, recalled)
        .await
        .expect("recall");
    assert_eq!(recall, Recall::Absent);

    // A message sent at once is never recallable.
    let at_once = producer
        .enqueue_message(SendMessage::new(own, "at once", "now"))
        .await
        .expect("enqueue");
    let recall = producer.recall_message(own, at_once).await.expect("recall");
    assert_eq!(recall, Recall::Absent);

    // The kept one arrives at its time; then its job has run.
    wait_arrived(env, at_once).await;
    wait_arrived(env, kept).await;
    assert!(created_at_ms(env, kept).await >= send_at.timestamp_millis());
    let recall = producer.recall_message(own, kept).await.expect("recall");
    assert_eq!(recall, Recall::Started);
    desk.wait_drained().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_outcomes(env, &[recalled], &[at_once, kept]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_schedules_a_message_with_send_at() {
    let desk = open_desk(&[]).await;
    let env = &desk.env;
    let account = desk.account.to_hex();
    let enqueue = |send_at: &str| {
        env.run_herald(
            &[
                "enqueue",
                "message",
                "--account",
                &account,
                "--title",
                "From the CLI",
                "--content",
                "later",
                "--send-at",
                send_at,
            ],
            &[],
        )
    };
    for (send_at, expected) in [
        ("tomorrow".to_owned(), "RFC 3339"),
        (rfc3339(from_now(chrono::Duration::days(40))), "sendAt"),
    ] {
        let output = enqueue(&send_at);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{send_at} was accepted");
        assert!(stderr.contains(expected), "{send_at}: {stderr}");
    }
    assert!(scheduled_jobs(env).await.is_empty());

    let send_at = from_now(chrono::Duration::seconds(4));
    let output = enqueue(&rfc3339(send_at));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let id = MessageId::parse(String::from_utf8_lossy(&output.stdout).trim())
        .expect("stdout is the message id");
    let scheduled = scheduled_jobs(env).await;
    let expected = [(id.scheduled_job_id(), due_secs(send_at))];
    assert_eq!(scheduled, expected.into(), "{scheduled:?}");
    wait_arrived(env, id).await;
    assert!(created_at_ms(env, id).await >= send_at.timestamp_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_over_http_takes_back_a_scheduled_message_and_refuses_what_it_must() {
    let desk = open_desk(&[]).await;
    let env = &desk.env;
    let (own, token) = (desk.account, desk.token.as_str());
    let other = account();
    let other_token = env.account_token("other", other).await;
    let user = UserId::from(ObjectId::new());
    let (_, user_token) = ApiTokenStore::new(&env.database)
        .create("user", TokenScope::User(own, user))
        .await
        .expect("a user's token");

    let send_at = from_now(chrono::Duration::seconds(4));
    let recalled = desk.schedule(token, send_at).await;
    let by_operator = desk.schedule(token, send_at).await;
    let kept = desk.schedule(token, send_at).await;
    let theirs = desk.schedule(&other_token, send_at).await;
    assert_eq!(scheduled_jobs(env).await.len(), 4);

    // Refusals, none of which takes anything back.
    let (own_hex, kept_hex) = (own.to_hex(), kept.to_hex());
    let (other_hex, theirs_hex) = (other.to_hex(), theirs.to_hex());
    let unknown_hex = MessageId::generate().to_hex();
    let (own_hex, kept_hex, other_hex) = (own_hex.as_str(), kept_hex.as_str(), other_hex.as_str());
    let (theirs_hex, unknown_hex) = (theirs_hex.as_str(), unknown_hex.as_str());
    let (other_token, user_token) = (Some(other_token.as_str()), Some(user_token.as_str()));
    // (what, token, account, message, status, the field a 400 names)
    let refusals = [
        ("no token", None, own_hex, kept_hex, 401, None),
        (
            "another account's token",
            other_token,
            own_hex,
            kept_hex,
            403,
            None,
        ),
        ("a user's token", user_token, own_hex, kept_hex, 403, None),
        (
            "a malformed message id",
            Some(token),
            own_hex,
            "nothex",
            400,
            Some("messageId"),
        ),
        (
            "a malformed account id",
            Some(WEB_TOKEN),
            "nothex",
            kept_hex,
            400,
            Some("accountId"),
        ),
        (
            "an unknown id",
            Some(token),
            own_hex,
            unknown_hex,
            404,
            None,
        ),
        (
            "another account's id",
            Some(token),
            own_hex,
            theirs_hex,
            404,
            None,
        ),
        (
            "another's id, as operator",
            Some(WEB_TOKEN),
            own_hex,
            theirs_hex,
            404,
            None,
        ),
        (
            "under another's path",
            Some(WEB_TOKEN),
            other_hex,
            kept_hex,
            404,
            None,
        ),
    ];
    for (what, token, account, message, status, field) in refusals {
        let answer = desk.recall(token, account, message).await;
        let status = StatusCode::from_u16(status).expect("a status");
        assert_problem(what, &answer, status);
        let named = field_names(&answer.1);
        assert_eq!(named, Vec::from_iter(field.map(str::to_owned)), "{what}");
    }
    assert_eq!(scheduled_jobs(env).await.len(), 4);

    // The account's token and the operator's each recall one, once.
    let (status, answer) = desk.recall(Some(token), own, recalled).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"messageId": recalled.to_hex()}));
    let (status, answer) = desk.recall(Some(WEB_TOKEN), own, by_operator).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"messageId": by_operator.to_hex()}));
    let again = desk.recall(Some(token), own, recalled).await;
    assert_problem("recalled already", &again, StatusCode::NOT_FOUND);
    let scheduled = scheduled_jobs(env).await;
    let mut left: Vec<&String> = scheduled.keys().collect();
    left.sort();
    let mut expected = [kept.scheduled_job_id(), theirs.scheduled_job_id()];
    expected.sort();
    assert_eq!(left, expected.iter().collect::<Vec<_>>());

    // A message sent at once, stored: too late to recall it.
    let at_once = desk.send_now(token).await;
    wait_arrived(env, at_once).await;
    let answer = desk.recall(Some(token), own, at_once).await;
    assert_problem("a message sent at once", &answer, StatusCode::CONFLICT);

    // At their time the kept ones arrive, the other account's too; the
    // recalled ones never do.
    wait_arrived(env, kept).await;
    wait_arrived(env, theirs).await;
    desk.wait_drained().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_outcomes(env, &[recalled, by_operator], &[at_once, kept, theirs]).await;
    for (what, token, account, message, expected) in [
        ("sent", token, own, kept, StatusCode::CONFLICT),
        (
            "sent, by its own account",
            other_token.expect("a token"),
            other,
            theirs,
            StatusCode::CONFLICT,
        ),
        (
            "recalled, after its time",
            token,
            own,
            recalled,
            StatusCode::NOT_FOUND,
        ),
        (
            "sent, another account's",
            token,
            own,
            theirs,
            StatusCode::NOT_FOUND,
        ),
    ] {
        let answer = desk.recall(Some(token), account, message).await;
        assert_problem(what, &answer, expected);
    }
    assert_outcomes(env, &[recalled, by_operator], &[at_once, kept, theirs]).await;
}

/// One recall per message of `ids`, over HTTP with the desk's token, all
/// in flight at once, sent evenly from `due` + `first` ms to `due` +
/// `last` ms. Returns each message's answer.
async fn race_recalls(
    desk: &Desk,
    ids: &[MessageId],
    due: DateTime<Utc>,
    (first, last): (i64, i64),
) -> Vec<(MessageId, (StatusCode, Value))> {
    let racers: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let offset = first + (last - first) * i as i64 / ids.len() as i64;
            let at = due + chrono::Duration::milliseconds(offset);
            let http = desk.env.http.clone();
            let url = format!("{}{}", desk.url, recall_path(desk.account, id));
            let token = desk.token.clone();
            tokio::spawn(async move {
                if let Ok(wait) = (at - Utc::now()).to_std() {
                    tokio::time::sleep(wait).await;
                }
                let answer = call_json(&http, Method::POST, &url, Some(&token), None).await;
                (id, answer)
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(racers.len());
    for racer in racers {
        answers.push(racer.await.expect("the recall's task"));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recalls_racing_the_worker_end_each_message_in_exactly_one_outcome() {
    let desk = open_desk(&[]).await;
    let env = &desk.env;
    let (mut recalled, mut sent) = (Vec::new(), Vec::new());
    for (round, spread) in SPREADS.into_iter().enumerate() {
        // Every message due at the same whole second, 2 to 3 s ahead.
        let due = DateTime::from_timestamp(Utc::now().timestamp() + 3, 0).expect("a time");
        let jobs = (0..RACERS)
            .map(|i| SendMessage::new(desk.account, format!("race {round}.{i}"), "c").send_at(due))
            .collect();
        let ids = env.enqueue_bulk(jobs).await;
        let waiting = scheduled_jobs(env).await.len();
        let (mut round_recalled, mut round_sent) = (0, 0);
        for (id, answer) in race_recalls(&desk, &ids, due, spread).await {
            match answer.0 {
                StatusCode::OK => {
                    assert_eq!(answer.1, json!({"messageId": id.to_hex()}));
                    recalled.push(id);
                    round_recalled += 1;
                }
                StatusCode::CONFLICT => {
                    assert_problem("a recall too late", &answer, StatusCode::CONFLICT);
                    sent.push(id);
                    round_sent += 1;
                }
                status => panic!("recall of {id}: {status} {}", answer.1),
            }
        }
        println!(
            "race round {round} ({spread:?} ms): {waiting} of {RACERS} scheduled before \
             the race; {round_recalled} recalled, {round_sent} started"
        );
        assert_eq!(round_recalled + round_sent, RACERS);
        desk.wait_drained().await;
        wait_within(
            "every started message stored and pushed",
            ARRIVAL,
            Duration::from_millis(100),
            || async {
                let stored = stored_per_message(env).await.len();
                let pushed: usize = env.pushes_per_message().await.values().sum();
                (stored >= sent.len() && pushed >= sent.len()).then_some(())
            },
        )
        .await;
        // A late second store or push would show by now.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_outcomes(env, &recalled, &sent).await;
    }
    println!(
        "race: {} recalled, {} started of {}",
        recalled.len(),
        sent.len(),
        RACERS * SPREADS.len()
    );
    assert_eq!(recalled.len() + sent.len(), RACERS * SPREADS.len());
}
