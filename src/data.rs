//! Table files read on the server: the schema of an object holding a table (Parquet, NDJSON,
//! JSON or CSV) and its rows as Arrow record batches, plus the encoders that turn those rows into
//! an HTTP body (Arrow IPC stream, JSON, NDJSON, CSV).
//!
//! This is the browser island's second data path (DESIGN.md, "The browser island"): when
//! DuckDB-WASM cannot load its `parquet` or `json` extension, the server decodes the table and
//! streams Arrow IPC for `insertArrowFromIPCStream`; dashboards in proxy mode read JSON from here.
//!
//! Everything streams in bounded memory. Parquet is read by ranged GETs only: the footer, then
//! the projected column chunks of the row groups a read needs. Text formats are decoded chunk by
//! chunk from one streaming GET, after inferring the schema from a bounded sample at the start
//! of the object (as DuckDB's `read_json` / `read_csv` sniff a sample).
//!
//! Must not: download a whole Parquet file, buffer a whole text object, write anything, or know
//! about users, routes or the catalog (callers hand it a user's backend and a validated key).
//!
//! # Layout
//! - `schema`: [`TableSchema`] and [`Column`], with DuckDB's names for Arrow types.
//! - `object`: ranged reads of one version of an object (ETag-pinned), and Parquet's
//!   `AsyncFileReader` over a [`Backend`].
//! - `read_parquet`, `read_json`, `read_csv`: one file per format (named after DuckDB's readers);
//!   `text` holds what the text formats share: sampling and the chunk-by-chunk decode loop.
//! - `encode`: [`Encoding`] and [`encode()`].
//!
//! # Limits (all documented constants below)
//! - Text schemas come from the first [`SAMPLE_BYTES`] / [`SAMPLE_ROWS`] rows (growing up to
//!   [`MAX_SAMPLE_BYTES`] while no row is complete). Fields first seen after the sample are
//!   ignored; a value that does not fit its sampled type is an [`DataError::Unreadable`] error
//!   (DuckDB, too, fails such a read rather than guessing).
//! - One row of a text file may be at most [`MAX_ROW_BYTES`] (a JSON array of objects is
//!   streamed row by row, so the document itself has no cap; one giant object does).
//! - Batches hold at most [`BATCH_ROWS`] rows. A Parquet read holds the projected column chunks
//!   of one row group at a time.
//! - Compressed text objects (`.csv.gz`, `.ndjson.zst`, ...) are refused with
//!   [`DataError::Unsupported`]; Parquet's own codecs (snappy, zstd, gzip, lz4) are read.

mod encode;
mod object;
mod read_csv;
mod read_json;
mod read_parquet;
mod schema;
mod text;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use http::StatusCode;
use larder_actors::catalog::Format;
use serde::Deserialize;

use crate::storage::{Backend, ObjectKey, ObjectMeta, StorageError};

pub use encode::{Encoding, encode};
pub use schema::TableSchema;

/// Bytes from the start of a text object that its schema is inferred from.
pub const SAMPLE_BYTES: usize = 1 << 20;
/// How far the sample grows while it holds no complete row (one very long first row).
pub const MAX_SAMPLE_BYTES: usize = 16 << 20;
/// Rows of a text object that its schema is inferred from, at most.
pub const SAMPLE_ROWS: usize = 10_000;
/// The longest single row (one JSON value, one CSV record) a text object may have.
pub const MAX_ROW_BYTES: usize = 64 << 20;
/// Rows per record batch, at most.
pub const BATCH_ROWS: usize = 8192;

/// What to read of a table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ReadOptions {
    /// Only these columns, in this order (names as in the schema, exactly). `None`: all.
    pub columns: Option<Vec<String>>,
    /// At most this many rows, from the start.
    pub limit: Option<usize>,
}

/// Why a table could not be read. [`DataError::status`] is the HTTP status for each.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("no such object: {0}")]
    NotFound(String),
    #[error("no column {column:?} in this table; its columns are: {}", available.join(", "))]
    UnknownColumn {
        column: String,
        available: Vec<String>,
    },
    /// The request is malformed (no columns named, a column named twice, a bad key).
    #[error("{0}")]
    BadRequest(String),
    /// The object is not valid in its format (truncated, corrupt, a row that does not parse);
    /// `message` is the parser's.
    #[error("the object cannot be read as {format}: {message}")]
    Unreadable { format: Format, message: String },
    /// The object is well formed but uses something this reader does not support.
    #[error("{0}")]
    Unsupported(String),
    /// The object was replaced while it was being read; reading again sees the new one.
    #[error("the object changed while it was being read (ETag {expected} became {found})")]
    Changed { expected: String, found: String },
    /// The storage backend failed or could not be reached.
    #[error("storage: {0}")]
    Upstream(StorageError),
}

impl DataError {
    /// The HTTP status an API answers this error with.
    pub fn status(&self) -> StatusCode {
        match self {
            DataError::NotFound(_) => StatusCode::NOT_FOUND,
            DataError::UnknownColumn { .. } | DataError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DataError::Unreadable { .. } | DataError::Unsupported(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            DataError::Changed { .. } => StatusCode::CONFLICT,
            DataError::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    fn unreadable(format: Format, message: impl std::fmt::Display) -> DataError {
        DataError::Unreadable {
            format,
            message: message.to_string(),
        }
    }
}

impl From<StorageError> for DataError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound(key) => DataError::NotFound(key),
            StorageError::InvalidKey(e) => DataError::BadRequest(e.to_string()),
            other => DataError::Upstream(other),
        }
    }
}

/// The rows of a table: record batches that all have [`BatchStream::schema`], which is known
/// before the first batch (so an empty table still has its columns).
///
/// Errors found before any row is decoded (a missing object, an unknown column, an unreadable
/// footer or sample) are returned by [`batches`] itself; later ones end the stream with an `Err`.
pub struct BatchStream {
    schema: SchemaRef,
    object: ObjectMeta,
    inner: BoxStream<'static, Result<RecordBatch, DataError>>,
}

impl BatchStream {
    fn new(
        schema: SchemaRef,
        object: ObjectMeta,
        inner: impl Stream<Item = Result<RecordBatch, DataError>> + Send + 'static,
    ) -> BatchStream {
        BatchStream {
            schema,
            object,
            inner: inner.boxed(),
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The version of the object being read (its ETag, for an HTTP `ETag` or a check against
    /// the snapshot's); a Parquet read fails with [`DataError::Changed`] if it changes.
    pub fn object(&self) -> &ObjectMeta {
        &self.object
    }

    /// At most `limit` rows: the last batch is cut, and the source is dropped (so a text
    /// object's body stops being read) as soon as the limit is reached.
    fn limit(self, limit: Option<usize>) -> BatchStream {
        let Some(limit) = limit else { return self };
        let (schema, object) = (self.schema.clone(), self.object.clone());
        let limited =
            futures::stream::unfold((self.inner, limit), |(mut inner, left)| async move {
                if left == 0 {
                    return None;
                }
                match inner.next().await? {
                    Ok(batch) => {
                        let take = batch.num_rows().min(left);
                        Some((Ok(batch.slice(0, take)), (inner, left - take)))
                    }
                    Err(e) => Some((Err(e), (inner, 0))),
                }
            });
        BatchStream::new(schema, object, limited)
    }
}

impl Stream for BatchStream {
    type Item = Result<RecordBatch, DataError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl std::fmt::Debug for BatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchStream")
            .field("schema", &self.schema)
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

/// The columns, types and (for Parquet, from its footer) row count of the table in `key`.
///
/// Parquet: only the footer is read (ranged reads, typically one of 64 KiB). Text formats: a
/// sample from the start of the object (one ranged read of [`SAMPLE_BYTES`], rarely two).
pub async fn schema(
    backend: Arc<dyn Backend>,
    key: &ObjectKey,
    format: Format,
) -> Result<TableSchema, DataError> {
    match format {
        Format::Parquet => read_parquet::schema(backend, key).await,
        Format::Ndjson | Format::Json | Format::Csv => text::schema(backend, key, format).await,
    }
}

/// The rows of the table in `key`, as a stream of record batches: only the columns asked for
/// (in that order), and at most `limit` rows. Both are pushed down: a Parquet read fetches
/// only the projected column chunks of the row groups it needs; a text read stops reading the
/// object once it has the rows.
pub async fn batches(
    backend: Arc<dyn Backend>,
    key: &ObjectKey,
    format: Format,
    options: ReadOptions,
) -> Result<BatchStream, DataError> {
    let stream = match format {
        Format::Parquet => read_parquet::batches(backend, key, &options).await?,
        Format::Ndjson | Format::Json | Format::Csv => {
            text::batches(backend, key, format, &options).await?
        }
    };
    Ok(stream.limit(options.limit))
}

/// The positions in `schema` of the columns asked for, in the order asked; `None` for all.
fn projection(
    schema: &Schema,
    columns: Option<&[String]>,
) -> Result<Option<Vec<usize>>, DataError> {
    let Some(columns) = columns else {
        return Ok(None);
    };
    if columns.is_empty() {
        return Err(DataError::BadRequest(
            "name at least one column (or leave the column list out for all)".to_owned(),
        ));
    }
    let mut seen = HashSet::new();
    let mut indices = Vec::with_capacity(columns.len());
    for column in columns {
        if !seen.insert(column.as_str()) {
            return Err(DataError::BadRequest(format!(
                "column {column:?} is listed twice"
            )));
        }
        let index = schema
            .index_of(column)
            .map_err(|_| DataError::UnknownColumn {
                column: column.clone(),
                available: schema.fields().iter().map(|f| f.name().clone()).collect(),
            })?;
        indices.push(index);
    }
    Ok(Some(indices))
}
