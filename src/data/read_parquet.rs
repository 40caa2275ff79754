//! Parquet: the schema and row count from the footer alone; rows through the parquet crate's
//! async reader, with the projection and the limit pushed down to which column chunks and row
//! groups are fetched.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use larder_actors::catalog::Format;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::errors::ParquetError;

use super::object::{ObjectVersion, ParquetSource};
use super::{BATCH_ROWS, BatchStream, DataError, ReadOptions, TableSchema, projection};
use crate::storage::{Backend, ObjectKey};

pub(super) async fn schema(
    backend: Arc<dyn Backend>,
    key: &ObjectKey,
) -> Result<TableSchema, DataError> {
    let object = ObjectVersion::head(backend, key).await?;
    let meta = object.meta().clone();
    let (_, metadata) = open(object).await?;
    let rows = u64::try_from(metadata.metadata().file_metadata().num_rows()).ok();
    Ok(TableSchema::new(
        Format::Parquet,
        metadata.schema(),
        rows,
        &meta,
    ))
}

pub(super) async fn batches(
    backend: Arc<dyn Backend>,
    key: &ObjectKey,
    options: &ReadOptions,
) -> Result<BatchStream, DataError> {
    let object = ObjectVersion::head(backend, key).await?;
    let meta = object.meta().clone();
    let (source, metadata) = open(object).await?;
    let wanted = projection(metadata.schema(), options.columns.as_deref())?;
    let mut builder = ParquetRecordBatchStreamBuilder::new_with_metadata(source, metadata)
        .with_batch_size(BATCH_ROWS);
    if let Some(wanted) = &wanted {
        let mask = ProjectionMask::roots(builder.parquet_schema(), wanted.iter().copied());
        builder = builder.with_projection(mask);
    }
    if let Some(limit) = options.limit {
        builder = builder.with_limit(limit);
    }
    let stream = builder.build().map_err(error)?;
    let read_schema = stream.schema().clone();
    // The reader yields the projected columns in file order; callers asked for theirs.
    let order = wanted.map(|wanted| {
        let mut sorted = wanted.clone();
        sorted.sort_unstable();
        wanted
            .iter()
            .map(|i| sorted.binary_search(i).expect("a projected column"))
            .collect::<Vec<_>>()
    });
    let schema = match &order {
        Some(order) => Arc::new(
            read_schema
                .project(order)
                .map_err(|e| DataError::unreadable(Format::Parquet, e))?,
        ),
        None => read_schema,
    };
    let rows = stream.map_err(error).map(move |batch| match &order {
        Some(order) => batch?
            .project(order)
            .map_err(|e| DataError::unreadable(Format::Parquet, e)),
        None => batch,
    });
    Ok(BatchStream::new(schema, meta, rows))
}

/// Reads the footer: the file's metadata and its Arrow schema.
async fn open(object: ObjectVersion) -> Result<(ParquetSource, ArrowReaderMetadata), DataError> {
    let mut source = ParquetSource::new(object);
    let metadata = ArrowReaderMetadata::load_async(&mut source, ArrowReaderOptions::new())
        .await
        .map_err(error)?;
    Ok((source, metadata))
}

/// A parquet crate error as ours: our own errors (storage, a changed object) come back out of
/// it as they went in; anything else is the file's fault.
fn error(e: ParquetError) -> DataError {
    match e {
        ParquetError::External(inner) => match inner.downcast::<DataError>() {
            Ok(ours) => *ours,
            Err(other) => DataError::unreadable(Format::Parquet, other),
        },
        ParquetError::NYI(what) => DataError::Unsupported(format!(
            "this Parquet file uses something Larder cannot read yet: {what}"
        )),
        other => DataError::unreadable(Format::Parquet, other),
    }
}
