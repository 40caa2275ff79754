//! Tests of table reading against a real `LocalBackend` in a temp dir, wrapped to count the
//! bytes and requests each read makes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use larder_actors::catalog::Format;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::{Value, json};

use super::*;
use crate::storage::local::LocalBackend;
use crate::storage::{
    ByteStream, GetObject, ListPage, ListRequest, ObjectMeta, PartMeta, PutOptions, RangeRequest,
};

/// A backend that counts what is read through `get`.
struct Counting {
    inner: LocalBackend,
    bytes: Arc<AtomicU64>,
    gets: AtomicU64,
}

impl Counting {
    fn reset(&self) {
        self.bytes.store(0, Ordering::SeqCst);
        self.gets.store(0, Ordering::SeqCst);
    }
    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }
    fn gets(&self) -> u64 {
        self.gets.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Backend for Counting {
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        self.inner.head(key).await
    }
    async fn get(
        &self,
        key: &ObjectKey,
        range: Option<RangeRequest>,
    ) -> Result<GetObject, StorageError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        let mut get = self.inner.get(key, range).await?;
        let bytes = self.bytes.clone();
        get.body = Box::pin(get.body.inspect_ok(move |chunk| {
            bytes.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }));
        Ok(get)
    }
    async fn put(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        size: Option<u64>,
        opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        self.inner.put(key, body, size, opts).await
    }
    async fn list(&self, req: &ListRequest) -> Result<ListPage, StorageError> {
        self.inner.list(req).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.inner.delete(key).await
    }
    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        self.inner.copy(from, to).await
    }
    async fn create_multipart(
        &self,
        key: &ObjectKey,
        content_type: Option<String>,
    ) -> Result<String, StorageError> {
        self.inner.create_multipart(key, content_type).await
    }
    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        part_number: u32,
        body: ByteStream,
        size: Option<u64>,
        content_md5: Option<[u8; 16]>,
    ) -> Result<PartMeta, StorageError> {
        self.inner
            .upload_part(key, upload_id, part_number, body, size, content_md5)
            .await
    }
    async fn list_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<Vec<PartMeta>, StorageError> {
        self.inner.list_parts(key, upload_id).await
    }
    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[(u32, String)],
        opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        self.inner
            .complete_multipart(key, upload_id, parts, opts)
            .await
    }
    async fn abort_multipart(&self, key: &ObjectKey, upload_id: &str) -> Result<(), StorageError> {
        self.inner.abort_multipart(key, upload_id).await
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    counting: Arc<Counting>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let inner = LocalBackend::new(dir.path().join("users/u1/local"));
        Fixture {
            _dir: dir,
            counting: Arc::new(Counting {
                inner,
                bytes: Arc::new(AtomicU64::new(0)),
                gets: AtomicU64::new(0),
            }),
        }
    }

    fn backend(&self) -> Arc<dyn Backend> {
        self.counting.clone()
    }

    async fn put(&self, k: &str, data: impl Into<Bytes>) -> ObjectMeta {
        let data = data.into();
        let size = data.len() as u64;
        let body: ByteStream = Box::pin(stream::once(async move { Ok(data) }));
        let meta = self
            .counting
            .put(&key(k), body, Some(size), &PutOptions::default())
            .await
            .unwrap();
        self.counting.reset();
        meta
    }

    async fn schema(&self, k: &str, format: Format) -> Result<TableSchema, DataError> {
        schema(self.backend(), &key(k), format).await
    }

    async fn read(
        &self,
        k: &str,
        format: Format,
        options: ReadOptions,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), DataError> {
        let stream = batches(self.backend(), &key(k), format, options).await?;
        let schema = stream.schema();
        let batches = stream.try_collect().await?;
        Ok((schema, batches))
    }

    /// All rows, as JSON objects.
    async fn rows(&self, k: &str, format: Format, options: ReadOptions) -> Vec<Value> {
        let (_, batches) = self.read(k, format, options).await.unwrap();
        as_json(&batches)
    }
}

fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).unwrap()
}

fn columns(names: &[&str]) -> ReadOptions {
    ReadOptions {
        columns: Some(names.iter().map(|s| s.to_string()).collect()),
        limit: None,
    }
}

fn limit(n: usize) -> ReadOptions {
    ReadOptions {
        columns: None,
        limit: Some(n),
    }
}

/// Rows as JSON objects (nulls written out), through arrow-json directly.
fn as_json(batches: &[RecordBatch]) -> Vec<Value> {
    let mut writer = arrow_json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow_json::writer::JsonArray>(Vec::new());
    for b in batches {
        writer
            .write(&super::encode::utc_offsets(b).unwrap())
            .unwrap();
    }
    writer.finish().unwrap();
    serde_json::from_slice(&writer.into_inner()).unwrap()
}

fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

fn names(schema: &Schema) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

fn types(schema: &TableSchema) -> Vec<(String, String)> {
    schema
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.data_type.clone()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Parquet fixtures

/// The sample table: every kind of column the island meets, with nulls.
fn sample_batch(start: i64, rows: usize) -> RecordBatch {
    let ids: Vec<i64> = (start..start + rows as i64).collect();
    let name = StringArray::from_iter(
        ids.iter()
            .map(|i| (i % 7 != 3).then(|| format!("name-{i}"))),
    );
    let score =
        Float64Array::from_iter(ids.iter().map(|i| (i % 5 != 0).then_some(*i as f64 / 4.0)));
    let at = TimestampMicrosecondArray::from_iter_values(
        ids.iter().map(|i| 1_767_225_600_000_000 + i * 1_000_000),
    )
    .with_timezone("UTC");
    let day = Date32Array::from_iter_values(ids.iter().map(|i| 20_454 + (*i as i32 % 365)));
    let mut tags = ListBuilder::new(StringBuilder::new());
    for i in &ids {
        if i % 11 == 0 {
            tags.append_null();
        } else {
            for t in 0..(i % 3) {
                tags.values().append_value(format!("t{t}"));
            }
            tags.append(true);
        }
    }
    let point = StructArray::from(vec![
        (
            Arc::new(Field::new("x", DataType::Float64, false)),
            Arc::new(Float64Array::from_iter_values(
                ids.iter().map(|i| *i as f64),
            )) as ArrayRef,
        ),
        (
            Arc::new(Field::new("y", DataType::Float64, false)),
            Arc::new(Float64Array::from_iter_values(
                ids.iter().map(|i| -(*i as f64)),
            )) as ArrayRef,
        ),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(name),
        Arc::new(score),
        Arc::new(at),
        Arc::new(day),
        Arc::new(tags.finish()),
        Arc::new(point),
    ];
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("day", DataType::Date32, true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new(
            "point",
            DataType::Struct(Fields::from(vec![
                Field::new("x", DataType::Float64, false),
                Field::new("y", DataType::Float64, false),
            ])),
            true,
        ),
    ]);
    RecordBatch::try_new(Arc::new(schema), columns).unwrap()
}

fn parquet_of(batches: &[RecordBatch], compression: Compression, row_group: usize) -> Vec<u8> {
    let props = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(row_group))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), batches[0].schema(), Some(props)).unwrap();
    for b in batches {
        writer.write(b).unwrap();
    }
    writer.into_inner().unwrap()
}

fn snappy() -> Compression {
    Compression::SNAPPY
}

fn zstd() -> Compression {
    Compression::ZSTD(ZstdLevel::default())
}

/// `columns` float columns of `rows` pseudo-random values: compresses badly, so each column
/// chunk is big.
fn wide_batch(columns: usize, rows: usize) -> RecordBatch {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as f64 / u64::MAX as f64
    };
    let fields: Vec<Field> = (0..columns)
        .map(|c| Field::new(format!("c{c}"), DataType::Float64, false))
        .collect();
    let arrays: Vec<ArrayRef> = (0..columns)
        .map(|_| Arc::new(Float64Array::from_iter_values((0..rows).map(|_| next()))) as ArrayRef)
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Parquet

#[tokio::test]
async fn parquet_schema_comes_from_the_footer() {
    let f = Fixture::new();
    let data = parquet_of(&[sample_batch(0, 5000)], snappy(), 1000);
    let meta = f.put("t/sample.parquet", data).await;
    let schema = f.schema("t/sample.parquet", Format::Parquet).await.unwrap();
    assert_eq!(
        types(&schema),
        pairs(&[
            ("id", "BIGINT"),
            ("name", "VARCHAR"),
            ("score", "DOUBLE"),
            ("at", "TIMESTAMP WITH TIME ZONE"),
            ("day", "DATE"),
            ("tags", "VARCHAR[]"),
            ("point", "STRUCT(x DOUBLE, y DOUBLE)"),
        ])
    );
    assert_eq!(schema.rows, Some(5000));
    assert_eq!(schema.size, meta.size);
    assert_eq!(schema.etag, meta.etag);
    assert_eq!(schema.format, Format::Parquet);
    assert!(!schema.columns[0].nullable);
    assert!(schema.columns[1].nullable);
    assert_eq!(schema.columns[0].arrow_type, "Int64");

    // Serializable, to be cached per snapshot and sent as JSON.
    let json = serde_json::to_value(&schema).unwrap();
    assert_eq!(json["columns"][5]["type"], "VARCHAR[]");
    assert_eq!(json["format"], "parquet");
    assert_eq!(json["rows"], 5000);
    let back: TableSchema = serde_json::from_value(json).unwrap();
    assert_eq!(back, schema);
}

#[tokio::test]
async fn a_parquet_schema_reads_only_the_footer() {
    let f = Fixture::new();
    let data = parquet_of(&[wide_batch(8, 200_000)], snappy(), 50_000);
    let size = data.len() as u64;
    assert!(size > 10 << 20, "a big file: {size}");
    f.put("big.parquet", data).await;
    let schema = f.schema("big.parquet", Format::Parquet).await.unwrap();
    assert_eq!(schema.rows, Some(200_000));
    assert_eq!(schema.columns.len(), 8);
    let (read, gets) = (f.counting.bytes(), f.counting.gets());
    println!("footer read: {read} bytes in {gets} request(s) of a {size}-byte file");
    assert!(read <= 64 * 1024, "read {read} bytes for the footer");
    assert_eq!(gets, 1);
}

#[tokio::test]
async fn parquet_rows_come_back_as_written_with_snappy_and_zstd() {
    let f = Fixture::new();
    let written = [sample_batch(0, 2500), sample_batch(2500, 2500)];
    let expected = as_json(&written);
    for (name, compression) in [("s.parquet", snappy()), ("z.parquet", zstd())] {
        f.put(name, parquet_of(&written, compression, 1000)).await;
        let (schema, batches) = f
            .read(name, Format::Parquet, ReadOptions::default())
            .await
            .unwrap();
        assert_eq!(schema, written[0].schema(), "{name}");
        assert!(batches.iter().all(|b| b.num_rows() <= BATCH_ROWS));
        assert_eq!(row_count(&batches), 5000, "{name}");
        let rows = as_json(&batches);
        assert_eq!(rows, expected, "{name}");
    }
    // Spot-check what the JSON comparison stands on: nulls, lists, structs, timestamps.
    let rows = &expected;
    assert_eq!(rows[3]["name"], Value::Null);
    assert_eq!(rows[0]["score"], Value::Null);
    assert_eq!(rows[0]["tags"], Value::Null);
    assert_eq!(rows[2]["tags"], json!(["t0", "t1"]));
    assert_eq!(rows[7]["point"], json!({"x": 7.0, "y": -7.0}));
    assert_eq!(rows[1]["at"], "2026-01-01T00:00:01Z");
}

#[tokio::test]
async fn parquet_projection_and_limit_are_pushed_down() {
    let f = Fixture::new();
    let written = sample_batch(0, 5000);
    f.put(
        "p.parquet",
        parquet_of(std::slice::from_ref(&written), zstd(), 1000),
    )
    .await;

    // The columns asked for, in the order asked.
    let (schema, batches) = f
        .read("p.parquet", Format::Parquet, columns(&["tags", "id"]))
        .await
        .unwrap();
    assert_eq!(names(&schema), ["tags", "id"]);
    assert!(batches.iter().all(|b| b.schema() == schema));
    assert_eq!(row_count(&batches), 5000);
    let ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(ids, (0..5000).collect::<Vec<_>>());

    // A limit that ends inside a row group.
    let (_, batches) = f
        .read(
            "p.parquet",
            Format::Parquet,
            ReadOptions {
                columns: Some(vec!["score".into()]),
                limit: Some(2345),
            },
        )
        .await
        .unwrap();
    assert_eq!(row_count(&batches), 2345);
    let scores: Vec<Option<f64>> = batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_primitive::<Float64Type>()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(scores[4], Some(1.0));
    assert_eq!(scores[5], None);
    assert_eq!(scores[2344], Some(2344.0 / 4.0));
}

#[tokio::test]
async fn a_projection_or_a_limit_of_a_wide_file_reads_less() {
    let f = Fixture::new();
    let data = parquet_of(&[wide_batch(16, 100_000)], snappy(), 25_000);
    let size = data.len() as u64;
    f.put("wide.parquet", data).await;

    let (_, all) = f
        .read("wide.parquet", Format::Parquet, ReadOptions::default())
        .await
        .unwrap();
    let read_all = f.counting.bytes();
    f.counting.reset();
    let (_, two) = f
        .read("wide.parquet", Format::Parquet, columns(&["c3", "c9"]))
        .await
        .unwrap();
    let read_two = f.counting.bytes();
    f.counting.reset();
    let (_, first) = f
        .read("wide.parquet", Format::Parquet, limit(100))
        .await
        .unwrap();
    let read_first = f.counting.bytes();
    println!(
        "wide file of {size} bytes: all columns {read_all}, 2 of 16 columns {read_two}, \
         first 100 rows {read_first}"
    );
    assert_eq!(row_count(&all), 100_000);
    assert_eq!(row_count(&two), 100_000);
    assert_eq!(row_count(&first), 100);
    assert!(
        read_all >= size * 9 / 10,
        "a full read reads (almost) everything"
    );
    assert!(
        read_two < read_all / 6,
        "2 of 16 columns: {read_two} of {read_all}"
    );
    assert!(
        read_first < read_all / 3,
        "one row group of four: {read_first}"
    );
    // The values are the same whichever way they are read.
    assert_eq!(
        two[0].column(1).as_primitive::<Float64Type>().values()[..10],
        all[0].column(9).as_primitive::<Float64Type>().values()[..10]
    );
}

#[tokio::test]
async fn a_truncated_or_corrupt_parquet_file_is_unreadable() {
    let f = Fixture::new();
    let data = parquet_of(&[sample_batch(0, 3000)], snappy(), 1000);

    // Cut short: the footer is gone.
    f.put("cut.parquet", data[..data.len() / 2].to_vec()).await;
    let err = f.schema("cut.parquet", Format::Parquet).await.unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Unreadable {
                format: Format::Parquet,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let err = f
        .read("cut.parquet", Format::Parquet, ReadOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, DataError::Unreadable { .. }), "{err}");

    // Not Parquet at all.
    f.put("text.parquet", "id,name\n1,a\n").await;
    let err = f.schema("text.parquet", Format::Parquet).await.unwrap_err();
    assert!(matches!(err, DataError::Unreadable { .. }), "{err}");

    // An intact footer over garbled pages: the error comes out of the stream, no panic.
    let mut garbled = data.clone();
    for b in &mut garbled[8..data.len() / 2] {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    f.put("garbled.parquet", garbled).await;
    assert!(f.schema("garbled.parquet", Format::Parquet).await.is_ok());
    let stream = batches(
        f.backend(),
        &key("garbled.parquet"),
        Format::Parquet,
        ReadOptions::default(),
    )
    .await
    .unwrap();
    let results: Vec<_> = stream.collect().await;
    let err = results
        .into_iter()
        .find_map(Result::err)
        .expect("an error from the stream");
    assert!(matches!(err, DataError::Unreadable { .. }), "{err}");
}

#[tokio::test]
async fn a_parquet_file_replaced_mid_read_is_an_error_not_a_mix() {
    let f = Fixture::new();
    let first = f
        .put(
            "v.parquet",
            parquet_of(&[sample_batch(0, 3000)], snappy(), 1000),
        )
        .await;
    let stream = batches(
        f.backend(),
        &key("v.parquet"),
        Format::Parquet,
        ReadOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(stream.object(), &first);
    // The footer is read; now the object changes under the reader.
    f.put(
        "v.parquet",
        parquet_of(&[sample_batch(9, 3000)], snappy(), 1000),
    )
    .await;
    let results: Vec<_> = stream.collect().await;
    let err = results.into_iter().find_map(Result::err).expect("an error");
    assert!(matches!(err, DataError::Changed { .. }), "{err}");
    assert_eq!(err.status(), StatusCode::CONFLICT);
}

// ---------------------------------------------------------------------------------------------
// NDJSON and JSON

const EVENTS: &str = r#"{"id": 1, "kind": "view", "amount": 2.5, "ok": true, "tags": ["a"], "who": {"name": "ann", "age": 31}, "note": null}
{"id": 2, "kind": "buy", "amount": 10, "ok": false, "tags": [], "who": {"name": "bob", "age": null}, "note": null}

{"id": 3, "kind": null, "ok": true, "tags": ["b", "c"], "who": null, "note": null}
"#;

fn events_expected() -> Vec<Value> {
    vec![
        json!({"id": 1, "kind": "view", "amount": 2.5, "ok": true, "tags": ["a"], "who": {"name": "ann", "age": 31}, "note": null}),
        json!({"id": 2, "kind": "buy", "amount": 10.0, "ok": false, "tags": [], "who": {"name": "bob", "age": null}, "note": null}),
        json!({"id": 3, "kind": null, "amount": null, "ok": true, "tags": ["b", "c"], "who": null, "note": null}),
    ]
}

fn events_types() -> Vec<(String, String)> {
    pairs(&[
        ("id", "BIGINT"),
        ("kind", "VARCHAR"),
        ("amount", "DOUBLE"),
        ("ok", "BOOLEAN"),
        ("tags", "VARCHAR[]"),
        ("who", "STRUCT(name VARCHAR, age BIGINT)"),
        ("note", "VARCHAR"),
    ])
}

#[tokio::test]
async fn ndjson_schema_and_rows() {
    let f = Fixture::new();
    let meta = f.put("e/events.ndjson", EVENTS).await;
    let stream = batches(
        f.backend(),
        &key("e/events.ndjson"),
        Format::Ndjson,
        ReadOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(stream.object(), &meta);
    let schema = f.schema("e/events.ndjson", Format::Ndjson).await.unwrap();
    // Columns in the file's order (not alphabetical), types as DuckDB names them.
    assert_eq!(types(&schema), events_types());
    assert_eq!(schema.rows, None);
    assert_eq!((schema.size, &schema.etag), (meta.size, &meta.etag));
    let rows = f
        .rows("e/events.ndjson", Format::Ndjson, ReadOptions::default())
        .await;
    assert_eq!(rows, events_expected());
}

#[test]
fn struct_members_are_quoted_like_duckdb() {
    assert_eq!(
        super::schema::duckdb_type(&DataType::Struct(Fields::from(vec![
            Field::new("age", DataType::Int64, true),
            Field::new("Full Name", DataType::Utf8, true),
        ]))),
        "STRUCT(age BIGINT, \"Full Name\" VARCHAR)"
    );
}

#[tokio::test]
async fn iso_dates_and_timestamps_in_json_strings_are_typed_like_duckdb() {
    let f = Fixture::new();
    f.put(
        "t.ndjson",
        r#"{"d": "2026-01-31", "t": "2026-01-31 12:00:00", "u": "2026-01-31T12:00:00.5", "z": "2026-01-31T12:00:00Z", "s": "2026-01-31"}
{"d": null, "t": "2026-02-01 00:00:01", "u": null, "z": null, "s": "soon"}
"#,
    )
    .await;
    let schema = f.schema("t.ndjson", Format::Ndjson).await.unwrap();
    assert_eq!(
        types(&schema),
        pairs(&[
            ("d", "DATE"),
            ("t", "TIMESTAMP"),
            ("u", "TIMESTAMP"),
            // With a zone or not all dates: left as text.
            ("z", "VARCHAR"),
            ("s", "VARCHAR"),
        ])
    );
    assert_eq!(
        f.rows("t.ndjson", Format::Ndjson, ReadOptions::default())
            .await,
        [
            json!({"d": "2026-01-31", "t": "2026-01-31T12:00:00", "u": "2026-01-31T12:00:00.500", "z": "2026-01-31T12:00:00Z", "s": "2026-01-31"}),
            json!({"d": null, "t": "2026-02-01T00:00:01", "u": null, "z": null, "s": "soon"}),
        ]
    );
}

#[tokio::test]
async fn a_json_array_and_ndjson_under_the_json_format() {
    let f = Fixture::new();
    let array = format!(
        "[\n  {}\n]\n",
        EVENTS
            .lines()
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(",\n  ")
    );
    f.put("a.json", array).await;
    f.put("lines.json", EVENTS).await;
    for k in ["a.json", "lines.json"] {
        let schema = f.schema(k, Format::Json).await.unwrap();
        assert_eq!(types(&schema), events_types(), "{k}");
        let rows = f.rows(k, Format::Json, ReadOptions::default()).await;
        assert_eq!(rows, events_expected(), "{k}");
    }
    // Pretty-printed objects one after another, as DuckDB also accepts.
    f.put("pretty.json", "{\n \"a\": 1\n}\n{\n \"a\": 2\n}")
        .await;
    assert_eq!(
        f.rows("pretty.json", Format::Json, ReadOptions::default())
            .await,
        [json!({"a": 1}), json!({"a": 2})]
    );
    // An empty array: no columns, no rows.
    f.put("empty.json", " [ ] ").await;
    let (schema, batches) = f
        .read("empty.json", Format::Json, ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(schema.fields().len(), 0);
    assert_eq!(row_count(&batches), 0);
}

#[tokio::test]
async fn json_projection_and_limit() {
    let f = Fixture::new();
    f.put("events.ndjson", EVENTS).await;
    let (schema, batches) = f
        .read(
            "events.ndjson",
            Format::Ndjson,
            ReadOptions {
                columns: Some(vec!["who".into(), "id".into()]),
                limit: Some(2),
            },
        )
        .await
        .unwrap();
    assert_eq!(names(&schema), ["who", "id"]);
    assert_eq!(
        as_json(&batches),
        [
            json!({"who": {"name": "ann", "age": 31}, "id": 1}),
            json!({"who": {"name": "bob", "age": null}, "id": 2})
        ]
    );
}

#[tokio::test]
async fn a_big_ndjson_file_streams_all_its_rows() {
    let f = Fixture::new();
    let mut text = String::new();
    let mut n = 0;
    while text.len() < 6 * SAMPLE_BYTES {
        text.push_str(&format!(
            "{{\"n\": {n}, \"label\": \"row number {n} of many\", \"half\": {}}}\n",
            n as f64 / 2.0
        ));
        n += 1;
    }
    let size = text.len();
    f.put("big.ndjson", text).await;

    let schema = f.schema("big.ndjson", Format::Ndjson).await.unwrap();
    assert_eq!(schema.columns.len(), 3);
    assert!(
        f.counting.bytes() <= SAMPLE_BYTES as u64,
        "the schema samples {} bytes of {size}",
        f.counting.bytes()
    );
    f.counting.reset();

    let (_, batches) = f
        .read("big.ndjson", Format::Ndjson, ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(row_count(&batches), n);
    assert!(batches.len() > 1 && batches.iter().all(|b| b.num_rows() <= BATCH_ROWS));
    let last = batches.last().unwrap();
    assert_eq!(
        last.column(0)
            .as_primitive::<Int64Type>()
            .value(last.num_rows() - 1),
        n as i64 - 1
    );
    assert_eq!(
        f.counting.gets(),
        1,
        "one request: the sample is the start of the body"
    );
    assert_eq!(f.counting.bytes(), size as u64);

    // A limit stops reading the body.
    f.counting.reset();
    let (_, batches) = f
        .read("big.ndjson", Format::Ndjson, limit(10))
        .await
        .unwrap();
    assert_eq!(row_count(&batches), 10);
    assert!(f.counting.bytes() < 2 * SAMPLE_BYTES as u64);
}

#[tokio::test]
async fn a_large_json_array_streams_too() {
    let f = Fixture::new();
    let rows: Vec<Value> = (0..40_000)
        .map(|i| json!({"i": i, "s": format!("value {i}")}))
        .collect();
    let text = serde_json::to_string(&rows).unwrap();
    assert!(text.len() > SAMPLE_BYTES);
    f.put("array.json", text).await;
    let (schema, batches) = f
        .read("array.json", Format::Json, ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(names(&schema), ["i", "s"]);
    assert_eq!(row_count(&batches), 40_000);
    assert_eq!(as_json(&batches), rows);
}

#[tokio::test]
async fn invalid_json_is_unreadable_where_it_is_found() {
    let f = Fixture::new();
    // In the sample: refused before any row is returned, with the parser's position.
    f.put("bad.ndjson", "{\"a\": 1}\n{\"a\": 2,,}\n{\"a\": 3}\n")
        .await;
    let err = f
        .read("bad.ndjson", Format::Ndjson, ReadOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Unreadable {
                format: Format::Ndjson,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("line 2"), "{err}");
    assert!(f.schema("bad.ndjson", Format::Ndjson).await.is_err());

    // After the sample: the stream ends with the error.
    let mut text = "{\"a\": 1}\n".repeat(2 * SAMPLE_BYTES / 9);
    text.push_str("{\"a\": oops}\n{\"a\": 1}\n");
    f.put("late.ndjson", text).await;
    let stream = batches(
        f.backend(),
        &key("late.ndjson"),
        Format::Ndjson,
        ReadOptions::default(),
    )
    .await
    .unwrap();
    let results: Vec<_> = stream.collect().await;
    assert!(
        results.iter().any(Result::is_ok),
        "rows before the bad line arrive"
    );
    let err = results.into_iter().find_map(Result::err).expect("an error");
    assert!(matches!(err, DataError::Unreadable { .. }), "{err}");

    // A value that does not fit the sampled type.
    let mut text = "{\"a\": 1}\n".repeat(2 * SAMPLE_ROWS);
    text.push_str("{\"a\": {\"nested\": true}}\n");
    f.put("drift.ndjson", text).await;
    let err = f
        .read("drift.ndjson", Format::Ndjson, ReadOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, DataError::Unreadable { .. }), "{err}");

    // Cut short inside the last object.
    f.put("cut.ndjson", "{\"a\": 1}\n{\"a\": 2").await;
    let err = f
        .read("cut.ndjson", Format::Ndjson, ReadOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, DataError::Unreadable { .. }), "{err}");

    // Rows that are not objects.
    f.put("numbers.json", "[1, 2, 3]").await;
    let err = f.schema("numbers.json", Format::Json).await.unwrap_err();
    assert!(matches!(err, DataError::Unreadable { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// CSV

const PANTRY: &str = "item,qty,price,bought,note\r\n\
    flour,2,1.25,2026-01-05,\"plain, white\"\r\n\
    \"eggs \"\"free range\"\"\",12,3.5,2026-01-06,\r\n\
    salt,1,,2026-01-07,\"two\nlines\"\r\n";

#[tokio::test]
async fn csv_schema_and_rows_with_quoted_fields() {
    let f = Fixture::new();
    f.put("pantry.csv", PANTRY).await;
    let schema = f.schema("pantry.csv", Format::Csv).await.unwrap();
    assert_eq!(
        types(&schema),
        pairs(&[
            ("item", "VARCHAR"),
            ("qty", "BIGINT"),
            ("price", "DOUBLE"),
            ("bought", "DATE"),
            ("note", "VARCHAR"),
        ])
    );
    let rows = f
        .rows("pantry.csv", Format::Csv, ReadOptions::default())
        .await;
    assert_eq!(
        rows,
        [
            json!({"item": "flour", "qty": 2, "price": 1.25, "bought": "2026-01-05", "note": "plain, white"}),
            json!({"item": "eggs \"free range\"", "qty": 12, "price": 3.5, "bought": "2026-01-06", "note": null}),
            json!({"item": "salt", "qty": 1, "price": null, "bought": "2026-01-07", "note": "two\nlines"}),
        ]
    );
    let (schema, batches) = f
        .read(
            "pantry.csv",
            Format::Csv,
            ReadOptions {
                columns: Some(vec!["note".into(), "item".into()]),
                limit: Some(1),
            },
        )
        .await
        .unwrap();
    assert_eq!(names(&schema), ["note", "item"]);
    assert_eq!(
        as_json(&batches),
        [json!({"note": "plain, white", "item": "flour"})]
    );
}

#[tokio::test]
async fn csv_dialects_are_sniffed() {
    let f = Fixture::new();
    // Tab-separated, with a BOM.
    f.put("t.tsv", "\u{feff}a\tb\n1\tx\n2\ty\n").await;
    assert_eq!(
        f.rows("t.tsv", Format::Csv, ReadOptions::default()).await,
        [json!({"a": 1, "b": "x"}), json!({"a": 2, "b": "y"})]
    );
    // Timestamps are TIMESTAMP (microseconds) whatever their sampled precision.
    f.put("ts.csv", "at\n2026-01-01 10:00:00\n2026-01-01 11:00:00\n")
        .await;
    let schema = f.schema("ts.csv", Format::Csv).await.unwrap();
    assert_eq!(types(&schema), pairs(&[("at", "TIMESTAMP")]));
    // Semicolons, in a .csv.
    f.put("semi.csv", "x;y\n1,5;2\n3,5;4\n").await;
    let schema = f.schema("semi.csv", Format::Csv).await.unwrap();
    assert_eq!(types(&schema), pairs(&[("x", "VARCHAR"), ("y", "BIGINT")]));
    // No header: the first row's values fit the types below them.
    f.put("nohead.csv", "1,2.5\n2,3.5\n").await;
    let schema = f.schema("nohead.csv", Format::Csv).await.unwrap();
    assert_eq!(
        types(&schema),
        pairs(&[("column0", "BIGINT"), ("column1", "DOUBLE")])
    );
    assert_eq!(
        f.rows("nohead.csv", Format::Csv, ReadOptions::default())
            .await,
        [
            json!({"column0": 1, "column1": 2.5}),
            json!({"column0": 2, "column1": 3.5})
        ]
    );
    // All text: the first row is taken as the header (no evidence otherwise, as DuckDB).
    f.put("words.csv", "name,city\nann,paris\n").await;
    let schema = f.schema("words.csv", Format::Csv).await.unwrap();
    assert_eq!(
        types(&schema),
        pairs(&[("name", "VARCHAR"), ("city", "VARCHAR")])
    );
    // Repeated and empty header names.
    f.put("dup.csv", "a,a,\n1,2,3\n").await;
    let schema = f.schema("dup.csv", Format::Csv).await.unwrap();
    let got: Vec<_> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(got, ["a", "a_1", "column2"]);
}

#[tokio::test]
async fn a_big_csv_file_streams_all_its_rows() {
    let f = Fixture::new();
    let mut text = String::from("n,label,\"quoted, header\"\n");
    let mut n = 0;
    while text.len() < 5 * SAMPLE_BYTES {
        text.push_str(&format!("{n},\"row {n}, with a comma\",{}\n", n % 10));
        n += 1;
    }
    f.put("big.csv", text).await;
    let (schema, batches) = f
        .read("big.csv", Format::Csv, ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(names(&schema), ["n", "label", "quoted, header"]);
    assert_eq!(row_count(&batches), n);
    let labels: Vec<&str> = batches
        .iter()
        .flat_map(|b| b.column(1).as_string::<i32>().iter().map(Option::unwrap))
        .collect();
    assert_eq!(labels[n - 1], format!("row {}, with a comma", n - 1));
}

#[tokio::test]
async fn a_sample_cut_inside_a_quoted_field_is_not_an_error() {
    let f = Fixture::new();
    // Each row has a quoted field with newlines that straddles the 1 MiB sample boundary
    // somewhere; the cut record is left out of the sample, not misread.
    let mut text = String::from("id,body\n");
    let mut n = 0;
    while text.len() < 2 * SAMPLE_BYTES {
        text.push_str(&format!("{n},\"line one\nline two, {n}\nline three\"\n"));
        n += 1;
    }
    f.put("multi.csv", text).await;
    let schema = f.schema("multi.csv", Format::Csv).await.unwrap();
    assert_eq!(
        types(&schema),
        pairs(&[("id", "BIGINT"), ("body", "VARCHAR")])
    );
    let (_, batches) = f
        .read("multi.csv", Format::Csv, ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(row_count(&batches), n);
}

#[tokio::test]
async fn bad_csv_is_unreadable() {
    let f = Fixture::new();
    // A number column with text after the sample.
    let mut text = String::from("a,b\n");
    for i in 0..2 * SAMPLE_ROWS {
        text.push_str(&format!("{i},{i}\n"));
    }
    text.push_str("x,y\n");
    f.put("drift.csv", text).await;
    let err = f
        .read("drift.csv", Format::Csv, ReadOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Unreadable {
                format: Format::Csv,
                ..
            }
        ),
        "{err}"
    );
    // A record with too many fields.
    f.put("ragged.csv", "a,b\n1,2\n3,4,5\n").await;
    let err = f.schema("ragged.csv", Format::Csv).await.unwrap_err();
    assert!(matches!(err, DataError::Unreadable { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Requests that cannot be served

#[tokio::test]
async fn bad_requests_name_what_is_wrong() {
    let f = Fixture::new();
    f.put(
        "p.parquet",
        parquet_of(&[sample_batch(0, 10)], snappy(), 1000),
    )
    .await;
    f.put("e.ndjson", EVENTS).await;
    f.put("c.csv", PANTRY).await;
    for (k, format) in [
        ("p.parquet", Format::Parquet),
        ("e.ndjson", Format::Ndjson),
        ("c.csv", Format::Csv),
    ] {
        let err = f.read(k, format, columns(&["nope"])).await.unwrap_err();
        match &err {
            DataError::UnknownColumn { column, available } => {
                assert_eq!(column, "nope");
                assert!(available.len() >= 5, "{available:?}");
            }
            other => panic!("{k}: {other}"),
        }
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.to_string().contains("nope"), "{err}");

        let err = f.read(k, format, columns(&[])).await.unwrap_err();
        assert!(matches!(err, DataError::BadRequest(_)), "{err}");
    }
    let err = f
        .read("p.parquet", Format::Parquet, columns(&["id", "id"]))
        .await
        .unwrap_err();
    assert!(matches!(err, DataError::BadRequest(_)), "{err}");

    for format in Format::ALL {
        let err = f.schema("missing.parquet", format).await.unwrap_err();
        assert!(matches!(err, DataError::NotFound(_)), "{format}: {err}");
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        let err = f
            .read("missing.parquet", format, ReadOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, DataError::NotFound(_)), "{format}: {err}");
    }

    f.put("events.ndjson.gz", vec![0x1f, 0x8b, 8, 0, 0, 0])
        .await;
    let err = f
        .read("events.ndjson.gz", Format::Ndjson, ReadOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, DataError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("gzip"), "{err}");
}

#[tokio::test]
async fn empty_text_objects_are_tables_without_columns() {
    let f = Fixture::new();
    for (k, format) in [
        ("e.ndjson", Format::Ndjson),
        ("e.json", Format::Json),
        ("e.csv", Format::Csv),
    ] {
        for content in ["", "\n \n"] {
            f.put(k, content).await;
            let schema = f.schema(k, format).await.unwrap();
            assert!(schema.columns.is_empty(), "{k} {content:?}");
            let (schema, batches) = f.read(k, format, ReadOptions::default()).await.unwrap();
            assert_eq!(schema.fields().len(), 0, "{k} {content:?}");
            assert_eq!(row_count(&batches), 0, "{k} {content:?}");
        }
    }
}

#[test]
fn errors_map_to_http_statuses() {
    let cases = [
        (DataError::NotFound("k".into()), 404),
        (
            DataError::UnknownColumn {
                column: "x".into(),
                available: vec!["a".into()],
            },
            400,
        ),
        (DataError::BadRequest("b".into()), 400),
        (DataError::unreadable(Format::Csv, "bad"), 422),
        (DataError::Unsupported("gz".into()), 422),
        (
            DataError::Changed {
                expected: "a".into(),
                found: "b".into(),
            },
            409,
        ),
        (DataError::from(StorageError::Upstream("down".into())), 502),
        (DataError::from(StorageError::NotFound("k".into())), 404),
    ];
    for (err, status) in cases {
        assert_eq!(err.status().as_u16(), status, "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Encoders

async fn encoded(f: &Fixture, k: &str, format: Format, encoding: Encoding) -> Vec<u8> {
    let stream = batches(f.backend(), &key(k), format, ReadOptions::default())
        .await
        .unwrap();
    let body = encode(stream, encoding);
    let chunks: Vec<Bytes> = body.try_collect().await.unwrap();
    chunks.concat()
}

#[tokio::test]
async fn arrow_ipc_reads_back_as_the_same_batches() {
    let f = Fixture::new();
    let written = [sample_batch(0, 9000), sample_batch(9000, 100)];
    f.put("s.parquet", parquet_of(&written, snappy(), 4000))
        .await;
    let ipc = encoded(&f, "s.parquet", Format::Parquet, Encoding::Arrow).await;
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None).unwrap();
    assert_eq!(reader.schema(), written[0].schema());
    let back: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(row_count(&back), 9100);
    assert_eq!(as_json(&back), as_json(&written));

    // An empty table still has its schema (and the end-of-stream marker).
    f.put(
        "empty.parquet",
        parquet_of(&[sample_batch(0, 0)], snappy(), 10),
    )
    .await;
    let ipc = encoded(&f, "empty.parquet", Format::Parquet, Encoding::Arrow).await;
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None).unwrap();
    assert_eq!(reader.schema(), written[0].schema());
    assert_eq!(reader.count(), 0);
}

#[tokio::test]
async fn json_and_ndjson_encodings_parse_back() {
    let f = Fixture::new();
    f.put("e.ndjson", EVENTS).await;
    let body = encoded(&f, "e.ndjson", Format::Ndjson, Encoding::Json).await;
    let parsed: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(parsed, Value::Array(events_expected()));

    let body = encoded(&f, "e.ndjson", Format::Ndjson, Encoding::Ndjson).await;
    let text = String::from_utf8(body).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, events_expected());
    assert!(text.ends_with('\n'));

    // Many batches make one array.
    let written = [sample_batch(0, 20_000)];
    f.put("s.parquet", parquet_of(&written, zstd(), 3000)).await;
    let body = encoded(&f, "s.parquet", Format::Parquet, Encoding::Json).await;
    let parsed: Vec<Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(parsed, as_json(&written));

    // No rows: an empty array, and nothing for NDJSON.
    f.put("empty.json", "[]").await;
    assert_eq!(
        encoded(&f, "empty.json", Format::Json, Encoding::Json).await,
        b"[]"
    );
    assert!(
        encoded(&f, "empty.json", Format::Json, Encoding::Ndjson)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn csv_encoding_has_a_header_and_quotes() {
    let f = Fixture::new();
    f.put("pantry.csv", PANTRY).await;
    let body = encoded(&f, "pantry.csv", Format::Csv, Encoding::Csv).await;
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "item,qty,price,bought,note\n\
         flour,2,1.25,2026-01-05,\"plain, white\"\n\
         \"eggs \"\"free range\"\"\",12,3.5,2026-01-06,\n\
         salt,1,,2026-01-07,\"two\nlines\"\n"
    );

    // Nested values become JSON text; the header is written once across batches.
    f.put("e.ndjson", EVENTS).await;
    let body = encoded(&f, "e.ndjson", Format::Ndjson, Encoding::Csv).await;
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "id,kind,amount,ok,tags,who,note\n\
         1,view,2.5,true,\"[\"\"a\"\"]\",\"{\"\"name\"\":\"\"ann\"\",\"\"age\"\":31}\",\n\
         2,buy,10.0,false,[],\"{\"\"name\"\":\"\"bob\"\",\"\"age\"\":null}\",\n\
         3,,,true,\"[\"\"b\"\",\"\"c\"\"]\",,\n"
    );
    let written = [sample_batch(0, 10_000)];
    f.put("s.parquet", parquet_of(&written, snappy(), 3000))
        .await;
    let text =
        String::from_utf8(encoded(&f, "s.parquet", Format::Parquet, Encoding::Csv).await).unwrap();
    assert_eq!(text.matches("id,name,score").count(), 1);
    assert_eq!(text.lines().count(), 10_001);
    assert!(
        text.starts_with("id,name,score,at,day,tags,point\n0,name-0,,2026-01-01T00:00:00Z,"),
        "{}",
        &text[..80]
    );

    // No rows: just the header.
    f.put("head.csv", "a,b\n").await;
    assert_eq!(
        encoded(&f, "head.csv", Format::Csv, Encoding::Csv).await,
        b"a,b\n"
    );
}

#[tokio::test]
async fn an_error_mid_stream_cuts_the_body() {
    let f = Fixture::new();
    let mut text = "{\"a\": 1}\n".repeat(2 * SAMPLE_BYTES / 9);
    text.push_str("{\"a\": oops}\n");
    f.put("late.ndjson", text).await;
    let stream = batches(
        f.backend(),
        &key("late.ndjson"),
        Format::Ndjson,
        ReadOptions::default(),
    )
    .await
    .unwrap();
    let chunks: Vec<Result<Bytes, std::io::Error>> = encode(stream, Encoding::Json).collect().await;
    assert!(chunks.first().unwrap().is_ok());
    let last = chunks.last().unwrap().as_ref().unwrap_err();
    assert!(
        last.to_string().contains("cannot be read as ndjson"),
        "{last}"
    );
}

#[test]
fn encodings_parse_and_name_their_content_type() {
    for e in Encoding::ALL {
        assert_eq!(e.as_str().parse::<Encoding>().unwrap(), e);
    }
    assert_eq!("IPC".parse::<Encoding>().unwrap(), Encoding::Arrow);
    assert_eq!(
        serde_json::from_value::<Encoding>(json!("ipc")).unwrap(),
        Encoding::Arrow
    );
    assert_eq!(
        serde_json::to_value(Encoding::Ndjson).unwrap(),
        json!("ndjson")
    );
    assert_eq!(
        Encoding::Arrow.content_type(),
        "application/vnd.apache.arrow.stream"
    );
    assert_eq!(Encoding::Csv.content_type(), "text/csv; charset=utf-8");
    assert!(matches!(
        "xlsx".parse::<Encoding>(),
        Err(DataError::BadRequest(_))
    ));
}
