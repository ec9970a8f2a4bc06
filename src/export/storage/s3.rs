//! Export files in an S3-compatible object store.
//!
//! Layout in the bucket, under `export.s3_prefix`:
//!
//! - `PREFIX/<accountId>/<key>.csv`: a committed file;
//! - `PREFIX/.uploads/<accountId>/<key>.<run>`: the record of the multipart
//!   upload a run is writing, its body the upload id. It is what lets the
//!   next run of the key abort the upload of a run that was killed (a killed
//!   worker cannot abort its own) or whose abort failed, so no parts are
//!   left behind. A record is removed only once its upload is known to be
//!   over: completed, aborted, or answered 404 by the store (see [`Abort`]);
//!   an abort that fails otherwise keeps it for the key's next run.
//!
//! A partial is a multipart upload fed as the rows arrive: bytes collect in
//! a buffer of [`PART_SIZE`]; a full buffer becomes a part uploaded by its
//! own task, at most [`PARTS_IN_FLIGHT`] at once (a write waits for one to
//! finish), so memory stays under `PART_SIZE * (PARTS_IN_FLIGHT + 1)`
//! whatever the row count. A part's buffer comes back once its upload is
//! done and is filled again, so an export of any size allocates those few
//! buffers once instead of one per part (freed on one thread and allocated
//! on another, part-sized blocks otherwise pile up in the allocator's caches). The object is visible only once the upload is
//! completed on commit; completing replaces an earlier object of the key.
//! Discarding, and every failure on the way, aborts the upload.
//!
//! Why one module of about 580 lines: the storage and its partial writer
//! are two halves of one protocol, a multipart upload from its creation to
//! its completion or abort, and they share the upload's private state;
//! split across files, each half would reach into the other.

use std::{
    fmt, io, mem,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use herald_jobs::{AccountId, ExportKey};
use object_store::{
    aws::{AmazonS3, AmazonS3Builder},
    multipart::{MultipartStore, PartId},
    path::Path,
    signer::Signer,
    BackoffConfig, ClientOptions, MultipartId, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};
use secrecy::ExposeSecret;
use tokio::{io::AsyncWrite, task::JoinSet};
use tokio_util::io::StreamReader;
use tracing::{debug, warn};

use super::{ExportStorage, OpenedFile, StoredFile};
use crate::config::S3Settings;

/// Bytes per uploaded part: the least S3 takes for all parts but the last.
///
/// The last part is uploaded only after the last row, while the export
/// waits, so the smaller the parts the less of the file is sent at the end:
/// with 8 MiB parts a 5.7 MB export sent all of it after its rows (35 ms,
/// 10% of its time), with 5 MiB parts only 0.7 MB. S3 allows 10,000 parts,
/// so a file may reach 48 GiB.
pub const PART_SIZE: usize = 5 * 1024 * 1024;

/// Parts uploading at once per export.
pub const PARTS_IN_FLIGHT: usize = 2;

/// Retries of one failed S3 request, and how long they may take in all:
/// enough to ride out a blip, short enough that a store that is gone fails
/// the export within seconds rather than minutes.
const RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(20);

/// Export files in a bucket of an S3-compatible store.
#[derive(Clone)]
pub struct S3Storage {
    store: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
}

/// Shows where the files go; never the credentials.
impl fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Storage")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// An [`S3Storage`] file being written: a multipart upload in progress.
pub struct S3Partial {
    store: Arc<AmazonS3>,
    /// Whose export it is, and which, for the logs.
    account: AccountId,
    key: ExportKey,
    /// Where the object goes on commit.
    path: Path,
    /// The run's upload record.
    marker: Path,
    upload: MultipartId,
    /// Bytes not yet handed to a part.
    buffer: Vec<u8>,
    /// Buffers of finished parts, to fill again.
    spare: Vec<Vec<u8>>,
    /// Parts handed out so far.
    parts_started: usize,
    /// Uploaded parts' ids by index.
    parts: Vec<Option<PartId>>,
    uploading: JoinSet<Result<UploadedPart, object_store::Error>>,
    /// Bytes written in all.
    size: u64,
    /// `s3://bucket/key`, for messages and the status record.
    location: String,
}

/// A part's upload that finished: its index, its id, and its buffer when
/// nothing else holds it any more.
type UploadedPart = (usize, PartId, Option<Vec<u8>>);

impl fmt::Debug for S3Partial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Partial")
            .field("location", &self.location)
            .field("upload", &self.upload)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// What the answer to an AbortMultipartUpload says about the upload, and so
/// whether its record may go.
#[derive(Debug)]
enum Abort {
    /// The store aborted it: its parts are gone.
    Done,
    /// The store knows no such upload (404: `NoSuchUpload`, or the bucket
    /// itself is gone): it was completed or aborted before, nothing of it
    /// is left to abort.
    Gone,
    /// It may still be open: the store was not reached, refused or failed.
    /// Its record must stay, so that a later run aborts it.
    Failed(object_store::Error),
}

impl Abort {
    /// The outcome an `abort_multipart` call's result stands for.
    fn of(answer: Result<(), object_store::Error>) -> Self {
        match answer {
            Ok(()) => Self::Done,
            Err(object_store::Error::NotFound { .. }) => Self::Gone,
            Err(error) => Self::Failed(error),
        }
    }
}

/// An object store error as an I/O error that says what was being done where.
fn failed(what: &str, location: &str, error: object_store::Error) -> io::Error {
    let kind = match &error {
        object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("S3 {what} of {location} failed: {error}"))
}

impl S3Storage {
    /// A client for the store `settings` describe. Makes no request.
    pub fn new(settings: &S3Settings) -> Result<Self, object_store::Error> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(settings.secret_access_key.expose_secret())
            .with_virtual_hosted_style_request(settings.virtual_hosted_style)
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: RETRIES,
                retry_timeout: RETRY_TIMEOUT,
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(60)),
            );
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(bucket_endpoint(endpoint, settings))
                .with_allow_http(endpoint.scheme() == "http");
        }
        Ok(Self {
            store: Arc::new(builder.build()?),
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
        })
    }

    /// `PREFIX/<parts...>` as an object path.
    fn path<'a>(&'a self, parts: impl IntoIterator<Item = &'a str>) -> Path {
        Path::from_iter(
            self.prefix
                .split('/')
                .chain(parts)
                .filter(|part| !part.is_empty()),
        )
    }

    /// The committed object of `key`.
    fn object(&self, account: AccountId, key: &ExportKey) -> Path {
        let hex = account.to_hex();
        let name = file_name(key);
        self.path([hex.as_str(), name.as_str()])
    }

    /// Where the upload markers of `account` are.
    fn markers(&self, account: AccountId) -> Path {
        let hex = account.to_hex();
        self.path([".uploads", hex.as_str()])
    }

    fn location(&self, path: &Path) -> String {
        format!("s3://{}/{path}", self.bucket)
    }

    /// Aborts the uploads that earlier runs of `key` left behind (a killed
    /// worker's, or one whose abort failed) and removes their records. The
    /// record of an upload whose abort fails stays (logged), for the key's
    /// next run to try again; that failure does not fail this run.
    async fn abort_stale_uploads(&self, account: AccountId, key: &ExportKey) -> io::Result<()> {
        let markers = self.markers(account);
        let object = self.object(account, key);
        let location = self.location(&object);
        let stale: Vec<Path> = self
            .store
            .list(Some(&markers))
            .map_ok(|meta| meta.location)
            .try_filter(|path| {
                let ours = path
                    .filename()
                    .is_some_and(|name| name.starts_with(&format!("{key}.")));
                futures::future::ready(ours)
            })
            .try_collect()
            .await
            .map_err(|e| failed("listing of upload markers", &location, e))?;
        for marker in stale {
            let upload = match self.store.get(&marker).await {
                Ok(found) => found
                    .bytes()
                    .await
                    .map_err(|e| failed("read", &location, e))?,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(failed("read", &location, e)),
            };
            let upload = String::from_utf8_lossy(&upload).trim().to_owned();
            match Abort::of(self.store.abort_multipart(&object, &upload).await) {
                Abort::Done => {}
                Abort::Gone => {
                    debug!(
                        account_id = %account,
                        export_key = %key,
                        upload_id = %upload,
                        "a stale upload was already over; removing its record"
                    );
                }
                Abort::Failed(error) => {
                    let error = failed("abort of a stale upload", &location, error);
                    warn!(
                        %error,
                        account_id = %account,
                        export_key = %key,
                        upload_id = %upload,
                        record = %marker,
                        "could not abort a stale upload; its record is kept for the key's next run"
                    );
                    continue;
                }
            }
            self.store
                .delete(&marker)
                .await
                .map_err(|e| failed("removal of an upload marker", &location, e))?;
        }
        Ok(())
    }
}

/// The endpoint requests go to: the configured one, and with virtual-hosted
/// style the bucket in front of its host (unless it is there already), as
/// the client expects.
fn bucket_endpoint(endpoint: &reqwest::Url, settings: &S3Settings) -> String {
    let text = endpoint.as_str().trim_end_matches('/').to_owned();
    let bucket_host = format!("{}.", settings.bucket);
    match endpoint.host_str() {
        Some(host) if settings.virtual_hosted_style && !host.starts_with(&bucket_host) => {
            text.replacen(host, &format!("{bucket_host}{host}"), 1)
        }
        _ => text,
    }
}

/// The committed file's name.
fn file_name(key: &ExportKey) -> String {
    format!("{key}.csv")
}

impl S3Partial {
    /// Hands the buffer to a new part upload.
    fn start_part(&mut self) {
        let next = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(PART_SIZE));
        let bytes = Bytes::from(mem::replace(&mut self.buffer, next));
        let kept = bytes.clone();
        let data = PutPayload::from(bytes);
        let index = self.parts_started;
        self.parts_started += 1;
        self.parts.push(None);
        let (store, path, upload) = (self.store.clone(), self.path.clone(), self.upload.clone());
        self.uploading.spawn(async move {
            let id = store.put_part(&path, &upload, index, data).await?;
            // The request is done with the bytes: take the buffer back.
            let buffer = kept.try_into_mut().ok().map(|b| {
                let mut buffer = Vec::from(b);
                buffer.clear();
                buffer
            });
            Ok((index, id, buffer))
        });
    }

    /// Records a finished part upload; its failure is the write's.
    fn finished_part(
        &mut self,
        joined: Result<Result<UploadedPart, object_store::Error>, tokio::task::JoinError>,
    ) -> io::Result<()> {
        match joined {
            Ok(Ok((index, id, buffer))) => {
                self.parts[index] = Some(id);
                if let Some(buffer) = buffer.filter(|b| b.capacity() >= PART_SIZE) {
                    if self.spare.len() < PARTS_IN_FLIGHT {
                        self.spare.push(buffer);
                    }
                }
                Ok(())
            }
            Ok(Err(e)) => Err(failed("part upload", &self.location, e)),
            Err(e) => Err(io::Error::other(format!(
                "S3 part upload of {} stopped: {e}",
                self.location
            ))),
        }
    }

    /// Uploads what is buffered and completes the upload.
    async fn complete(&mut self) -> io::Result<()> {
        // S3 needs at least one part; an empty one is allowed as the last.
        if !self.buffer.is_empty() || self.parts_started == 0 {
            self.start_part();
        }
        while let Some(joined) = self.uploading.join_next().await {
            self.finished_part(joined)?;
        }
        let parts = mem::take(&mut self.parts)
            .into_iter()
            .collect::<Option<Vec<PartId>>>()
            .ok_or_else(|| io::Error::other("a part upload did not report its id"))?;
        self.store
            .complete_multipart(&self.path, &self.upload, parts)
            .await
            .map_err(|e| failed("completion of the upload", &self.location, e))?;
        Ok(())
    }

    /// Stops the part uploads, aborts the upload and then removes its
    /// record. An abort that fails keeps the record (the key's next run
    /// aborts the upload then) and is logged here, with the account, key
    /// and upload id, before it is returned.
    async fn abort(mut self) -> io::Result<()> {
        self.uploading.shutdown().await;
        match Abort::of(self.store.abort_multipart(&self.path, &self.upload).await) {
            Abort::Done | Abort::Gone => {
                self.remove_marker().await;
                Ok(())
            }
            Abort::Failed(error) => {
                let error = failed("abort of the upload", &self.location, error);
                warn!(
                    %error,
                    account_id = %self.account,
                    export_key = %self.key,
                    upload_id = %self.upload,
                    record = %self.marker,
                    "could not abort an upload; its record is kept for the key's next run"
                );
                Err(error)
            }
        }
    }

    /// Removes the run's upload record, once its upload is over. A record
    /// left behind is removed by the key's next run when the store answers
    /// its abort of the upload with 404, as S3 does for an upload that is
    /// over (s3s-fs answers 403: there the record stays, logged each run).
    async fn remove_marker(&self) {
        if let Err(error) = self.store.delete(&self.marker).await {
            warn!(
                %error,
                account_id = %self.account,
                export_key = %self.key,
                upload_id = %self.upload,
                record = %self.marker,
                "could not remove the record of an upload that is over"
            );
        }
    }
}

impl ExportStorage for S3Storage {
    type Partial = S3Partial;
    type Reader = StreamReader<futures::stream::BoxStream<'static, io::Result<Bytes>>, Bytes>;

    async fn create(
        &self,
        account: AccountId,
        key: &ExportKey,
        run: &str,
    ) -> io::Result<S3Partial> {
        self.abort_stale_uploads(account, key).await?;
        let path = self.object(account, key);
        let location = self.location(&path);
        let marker = {
            let hex = account.to_hex();
            let name = format!("{key}.{run}");
            self.path([".uploads", hex.as_str(), name.as_str()])
        };
        let upload = self
            .store
            .create_multipart(&path)
            .await
            .map_err(|e| failed("start of an upload", &location, e))?;
        let partial = S3Partial {
            store: self.store.clone(),
            account,
            key: key.clone(),
            path,
            marker,
            upload,
            buffer: Vec::with_capacity(PART_SIZE),
            spare: Vec::new(),
            parts_started: 0,
            parts: Vec::new(),
            uploading: JoinSet::new(),
            size: 0,
            location,
        };
        let recorded = self
            .store
            .put(&partial.marker, PutPayload::from(partial.upload.clone()))
            .await;
        if let Err(e) = recorded {
            let error = failed("record of an upload", &partial.location, e);
            if let Err(abort) = partial.abort().await {
                warn!(
                    error = %abort,
                    account_id = %account,
                    export_key = %key,
                    "could not abort an upload whose record may not have been written"
                );
            }
            return Err(error);
        }
        Ok(partial)
    }

    async fn commit(&self, mut partial: S3Partial) -> io::Result<StoredFile> {
        if let Err(error) = partial.complete().await {
            // A failed abort is logged by `abort` and keeps the record; the
            // completion's error is the one to report.
            let _ = partial.abort().await;
            return Err(error);
        }
        partial.remove_marker().await;
        Ok(StoredFile {
            name: partial
                .path
                .filename()
                .map(str::to_owned)
                .unwrap_or_default(),
            size: partial.size,
            location: partial.location,
        })
    }

    async fn discard(&self, partial: S3Partial) -> io::Result<()> {
        partial.abort().await
    }

    async fn open(
        &self,
        account: AccountId,
        key: &ExportKey,
    ) -> io::Result<Option<OpenedFile<Self::Reader>>> {
        let path = self.object(account, key);
        let location = self.location(&path);
        let found = match self.store.get(&path).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(failed("download", &location, e)),
        };
        let size = found.meta.size;
        let stream_location = location.clone();
        let bytes = found
            .into_stream()
            .map_err(move |e| failed("download", &stream_location, e))
            .boxed();
        Ok(Some(OpenedFile {
            file: StoredFile {
                name: file_name(key),
                size,
                location,
            },
            reader: StreamReader::new(bytes),
        }))
    }

    async fn delete(&self, account: AccountId, key: &ExportKey) -> io::Result<()> {
        let path = self.object(account, key);
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failed("removal", &self.location(&path), e)),
        }
    }

    async fn presigned_url(
        &self,
        account: AccountId,
        key: &ExportKey,
        valid_for: Duration,
    ) -> io::Result<Option<String>> {
        let path = self.object(account, key);
        let url = self
            .store
            .signed_url(reqwest::Method::GET, &path, valid_for)
            .await
            .map_err(|e| failed("presigning", &self.location(&path), e))?;
        Ok(Some(url.to_string()))
    }
}

/// Writes fill the buffer; a full buffer starts a part upload, and a write
/// waits while [`PARTS_IN_FLIGHT`] parts are uploading. A failed part fails
/// the next write. Flushing uploads nothing (parts below 5 MiB are only
/// allowed last): the rest goes on commit.
impl AsyncWrite for S3Partial {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.uploading.poll_join_next(cx) {
                Poll::Ready(Some(joined)) => this.finished_part(joined)?,
                Poll::Ready(None) => break,
                Poll::Pending if this.uploading.len() >= PARTS_IN_FLIGHT => return Poll::Pending,
                Poll::Pending => break,
            }
        }
        let take = buf.len().min(PART_SIZE - this.buffer.len());
        this.buffer.extend_from_slice(&buf[..take]);
        this.size += take as u64;
        if this.buffer.len() == PART_SIZE {
            this.start_part();
        }
        Poll::Ready(Ok(take))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn settings(endpoint: &str, virtual_hosted_style: bool) -> S3Settings {
        S3Settings {
            endpoint: Some(reqwest::Url::parse(endpoint).unwrap()),
            bucket: "exports".into(),
            region: "cn-hangzhou".into(),
            access_key_id: "id".into(),
            secret_access_key: SecretString::from("hunter2"),
            prefix: String::new(),
            virtual_hosted_style,
        }
    }

    #[test]
    fn virtual_hosted_style_puts_the_bucket_in_front_of_the_host_once() {
        for (endpoint, virtual_hosted, expected) in [
            (
                "https://s3.oss-cn-hangzhou.aliyuncs.com",
                true,
                "https://exports.s3.oss-cn-hangzhou.aliyuncs.com",
            ),
            (
                "https://exports.s3.oss-cn-hangzhou.aliyuncs.com/",
                true,
                "https://exports.s3.oss-cn-hangzhou.aliyuncs.com",
            ),
            ("http://127.0.0.1:9000", false, "http://127.0.0.1:9000"),
        ] {
            let s = settings(endpoint, virtual_hosted);
            assert_eq!(bucket_endpoint(s.endpoint.as_ref().unwrap(), &s), expected);
        }
    }

    #[test]
    fn only_an_abort_that_succeeded_or_found_no_upload_lets_the_record_go() {
        let cause = || Box::new(io::Error::other("answer")) as Box<_>;
        assert!(matches!(Abort::of(Ok(())), Abort::Done));
        let no_such_upload = object_store::Error::NotFound {
            path: "exports/.uploads/a/k.run".into(),
            source: cause(),
        };
        assert!(matches!(Abort::of(Err(no_such_upload)), Abort::Gone));
        for kept in [
            // Connection refused, a 5xx after the retries, a timeout.
            object_store::Error::Generic {
                store: "S3",
                source: cause(),
            },
            object_store::Error::PermissionDenied {
                path: "exports/a/k.csv".into(),
                source: cause(),
            },
            object_store::Error::Unauthenticated {
                path: "exports/a/k.csv".into(),
                source: cause(),
            },
            object_store::Error::Precondition {
                path: "exports/a/k.csv".into(),
                source: cause(),
            },
        ] {
            assert!(matches!(Abort::of(Err(kept)), Abort::Failed(_)));
        }
    }

    #[test]
    fn the_storage_never_prints_its_secret() {
        let storage = S3Storage::new(&settings("http://127.0.0.1:9000", false)).unwrap();
        let printed = format!("{storage:?}");
        assert!(
            printed.contains("exports") && !printed.contains("hunter2"),
            "{printed}"
        );
    }
}
