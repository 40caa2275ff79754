//! CSV, sniffed the way DuckDB's `read_csv` sniffs it: the delimiter (`,` `\t` `;` `|`, tab
//! first for `.tsv` keys) is the one that splits the sample into the most columns consistently;
//! the first row is a header unless its values fit the types of the rows below it (or when
//! every column is text, which gives no evidence: then it is a header, as in DuckDB); column
//! types are arrow-csv's inference over the sample. Quoting is RFC 4180 (`"`, doubled to escape);
//! an empty field is NULL.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_csv::reader::{Decoder, Format as CsvFormat, ReaderBuilder};
use arrow_schema::{ArrowError, DataType, Field, Schema, TimeUnit};
use larder_actors::catalog::Format;

use super::text::{RowDecoder, Sample};
use super::{BATCH_ROWS, DataError, SAMPLE_ROWS};
use crate::storage::ObjectKey;

/// How a CSV object is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dialect {
    pub(super) delimiter: u8,
    pub(super) header: bool,
}

impl Dialect {
    fn format(self) -> CsvFormat {
        CsvFormat::default()
            .with_delimiter(self.delimiter)
            .with_header(self.header)
    }
}

fn unreadable(e: impl std::fmt::Display) -> DataError {
    DataError::unreadable(Format::Csv, e)
}

/// The dialect and schema of the CSV in `sample`: `None` when it holds no complete record yet.
pub(super) fn infer(
    key: &ObjectKey,
    sample: Sample,
) -> Result<Option<(Dialect, Schema)>, DataError> {
    let Sample {
        bytes: sample,
        whole,
    } = sample;
    if sample.iter().all(u8::is_ascii_whitespace) {
        let dialect = Dialect {
            delimiter: b',',
            header: true,
        };
        return Ok(whole.then(|| (dialect, Schema::empty())));
    }
    let tsv = key.as_str().to_ascii_lowercase().ends_with(".tsv");
    let candidates = if tsv { *b"\t,;|" } else { *b",\t;|" };
    // (delimiter, columns, bytes of complete records)
    let mut best: Option<(u8, usize, usize)> = None;
    let mut first_error = None;
    let mut preferred_error = None;
    for delimiter in candidates {
        let complete = if whole {
            sample.len()
        } else {
            complete_records(sample, delimiter)
        };
        if complete == 0 {
            continue;
        }
        let headerless = Dialect {
            delimiter,
            header: false,
        };
        match headerless
            .format()
            .infer_schema(&sample[..complete], Some(SAMPLE_ROWS))
        {
            Ok((schema, _)) => {
                let columns = schema.fields().len();
                if best.is_none_or(|(_, most, _)| columns > most) {
                    best = Some((delimiter, columns, complete));
                }
            }
            Err(e) if delimiter == candidates[0] => preferred_error = Some((delimiter, e)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let Some((delimiter, columns, complete)) = best else {
        return match preferred_error.map(|(_, e)| e).or(first_error) {
            Some(e) => Err(unreadable(e)),
            None => Ok(None),
        };
    };
    // One column, because the likeliest delimiter found rows of different lengths: a ragged
    // file, not a one-column one (DuckDB refuses it too).
    if let (1, Some((d, e))) = (columns, preferred_error) {
        return Err(unreadable(format!(
            "{e} (with {:?} as the delimiter)",
            char::from(d)
        )));
    }
    let sample = &sample[..complete];
    let header = has_header(sample, delimiter)?;
    let dialect = Dialect { delimiter, header };
    let (schema, _) = dialect
        .format()
        .infer_schema(sample, Some(SAMPLE_ROWS))
        .map_err(unreadable)?;
    Ok(Some((dialect, named(&schema, header))))
}

/// How many bytes of `sample` hold whole records: all but the last record read, which may have
/// been cut off by the end of the sample (mid-line, or inside a quoted field).
fn complete_records(sample: &[u8], delimiter: u8) -> usize {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(sample);
    let mut record = csv::ByteRecord::new();
    let mut last_start = 0;
    loop {
        let start = reader.position().byte();
        match reader.read_byte_record(&mut record) {
            Ok(true) => last_start = start,
            Ok(false) | Err(_) => break,
        }
    }
    usize::try_from(last_start).unwrap_or(0)
}

/// Whether the first record is a header: yes if one of its values does not fit the type the
/// rows below give its column, or when those rows give no type but text.
fn has_header(sample: &[u8], delimiter: u8) -> Result<bool, DataError> {
    let (first, _) = Dialect {
        delimiter,
        header: false,
    }
    .format()
    .infer_schema(sample, Some(1))
    .map_err(unreadable)?;
    let (rest, _) = Dialect {
        delimiter,
        header: true,
    }
    .format()
    .infer_schema(sample, Some(SAMPLE_ROWS))
    .map_err(unreadable)?;
    let text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::Null);
    let fits = |first: &DataType, rest: &DataType| {
        first == rest
            || text(rest)
            || *first == DataType::Null
            || (*first == DataType::Int64 && *rest == DataType::Float64)
    };
    let misfit = first
        .fields()
        .iter()
        .zip(rest.fields())
        .any(|(f, r)| !fits(f.data_type(), r.data_type()));
    let no_evidence = rest.fields().iter().all(|r| text(r.data_type()));
    Ok(misfit || no_evidence)
}

/// Column names as DuckDB gives them: a header's names (an empty one becomes `column<i>`, a
/// repeated one gets `_1`, `_2`...), or `column0`, `column1`... (zero-padded to the same
/// width) without a header. All-empty columns are VARCHAR.
fn named(schema: &Schema, header: bool) -> Schema {
    let count = schema.fields().len();
    let width = count.saturating_sub(1).to_string().len();
    let generated = |i: usize| format!("column{i:0width$}");
    let mut taken = HashSet::new();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let base = if header && !f.name().is_empty() {
                f.name().clone()
            } else {
                generated(i)
            };
            let mut name = base.clone();
            let mut n = 0;
            while !taken.insert(name.clone()) {
                n += 1;
                name = format!("{base}_{n}");
            }
            let data_type = match f.data_type() {
                DataType::Null => DataType::Utf8,
                // DuckDB's CSV timestamps are all TIMESTAMP (microseconds), however precise
                // the sampled values happen to be.
                DataType::Timestamp(_, tz) => {
                    DataType::Timestamp(TimeUnit::Microsecond, tz.clone())
                }
                other => other.clone(),
            };
            Field::new(name, data_type, true)
        })
        .collect();
    Schema::new(fields)
}

/// Rows of the `projection` of `schema` (all of it when `None`), in that order.
pub(super) fn decoder(
    dialect: &Dialect,
    schema: &Schema,
    projection: Option<&[usize]>,
) -> Result<CsvRows, DataError> {
    let mut builder = ReaderBuilder::new(Arc::new(schema.clone()))
        .with_format(dialect.format())
        .with_batch_size(BATCH_ROWS);
    if let Some(projection) = projection {
        builder = builder.with_projection(projection.to_vec());
    }
    Ok(CsvRows(builder.build_decoder()))
}

pub(super) struct CsvRows(Decoder);

impl RowDecoder for CsvRows {
    fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
        self.0.decode(buf)
    }

    fn rows(&self) -> usize {
        BATCH_ROWS - self.0.capacity()
    }

    fn full(&self) -> bool {
        self.0.capacity() == 0
    }

    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        self.0.flush()
    }

    fn finish(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        // An empty buffer tells the parser the input ended (completing a last record that has
        // no line terminator).
        self.0.decode(&[])?;
        self.0.flush()
    }
}
