//! `/api/catalog/*`: tables, snapshots and commits, for scripts, load tools and the island.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::WithRejection;
use larder_actors::catalog::{
    Author, CatalogMsg, CatalogView, Change, Commit, CommitKind, Committed, Format, HistoryQuery,
    Seq, SinceQuery, SnapshotSchema, TableView,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::rfc3339;
use crate::catalog::Refused;
use crate::edge::AppState;
use crate::edge::auth::ApiUser;
use crate::edge::error::ApiError;
use crate::storage::uri::StorageUri;

impl From<Refused> for ApiError {
    fn from(e: Refused) -> Self {
        ApiError::new(e.status, e.message)
    }
}

/// A column of a snapshot's file.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ColumnOut {
    pub name: String,
    /// As DuckDB names it.
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

/// What a snapshot's file holds: read from the file once and kept.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SchemaOut {
    pub columns: Vec<ColumnOut>,
    /// Known for Parquet (from the footer).
    pub rows: Option<u64>,
    pub size: Option<u64>,
}

impl From<SnapshotSchema> for SchemaOut {
    fn from(s: SnapshotSchema) -> Self {
        SchemaOut {
            columns: s
                .columns
                .into_iter()
                .map(|c| ColumnOut {
                    name: c.name,
                    data_type: c.data_type,
                    nullable: c.nullable,
                })
                .collect(),
            rows: s.rows,
            size: s.size,
        }
    }
}

/// A table's current data.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SnapshotOut {
    pub id: Uuid,
    /// `store://backend/key` or `https://...`.
    pub uri: String,
    /// `parquet`, `ndjson`, `json` or `csv`.
    pub format: String,
    /// For `store://` URIs: the backend (the S3 proxy's bucket) and the key.
    pub backend: Option<String>,
    pub key: Option<String>,
    pub size: Option<u64>,
    pub rows: Option<u64>,
    /// RFC 3339.
    pub created_at: String,
}

/// A table with its current snapshot.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TableOut {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, when the table is deleted (restorable).
    pub deleted_at: Option<String>,
    /// The last commit that changed the table.
    pub last_commit: Seq,
    pub snapshot: Option<SnapshotOut>,
    /// Absent until the snapshot's file has been read.
    pub schema: Option<SchemaOut>,
}

fn split_uri(uri: &str) -> (Option<String>, Option<String>) {
    match StorageUri::parse(uri) {
        Ok(StorageUri::Store { backend, key }) => (Some(backend), Some(key.to_string())),
        _ => (None, None),
    }
}

impl From<TableView> for TableOut {
    fn from(v: TableView) -> Self {
        TableOut {
            id: v.table.id,
            name: v.table.name,
            description: v.table.description,
            created_at: rfc3339(v.table.created_at),
            deleted_at: v.table.deleted_at.map(rfc3339),
            last_commit: v.table.last_commit,
            snapshot: v.snapshot.map(|s| {
                let (backend, key) = split_uri(&s.uri);
                SnapshotOut {
                    id: s.id,
                    format: s.format.to_string(),
                    backend,
                    key,
                    uri: s.uri,
                    size: s.size,
                    rows: s.rows,
                    created_at: rfc3339(s.created_at),
                }
            }),
            schema: v.schema.map(SchemaOut::from),
        }
    }
}

/// Every table at one commit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CatalogOut {
    /// The last commit included: follow `/api/catalog/commits?since=` (or the WebSocket) from
    /// here.
    pub seq: Seq,
    pub tables: Vec<TableOut>,
}

impl From<CatalogView> for CatalogOut {
    fn from(v: CatalogView) -> Self {
        CatalogOut {
            seq: v.seq,
            tables: v.tables.into_iter().map(TableOut::from).collect(),
        }
    }
}

/// Where a table's data was after a commit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SnapshotRefOut {
    pub id: Uuid,
    pub uri: String,
    pub format: String,
    /// For `store://` URIs: the backend (the S3 proxy's bucket) and the key.
    pub backend: Option<String>,
    pub key: Option<String>,
}

impl From<larder_actors::catalog::SnapshotRef> for SnapshotRefOut {
    fn from(s: larder_actors::catalog::SnapshotRef) -> Self {
        let (backend, key) = split_uri(&s.uri);
        SnapshotRefOut {
            id: s.id,
            format: s.format.to_string(),
            uri: s.uri,
            backend,
            key,
        }
    }
}

/// One change to the catalog.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CommitOut {
    /// Per user, from 1, one more per commit.
    pub seq: Seq,
    /// RFC 3339.
    pub at: String,
    pub table_id: Uuid,
    /// The table's name after the commit.
    pub table: String,
    /// `created`, `snapshot`, `edit`, `describe`, `rename`, `delete` or `restore`.
    pub kind: String,
    /// For renames: the old name.
    pub renamed_from: Option<String>,
    /// The table's data after the commit.
    pub snapshot: Option<SnapshotRefOut>,
    pub message: String,
    /// `user`, `load_job:<id>` or `transform:<id>`.
    pub author: String,
}

impl From<Commit> for CommitOut {
    fn from(c: Commit) -> Self {
        let (kind, renamed_from) = match c.kind {
            CommitKind::Snapshot { created: true } => ("created", None),
            CommitKind::Snapshot { created: false } => ("snapshot", None),
            CommitKind::Edit => ("edit", None),
            CommitKind::Describe => ("describe", None),
            CommitKind::Rename { from } => ("rename", Some(from)),
            CommitKind::Delete => ("delete", None),
            CommitKind::Restore => ("restore", None),
        };
        CommitOut {
            seq: c.seq,
            at: rfc3339(c.at),
            table_id: c.table,
            table: c.table_name,
            kind: kind.to_owned(),
            renamed_from,
            snapshot: c.snapshot.map(SnapshotRefOut::from),
            message: c.message,
            author: match c.author {
                Author::User => "user".into(),
                Author::LoadJob { job } => format!("load_job:{job}"),
                Author::Transform { transform } => format!("transform:{transform}"),
            },
        }
    }
}

/// What a commit did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CommittedOut {
    pub commit: CommitOut,
    pub table: TableOut,
}

impl From<Committed> for CommittedOut {
    fn from(c: Committed) -> Self {
        CommittedOut {
            commit: c.commit.into(),
            table: c.table.into(),
        }
    }
}

/// The kinds of change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Make `uri` the table's data (creates the table; restores it if deleted).
    #[default]
    Snapshot,
    /// Correct the current snapshot's `uri` and/or `format` in place.
    Edit,
    /// Set the `description`.
    Describe,
    /// Rename the table `to` a new name.
    Rename,
    /// Soft-delete (restorable, history kept).
    Delete,
    Restore,
}

/// A change to commit. Which fields matter depends on `op`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitIn {
    #[serde(default)]
    pub op: Op,
    /// The table's name: a plain SQL identifier (letters, digits, `_`).
    pub table: String,
    /// `store://<backend>/<key>` (`r2://` is accepted and stored as `store://`), or
    /// `https://...` for public data. The object must exist.
    pub uri: Option<String>,
    /// `parquet`, `ndjson`, `json` or `csv`; default: from the URI's extension.
    pub format: Option<String>,
    pub description: Option<String>,
    /// For `rename`.
    pub to: Option<String>,
    /// Why: shown in the table's history.
    #[serde(default)]
    pub message: String,
}

impl CommitIn {
    /// The actor's change; form fields left empty count as absent.
    pub fn into_change(self) -> Result<(Change, String), Refused> {
        let given = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let format = given(self.format)
            .map(|f| f.parse::<Format>())
            .transpose()
            .map_err(|e| Refused::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
        let table = self.table.trim().to_owned();
        let need = |what: &str, v: Option<String>| {
            v.ok_or_else(|| {
                Refused::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("this change needs {what}"),
                )
            })
        };
        let change = match self.op {
            Op::Snapshot => Change::Snapshot {
                uri: need("a uri", given(self.uri))?,
                format,
                description: self.description.map(|d| d.trim().to_owned()),
                size: None,
                table,
            },
            Op::Edit => Change::Edit {
                uri: given(self.uri),
                format,
                table,
            },
            Op::Describe => Change::Describe {
                description: self.description.unwrap_or_default().trim().to_owned(),
                table,
            },
            Op::Rename => Change::Rename {
                to: need("a new name (to)", given(self.to))?,
                table,
            },
            Op::Delete => Change::Delete { table },
            Op::Restore => Change::Restore { table },
        };
        Ok((change, self.message.trim().to_owned()))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct CatalogParams {
    /// Include deleted tables.
    #[serde(default)]
    deleted: bool,
}

/// Every table with its current snapshot and schema: what a tab registers on load.
#[utoipa::path(get, path = "/api/catalog", tag = "catalog", params(CatalogParams),
    responses((status = 200, body = CatalogOut), (status = 401, body = ApiError, content_type = "application/problem+json")))]
pub(super) async fn get_catalog(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    WithRejection(Query(params), _): WithRejection<Query<CatalogParams>, ApiError>,
) -> Result<Json<CatalogOut>, ApiError> {
    let view = state
        .placement
        .catalog(session.user.id, |r| CatalogMsg::Catalog(params.deleted, r))
        .await?;
    Ok(Json(view.into()))
}

/// Commits one change. Answers once it is durable; every open tab of yours hears of it.
#[utoipa::path(post, path = "/api/catalog/commits", tag = "catalog", request_body = CommitIn,
    security(("session" = [], "csrf" = [])),
    responses(
        (status = 201, body = CommittedOut),
        (status = 404, description = "No such table", body = ApiError, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken", body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "Invalid change, URI, or missing object", body = ApiError, content_type = "application/problem+json"),
    ))]
pub(super) async fn commit(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    body: Result<Json<CommitIn>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let (change, message) = body.into_change()?;
    let committed = state
        .catalogs
        .commit(session.user.id, change, message, Author::User)
        .await?;
    Ok((StatusCode::CREATED, Json(CommittedOut::from(committed))).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SinceParams {
    /// Commits after this one (0: from the first).
    #[serde(default)]
    since: Seq,
    /// At most this many (1 to 1000, default 1000).
    limit: Option<u32>,
}

/// Your commits after `since`, oldest first: how a client catches up.
#[utoipa::path(get, path = "/api/catalog/commits", tag = "catalog", params(SinceParams),
    responses((status = 200, body = Vec<CommitOut>)))]
pub(super) async fn commits_since(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    WithRejection(Query(params), _): WithRejection<Query<SinceParams>, ApiError>,
) -> Result<Json<Vec<CommitOut>>, ApiError> {
    let q = SinceQuery {
        seq: params.since,
        limit: params.limit.unwrap_or(1000),
    };
    let list = state
        .placement
        .catalog(session.user.id, |r| CatalogMsg::Since(q.clone(), r))
        .await?;
    Ok(Json(list.into_iter().map(CommitOut::from).collect()))
}

/// One table (deleted ones too).
#[utoipa::path(get, path = "/api/catalog/tables/{table}", tag = "catalog",
    params(("table" = String, Path, description = "Table name (case-insensitive)")),
    responses((status = 200, body = TableOut), (status = 404, body = ApiError, content_type = "application/problem+json")))]
pub(super) async fn get_table(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    WithRejection(Path(table), _): WithRejection<Path<String>, ApiError>,
) -> Result<Json<TableOut>, ApiError> {
    Ok(Json(
        state.catalogs.table(session.user.id, &table).await?.into(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryParams {
    /// Only commits older than this one (for paging).
    before: Option<Seq>,
    /// At most this many (1 to 1000, default 100).
    limit: Option<u32>,
}

/// A table's commits, newest first.
#[utoipa::path(get, path = "/api/catalog/tables/{table}/history", tag = "catalog",
    params(("table" = String, Path, description = "Table name"), HistoryParams),
    responses((status = 200, body = Vec<CommitOut>), (status = 404, body = ApiError, content_type = "application/problem+json")))]
pub(super) async fn history(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    WithRejection(Path(table), _): WithRejection<Path<String>, ApiError>,
    WithRejection(Query(params), _): WithRejection<Query<HistoryParams>, ApiError>,
) -> Result<Json<Vec<CommitOut>>, ApiError> {
    let q = HistoryQuery {
        table,
        before: params.before,
        limit: params.limit.unwrap_or(100),
    };
    let list = state
        .placement
        .catalog(session.user.id, |r| CatalogMsg::History(q.clone(), r))
        .await?
        .map_err(Refused::from)?;
    Ok(Json(list.into_iter().map(CommitOut::from).collect()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AsOfParams {
    /// The table as of this commit (time travel); default: now.
    as_of: Option<Seq>,
}

/// The columns of a table's snapshot, read from its file (and kept, so later calls are cheap).
#[utoipa::path(get, path = "/api/catalog/tables/{table}/schema", tag = "catalog",
    params(("table" = String, Path, description = "Table name"), AsOfParams),
    responses(
        (status = 200, body = SchemaOut),
        (status = 404, body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "The file cannot be read", body = ApiError, content_type = "application/problem+json"),
    ))]
pub(super) async fn schema(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    WithRejection(Path(table), _): WithRejection<Path<String>, ApiError>,
    WithRejection(Query(params), _): WithRejection<Query<AsOfParams>, ApiError>,
) -> Result<Json<SchemaOut>, ApiError> {
    let user = session.user.id;
    if params.as_of.is_none()
        && let Some(schema) = state.catalogs.table(user, &table).await?.schema
    {
        return Ok(Json(schema.into()));
    }
    let snapshot = state
        .catalogs
        .snapshot_of(user, &table, params.as_of)
        .await?;
    let schema = state.catalogs.refresh_schema(user, &snapshot).await?;
    Ok(Json(schema.into()))
}

/// Where a table's data is, now or as of a commit: what a client reads (time travel).
#[utoipa::path(get, path = "/api/catalog/tables/{table}/snapshot", tag = "catalog",
    params(("table" = String, Path, description = "Table name"), AsOfParams),
    responses((status = 200, body = SnapshotRefOut), (status = 404, body = ApiError, content_type = "application/problem+json")))]
pub(super) async fn snapshot(
    State(state): State<AppState>,
    ApiUser(session): ApiUser,
    WithRejection(Path(table), _): WithRejection<Path<String>, ApiError>,
    WithRejection(Query(params), _): WithRejection<Query<AsOfParams>, ApiError>,
) -> Result<Json<SnapshotRefOut>, ApiError> {
    let s = state
        .catalogs
        .snapshot_of(session.user.id, &table, params.as_of)
        .await?;
    Ok(Json(s.into()))
}
