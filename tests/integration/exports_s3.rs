//! Exports on an S3-compatible object store: s3s-fs ([`S3Server`]), a real
//! S3 server this project did not write, on loopback.
//!
//! Every test counts what the bucket holds afterwards (ListObjectsV2) and
//! the multipart uploads the server still keeps, so a partial object or an
//! orphaned part fails it.

use std::time::Duration;

use herald::export::{
    retention,
    status::ExportStatusStore,
    storage::{ConfiguredStorage, ExportStorage, PART_SIZE},
};
use herald_jobs::AccountId;
use mongodb::bson::{doc, DateTime, Document};

use crate::{
    export_helpers::{
        enqueue, number, seed_wide_rows, status_of as record, wait_status, wide_rows_job,
    },
    helpers::{call_json, env_with, wait_for, wait_within, TestEnv},
    s3_server::{s3_env, S3Server, BUCKET, PREFIX, SECRET_KEY},
};

/// Rows seeded; each carries about 1 KiB, so a whole export spans several
/// multipart parts ([`PART_SIZE`] each, the last smaller).
const ROWS: usize = 12_000;

/// Inserts [`ROWS`] wide `customer` documents of a new account.
async fn seed(env: &TestEnv) -> AccountId {
    seed_wide_rows(env, ROWS).await
}

fn object_key(account: AccountId, key: &str) -> String {
    format!("{PREFIX}/{}/{key}.csv", account.to_hex())
}

/// Data rows of a CSV body (after the BOM and the header).
fn data_rows(body: &[u8]) -> usize {
    assert!(
        body.starts_with("\u{feff}No.,Blob\n".as_bytes()),
        "BOM and header"
    );
    String::from_utf8_lossy(body).lines().count() - 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_export_is_one_object_a_rerun_replaces_and_downloads_stream_or_redirect() {
    let server = S3Server::start().await;
    let mut env = s3_env(&server, &[]).await;
    let account = seed(&env).await;
    env.start_worker().await;
    let web = env.start_web().await;
    let mut presigning = env.settings.clone();
    presigning.export.presign = Some(Duration::from_secs(120));
    let presigned_web = env.start_web_with(&presigning).await;
    let token = env.account_token("s3", account).await;

    enqueue(&env, wide_rows_job(account, "big", ROWS)).await;
    let finished = wait_status(&env, account, "big", "finished").await;
    assert_eq!(number(&finished, "rows"), ROWS as i64);
    let size = number(&finished, "fileSize") as u64;
    assert!(size > 2 * PART_SIZE as u64, "more than two parts: {size}");
    let key = object_key(account, "big");
    assert_eq!(
        finished.get_str("fileLocation").unwrap(),
        format!("s3://{BUCKET}/{key}")
    );
    assert_eq!(
        server.objects().await,
        [(key.clone(), size)],
        "one object, no upload marker left"
    );
    assert!(
        server.pending_uploads().is_empty(),
        "{:?}",
        server.pending_uploads()
    );
    let stored = server.object(&key).await;
    assert_eq!(data_rows(&stored), ROWS);

    // The status record over HTTP tells where, not how to get in.
    let (_, status_body) = call_json(
        &env.http,
        reqwest::Method::GET,
        &format!("{web}/v1/exports/big"),
        Some(&token),
        None,
    )
    .await;
    let status_body = status_body.to_string();
    assert!(
        status_body.contains(&format!("s3://{BUCKET}/{key}")),
        "{status_body}"
    );
    assert!(!status_body.contains(SECRET_KEY));

    // Streamed through `herald web`.
    let streamed = env
        .http
        .get(format!("{web}/v1/exports/big/file"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), reqwest::StatusCode::OK);
    assert_eq!(
        streamed.headers()["content-length"],
        size.to_string().as_str()
    );
    assert_eq!(streamed.bytes().await.unwrap().as_ref(), stored.as_slice());

    // A re-run of the key replaces the object.
    enqueue(&env, wide_rows_job(account, "big", 100)).await;
    wait_for("the re-run to finish", || async {
        let found = record(&env, account, "big").await;
        (found.get_str("status") == Ok("finished") && number(&found, "rows") == 100).then_some(())
    })
    .await;
    let objects = server.objects().await;
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(data_rows(&server.object(&key).await), 100);
    assert!(server.pending_uploads().is_empty());

    // Presigned: a redirect the client follows without Herald's token.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect = no_redirects
        .get(format!("{presigned_web}/v1/exports/big/file"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), reqwest::StatusCode::TEMPORARY_REDIRECT);
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/{BUCKET}/{key}?", server.endpoint())),
        "{location}"
    );
    assert!(location.contains("X-Amz-Signature="), "{location}");
    assert!(!location.contains(SECRET_KEY));
    let direct = reqwest::Client::new().get(&location).send().await.unwrap();
    assert_eq!(direct.status(), reqwest::StatusCode::OK);
    assert_eq!(data_rows(&direct.bytes().await.unwrap()), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_an_s3_export_aborts_its_upload() {
    let server = S3Server::start().await;
    let mut env = s3_env(
        &server,
        &[
            ("HERALD_EXPORT_BATCH_SIZE", "100"),
            ("HERALD_EXPORT_PROGRESS_INTERVAL_MS", "1"),
        ],
    )
    .await;
    let account = seed(&env).await;
    // Slow progress events keep the run going while the cancel lands.
    env.script_failures(None, 300, 1000).await;
    env.start_worker().await;
    enqueue(&env, wide_rows_job(account, "to-cancel", ROWS)).await;
    wait_for("the export to be under way", || async {
        let found = record(&env, account, "to-cancel").await;
        (found.get_str("status") == Ok("running") && number(&found, "processed") >= 1000)
            .then_some(())
    })
    .await;
    assert!(
        !server.pending_uploads().is_empty(),
        "an upload is in progress"
    );
    assert!(ExportStatusStore::new(&env.database)
        .cancel(
            account,
            &herald_jobs::ExportKey::parse("to-cancel").unwrap()
        )
        .await
        .unwrap());
    wait_within(
        "the upload to be aborted",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async { server.pending_uploads().is_empty().then_some(()) },
    )
    .await;
    wait_for("the marker to go", || async {
        server.objects().await.is_empty().then_some(())
    })
    .await;
    assert_eq!(
        record(&env, account, "to-cancel")
            .await
            .get_str("status")
            .unwrap(),
        "cancelled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_s3_export_leaves_nothing_visible_and_the_next_run_commits_one_object()
{
    let server = S3Server::start().await;
    let mut env = s3_env(
        &server,
        &[
            ("HERALD_EXPORT_BATCH_SIZE", "100"),
            ("HERALD_EXPORT_PROGRESS_INTERVAL_MS", "1"),
        ],
    )
    .await;
    let account = seed(&env).await;
    env.script_failures(None, 300, 6).await;
    let log = std::env::temp_dir().join(format!("{}-s3-kill.log", env.namespace));
    let mut first = env.spawn_herald_logged(&["worker"], &[], &log);
    enqueue(&env, wide_rows_job(account, "survivor", ROWS)).await;
    wait_for("the first worker to be mid-export", || async {
        (number(&record(&env, account, "survivor").await, "processed") >= 1000).then_some(())
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    let _ = std::fs::remove_file(&log);
    let key = object_key(account, "survivor");
    assert!(
        server.objects().await.iter().all(|(k, _)| *k != key),
        "nothing visible after the kill"
    );
    assert!(
        !server.pending_uploads().is_empty(),
        "the killed run's upload is open"
    );

    env.start_worker().await;
    let finished = wait_status(&env, account, "survivor", "finished").await;
    assert_eq!(number(&finished, "rows"), ROWS as i64);
    assert_eq!(
        server.objects().await,
        [(key.clone(), number(&finished, "fileSize") as u64)],
        "one object, no upload marker"
    );
    assert_eq!(data_rows(&server.object(&key).await), ROWS);
    assert!(
        server.pending_uploads().is_empty(),
        "the killed run's upload was aborted: {:?}",
        server.pending_uploads()
    );
}

/// Runs export `key` with one attempt and returns its failed record; the
/// bucket holds no object of it and no upload is left open.
async fn fails_cleanly(server: &S3Server, extra: &[(&str, &str)]) -> String {
    let mut vars = vec![("HERALD_QUEUES_EXPORT_MAX_ATTEMPTS", "1")];
    vars.extend_from_slice(extra);
    let mut env = s3_env(server, &vars).await;
    let account = seed(&env).await;
    env.start_worker().await;
    enqueue(&env, wide_rows_job(account, "doomed", ROWS)).await;
    let failed = wait_status(&env, account, "doomed", "failed").await;
    assert!(
        server.objects().await.is_empty(),
        "{:?}",
        server.objects().await
    );
    assert!(
        server.pending_uploads().is_empty(),
        "{:?}",
        server.pending_uploads()
    );
    failed.get_str("error").unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_s3_credentials_fail_the_export_with_a_clear_error() {
    let server = S3Server::start().await;
    let error = fails_cleanly(
        &server,
        &[("HERALD_EXPORT_S3_SECRET_ACCESS_KEY", "not-the-secret")],
    )
    .await;
    assert!(error.contains("S3"), "{error}");
    assert!(error.contains("403 Forbidden"), "{error}");
    assert!(!error.contains("not-the-secret"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_fails_the_export_with_a_clear_error() {
    let server = S3Server::start().await;
    let error = fails_cleanly(&server, &[("HERALD_EXPORT_S3_BUCKET", "no-such-bucket")]).await;
    assert!(error.contains("no-such-bucket"), "{error}");
    assert!(error.contains("NoSuchBucket"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_server_going_away_mid_upload_fails_the_export_and_leaves_no_object() {
    let mut server = S3Server::start().await;
    let mut env = s3_env(
        &server,
        &[
            ("HERALD_QUEUES_EXPORT_MAX_ATTEMPTS", "1"),
            ("HERALD_EXPORT_BATCH_SIZE", "100"),
            ("HERALD_EXPORT_PROGRESS_INTERVAL_MS", "1"),
        ],
    )
    .await;
    let account = seed(&env).await;
    env.script_failures(None, 300, 6).await;
    env.start_worker().await;
    enqueue(&env, wide_rows_job(account, "orphan", ROWS)).await;
    wait_for("the export to be under way", || async {
        (number(&record(&env, account, "orphan").await, "processed") >= 1000).then_some(())
    })
    .await;
    server.stop();
    let failed = wait_status(&env, account, "orphan", "failed").await;
    let error = failed.get_str("error").unwrap();
    assert!(
        error.contains("S3") && error.contains("orphan.csv"),
        "{error}"
    );

    server.restart().await;
    let key = object_key(account, "orphan");
    assert!(
        server.objects().await.iter().all(|(k, _)| *k != key),
        "no partial object"
    );
    assert!(
        !server.pending_uploads().is_empty(),
        "the failed run could not abort its upload"
    );
    // The upload the failed run could not abort (the server was gone) is
    // aborted by the key's next run, which commits one object.
    enqueue(&env, wide_rows_job(account, "orphan", 100)).await;
    wait_status(&env, account, "orphan", "finished").await;
    let objects = server.objects().await;
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(objects[0].0, key);
    assert!(
        server.pending_uploads().is_empty(),
        "{:?}",
        server.pending_uploads()
    );
}

/// Ages the record of `key` by `days`.
async fn age(env: &TestEnv, account: AccountId, key: &str, days: i64) {
    let then = DateTime::from_millis(DateTime::now().timestamp_millis() - days * 86_400_000);
    env.database
        .collection::<Document>("export")
        .update_one(
            doc! { "_id": format!("{account}:{key}") },
            doc! { "$set": { "updatedAt": then } },
        )
        .await
        .unwrap();
}

/// Two finished exports, "old" aged 10 days and "new".
async fn two_exports(env: &mut TestEnv) -> AccountId {
    let account = seed(env).await;
    env.start_worker().await;
    for key in ["old", "new"] {
        enqueue(env, wide_rows_job(account, key, 10)).await;
        wait_status(env, account, key, "finished").await;
    }
    env.stop_worker().await.unwrap();
    age(env, account, "old", 10).await;
    account
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_s3_files_and_records_from_the_worker() {
    let server = S3Server::start().await;
    // The first worker keeps everything, so that the sweep's turn is free
    // for the one that keeps a week.
    let mut env = s3_env(&server, &[("HERALD_EXPORT_KEEP_DAYS", "0")]).await;
    let account = two_exports(&mut env).await;
    assert_eq!(server.objects().await.len(), 2);

    let mut keeping = env.settings.clone();
    keeping.export.keep = Some(Duration::from_secs(7 * 86_400));
    env.start_worker_with(keeping).await;
    wait_for("the old export to be removed", || async {
        record(&env, account, "old").await.is_empty().then_some(())
    })
    .await;
    let objects: Vec<String> = server.objects().await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(objects, [object_key(account, "new")]);
    assert_eq!(
        record(&env, account, "new")
            .await
            .get_str("status")
            .unwrap(),
        "finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_local_files_and_records() {
    let mut env = env_with(&[]).await;
    let account = two_exports(&mut env).await;
    let storage = ConfiguredStorage::from_settings(&env.settings.export).unwrap();
    let status = ExportStatusStore::new(&env.database);
    let removed = retention::sweep(&status, &storage, Duration::from_secs(7 * 86_400))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let key = |k: &str| herald_jobs::ExportKey::parse(k).unwrap();
    assert!(storage.open(account, &key("old")).await.unwrap().is_none());
    assert!(storage.open(account, &key("new")).await.unwrap().is_some());
    assert!(record(&env, account, "old").await.is_empty());
    assert_eq!(
        record(&env, account, "new")
            .await
            .get_str("status")
            .unwrap(),
        "finished"
    );
}
