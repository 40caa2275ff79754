//! The Catalog page (`/catalog`): commit a snapshot, the table list with each table's current
//! snapshot, format and schema, a table's history, inline edit (URI/format, description,
//! rename), delete and restore — htmx fragments over the same [`Catalogs`] operations and
//! [`CommitIn`] validation as the JSON API. The list re-renders when the tab's WebSocket
//! reports a commit (the island fires `larder:commit` on the body).
//!
//! [`Catalogs`]: crate::catalog::Catalogs

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use larder_actors::UserId;
use larder_actors::catalog::{Author, CatalogMsg, Change, Commit, Format, HistoryQuery, TableView};
use serde::Deserialize;

use super::AppState;
use super::api::catalog::{CommitIn, Op};
use super::api::rfc3339;
use super::auth::PageUser;
use super::error::WebError;
use super::pages::{Frame, preferences};
use crate::catalog::Refused;

impl From<Refused> for WebError {
    fn from(e: Refused) -> Self {
        WebError::new(e.status, e.message)
    }
}

/// A table as the list shows it.
pub struct TableRow {
    pub name: String,
    pub description: String,
    pub deleted: bool,
    pub uri: String,
    pub format: &'static str,
    pub size: String,
    pub rows: Option<u64>,
    pub columns: Vec<(String, String)>,
    pub last_commit: u64,
}

impl From<TableView> for TableRow {
    fn from(v: TableView) -> Self {
        let snapshot = v.snapshot.as_ref();
        TableRow {
            name: v.table.name,
            description: v.table.description,
            deleted: v.table.deleted_at.is_some(),
            uri: snapshot.map(|s| s.uri.clone()).unwrap_or_default(),
            format: snapshot.map_or("", |s| s.format.as_str()),
            size: snapshot
                .and_then(|s| s.size)
                .map(human_bytes)
                .unwrap_or_default(),
            rows: snapshot.and_then(|s| s.rows),
            columns: v
                .schema
                .map(|s| {
                    s.columns
                        .into_iter()
                        .map(|c| (c.name, c.data_type))
                        .collect()
                })
                .unwrap_or_default(),
            last_commit: v.table.last_commit,
        }
    }
}

/// A commit as the history shows it.
pub struct CommitRow {
    pub seq: u64,
    pub at: String,
    pub what: String,
    pub uri: String,
    pub format: &'static str,
    pub message: String,
    pub author: String,
    /// Whether the table had data after it (time travel makes sense).
    pub queryable: bool,
}

impl From<Commit> for CommitRow {
    fn from(c: Commit) -> Self {
        let what = match &c.kind {
            larder_actors::catalog::CommitKind::Rename { from } => format!("renamed from {from}"),
            k => k.label().to_owned(),
        };
        CommitRow {
            seq: c.seq,
            at: rfc3339(c.at),
            queryable: c.snapshot.is_some()
                && !matches!(c.kind, larder_actors::catalog::CommitKind::Delete),
            uri: c
                .snapshot
                .as_ref()
                .map(|s| s.uri.clone())
                .unwrap_or_default(),
            format: c.snapshot.as_ref().map_or("", |s| s.format.as_str()),
            what,
            message: c.message,
            author: c.author.label(),
        }
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "catalog.html")]
struct CatalogPage {
    frame: Frame,
    tables: Vec<TableRow>,
    show_deleted: bool,
    backends: Vec<String>,
    formats: [Format; 4],
}

#[derive(Template, WebTemplate)]
#[template(path = "fragments/catalog_tables.html")]
struct TablesFragment {
    tables: Vec<TableRow>,
    show_deleted: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "fragments/catalog_changed.html")]
struct Changed {
    tables: Vec<TableRow>,
    show_deleted: bool,
    message: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "fragments/catalog_history.html")]
struct HistoryFragment {
    table: String,
    commits: Vec<CommitRow>,
}

#[derive(Template, WebTemplate)]
#[template(path = "fragments/catalog_edit.html")]
struct EditFragment {
    t: TableRow,
    formats: [Format; 4],
}

async fn rows(state: &AppState, user: UserId, deleted: bool) -> Result<Vec<TableRow>, WebError> {
    let view = state
        .placement
        .catalog(user, |r| CatalogMsg::Catalog(deleted, r))
        .await?;
    Ok(view.tables.into_iter().map(TableRow::from).collect())
}

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    deleted: Option<String>,
}

impl ListParams {
    fn show_deleted(&self) -> bool {
        self.deleted
            .as_deref()
            .is_some_and(|v| !v.is_empty() && v != "false")
    }
}

/// `GET /catalog`.
pub async fn page(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    Query(params): Query<ListParams>,
) -> Result<Response, WebError> {
    let user = session.user.id;
    let prefs = preferences(&state, user).await?;
    let backends = state
        .registry
        .list(user)
        .await
        .map(|l| l.into_iter().map(|b| b.name).collect())
        .unwrap_or_default();
    Ok(CatalogPage {
        frame: Frame::signed_in(&state, &session, &prefs, "catalog"),
        tables: rows(&state, user, params.show_deleted()).await?,
        show_deleted: params.show_deleted(),
        backends,
        formats: Format::ALL,
    }
    .into_response())
}

/// `GET /catalog/tables`: the list (after a commit elsewhere, or the "show deleted" toggle).
pub async fn list(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    Query(params): Query<ListParams>,
) -> Result<Response, WebError> {
    Ok(TablesFragment {
        tables: rows(&state, session.user.id, params.show_deleted()).await?,
        show_deleted: params.show_deleted(),
    }
    .into_response())
}

/// A commit form: the API's fields, plus the list's "show deleted" state.
#[derive(Debug, Deserialize)]
pub struct CommitForm {
    #[serde(flatten)]
    change: CommitIn,
    #[serde(default)]
    deleted: Option<String>,
}

/// `POST /catalog/commits`: one change from a form; answers with the list and a flash.
pub async fn commit(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    form: Result<Form<CommitForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) =
        form.map_err(|e| WebError::new(StatusCode::BAD_REQUEST, e.body_text()).fragment())?;
    let user = session.user.id;
    let show_deleted = ListParams {
        deleted: form.deleted,
    }
    .show_deleted();
    let op = form.change.op;
    let (change, message) = form
        .change
        .into_change()
        .map_err(|e| WebError::from(e).fragment())?;
    let committed = state
        .catalogs
        .commit(user, change, message, Author::User)
        .await
        .map_err(|e| WebError::from(e).fragment())?;
    let name = &committed.table.table.name;
    let message = match op {
        Op::Snapshot => format!(
            "Committed #{}: {name} now reads {}.",
            committed.commit.seq,
            committed
                .commit
                .snapshot
                .as_ref()
                .map_or("", |s| s.uri.as_str())
        ),
        Op::Delete => format!(
            "Deleted {name} (#{}). Show deleted tables to restore it.",
            committed.commit.seq
        ),
        Op::Restore => format!("Restored {name} (#{}).", committed.commit.seq),
        _ => format!(
            "Saved #{}: {name} {}.",
            committed.commit.seq,
            committed.commit.kind.label()
        ),
    };
    Ok(Changed {
        tables: rows(&state, user, show_deleted).await?,
        show_deleted,
        message,
    }
    .into_response())
}

/// `GET /catalog/tables/{table}/history`.
pub async fn history(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    Path(table): Path<String>,
) -> Result<Response, WebError> {
    let q = HistoryQuery {
        table: table.clone(),
        before: None,
        limit: 200,
    };
    let commits = state
        .placement
        .catalog(session.user.id, |r| CatalogMsg::History(q.clone(), r))
        .await?
        .map_err(|e| WebError::from(Refused::from(e)).fragment())?;
    Ok(HistoryFragment {
        table,
        commits: commits.into_iter().map(CommitRow::from).collect(),
    }
    .into_response())
}

/// `GET /catalog/tables/{table}/edit`: the row as a form.
pub async fn edit(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    Path(table): Path<String>,
) -> Result<Response, WebError> {
    let view = state
        .catalogs
        .table(session.user.id, &table)
        .await
        .map_err(|e| WebError::from(e).fragment())?;
    Ok(EditFragment {
        t: view.into(),
        formats: Format::ALL,
    }
    .into_response())
}

/// The edit form: each field that differs from the table becomes one commit.
#[derive(Debug, Deserialize)]
pub struct EditForm {
    uri: String,
    format: String,
    description: String,
    name: String,
    #[serde(default)]
    message: String,
}

/// `POST /catalog/tables/{table}/edit`: URI/format (in place), description, then name.
pub async fn save_edit(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    Path(table): Path<String>,
    form: Result<Form<EditForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) =
        form.map_err(|e| WebError::new(StatusCode::BAD_REQUEST, e.body_text()).fragment())?;
    let user = session.user.id;
    let current = state
        .catalogs
        .table(user, &table)
        .await
        .map_err(|e| WebError::from(e).fragment())?;
    let snapshot = current.snapshot.as_ref();
    let mut changes = Vec::new();
    let uri = form.uri.trim();
    let format = form
        .format
        .parse::<Format>()
        .map_err(|e| WebError::new(StatusCode::UNPROCESSABLE_ENTITY, e).fragment())?;
    if snapshot.is_some_and(|s| s.uri != uri || s.format != format) {
        changes.push(Change::Edit {
            table: current.table.name.clone(),
            uri: snapshot.filter(|s| s.uri != uri).map(|_| uri.to_owned()),
            format: Some(format),
        });
    }
    if form.description.trim() != current.table.description {
        changes.push(Change::Describe {
            table: current.table.name.clone(),
            description: form.description.trim().to_owned(),
        });
    }
    let name = form.name.trim();
    if name != current.table.name {
        changes.push(Change::Rename {
            table: current.table.name.clone(),
            to: name.to_owned(),
        });
    }
    if changes.is_empty() {
        return Err(WebError::new(StatusCode::UNPROCESSABLE_ENTITY, "Nothing changed.").fragment());
    }
    let mut done = Vec::new();
    for change in changes {
        let c = state
            .catalogs
            .commit(user, change, form.message.trim().to_owned(), Author::User)
            .await
            .map_err(|e| WebError::from(e).fragment())?;
        done.push(format!("#{} {}", c.commit.seq, c.commit.kind.label()));
    }
    Ok(Changed {
        tables: rows(&state, user, false).await?,
        show_deleted: false,
        message: format!("Saved {}: {}.", current.table.name, done.join(", ")),
    }
    .into_response())
}
