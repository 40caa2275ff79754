//! Rows on the wire: a [`BatchStream`] encoded as a streaming HTTP body, one batch at a time, so
//! memory is bounded by one batch's encoding whatever the table's size.
//!
//! An error after the first byte cannot change the status line any more: the body then ends
//! with an I/O error (the connection is cut), so a client never mistakes a partial table for a
//! whole one. Arrow IPC readers also notice the missing end-of-stream marker.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_cast::cast;
use arrow_ipc::writer::StreamWriter;
use arrow_json::writer::{EncoderOptions, JsonArray, LineDelimited, make_encoder};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{BatchStream, DataError};
use crate::storage::ByteStream;

/// How rows are written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The Arrow IPC streaming format (what DuckDB-WASM's `insertArrowFromIPCStream` loads).
    #[serde(alias = "ipc", alias = "arrows")]
    Arrow,
    /// One JSON array of objects (nulls written out).
    Json,
    /// One JSON object per line.
    #[serde(alias = "jsonl")]
    Ndjson,
    /// CSV with a header row; nested values are written as JSON text.
    Csv,
}

impl Encoding {
    pub const ALL: [Encoding; 4] = [
        Encoding::Arrow,
        Encoding::Json,
        Encoding::Ndjson,
        Encoding::Csv,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Arrow => "arrow",
            Encoding::Json => "json",
            Encoding::Ndjson => "ndjson",
            Encoding::Csv => "csv",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Arrow => "application/vnd.apache.arrow.stream",
            Encoding::Json => "application/json",
            Encoding::Ndjson => "application/x-ndjson",
            Encoding::Csv => "text/csv; charset=utf-8",
        }
    }
}

impl std::str::FromStr for Encoding {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "arrow" | "arrows" | "ipc" => Ok(Encoding::Arrow),
            "json" => Ok(Encoding::Json),
            "ndjson" | "jsonl" => Ok(Encoding::Ndjson),
            "csv" => Ok(Encoding::Csv),
            _ => Err(DataError::BadRequest(format!(
                "unknown encoding {s:?}: use arrow, json, ndjson or csv"
            ))),
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `batches` as a streaming body in `encoding` (its type is [`Encoding::content_type`]).
pub fn encode(batches: BatchStream, encoding: Encoding) -> ByteStream {
    let schema = batches.schema();
    let writer: Box<dyn Writer> = match encoding {
        Encoding::Arrow => Box::new(Ipc::new(&schema)),
        Encoding::Json => Box::new(Json::<JsonArray>::new()),
        Encoding::Ndjson => Box::new(Json::<LineDelimited>::new()),
        Encoding::Csv => Box::new(Csv {
            schema,
            started: false,
        }),
    };
    struct Streaming {
        batches: BatchStream,
        writer: Box<dyn Writer>,
        done: bool,
    }
    let state = Streaming {
        batches,
        writer,
        done: false,
    };
    let body = futures::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            let written = match s.batches.next().await {
                Some(Ok(batch)) => s.writer.batch(&batch).map_err(unencodable),
                Some(Err(e)) => Err(e),
                None => {
                    s.done = true;
                    s.writer.finish().map_err(unencodable)
                }
            };
            match written {
                Ok(bytes) if bytes.is_empty() => continue,
                Ok(bytes) => return Some((Ok(bytes), s)),
                Err(e) => {
                    tracing::warn!(error = %e, "a table read failed while streaming");
                    s.done = true;
                    return Some((Err(std::io::Error::other(e)), s));
                }
            }
        }
    });
    Box::pin(body)
}

/// Encoding fails only on values the format cannot hold.
fn unencodable(e: ArrowError) -> DataError {
    DataError::Unsupported(format!("cannot encode the rows: {e}"))
}

/// One encoding's writer: each call returns the bytes it produced.
trait Writer: Send {
    fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, ArrowError>;
    fn finish(&mut self) -> Result<Bytes, ArrowError>;
}

struct Ipc {
    /// `None` if the schema itself could not be written (reported by the first call).
    writer: Result<StreamWriter<Vec<u8>>, Option<ArrowError>>,
}

impl Ipc {
    fn new(schema: &Schema) -> Ipc {
        Ipc {
            writer: StreamWriter::try_new(Vec::new(), &for_ipc(schema)).map_err(Some),
        }
    }

    fn writer(&mut self) -> Result<&mut StreamWriter<Vec<u8>>, ArrowError> {
        match &mut self.writer {
            Ok(w) => Ok(w),
            Err(e) => Err(e
                .take()
                .unwrap_or_else(|| ArrowError::IpcError("no schema".to_owned()))),
        }
    }
}

impl Writer for Ipc {
    fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, ArrowError> {
        let writer = self.writer()?;
        writer.write(&views_cast(batch)?)?;
        Ok(std::mem::take(writer.get_mut()).into())
    }

    fn finish(&mut self) -> Result<Bytes, ArrowError> {
        let writer = self.writer()?;
        writer.finish()?;
        Ok(std::mem::take(writer.get_mut()).into())
    }
}

/// Apache Arrow JS (the island's, 17) predates the view types: send them as plain strings and
/// binaries.
fn for_ipc(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(unviewed(f.data_type())))
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

fn unviewed(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        other => other.clone(),
    }
}

fn views_cast(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Utf8View | DataType::BinaryView))
    {
        return Ok(batch.clone());
    }
    let columns = batch
        .columns()
        .iter()
        .map(|c| cast(c, &unviewed(c.data_type())))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::new(for_ipc(&batch.schema())), columns)
}

struct Json<F: arrow_json::writer::JsonFormat> {
    writer: arrow_json::Writer<Vec<u8>, F>,
}

impl<F: arrow_json::writer::JsonFormat> Json<F> {
    fn new() -> Json<F> {
        Json {
            writer: arrow_json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build(Vec::new()),
        }
    }
}

impl<F: arrow_json::writer::JsonFormat + Send> Writer for Json<F> {
    fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, ArrowError> {
        self.writer.write(&utc_offsets(batch)?)?;
        Ok(std::mem::take(self.writer.get_mut()).into())
    }

    fn finish(&mut self) -> Result<Bytes, ArrowError> {
        self.writer.finish()?;
        Ok(std::mem::take(self.writer.get_mut()).into())
    }
}

struct Csv {
    schema: SchemaRef,
    /// Whether the header has been written.
    started: bool,
}

impl Csv {
    fn write(&mut self, batch: &RecordBatch) -> Result<Bytes, ArrowError> {
        let mut out = Vec::new();
        let mut writer = arrow_csv::WriterBuilder::new()
            .with_header(!self.started)
            .build(&mut out);
        writer.write(&nested_as_json(&utc_offsets(batch)?)?)?;
        drop(writer);
        self.started = true;
        Ok(out.into())
    }
}

impl Writer for Csv {
    fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, ArrowError> {
        if batch.num_rows() == 0 && self.started {
            return Ok(Bytes::new());
        }
        self.write(batch)
    }

    fn finish(&mut self) -> Result<Bytes, ArrowError> {
        if self.started {
            return Ok(Bytes::new());
        }
        // No rows: still the header.
        self.write(&RecordBatch::new_empty(self.schema.clone()))
    }
}

/// `batch` with its timestamps in named time zones (`UTC`, `Europe/Paris`) relabelled `+00:00`:
/// the same instants, written as UTC in JSON and CSV. (Rendering them in their own zone needs
/// the time-zone database, arrow's `chrono-tz` feature, which is not worth its build time here;
/// Arrow IPC keeps the zone as it is.)
pub(super) fn utc_offsets(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    fn relabelled(t: &DataType) -> Option<DataType> {
        let field =
            |f: &Field| relabelled(f.data_type()).map(|t| Arc::new(f.clone().with_data_type(t)));
        match t {
            DataType::Timestamp(unit, Some(tz)) if !tz.starts_with(['+', '-']) => {
                Some(DataType::Timestamp(*unit, Some("+00:00".into())))
            }
            DataType::List(f) => field(f).map(DataType::List),
            DataType::LargeList(f) => field(f).map(DataType::LargeList),
            DataType::FixedSizeList(f, n) => field(f).map(|f| DataType::FixedSizeList(f, *n)),
            DataType::Struct(fields) => {
                let changed: Vec<_> = fields.iter().map(|f| field(f)).collect();
                changed.iter().any(Option::is_some).then(|| {
                    DataType::Struct(
                        fields
                            .iter()
                            .zip(changed)
                            .map(|(f, c)| c.unwrap_or_else(|| f.clone()))
                            .collect(),
                    )
                })
            }
            _ => None,
        }
    }
    let schema = batch.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| relabelled(f.data_type()).is_some())
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        match relabelled(field.data_type()) {
            Some(t) => {
                columns.push(cast(column, &t)?);
                fields.push(field.as_ref().clone().with_data_type(t));
            }
            None => {
                columns.push(column.clone());
                fields.push(field.as_ref().clone());
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// `batch` with its nested columns (lists, structs, maps) as JSON text, which CSV can hold.
fn nested_as_json(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| f.data_type().is_nested()) {
        return Ok(batch.clone());
    }
    let options = EncoderOptions::default().with_explicit_nulls(true);
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if !field.data_type().is_nested() {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let mut encoder = make_encoder(field, column.as_ref(), &options)?;
        let mut text = Vec::new();
        let values: StringArray = (0..column.len())
            .map(|i| {
                if encoder.is_null(i) {
                    return None;
                }
                text.clear();
                encoder.encode(i, &mut text);
                Some(String::from_utf8_lossy(&text).into_owned())
            })
            .collect();
        fields.push(Field::new(field.name(), DataType::Utf8, true));
        columns.push(Arc::new(values));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}
