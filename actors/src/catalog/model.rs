//! The catalog's records, as stored and as sent to the edge.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Format;
use crate::UnixMillis;

/// A commit's number: per user, starting at 1, one more for every commit. Time travel and the
/// tabs' catch-up after a reconnect are both expressed in it.
pub type Seq = u64;

/// A named table. Its data is its latest snapshot; every change to it is a [`Commit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub created_at: UnixMillis,
    /// Soft-deleted: hidden from queries, restorable with its history.
    pub deleted_at: Option<UnixMillis>,
    /// The snapshot queries read.
    pub snapshot: Option<Uuid>,
    /// The last commit that changed this table.
    pub last_commit: Seq,
}

/// One version of a table's data: an object somewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: Uuid,
    pub table: Uuid,
    /// `store://backend/key` (canonical) or `https://...`.
    pub uri: String,
    pub format: Format,
    pub created_at: UnixMillis,
    /// Bytes, when known.
    pub size: Option<u64>,
    /// Rows, when known (a Parquet footer says; text formats are not counted).
    pub rows: Option<u64>,
}

/// A column as read from a snapshot's file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// The type as DuckDB names it (`BIGINT`, `VARCHAR`, `STRUCT(a INTEGER)`, ...).
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

/// What a snapshot's file holds, read once and kept with the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSchema {
    pub columns: Vec<Column>,
    pub rows: Option<u64>,
    pub size: Option<u64>,
}

/// Who made a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Author {
    /// The user, through a page or the API.
    User,
    /// A load job, by id.
    LoadJob { job: String },
    /// A transform, by id.
    Transform { transform: String },
}

impl Author {
    pub fn label(&self) -> String {
        match self {
            Author::User => "you".into(),
            Author::LoadJob { job } => format!("load job {job}"),
            Author::Transform { transform } => format!("transform {transform}"),
        }
    }
}

/// What a commit did to its table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommitKind {
    /// A new snapshot became the table's data (creating the table, or restoring it if deleted).
    Snapshot {
        created: bool,
    },
    /// The current snapshot's URI or format was corrected in place.
    Edit,
    /// The description changed.
    Describe,
    Rename {
        from: String,
    },
    Delete,
    Restore,
}

impl CommitKind {
    pub fn label(&self) -> &'static str {
        match self {
            CommitKind::Snapshot { created: true } => "created",
            CommitKind::Snapshot { created: false } => "new snapshot",
            CommitKind::Edit => "edited",
            CommitKind::Describe => "described",
            CommitKind::Rename { .. } => "renamed",
            CommitKind::Delete => "deleted",
            CommitKind::Restore => "restored",
        }
    }
}

/// Where a table's data was as of a commit. Copied into the commit, so an in-place edit of a
/// snapshot later does not rewrite history: time travel reads exactly what the commit saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRef {
    pub id: Uuid,
    pub uri: String,
    pub format: Format,
}

/// One change to the catalog, durable once acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub seq: Seq,
    pub at: UnixMillis,
    pub table: Uuid,
    /// The table's name after this commit.
    pub table_name: String,
    pub kind: CommitKind,
    /// The table's data after this commit.
    pub snapshot: Option<SnapshotRef>,
    pub message: String,
    pub author: Author,
}

/// A table with its current snapshot, as listings show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableView {
    pub table: Table,
    pub snapshot: Option<Snapshot>,
    pub schema: Option<SnapshotSchema>,
}

/// The whole catalog at one moment: what a tab registers on load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogView {
    /// The last commit included; a tab catches up from here.
    pub seq: Seq,
    pub tables: Vec<TableView>,
}

/// A change to make. Every change is one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// Make `uri` the table's data, creating the table if it does not exist and restoring it if
    /// it was deleted. `format` defaults to what the URI's extension says.
    Snapshot {
        table: String,
        uri: String,
        format: Option<Format>,
        description: Option<String>,
        size: Option<u64>,
    },
    /// Correct the current snapshot's URI and/or format in place.
    Edit {
        table: String,
        uri: Option<String>,
        format: Option<Format>,
    },
    Describe {
        table: String,
        description: String,
    },
    Rename {
        table: String,
        to: String,
    },
    Delete {
        table: String,
    },
    Restore {
        table: String,
    },
}

impl Change {
    /// The table the change is about.
    pub fn table(&self) -> &str {
        match self {
            Change::Snapshot { table, .. }
            | Change::Edit { table, .. }
            | Change::Describe { table, .. }
            | Change::Rename { table, .. }
            | Change::Delete { table }
            | Change::Restore { table } => table,
        }
    }
}

/// A change with who makes it and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequest {
    pub change: Change,
    #[serde(default)]
    pub message: String,
    pub author: Author,
}

/// What a commit left the table as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub commit: Commit,
    pub table: TableView,
}

/// Why a catalog operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    Invalid(String),
    #[error("no table named \"{0}\"")]
    NoSuchTable(String),
    #[error("a table named \"{0}\" already exists")]
    NameTaken(String),
    #[error("the table \"{0}\" is deleted: restore it first")]
    Deleted(String),
    #[error("{0}")]
    NotAtCommit(String),
    #[error("could not store the change: {0}")]
    Storage(String),
}
