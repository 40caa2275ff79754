//! What a table looks like: [`TableSchema`] (serializable, so it can be cached per snapshot and
//! sent as JSON) and the DuckDB name of each Arrow type, so the server describes a column the
//! way the SQL the user writes in the browser sees it.

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use larder_actors::catalog::Format;
use serde::{Deserialize, Serialize};

use crate::storage::ObjectMeta;

/// The shape of one table object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub format: Format,
    pub columns: Vec<Column>,
    /// The number of rows, when the file says so without being read (Parquet's footer).
    pub rows: Option<u64>,
    /// The object's size in bytes.
    pub size: u64,
    /// The object's ETag (quoted, as S3 sends it): the version this schema describes.
    pub etag: String,
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// DuckDB's name for the type: `BIGINT`, `VARCHAR`, `TIMESTAMP WITH TIME ZONE`,
    /// `STRUCT(a BIGINT, b VARCHAR[])`, ...
    #[serde(rename = "type")]
    pub data_type: String,
    /// The Arrow type the server reads it as (arrow-rs's `Display`), for diagnostics.
    pub arrow_type: String,
    pub nullable: bool,
}

impl TableSchema {
    pub(super) fn new(
        format: Format,
        schema: &Schema,
        rows: Option<u64>,
        meta: &ObjectMeta,
    ) -> Self {
        TableSchema {
            format,
            columns: schema.fields().iter().map(|f| Column::of(f)).collect(),
            rows,
            size: meta.size,
            etag: meta.etag.clone(),
        }
    }
}

impl Column {
    fn of(field: &Field) -> Column {
        Column {
            name: field.name().clone(),
            data_type: duckdb_type(field.data_type()),
            arrow_type: field.data_type().to_string(),
            nullable: field.is_nullable(),
        }
    }
}

/// DuckDB's name for the type DuckDB gives an Arrow column of type `t`.
pub(super) fn duckdb_type(t: &DataType) -> String {
    use DataType::*;
    let name = match t {
        Null => "\"NULL\"",
        Boolean => "BOOLEAN",
        Int8 => "TINYINT",
        Int16 => "SMALLINT",
        Int32 => "INTEGER",
        Int64 => "BIGINT",
        UInt8 => "UTINYINT",
        UInt16 => "USMALLINT",
        UInt32 => "UINTEGER",
        UInt64 => "UBIGINT",
        Float16 | Float32 => "FLOAT",
        Float64 => "DOUBLE",
        Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE",
        Timestamp(TimeUnit::Second, None) => "TIMESTAMP_S",
        Timestamp(TimeUnit::Millisecond, None) => "TIMESTAMP_MS",
        Timestamp(TimeUnit::Microsecond, None) => "TIMESTAMP",
        Timestamp(TimeUnit::Nanosecond, None) => "TIMESTAMP_NS",
        Date32 | Date64 => "DATE",
        Time32(_) | Time64(_) => "TIME",
        Duration(_) | Interval(_) => "INTERVAL",
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => "BLOB",
        Utf8 | LargeUtf8 | Utf8View => "VARCHAR",
        Decimal32(p, s) | Decimal64(p, s) => return format!("DECIMAL({p},{s})"),
        Decimal128(p, s) | Decimal256(p, s) => return format!("DECIMAL({p},{s})"),
        List(f) | LargeList(f) | ListView(f) | LargeListView(f) => {
            return format!("{}[]", duckdb_type(f.data_type()));
        }
        FixedSizeList(f, n) => return format!("{}[{n}]", duckdb_type(f.data_type())),
        Struct(fields) => {
            let members: Vec<String> = fields
                .iter()
                .map(|f| format!("{} {}", identifier(f.name()), duckdb_type(f.data_type())))
                .collect();
            return format!("STRUCT({})", members.join(", "));
        }
        Map(entries, _) => {
            return match entries.data_type() {
                Struct(kv) if kv.len() == 2 => format!(
                    "MAP({}, {})",
                    duckdb_type(kv[0].data_type()),
                    duckdb_type(kv[1].data_type())
                ),
                other => format!("MAP({other})"),
            };
        }
        Union(fields, _) => {
            let members: Vec<String> = fields
                .iter()
                .map(|(_, f)| format!("{} {}", identifier(f.name()), duckdb_type(f.data_type())))
                .collect();
            return format!("UNION({})", members.join(", "));
        }
        Dictionary(_, values) => return duckdb_type(values),
        RunEndEncoded(_, values) => return duckdb_type(values.data_type()),
    };
    name.to_owned()
}

/// A struct member's name as DuckDB prints it: bare when it is a plain lower-case identifier,
/// double-quoted otherwise.
fn identifier(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}
