//! Where export files go, behind a seam that names no file system.
//!
//! An export's file has two lives. While it is written it is a *partial*
//! ([`ExportStorage::Partial`]): a writer the export streams its rows into,
//! invisible to readers. [`ExportStorage::commit`] makes it the export's
//! file in one atomic step (a reader sees either the previous file or the
//! whole new one, and a re-run of the same key replaces the earlier file);
//! [`ExportStorage::discard`] drops it instead. A committed file is found
//! again by its account and key only: [`ExportStorage::open`] reads it,
//! [`ExportStorage::delete`] removes it.
//!
//! Callers hold nothing but these handles, so a backend is free in how it
//! keeps the bytes: [`LocalDirStorage`] (`local`) writes a hidden file and
//! renames it; [`S3Storage`] (`s3`) runs a multipart upload fed as the rows
//! arrive and completes it on commit. [`ConfiguredStorage`] is the one
//! the settings choose, picked once at start-up.
//!
//! The export job uses the trait with static dispatch (its rows go straight
//! into the backend's writer). `herald web` only opens finished files, and
//! holds any storage as [`ExportFiles`], a trait object.

mod configured;
mod local;
mod s3;

use std::{fmt, future::Future, io, pin::Pin, time::Duration};

use futures::future::BoxFuture;
use herald_jobs::{AccountId, ExportKey};
use tokio::io::{AsyncRead, AsyncWrite};

pub use configured::{ConfiguredPartial, ConfiguredStorage, StorageError};
pub use local::{LocalDirStorage, LocalPartial};
pub use s3::{S3Partial, S3Storage, PART_SIZE};

/// A committed file, as the status record and a download describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Its name (`<key>.csv`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Where it is, for people: a path, or `s3://bucket/key`. Holds no
    /// credentials.
    pub location: String,
}

/// A committed file opened for reading.
#[derive(Debug)]
pub struct OpenedFile<R> {
    /// Its name and size.
    pub file: StoredFile,
    /// Its bytes, from the first.
    pub reader: R,
}

/// Storage for export files.
pub trait ExportStorage: Send + Sync + 'static {
    /// A file being written: the export writes its bytes into it, then
    /// hands it to [`Self::commit`] or [`Self::discard`].
    type Partial: AsyncWrite + Unpin + Send;
    /// The bytes of a committed file.
    type Reader: AsyncRead + Unpin + Send + 'static;

    /// Starts the file of export `key` for `account`; `run` tells runs
    /// apart. Also drops partial files that crashed runs of the same key
    /// left behind.
    fn create(
        &self,
        account: AccountId,
        key: &ExportKey,
        run: &str,
    ) -> impl Future<Output = io::Result<Self::Partial>> + Send;

    /// Makes `partial` the export's file, replacing an earlier one. Writes
    /// out what `partial` still buffers; the file is durable when this
    /// returns. On failure nothing of `partial` is left.
    fn commit(&self, partial: Self::Partial)
        -> impl Future<Output = io::Result<StoredFile>> + Send;

    /// Drops `partial` (a cancelled or failed export).
    fn discard(&self, partial: Self::Partial) -> impl Future<Output = io::Result<()>> + Send;

    /// The committed file of `key`, opened for reading, if it exists.
    fn open(
        &self,
        account: AccountId,
        key: &ExportKey,
    ) -> impl Future<Output = io::Result<Option<OpenedFile<Self::Reader>>>> + Send;

    /// Deletes the committed file of `key`; a file that is not there is no
    /// error.
    fn delete(
        &self,
        account: AccountId,
        key: &ExportKey,
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// A URL that downloads the committed file of `key` without
    /// credentials for `valid_for`, if this storage can make one (a local
    /// directory cannot: `None`).
    fn presigned_url(
        &self,
        account: AccountId,
        key: &ExportKey,
        valid_for: Duration,
    ) -> impl Future<Output = io::Result<Option<String>>> + Send {
        let _ = (account, key, valid_for);
        async { Ok(None) }
    }
}

/// The bytes of a committed file from any storage.
pub type FileReader = Pin<Box<dyn AsyncRead + Send>>;

/// The reading side of an [`ExportStorage`] as a trait object: what
/// `herald web` holds to serve downloads, whichever storage the worker
/// writes to. Every storage is one.
pub trait ExportFiles: fmt::Debug + Send + Sync {
    /// [`ExportStorage::open`], boxed.
    fn open_file<'a>(
        &'a self,
        account: AccountId,
        key: &'a ExportKey,
    ) -> BoxFuture<'a, io::Result<Option<OpenedFile<FileReader>>>>;

    /// [`ExportStorage::presigned_url`], boxed.
    fn download_url<'a>(
        &'a self,
        account: AccountId,
        key: &'a ExportKey,
        valid_for: Duration,
    ) -> BoxFuture<'a, io::Result<Option<String>>>;
}

impl<S: ExportStorage + fmt::Debug> ExportFiles for S {
    fn open_file<'a>(
        &'a self,
        account: AccountId,
        key: &'a ExportKey,
    ) -> BoxFuture<'a, io::Result<Option<OpenedFile<FileReader>>>> {
        Box::pin(async move {
            let opened = self.open(account, key).await?;
            Ok(opened.map(|o| OpenedFile {
                file: o.file,
                reader: Box::pin(o.reader) as FileReader,
            }))
        })
    }

    fn download_url<'a>(
        &'a self,
        account: AccountId,
        key: &'a ExportKey,
        valid_for: Duration,
    ) -> BoxFuture<'a, io::Result<Option<String>>> {
        Box::pin(self.presigned_url(account, key, valid_for))
    }
}
