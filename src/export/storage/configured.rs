//! The storage the settings choose (`export.storage`), as one type.
//!
//! The worker's export handler is generic over its storage; naming this
//! enum there keeps one compiled handler while the choice between a local
//! directory and an object store is made at start-up.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use herald_jobs::{AccountId, ExportKey};
use tokio::io::AsyncWrite;

use super::{
    local::{LocalDirStorage, LocalPartial},
    s3::{S3Partial, S3Storage},
    ExportStorage, FileReader, OpenedFile, StoredFile,
};
use crate::config::{ExportSettings, StorageKind};

/// Why the configured storage could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object store client refused the `export.s3_*` settings.
    #[error("export storage `s3` cannot be set up: {0}")]
    S3(#[from] object_store::Error),
}

/// The storage `export.storage` names.
#[derive(Debug, Clone)]
pub enum ConfiguredStorage {
    /// `local`: files in `export.dir`.
    Local(LocalDirStorage),
    /// `s3`: objects in `export.s3_bucket`.
    S3(S3Storage),
}

impl ConfiguredStorage {
    /// The storage `settings` name.
    pub fn from_settings(settings: &ExportSettings) -> Result<Self, StorageError> {
        Ok(match settings.storage {
            StorageKind::Local => Self::Local(LocalDirStorage::new(&settings.dir)),
            StorageKind::S3 => Self::S3(S3Storage::new(&settings.s3)?),
        })
    }
}

/// A file being written to the [`ConfiguredStorage`].
#[derive(Debug)]
pub enum ConfiguredPartial {
    /// In a local directory.
    Local(LocalPartial),
    /// In a multipart upload.
    S3(S3Partial),
}

/// A partial handed to a storage that did not create it.
fn foreign_partial() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "a partial export file was handed to a storage that did not create it",
    )
}

impl ExportStorage for ConfiguredStorage {
    type Partial = ConfiguredPartial;
    type Reader = FileReader;

    async fn create(
        &self,
        account: AccountId,
        key: &ExportKey,
        run: &str,
    ) -> io::Result<ConfiguredPartial> {
        Ok(match self {
            Self::Local(s) => ConfiguredPartial::Local(s.create(account, key, run).await?),
            Self::S3(s) => ConfiguredPartial::S3(s.create(account, key, run).await?),
        })
    }

    async fn commit(&self, partial: ConfiguredPartial) -> io::Result<StoredFile> {
        match (self, partial) {
            (Self::Local(s), ConfiguredPartial::Local(p)) => s.commit(p).await,
            (Self::S3(s), ConfiguredPartial::S3(p)) => s.commit(p).await,
            _ => Err(foreign_partial()),
        }
    }

    async fn discard(&self, partial: ConfiguredPartial) -> io::Result<()> {
        match (self, partial) {
            (Self::Local(s), ConfiguredPartial::Local(p)) => s.discard(p).await,
            (Self::S3(s), ConfiguredPartial::S3(p)) => s.discard(p).await,
            _ => Err(foreign_partial()),
        }
    }

    async fn open(
        &self,
        account: AccountId,
        key: &ExportKey,
    ) -> io::Result<Option<OpenedFile<FileReader>>> {
        fn boxed<R: tokio::io::AsyncRead + Send + 'static>(
            opened: Option<OpenedFile<R>>,
        ) -> Option<OpenedFile<FileReader>> {
            opened.map(|o| OpenedFile {
                file: o.file,
                reader: Box::pin(o.reader) as FileReader,
            })
        }
        Ok(match self {
            Self::Local(s) => boxed(s.open(account, key).await?),
            Self::S3(s) => boxed(s.open(account, key).await?),
        })
    }

    async fn delete(&self, account: AccountId, key: &ExportKey) -> io::Result<()> {
        match self {
            Self::Local(s) => s.delete(account, key).await,
            Self::S3(s) => s.delete(account, key).await,
        }
    }

    async fn presigned_url(
        &self,
        account: AccountId,
        key: &ExportKey,
        valid_for: Duration,
    ) -> io::Result<Option<String>> {
        match self {
            Self::Local(s) => s.presigned_url(account, key, valid_for).await,
            Self::S3(s) => s.presigned_url(account, key, valid_for).await,
        }
    }
}

/// Writes go to the backend's own partial.
impl AsyncWrite for ConfiguredPartial {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Local(p) => Pin::new(p).poll_write(cx, buf),
            Self::S3(p) => Pin::new(p).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Local(p) => Pin::new(p).poll_flush(cx),
            Self::S3(p) => Pin::new(p).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Local(p) => Pin::new(p).poll_shutdown(cx),
            Self::S3(p) => Pin::new(p).poll_shutdown(cx),
        }
    }
}
