//! An S3 export's upload whose abort failed (issue 34): s3s-fs
//! ([`S3Server`]) is killed while a run commits, so the run's last part and
//! then its abort fail, and comes back on the same port and data. Herald's
//! record of the upload (`PREFIX/.uploads/<accountId>/<key>.<run>`, an
//! object in the bucket) must outlive the failed abort, and the key's next
//! run must abort the upload and only then remove the record.
//!
//! A run writes its rows faster than a test can watch them, so s3s-fs is
//! frozen (SIGSTOP) the moment the run's first part is on its disk: the
//! run's commit then waits on it, and the kill (SIGKILL) lands before the
//! run could complete or abort anything.
//!
//! Whether an upload is still open is read from s3s-fs's data directory
//! ([`S3Server::pending_uploads`]): s3s-fs answers ListMultipartUploads with
//! NotImplemented.

use std::{
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use herald::export::storage::PART_SIZE;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinHandle,
};

use crate::{
    export_helpers::{enqueue, number, seed_wide_rows, status_of, wait_status, wide_rows_job},
    helpers::wait_within,
    s3_server::{s3_env, S3Server, BUCKET, PREFIX},
};

/// Rows seeded; about 1,015 bytes each as CSV, so the export is a full
/// part (5 MiB, some 5,170 rows) and a last one of nearly as much, written
/// after the first is on the server.
const ROWS: usize = 10_000;

/// Bytes of a full part.
const PART_BYTES: u64 = PART_SIZE as u64;

/// The export key the test runs twice.
const KEY: &str = "flaky";

/// The request line of an HTTP request (`DELETE /bucket/key?uploadId=… HTTP/1.1`).
type RequestLine = String;

/// The port of the killed s3s-fs while it is down. Every connection is
/// accepted, its request line and headers read, and it is closed
/// unanswered, as by a server that died holding it: each request fails as
/// against a dead server, and the test learns which ones Herald made.
///
/// The one exception is the removal of one of Herald's upload records (a
/// DeleteObjects `POST /bucket?delete` naming a key under `.uploads/`, which
/// is how the object_store client deletes, or a `DELETE` of such a key): it
/// is held open and handed to the test, which brings s3s-fs back before
/// letting it go, so that the client's retry of it reaches the live server.
/// That is the measured defect made certain: s3s-fs back a second after the
/// kill, in time for a record removal that follows a failed abort.
struct Outage {
    accepting: JoinHandle<()>,
    requests: Arc<Mutex<Vec<RequestLine>>>,
    held: mpsc::UnboundedReceiver<(RequestLine, TcpStream)>,
}

impl Outage {
    /// Takes `port` over (s3s-fs must be stopped).
    async fn begin(port: u16) -> Self {
        let listener = wait_within(
            "the killed server's port to be free",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async { TcpListener::bind(("127.0.0.1", port)).await.ok() },
        )
        .await;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (hold, held) = mpsc::unbounded_channel();
        let seen = requests.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, hold) = (seen.clone(), hold.clone());
                tokio::spawn(async move {
                    let Some((line, body, stream)) = read_request(stream).await else {
                        return;
                    };
                    seen.lock().unwrap().push(line.clone());
                    if is_record_removal(&line, &body) {
                        let _ = hold.send((line, stream));
                    }
                    // Anything else is dropped here, unanswered.
                });
            }
        });
        Self {
            accepting,
            requests,
            held,
        }
    }

    /// Frees the port; the requests seen, in order.
    async fn end(self) -> Vec<RequestLine> {
        self.accepting.abort();
        // Dropping the task drops the listener: the port is free after this.
        let _ = self.accepting.await;
        let seen = self.requests.lock().unwrap().clone();
        seen
    }
}

/// Bodies up to this size are read (a DeleteObjects request's list of
/// keys); larger ones (parts) are left unread.
const SMALL_BODY: usize = 64 * 1024;

/// Reads a request from `stream`: its request line, its body if small
/// (else empty), and the stream; `None` if the client gave up first.
async fn read_request(stream: TcpStream) -> Option<(RequestLine, String, TcpStream)> {
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader.read_line(&mut first).await.ok()?;
    let mut length = 0;
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header).await {
            Ok(0) | Err(_) => return None,
            Ok(_) if header == "\r\n" => break,
            Ok(_) => {
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
        }
    }
    let mut body = vec![0; if length <= SMALL_BODY { length } else { 0 }];
    reader.read_exact(&mut body).await.ok()?;
    Some((
        first.trim_end().to_owned(),
        String::from_utf8_lossy(&body).into_owned(),
        reader.into_inner(),
    ))
}

/// Whether the request of `line` and `body` removes one of Herald's upload
/// records.
fn is_record_removal(line: &str, body: &str) -> bool {
    let deletes_objects = line.starts_with("POST ") && line.contains("?delete");
    let deletes_a_record =
        line.starts_with("DELETE ") && line.contains("/.uploads/") && !line.contains("uploadId=");
    (deletes_objects && body.contains("/.uploads/")) || deletes_a_record
}

/// Sends signal `name` to `server`'s process, found by its data directory
/// on its command line ([`S3Server`] keeps its child to itself).
fn signal_server(server: &S3Server, name: &str) {
    let root = server.root.to_string_lossy().into_owned();
    let pid = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|line| line.split(|b| *b == 0).any(|arg| arg == root.as_bytes()))
        })
        .expect("the s3s-fs process");
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// The id of the one multipart upload s3s-fs has open, once its first part
/// is there in full.
fn upload_with_a_full_part(server: &S3Server) -> Option<String> {
    let names = server.pending_uploads();
    let mut uploads = names
        .iter()
        .filter_map(|name| name.strip_prefix(".upload-")?.strip_suffix(".json"));
    let upload = uploads.next()?.to_owned();
    assert!(uploads.next().is_none(), "one upload: {names:?}");
    let part = server.root.join(format!(".upload_id-{upload}.part-1"));
    (std::fs::metadata(part).ok()?.len() == PART_BYTES).then_some(upload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_abort_failed_keeps_its_record_until_the_next_run_aborts_it() {
    let mut server = S3Server::start().await;
    // One attempt per export: the test runs the key again itself.
    let mut env = s3_env(&server, &[("HERALD_QUEUES_EXPORT_MAX_ATTEMPTS", "1")]).await;
    let account = seed_wide_rows(&env, ROWS).await;
    env.start_worker().await;
    enqueue(&env, wide_rows_job(account, KEY, ROWS)).await;

    // The run's upload is on the server (s3s-fs's record of it and a full
    // full part): s3s-fs is frozen at once, while the run still writes the
    // rows of its last part.
    let upload = wait_within(
        "the first full part on the server",
        Duration::from_secs(120),
        Duration::from_millis(2),
        || async { upload_with_a_full_part(&server) },
    )
    .await;
    signal_server(&server, "STOP");
    let hex = account.to_hex();
    let bucket = server.root.join(BUCKET).join(PREFIX);
    assert!(
        !bucket.join(&hex).join(format!("{KEY}.csv")).exists(),
        "the run committed before s3s-fs was frozen"
    );
    // Herald's record of the upload, on s3s-fs's disk while it is frozen.
    let records_on_disk: Vec<String> = std::fs::read_dir(bucket.join(".uploads").join(&hex))
        .expect("Herald's upload records")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    assert_eq!(records_on_disk.len(), 1, "{records_on_disk:?}");
    let record = format!("{PREFIX}/.uploads/{hex}/{}", records_on_disk[0]);
    assert!(record.starts_with(&format!("{PREFIX}/.uploads/{hex}/{KEY}.")));

    // Every row written: the run is in its commit, waiting on s3s-fs.
    wait_within(
        "the run to write its last row",
        Duration::from_secs(120),
        Duration::from_millis(50),
        || async {
            let found = status_of(&env, account, KEY).await;
            (number(&found, "processed") == ROWS as i64).then_some(())
        },
    )
    .await;
    // Killed: the run's last part, then its abort, fail.
    server.stop();
    let mut outage = Outage::begin(server.port).await;
    let removal_while_down = tokio::select! {
        _ = wait_status(&env, account, KEY, "failed") => None,
        held = outage.held.recv() => held,
    };
    let requests = outage.end().await;
    server.restart().await;
    if let Some((_line, stream)) = removal_while_down {
        // The client retries the removal, now against the live server.
        drop(stream);
        wait_status(&env, account, KEY, "failed").await;
    }
    let aborts = requests
        .iter()
        .filter(|line| line.starts_with("DELETE ") && line.contains(&format!("uploadId={upload}")))
        .count();
    assert!(
        aborts > 0,
        "the run tried to abort its upload while s3s-fs was down: {requests:#?}"
    );
    assert!(
        server
            .pending_uploads()
            .contains(&format!(".upload-{upload}.json")),
        "the abort failed: the upload is still open: {:?}",
        server.pending_uploads()
    );
    let objects: Vec<String> = server.objects().await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        objects,
        std::slice::from_ref(&record),
        "the record of the upload whose abort failed is kept, and no file is committed \
         (requests while s3s-fs was down: {requests:#?})"
    );
    assert_eq!(server.object(&record).await, upload.as_bytes());

    // The key's next run aborts the upload, then removes the record, and
    // commits its file.
    enqueue(&env, wide_rows_job(account, KEY, 100)).await;
    let finished = wait_status(&env, account, KEY, "finished").await;
    assert_eq!(number(&finished, "rows"), 100);
    assert!(
        server.pending_uploads().is_empty(),
        "no multipart upload is left open: {:?}",
        server.pending_uploads()
    );
    assert_eq!(
        server.objects().await,
        [(
            format!("{PREFIX}/{hex}/{KEY}.csv"),
            number(&finished, "fileSize") as u64
        )],
        "the committed file and no upload record"
    );
}
