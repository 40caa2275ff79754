//! `GET /api/table-data/{table}`: a table's rows streamed as Arrow IPC, JSON, NDJSON or CSV,
//! decoded server-side from any snapshot format (Parquet converted on the fly), with column
//! projection and a row limit pushed down to the read. The island's Arrow path and clients with
//! no DuckDB (proxy mode, scripts, later MCP's `read_data` with `catalog://table`) use it.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::WithRejection;
use larder_actors::catalog::Seq;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::data::{self, DataError, Encoding, ReadOptions};
use crate::edge::AppState;
use crate::edge::auth::ApiUser;
use crate::edge::error::ApiError;

impl From<DataError> for ApiError {
    fn from(e: DataError) -> Self {
        ApiError::new(e.status(), e.to_string())
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct TableDataParams {
    /// `json` (default: one array), `ndjson`, `csv` or `arrow` (Arrow IPC stream).
    format: Option<String>,
    /// Comma-separated column names, in the order wanted; default: all.
    columns: Option<String>,
    /// At most this many rows.
    limit: Option<usize>,
    /// The table as of this commit (time travel); default: now.
    as_of: Option<Seq>,
}

/// A table's rows, streamed. `{table}` is a table name or a `catalog://table` URI.
#[utoipa::path(get, path = "/api/table-data/{table}", tag = "catalog",
    params(("table" = String, Path, description = "Table name, or catalog://<table>"), TableDataParams),
    responses(
        (status = 200, description = "The rows: application/json, application/x-ndjson, text/csv or application/vnd.apache.arrow.stream, as `format` asks"),
        (status = 400, description = "Unknown column or format", body = ApiError, content_type = "application/problem+json"),
        (status = 404, description = "No such table, commit or file", body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "The file cannot be read in its format", body = ApiError, content_type = "application/problem+json"),
    ))]
pub(super) async fn table_data(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    WithRejection(Path(table), _): WithRejection<Path<String>, ApiError>,
    WithRejection(Query(params), _): WithRejection<Query<TableDataParams>, ApiError>,
) -> Result<Response, ApiError> {
    let encoding = match params.format.as_deref().map(str::trim) {
        None | Some("") => Encoding::Json,
        Some(f) => f.parse::<Encoding>().map_err(|_| {
            let known: Vec<_> = Encoding::ALL.iter().map(|e| e.as_str()).collect();
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("unknown format {f:?}: use {}", known.join(", ")),
            )
        })?,
    };
    let columns = params.columns.as_deref().map(|c| {
        c.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
    });
    let table = crate::catalog::table_of(&table).map_err(ApiError::from)?;
    let user = session.user.id;
    let snapshot = state
        .catalogs
        .snapshot_of(user, table, params.as_of)
        .await?;
    let source = state.catalogs.source(user, snapshot).await?;
    let batches = data::batches(
        source.backend.clone(),
        &source.key,
        source.snapshot.format,
        ReadOptions {
            columns,
            limit: params.limit,
        },
    )
    .await?;
    let etag = HeaderValue::from_str(&batches.object().etag).ok();
    let mut res = Response::new(Body::from_stream(data::encode(batches, encoding)));
    let headers = res.headers_mut();
    if let Some(etag) = etag {
        // The version of the file read (not an HTTP validator: projections differ).
        headers.insert("x-larder-object-etag", etag);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&source.snapshot.uri) {
        headers.insert("x-larder-snapshot", v);
    }
    Ok(res.into_response())
}
