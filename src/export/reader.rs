//! Reading an export's cursor ahead of the CSV writer.
//!
//! [`read_ahead`] runs in its own task and hands the writer whole batches
//! of documents over a bounded channel, so the next batch is fetched from
//! the server while the current one is rendered, and memory stays flat
//! (the channel's bound is the most batches held at once).
//!
//! The documents are taken from the cursor as raw bytes
//! ([`mongodb::Cursor::advance`] and [`mongodb::Cursor::current`]) and
//! copied back to back into one buffer per batch. Asking the cursor for
//! owned documents instead (`try_next` into `RawDocumentBuf`) runs each one
//! through serde's visitor, walking every element and copying it again —
//! the largest cost of the export's own process in a profile.

use mongodb::bson::{RawDocument, RawDocumentBuf};
use tokio::sync::mpsc;

/// Documents read from the cursor, stored back to back in one buffer.
#[derive(Debug, Default)]
pub struct DocumentBatch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl DocumentBatch {
    /// An empty batch with room for `documents` documents.
    pub fn with_capacity(documents: usize) -> Self {
        Self {
            bytes: Vec::new(),
            ends: Vec::with_capacity(documents),
        }
    }

    /// Appends a copy of `document`.
    pub fn push(&mut self, document: &RawDocument) {
        self.bytes.extend_from_slice(document.as_bytes());
        self.ends.push(self.bytes.len());
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the batch holds no document.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The documents, in the order they were pushed.
    pub fn iter(&self) -> impl Iterator<Item = &RawDocument> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .filter_map(|(start, end)| {
                // Each slice is a document that was valid when pushed, so this
                // cannot fail; a failure would skip it rather than panic.
                RawDocument::from_bytes(&self.bytes[start..end]).ok()
            })
    }
}

/// What the reader hands the writer: a batch, or the error that ended the
/// cursor.
pub type ReadResult = Result<DocumentBatch, mongodb::error::Error>;

/// Reads `cursor` into batches of `size` documents and sends them on,
/// until the cursor ends, fails (the error is sent) or nobody listens.
pub async fn read_ahead(
    mut cursor: mongodb::Cursor<RawDocumentBuf>,
    size: usize,
    ahead: mpsc::Sender<ReadResult>,
) {
    let size = size.max(1);
    loop {
        let mut batch = DocumentBatch::with_capacity(size);
        let ended = loop {
            match cursor.advance().await {
                Ok(true) => {
                    batch.push(cursor.current());
                    if batch.len() == size {
                        break false;
                    }
                }
                Ok(false) => break true,
                Err(e) => {
                    let _ = ahead.send(Err(e)).await;
                    return;
                }
            }
        };
        if !batch.is_empty() && ahead.send(Ok(batch)).await.is_err() {
            return;
        }
        if ended {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, RawDocumentBuf};

    #[test]
    fn a_batch_gives_back_its_documents_in_order() {
        let documents: Vec<RawDocumentBuf> = (0..3)
            .map(|i| RawDocumentBuf::from_document(&doc! { "i": i, "s": "x".repeat(i as usize) }))
            .collect::<Result<_, _>>()
            .unwrap();
        let mut batch = DocumentBatch::with_capacity(3);
        assert!(batch.is_empty());
        for document in &documents {
            batch.push(document);
        }
        assert_eq!(batch.len(), 3);
        let back: Vec<&RawDocument> = batch.iter().collect();
        assert_eq!(back.len(), 3);
        for (original, copy) in documents.iter().zip(back) {
            assert_eq!(original.as_bytes(), copy.as_bytes());
        }
    }
}
