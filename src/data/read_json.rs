//! NDJSON and JSON, read as DuckDB's `read_json` reads them: one JSON object per row, the rows
//! either whitespace-separated (NDJSON, or pretty-printed objects one after another) or the
//! elements of a top-level array. Both formats accept both layouts; arrow-json's decoder
//! flattens top-level arrays, so an array of objects streams row by row like NDJSON does.
//!
//! Types are arrow-json's inference over the sample (keys in the order the file has them), plus
//! what DuckDB adds: top-level strings that are all ISO dates or zone-less timestamps become
//! DATE / TIMESTAMP, and columns that were only ever null become VARCHAR.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::types::Date32Type;
use arrow_cast::parse::{Parser, string_to_timestamp_nanos};
use arrow_json::reader::{Decoder, ReaderBuilder, infer_json_schema_from_iterator};
use arrow_schema::{ArrowError, DataType, Field, Schema, TimeUnit};
use larder_actors::catalog::Format;
use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde_json::Value;

use super::text::{RowDecoder, Sample};
use super::{BATCH_ROWS, DataError, SAMPLE_ROWS};

/// The schema of the rows in `sample`: `None` when it holds no complete row yet.
pub(super) fn infer(format: Format, sample: Sample) -> Result<Option<Schema>, DataError> {
    let Sample { bytes, whole } = sample;
    let Some(start) = bytes.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Ok(whole.then(Schema::empty));
    };
    let sample = &bytes[start..];
    let mut rows = Vec::new();
    let read = if sample[0] == b'[' {
        sample_array(sample, &mut rows)
    } else {
        sample_values(sample, &mut rows)
    };
    match read {
        Ok(()) => {}
        // The sample ends inside a row: fine, unless the object ends there too.
        Err(e) if e.is_eof() && !whole => {}
        Err(_) if rows.len() >= SAMPLE_ROWS => {}
        Err(e) => return Err(DataError::unreadable(format, e)),
    }
    if rows.is_empty() {
        return Ok(whole.then(Schema::empty));
    }
    let schema = infer_json_schema_from_iterator(rows.iter().map(Ok::<_, ArrowError>))
        .map_err(|e| DataError::unreadable(format, e))?;
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match temporal(f.name(), &rows) {
            Some(t) if *f.data_type() == DataType::Utf8 => f.as_ref().clone().with_data_type(t),
            _ => settle(f),
        })
        .collect();
    Ok(Some(Schema::new(fields)))
}

/// DATE or TIMESTAMP when every sampled value of top-level field `name` is a string in ISO
/// form (`2026-01-31`, `2026-01-31 12:00:00[.fff]`, `T` also accepted; no zone), as DuckDB's
/// `read_json` detects them; `None` otherwise.
fn temporal(name: &str, rows: &[Value]) -> Option<DataType> {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let date = |s: &str| {
        s.len() == 10
            && s.as_bytes()[4] == b'-'
            && s.as_bytes()[7] == b'-'
            && digits(&s[..4])
            && digits(&s[5..7])
            && digits(&s[8..])
            && Date32Type::parse(s).is_some()
    };
    let timestamp = |s: &str| {
        s.len() >= 19
            && s.is_char_boundary(10)
            && date(&s[..10])
            && matches!(s.as_bytes()[10], b' ' | b'T')
            && s[11..]
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b':' || b == b'.')
            && string_to_timestamp_nanos(s).is_ok()
    };
    let mut values = rows
        .iter()
        .filter_map(|row| row.get(name))
        .filter(|v| !v.is_null())
        .peekable();
    values.peek()?;
    let strings: Vec<&str> = values.map(Value::as_str).collect::<Option<_>>()?;
    if strings.iter().all(|s| date(s)) {
        Some(DataType::Date32)
    } else if strings.iter().all(|s| timestamp(s)) {
        Some(DataType::Timestamp(TimeUnit::Microsecond, None))
    } else {
        None
    }
}

/// Up to [`SAMPLE_ROWS`] whitespace-separated values.
fn sample_values(sample: &[u8], rows: &mut Vec<Value>) -> Result<(), serde_json::Error> {
    for value in serde_json::Deserializer::from_slice(sample).into_iter::<Value>() {
        rows.push(value?);
        if rows.len() >= SAMPLE_ROWS {
            break;
        }
    }
    Ok(())
}

/// Up to [`SAMPLE_ROWS`] elements of the array `sample` starts with, kept even when the
/// array is cut short (the error then says why it stopped).
fn sample_array(sample: &[u8], rows: &mut Vec<Value>) -> Result<(), serde_json::Error> {
    struct Elements<'a>(&'a mut Vec<Value>);
    impl<'de> Visitor<'de> for Elements<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while self.0.len() < SAMPLE_ROWS {
                match seq.next_element::<Value>()? {
                    Some(row) => self.0.push(row),
                    None => return Ok(()),
                }
            }
            // Enough: the rest of the array is not looked at (serde_json then reports the
            // unread elements, which `infer` ignores once the sample is full).
            Ok(())
        }
    }
    serde_json::Deserializer::from_slice(sample).deserialize_seq(Elements(rows))
}

/// A column whose sampled values were all null (or empty lists) becomes VARCHAR, as DuckDB
/// makes it, so later non-null values have a type to be read as.
fn settle(field: &Arc<Field>) -> Field {
    fn settled(t: &DataType) -> DataType {
        match t {
            DataType::Null => DataType::Utf8,
            DataType::List(item) => DataType::List(Arc::new(settle(item))),
            DataType::Struct(fields) => DataType::Struct(fields.iter().map(settle).collect()),
            other => other.clone(),
        }
    }
    field
        .as_ref()
        .clone()
        .with_data_type(settled(field.data_type()))
}

/// Rows of the `projection` of `schema` (all of it when `None`), in that order; fields not in
/// it are skipped by the decoder.
pub(super) fn decoder(
    schema: &Schema,
    projection: Option<&[usize]>,
) -> Result<JsonRows, DataError> {
    let schema = match projection {
        Some(p) => schema.project(p),
        None => Ok(schema.clone()),
    }
    .map_err(|e| DataError::unreadable(Format::Json, e))?;
    let decoder = ReaderBuilder::new(Arc::new(schema))
        .with_batch_size(BATCH_ROWS)
        .with_flatten(true)
        // Numbers and booleans in a VARCHAR column are read as their text.
        .with_coerce_primitive(true)
        .build_decoder()
        .map_err(|e| DataError::unreadable(Format::Json, e))?;
    Ok(JsonRows(decoder))
}

pub(super) struct JsonRows(Decoder);

impl RowDecoder for JsonRows {
    fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
        self.0.decode(buf)
    }

    fn rows(&self) -> usize {
        self.0.len()
    }

    fn full(&self) -> bool {
        self.0.len() >= BATCH_ROWS && !self.0.has_partial_record()
    }

    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        self.0.flush()
    }

    fn finish(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        self.0.flush()
    }
}
