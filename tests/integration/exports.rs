//! Export jobs end to end: MongoDB collection → CSV file, status record and
//! events at the push sandbox.

use std::{collections::HashSet, path::PathBuf, time::Duration};

use herald_jobs::{AccountId, Export, QueueName};
use herald_push_sandbox::RecordedRequest;
use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use serde_json::json;

use crate::{
    export_helpers::{enqueue, number, status_of, wait_status},
    helpers::{env_with, wait_for, TestEnv},
};

/// The requests among `events` that carried event `name`, in order.
fn named<'a>(events: &'a [RecordedRequest], name: &str) -> Vec<&'a RecordedRequest> {
    events
        .iter()
        .filter(|e| e.name.as_deref() == Some(name))
        .collect()
}

/// Rows of account A and of account B in the seeded collection.
pub(crate) const ROWS_A: usize = 12_000;
const ROWS_B: usize = 8_000;

/// 2026-01-02 03:04:05 UTC.
const BASE_MILLIS: i64 = 1_767_323_045_000;

pub(crate) struct Seeded {
    pub(crate) a: AccountId,
    pub(crate) a_ids: HashSet<String>,
}

/// Inserts 20,000 `customer` documents across two accounts.
pub(crate) async fn seed(env: &TestEnv) -> Seeded {
    let a = AccountId::from(ObjectId::new());
    let b = AccountId::from(ObjectId::new());
    let collection = env.database.collection::<Document>("customer");
    let mut a_ids = HashSet::new();
    let mut batch = Vec::new();
    for i in 0..(ROWS_A + ROWS_B) {
        let (account, seq) = if i < ROWS_A { (a, i) } else { (b, i - ROWS_A) };
        let id = ObjectId::new();
        if account == a {
            a_ids.insert(id.to_hex());
        }
        let mut d = doc! {
            "_id": id,
            "accountId": account.object_id(),
            "seq": seq as i32,
            "name": format!("客户 {seq}"),
            "profile": { "city": if seq % 2 == 0 { "上海" } else { "Beijing" } },
            "tags": ["vip", format!("t{}", seq % 3)],
            "createdAt": DateTime::from_millis(BASE_MILLIS + seq as i64 * 1000),
        };
        if seq % 100 == 7 {
            d.insert("note", "=HYPERLINK(\"http://evil\")");
        } else if seq % 2 == 0 {
            d.insert("note", "plain");
        } // odd, non-7 rows have no note: a missing value.
        batch.push(d);
        if batch.len() == 5_000 {
            collection
                .insert_many(std::mem::take(&mut batch))
                .await
                .unwrap();
        }
    }
    if !batch.is_empty() {
        collection.insert_many(batch).await.unwrap();
    }
    Seeded { a, a_ids }
}

pub(crate) fn export_job(account: AccountId, key: &str) -> Export {
    serde_json::from_value(json!({
        "accountId": account.to_hex(),
        "key": key,
        "collection": "customer",
        "filter": {},
        "fields": [
            { "path": "seq", "title": "No." },
            { "path": "_id", "title": "Id" },
            { "path": "name", "title": "姓名" },
            { "path": "profile.city", "title": "City" },
            { "path": "tags", "title": "Tags" },
            { "path": "createdAt", "title": "Created" },
            { "path": "note", "title": "Note" },
        ],
        "sort": [ { "path": "seq", "order": "desc" } ],
        "timeZone": "Asia/Shanghai",
    }))
    .unwrap()
}

pub(crate) fn file_of(env: &TestEnv, account: AccountId, key: &str) -> PathBuf {
    env.settings
        .export
        .dir
        .join(account.to_hex())
        .join(format!("{key}.csv"))
}

fn files_in(env: &TestEnv, account: AccountId) -> Vec<String> {
    std::fs::read_dir(env.settings.export.dir.join(account.to_hex()))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the CSV: checks the BOM, returns the rows (header first).
pub(crate) fn read_csv(path: &PathBuf) -> Vec<Vec<String>> {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.starts_with("\u{feff}".as_bytes()),
        "the file starts with a UTF-8 BOM"
    );
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(&bytes[3..]);
    reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_writes_exactly_the_accounts_rows_with_progress_and_one_finish() {
    // Progress as often as the rows allow, so the run reports several times.
    let mut env = env_with(&[("HERALD_EXPORT_PROGRESS_INTERVAL_MS", "1")]).await;
    let seeded = seed(&env).await;
    env.start_worker().await;
    enqueue(&env, export_job(seeded.a, "customers-a")).await;

    // Sample the record while it runs: processed only grows.
    let mut seen = Vec::new();
    let start = std::time::Instant::now();
    let finished = loop {
        let record = status_of(&env, seeded.a, "customers-a").await;
        seen.push(number(&record, "processed"));
        if record.get_str("status") == Ok("finished") {
            break record;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the export did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "processed went backwards: {seen:?}"
    );
    assert_eq!(number(&finished, "processed"), ROWS_A as i64);
    assert_eq!(number(&finished, "total"), ROWS_A as i64);
    assert_eq!(number(&finished, "rows"), ROWS_A as i64);
    assert_eq!(finished.get_f64("percent").unwrap(), 100.0);
    assert_eq!(finished.get_str("fileName").unwrap(), "customers-a.csv");
    for stamp in ["queuedAt", "startedAt", "finishedAt"] {
        assert!(finished.get_datetime(stamp).is_ok(), "{stamp} is a date");
    }

    let path = file_of(&env, seeded.a, "customers-a");
    assert_eq!(
        number(&finished, "fileSize"),
        std::fs::metadata(&path).unwrap().len() as i64
    );
    let rows = read_csv(&path);
    assert_eq!(
        rows[0],
        ["No.", "Id", "姓名", "City", "Tags", "Created", "Note"]
    );
    assert_eq!(rows.len(), ROWS_A + 1);
    // Only account A, each row once, in the requested order (seq descending).
    let ids: HashSet<&str> = rows[1..].iter().map(|r| r[1].as_str()).collect();
    assert_eq!(ids.len(), ROWS_A);
    assert!(
        ids.iter().all(|id| seeded.a_ids.contains(*id)),
        "a row of another account"
    );
    let seqs: Vec<i64> = rows[1..].iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]));
    // Values rendered for spreadsheets.
    let row = |seq: usize| &rows[ROWS_A - seq];
    assert_eq!(row(0)[0], "0");
    assert_eq!(row(0)[2], "客户 0");
    assert_eq!(row(0)[3], "上海");
    assert_eq!(row(1)[3], "Beijing");
    assert_eq!(row(4)[4], "vip, t1");
    assert_eq!(row(0)[5], "2026-01-02 11:04:05", "Asia/Shanghai time");
    assert_eq!(
        row(7)[6],
        "'=HYPERLINK(\"http://evil\")",
        "formula neutralised"
    );
    assert_eq!(row(2)[6], "plain");
    assert_eq!(row(3)[6], "", "missing value");
    assert_eq!(row(0)[1].len(), 24, "ObjectId as hex");

    // Events: progress first, then exactly one export_finish with the key.
    let finish = wait_for("export_finish", || async {
        let events = env.delivered("export_finish").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = env.sandbox_requests().await;
    let finishes: Vec<_> = named(&events, "export_finish");
    assert_eq!(finishes.len(), 1);
    assert_eq!(finish[0].data, json!({ "key": "customers-a" }));
    assert_eq!(
        finish[0].channels,
        vec![format!("presence-message-wm-global{}", seeded.a)]
    );
    let progress: Vec<_> = named(&events, "export_progress");
    assert!(!progress.is_empty(), "progress events were sent");
    assert!(
        progress.iter().all(|p| p.seq < finishes[0].seq),
        "progress comes before finish"
    );
    let processed: Vec<i64> = progress
        .iter()
        .map(|p| p.data["processed"].as_i64().unwrap())
        .collect();
    assert!(processed.windows(2).all(|w| w[0] < w[1]), "{processed:?}");
    assert!(progress
        .iter()
        .all(|p| p.data["key"] == "customers-a" && p.data["total"] == ROWS_A));
    assert_eq!(
        files_in(&env, seeded.a),
        ["customers-a.csv"],
        "no partial file left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_shorter_than_the_progress_interval_reports_once_at_its_end() {
    let mut env = env_with(&[("HERALD_EXPORT_PROGRESS_INTERVAL_MS", "600000")]).await;
    let seeded = seed(&env).await;
    env.start_worker().await;
    enqueue(&env, export_job(seeded.a, "quick")).await;
    let record = wait_status(&env, seeded.a, "quick", "finished").await;
    assert_eq!(number(&record, "rows"), ROWS_A as i64);
    wait_for("export_finish", || async {
        (env.delivered("export_finish").await.len() == 1).then_some(())
    })
    .await;
    let events = env.sandbox_requests().await;
    let progress: Vec<_> = named(&events, "export_progress");
    assert_eq!(progress.len(), 1, "one report, at the end: {progress:?}");
    assert_eq!(
        progress[0].data,
        json!({ "key": "quick", "processed": ROWS_A, "total": ROWS_A, "percent": 100.0 })
    );
    let finish = *named(&events, "export_finish")
        .first()
        .expect("the finish among the requests");
    assert!(progress[0].seq < finish.seq, "progress comes before finish");

    // The export_finish was handed on by the export job's acknowledgement:
    // the job's record names the one push job it handed off, and that job
    // carries the event under the run's idempotency key.
    let done = env.queue_set(QueueName::Export, "done").await;
    assert_eq!(done.len(), 1, "{done:?}");
    let meta = env.job_meta(QueueName::Export, &done[0]).await;
    let result: serde_json::Value = serde_json::from_str(&meta["result"]).unwrap();
    let handed = result["Ok"]["handedOff"]
        .as_array()
        .unwrap_or_else(|| panic!("{meta:?}"));
    assert_eq!(handed.len(), 1, "{result}");
    let push_queue = env.settings.redis.namespace.queue(QueueName::Push);
    let push_id = handed[0].as_str().unwrap();
    let push_id = push_id
        .strip_prefix(&format!("{push_queue}:"))
        .expect("a push job");
    let push_meta = env.job_meta(QueueName::Push, push_id).await;
    assert_eq!(
        push_meta["idempotency_key"],
        format!("export_finish:{}:quick:{}", seeded.a, done[0])
    );
    assert_eq!(push_meta["status"], "Done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_collection_or_a_where_filter_fails_with_a_recorded_error_and_export_failed() {
    let mut env = env_with(&[]).await;
    env.start_worker().await;
    let account = AccountId::from(ObjectId::new());
    let mut unknown = export_job(account, "bad-collection");
    unknown.collection = "users".into();
    let mut javascript = export_job(account, "bad-filter");
    javascript.filter = json!({ "$where": "this.seq > 1" });
    for job in [unknown, javascript] {
        env.push_raw_to(QueueName::Export, serde_json::to_value(job).unwrap())
            .await;
    }

    let collection_failure = wait_status(&env, account, "bad-collection", "failed").await;
    assert!(collection_failure
        .get_str("error")
        .unwrap()
        .contains("allow-list"));
    let filter_failure = wait_status(&env, account, "bad-filter", "failed").await;
    assert!(filter_failure.get_str("error").unwrap().contains("$where"));

    let failed = wait_for("two export_failed events", || async {
        let events = env.delivered("export_failed").await;
        (events.len() == 2).then_some(events)
    })
    .await;
    let keys: HashSet<&str> = failed
        .iter()
        .map(|e| e.data["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, HashSet::from(["bad-collection", "bad-filter"]));
    assert!(failed
        .iter()
        .all(|e| e.data["error"].as_str().is_some_and(|s| !s.is_empty())));
    assert!(env.delivered("export_finish").await.is_empty());
    // The events can arrive before the jobs' acknowledgements are recorded.
    wait_for("both export jobs dead, not retried", || async {
        (env.queue_set(QueueName::Export, "dead").await.len() == 2).then_some(())
    })
    .await;
}

/// A seeded environment whose exports read 100 documents per batch and
/// report progress after every one, so a run is observable mid-way.
async fn seeded_with_frequent_progress() -> (TestEnv, Seeded) {
    let env = env_with(&[
        ("HERALD_EXPORT_BATCH_SIZE", "100"),
        ("HERALD_EXPORT_PROGRESS_INTERVAL_MS", "1"),
    ])
    .await;
    let seeded = seed(&env).await;
    (env, seeded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_in_the_middle_stops_the_export_and_leaves_no_file() {
    let (mut env, seeded) = seeded_with_frequent_progress().await;
    // Each progress event takes 300 ms at the provider, and a run waits for
    // its last progress report before it commits: the cancel lands while
    // the run is still going (its rows may all be written by then).
    env.script_failures(None, 300, 1000).await;
    env.start_worker().await;
    enqueue(&env, export_job(seeded.a, "to-cancel")).await;
    wait_for("the export to be under way", || async {
        let record = status_of(&env, seeded.a, "to-cancel").await;
        (record.get_str("status") == Ok("running") && number(&record, "processed") >= 1000)
            .then_some(())
    })
    .await;

    let account = seeded.a.to_hex();
    let output = env.run_herald(
        &["export", "cancel", "--account", &account, "to-cancel"],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    wait_for("the export to stop", || async {
        (env.queue_set(QueueName::Export, "done").await.len() == 1).then_some(())
    })
    .await;
    let record = status_of(&env, seeded.a, "to-cancel").await;
    assert_eq!(record.get_str("status").unwrap(), "cancelled");
    assert_eq!(number(&record, "rows"), 0, "no rows committed");
    assert!(!file_of(&env, seeded.a, "to-cancel").exists());
    assert!(files_in(&env, seeded.a).is_empty(), "partial file removed");
    assert!(env.delivered("export_finish").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_export_is_replaced_and_the_export_finishes_with_one_correct_file() {
    let (mut env, seeded) = seeded_with_frequent_progress().await;
    env.script_failures(None, 300, 6).await;
    let log = std::env::temp_dir().join(format!("{}-export-kill.log", env.namespace));
    let mut first = env.spawn_herald_logged(&["worker"], &[], &log);
    enqueue(&env, export_job(seeded.a, "survivor")).await;
    wait_for("the first worker to be mid-export", || async {
        let record = status_of(&env, seeded.a, "survivor").await;
        (number(&record, "processed") >= 1000).then_some(())
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    let _ = std::fs::remove_file(&log);

    env.start_worker().await;
    let record = wait_status(&env, seeded.a, "survivor", "finished").await;
    assert_eq!(number(&record, "rows"), ROWS_A as i64);
    let rows = read_csv(&file_of(&env, seeded.a, "survivor"));
    assert_eq!(rows.len(), ROWS_A + 1);
    let ids: HashSet<&str> = rows[1..].iter().map(|r| r[1].as_str()).collect();
    assert_eq!(ids.len(), ROWS_A, "each row once");
    assert_eq!(
        files_in(&env, seeded.a),
        ["survivor.csv"],
        "the crashed run's partial file is gone"
    );
    wait_for("export_finish", || async {
        (env.delivered("export_finish").await.len() == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_enqueues_follows_and_reports_an_export() {
    let mut env = env_with(&[]).await;
    let seeded = seed(&env).await;
    env.start_worker().await;
    let account = seeded.a.to_hex();
    let output = env.run_herald(
        &[
            "enqueue",
            "export",
            "--account",
            &account,
            "--collection",
            "customer",
            "--field",
            "seq=No.",
            "--field",
            "profile.city=City",
            "--filter",
            r#"{"seq": {"$lt": 10}}"#,
            "--sort",
            "seq:desc",
            "--key",
            "cli-export",
            "--follow",
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "cli-export", "stdout is the key");
    let rows = read_csv(&file_of(&env, seeded.a, "cli-export"));
    assert_eq!(rows.len(), 11);
    assert_eq!(rows[1], ["9", "Beijing"]);

    let a = seeded.a.to_hex();
    let output = env.run_herald(&["export", "status", "--account", &a, "cli-export"], &[]);
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["status"], "finished");
    assert_eq!(record["rows"], 10);

    let output = env.run_herald(&["export", "status", "--account", &a, "nope"], &[]);
    assert!(!output.status.success());
    let output = env.run_herald(
        &[
            "enqueue",
            "export",
            "--account",
            &account,
            "--collection",
            "secrets",
            "--field",
            "a=A",
        ],
        &[],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("allow-list"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lists_every_accounts_exports_and_downloads_or_cancels_them() {
    let mut env = env_with(&[]).await;
    let seeded = seed(&env).await;
    env.start_worker().await;
    enqueue(&env, export_job(seeded.a, "dashboard-a")).await;
    let finished = wait_status(&env, seeded.a, "dashboard-a", "finished").await;
    let web = env.start_web().await;
    let get = |path: &str| {
        env.http
            .get(format!("{web}{path}"))
            .bearer_auth(crate::helpers::WEB_TOKEN)
            .send()
    };

    let listed: serde_json::Value = get("/api/v1/exports").await.unwrap().json().await.unwrap();
    let row = listed["exports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["key"] == "dashboard-a")
        .cloned()
        .expect("the export is listed");
    assert_eq!(row["status"], "finished");
    assert_eq!(row["accountId"], seeded.a.to_hex());
    let active: serde_json::Value = get("/api/v1/exports?active=true")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(active["exports"].as_array().unwrap().is_empty(), "{active}");

    let a = seeded.a.to_hex();
    let file = get(&format!("/api/v1/exports/{a}/dashboard-a/file"))
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    let bytes = file.bytes().await.unwrap();
    assert_eq!(bytes.len() as i64, number(&finished, "fileSize"));

    // A finished export cannot be cancelled; an unknown one is a 404; and
    // none of it answers without the operator's credentials.
    let cancel = env
        .http
        .post(format!("{web}/api/v1/exports/{a}/dashboard-a/cancel"))
        .bearer_auth(crate::helpers::WEB_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 409);
    assert_eq!(
        get(&format!("/api/v1/exports/{a}/nope/file"))
            .await
            .unwrap()
            .status(),
        404
    );
    let anonymous = env
        .http
        .get(format!("{web}/api/v1/exports"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}
