//! What NDJSON, JSON and CSV share: the schema is inferred from a sample at the start of the
//! object, then the rows are decoded chunk by chunk as the body streams in (arrow-json's and
//! arrow-csv's push decoders), so memory stays bounded by a batch and one row, whatever the
//! object's size. The sample is the start of the same body, so a read makes one request.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, Schema, SchemaRef};
use bytes::{Buf, Bytes};
use futures::StreamExt;
use larder_actors::catalog::Format;

use super::object::ObjectVersion;
use super::{
    BatchStream, DataError, MAX_ROW_BYTES, MAX_SAMPLE_BYTES, ReadOptions, SAMPLE_BYTES,
    TableSchema, projection, read_csv, read_json,
};
use crate::storage::{Backend, ByteStream, ObjectKey, ObjectMeta, StorageError};

/// How a text object's rows are laid out, as inferred from its sample.
#[derive(Debug, Clone)]
pub(super) enum Layout {
    /// NDJSON, or a JSON array of objects (or several, or objects separated by whitespace).
    Json,
    Csv(read_csv::Dialect),
}

/// The start of a text object, which its schema is inferred from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample<'a> {
    /// Without a UTF-8 byte-order mark.
    pub(super) bytes: &'a [u8],
    /// Whether this is the entire object; otherwise its last row may be cut short (which is
    /// not an error).
    pub(super) whole: bool,
}

impl<'a> Sample<'a> {
    fn new(bytes: &'a [u8], whole: bool) -> Sample<'a> {
        Sample {
            bytes: strip_bom(bytes),
            whole,
        }
    }
}

/// A text table as its sample describes it.
#[derive(Debug, Clone)]
pub(super) struct Inferred {
    pub(super) layout: Layout,
    pub(super) schema: Schema,
}

/// Pushes bytes in, takes record batches out.
pub(super) trait RowDecoder: Send {
    /// Consumes some of `buf` (all of it, unless a batch filled up); returns how much.
    fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError>;
    /// Complete rows waiting to be flushed (a JSON decoder also counts the row in progress).
    fn rows(&self) -> usize;
    /// Whether a batch is full and must be flushed before more can be decoded.
    fn full(&self) -> bool;
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError>;
    /// The input ended: the last rows (an error if it ended inside a row).
    fn finish(&mut self) -> Result<Option<RecordBatch>, ArrowError>;
}

pub(super) async fn schema(
    backend: Arc<dyn Backend>,
    key: &ObjectKey,
    format: Format,
) -> Result<TableSchema, DataError> {
    let object = ObjectVersion::head(backend, key).await?;
    let size = object.meta().size;
    let mut sample = Vec::new();
    let mut inferred = None;
    // A first sample, then (only when it holds no complete row) a bigger one.
    for len in [SAMPLE_BYTES, MAX_SAMPLE_BYTES] {
        if size == 0 {
            break;
        }
        sample.clear();
        let mut body = object.prefix(len as u64).await?;
        fill(&mut body, &mut sample, len).await?;
        let whole = sample.len() as u64 >= size;
        inferred = infer(format, key, Sample::new(&sample, whole))?;
        if inferred.is_some() || whole {
            break;
        }
    }
    let schema = match inferred {
        Some(inferred) => inferred.schema,
        None if (sample.len() as u64) < size => return Err(no_complete_row(format)),
        None => Schema::empty(),
    };
    Ok(TableSchema::new(format, &schema, None, object.meta()))
}

pub(super) async fn batches(
    backend: Arc<dyn Backend>,
    key: &ObjectKey,
    format: Format,
    options: &ReadOptions,
) -> Result<BatchStream, DataError> {
    let get = backend.get(key, None).await?;
    let meta = get.meta;
    let mut body = get.body;
    let mut head = Vec::new();
    let mut ended = fill(&mut body, &mut head, SAMPLE_BYTES).await?;
    let inferred = loop {
        if let Some(inferred) = infer(format, key, Sample::new(&head, ended))? {
            break inferred;
        }
        // No complete row yet (so the body has not ended): sample further, up to a point.
        if ended || head.len() >= MAX_SAMPLE_BYTES {
            return Err(no_complete_row(format));
        }
        ended = fill(&mut body, &mut head, MAX_SAMPLE_BYTES).await?;
    };
    let wanted = projection(&inferred.schema, options.columns.as_deref())?;
    if inferred.schema.fields().is_empty() {
        // Only whitespace (or `[]`, or `{}` rows): nothing to decode.
        return Ok(BatchStream::new(
            Arc::new(inferred.schema),
            meta,
            futures::stream::empty(),
        ));
    }
    let decoder: Box<dyn RowDecoder> = match &inferred.layout {
        Layout::Json => Box::new(read_json::decoder(&inferred.schema, wanted.as_deref())?),
        Layout::Csv(dialect) => Box::new(read_csv::decoder(
            dialect,
            &inferred.schema,
            wanted.as_deref(),
        )?),
    };
    let schema = match &wanted {
        Some(wanted) => Arc::new(
            inferred
                .schema
                .project(wanted)
                .map_err(|e| DataError::unreadable(format, e))?,
        ),
        None => Arc::new(inferred.schema),
    };
    let bom = head.len() - strip_bom(&head).len();
    let mut head = Bytes::from(head);
    head.advance(bom);
    Ok(decode(head, body, decoder, format, schema, meta))
}

/// `None` while the sample holds no complete row.
fn infer(format: Format, key: &ObjectKey, sample: Sample) -> Result<Option<Inferred>, DataError> {
    if let Some(compression) = compression(key, sample.bytes) {
        return Err(DataError::Unsupported(format!(
            "{key} is {compression}-compressed; Larder reads uncompressed {format} only"
        )));
    }
    Ok(match format {
        Format::Csv => read_csv::infer(key, sample)?.map(|(dialect, schema)| Inferred {
            layout: Layout::Csv(dialect),
            schema,
        }),
        _ => read_json::infer(format, sample)?.map(|schema| Inferred {
            layout: Layout::Json,
            schema,
        }),
    })
}

/// The compression an object is in, from its key's suffix or its first bytes.
fn compression(key: &ObjectKey, start: &[u8]) -> Option<&'static str> {
    let key = key.as_str().to_ascii_lowercase();
    if key.ends_with(".gz") || start.starts_with(&[0x1f, 0x8b]) {
        Some("gzip")
    } else if key.ends_with(".zst") || start.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else {
        None
    }
}

fn no_complete_row(format: Format) -> DataError {
    DataError::unreadable(
        format,
        format!(
            "no complete row in the first {} MiB (a row longer than that cannot be sampled)",
            MAX_SAMPLE_BYTES >> 20
        ),
    )
}

/// `text` without a UTF-8 byte-order mark.
fn strip_bom(text: &[u8]) -> &[u8] {
    text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text)
}

/// Reads `body` into `buf` until it holds at least `len` bytes; true when the body ended.
async fn fill(body: &mut ByteStream, buf: &mut Vec<u8>, len: usize) -> Result<bool, DataError> {
    while buf.len() < len {
        match body.next().await {
            Some(chunk) => buf.extend_from_slice(&chunk.map_err(StorageError::from)?),
            None => return Ok(true),
        }
    }
    Ok(false)
}

/// The chunk-by-chunk decode loop: `head` (already read) and then the rest of `body`.
fn decode(
    head: Bytes,
    body: ByteStream,
    decoder: Box<dyn RowDecoder>,
    format: Format,
    schema: SchemaRef,
    object: ObjectMeta,
) -> BatchStream {
    struct Decoding {
        pending: Bytes,
        body: ByteStream,
        decoder: Box<dyn RowDecoder>,
        /// Rows already returned, for error messages.
        returned: u64,
        /// Bytes consumed since a row last completed: bounds the row being decoded.
        in_row: usize,
        ended: bool,
    }
    impl Decoding {
        fn error(&self, format: Format, e: ArrowError) -> DataError {
            let row = self.returned + self.decoder.rows() as u64;
            DataError::unreadable(format, format!("{e} (at or near row {})", row.max(1)))
        }
        fn flushed(&mut self, batch: Option<RecordBatch>) -> Option<RecordBatch> {
            let batch = batch.filter(|b| b.num_rows() > 0)?;
            self.returned += batch.num_rows() as u64;
            Some(batch)
        }
    }
    let state = Decoding {
        pending: head,
        body,
        decoder,
        returned: 0,
        in_row: 0,
        ended: false,
    };
    let rows = futures::stream::try_unfold(state, move |mut s| async move {
        loop {
            if s.ended {
                return Ok(None);
            }
            if s.decoder.full() {
                let batch = s.decoder.flush().map_err(|e| s.error(format, e))?;
                if let Some(batch) = s.flushed(batch) {
                    return Ok(Some((batch, s)));
                }
            }
            if s.pending.is_empty() {
                match s.body.next().await {
                    Some(chunk) => s.pending = chunk.map_err(StorageError::from)?,
                    None => {
                        s.ended = true;
                        let batch = s.decoder.finish().map_err(|e| s.error(format, e))?;
                        return Ok(s.flushed(batch).map(|batch| (batch, s)));
                    }
                }
                continue;
            }
            let before = s.decoder.rows();
            let used = s
                .decoder
                .decode(&s.pending)
                .map_err(|e| s.error(format, e))?;
            s.pending.advance(used);
            if s.decoder.rows() != before {
                s.in_row = 0;
            } else {
                s.in_row += used;
                if s.in_row > MAX_ROW_BYTES {
                    return Err(s.error(
                        format,
                        ArrowError::ParseError(format!(
                            "a row is longer than {} MiB{}",
                            MAX_ROW_BYTES >> 20,
                            if format == Format::Csv {
                                " (an unclosed quote?)"
                            } else {
                                ""
                            }
                        )),
                    ));
                }
            }
            if used == 0 && !s.decoder.full() {
                // Cannot happen with arrow's decoders; guards against spinning forever.
                return Err(s.error(
                    format,
                    ArrowError::ParseError("the decoder made no progress".to_owned()),
                ));
            }
        }
    });
    BatchStream::new(schema, object, rows)
}
