//! One version of one object, read by byte ranges: every read must come back with the ETag the
//! object had when reading began, so a file replaced mid-read is an error, never a mix of two
//! versions. [`ParquetSource`] is Parquet's `AsyncFileReader` over it.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::DataError;
use crate::storage::{Backend, ByteStream, ObjectKey, ObjectMeta, RangeRequest};

/// How many bytes at the end of a Parquet file are fetched first: the footer and, usually, all
/// of its metadata, in one request (a bigger footer costs one more).
const FOOTER_PREFETCH: usize = 64 * 1024;
/// Column chunks fetched at once for one row group.
const RANGE_CONCURRENCY: usize = 4;

/// An object as it was when reading began.
#[derive(Clone)]
pub(super) struct ObjectVersion {
    backend: Arc<dyn Backend>,
    key: ObjectKey,
    meta: ObjectMeta,
}

impl ObjectVersion {
    pub(super) async fn head(
        backend: Arc<dyn Backend>,
        key: &ObjectKey,
    ) -> Result<ObjectVersion, DataError> {
        let meta = backend.head(key).await?;
        Ok(ObjectVersion {
            backend,
            key: key.clone(),
            meta,
        })
    }

    pub(super) fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    /// Bytes `range.start..range.end` of the object; the whole range or an error.
    pub(super) async fn range(&self, range: Range<u64>) -> Result<Bytes, DataError> {
        let Some(last) = range.end.checked_sub(1).filter(|&l| l >= range.start) else {
            return Ok(Bytes::new());
        };
        let get = self
            .backend
            .get(
                &self.key,
                Some(RangeRequest::From {
                    start: range.start,
                    end: Some(last),
                }),
            )
            .await?;
        self.check(&get.meta)?;
        let want = range.end - range.start;
        let bytes = collect(get.body, want as usize).await?;
        if bytes.len() as u64 != want {
            return Err(DataError::Upstream(crate::storage::StorageError::Upstream(
                format!(
                    "asked for {want} bytes at {} of {}, got {}",
                    range.start,
                    self.key,
                    bytes.len()
                ),
            )));
        }
        Ok(bytes)
    }

    /// A stream of the object's first `len` bytes (or all of it, if shorter).
    pub(super) async fn prefix(&self, len: u64) -> Result<ByteStream, DataError> {
        let get = self
            .backend
            .get(
                &self.key,
                Some(RangeRequest::From {
                    start: 0,
                    end: Some(len.saturating_sub(1)),
                }),
            )
            .await?;
        self.check(&get.meta)?;
        Ok(get.body)
    }

    /// Whether `meta` (from a read) is still the version this reading began with.
    pub(super) fn check(&self, meta: &ObjectMeta) -> Result<(), DataError> {
        if meta.etag != self.meta.etag || meta.size != self.meta.size {
            return Err(DataError::Changed {
                expected: self.meta.etag.clone(),
                found: meta.etag.clone(),
            });
        }
        Ok(())
    }
}

/// Reads `body` to its end (at most `limit` bytes are expected; more is read but not reserved).
async fn collect(mut body: ByteStream, limit: usize) -> Result<Bytes, DataError> {
    let mut out = BytesMut::with_capacity(limit);
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(crate::storage::StorageError::from)?
    {
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// A Parquet file in a backend, read by ranges: the footer first, then column chunks.
#[derive(Clone)]
pub(super) struct ParquetSource {
    object: ObjectVersion,
}

impl ParquetSource {
    pub(super) fn new(object: ObjectVersion) -> ParquetSource {
        ParquetSource { object }
    }
}

/// Carries our error through the parquet crate, to be recovered by `read_parquet::error`.
fn external(e: DataError) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ParquetSource {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move { self.object.range(range).await.map_err(external) }.boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        let object = self.object.clone();
        async move {
            futures::stream::iter(ranges)
                .map(|range| {
                    let object = object.clone();
                    async move { object.range(range).await }
                })
                .buffered(RANGE_CONCURRENCY)
                .try_collect()
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.object.meta.size;
            let metadata = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(FOOTER_PREFETCH))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
