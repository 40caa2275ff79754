//! The catalog's state and rules, apart from the actor: every change is validated here and
//! turned into one commit plus the records to store.

use std::collections::HashMap;

use uuid::Uuid;

use super::Format;
use super::model::*;
use crate::UnixMillis;
use crate::store::{Changes, Partition, StoreError};

/// Longest table name, in characters (DuckDB's identifiers are longer, Postgres' are 63).
pub const MAX_NAME_CHARS: usize = 63;
/// Longest description or commit message, in characters.
pub const MAX_TEXT_CHARS: usize = 4_000;
/// Longest snapshot URI, in bytes.
pub const MAX_URI_BYTES: usize = 2_048;
/// Most tables (live or deleted) one user may keep.
pub const MAX_TABLES: usize = 50_000;

/// Words that would make a table unusable without quoting in DuckDB's SQL.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "default",
    "deferrable",
    "desc",
    "describe",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "initially",
    "intersect",
    "into",
    "lateral",
    "leading",
    "limit",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "pivot",
    "placing",
    "primary",
    "qualify",
    "references",
    "returning",
    "select",
    "show",
    "some",
    "summarize",
    "symmetric",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "unpivot",
    "using",
    "variadic",
    "when",
    "where",
    "window",
    "with",
];

/// Checks that `name` is a plain SQL identifier a user can type unquoted.
pub fn validate_name(name: &str) -> Result<(), CatalogError> {
    let invalid = |why: &str| Err(CatalogError::Invalid(format!("table name {name:?} {why}")));
    if name.is_empty() {
        return Err(CatalogError::Invalid("a table needs a name".into()));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return invalid(&format!("is longer than {MAX_NAME_CHARS} characters"));
    }
    let mut chars = name.chars();
    let first = chars.next().unwrap_or('_');
    if !(first.is_ascii_alphabetic() || first == '_') {
        return invalid("must start with a letter or an underscore");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return invalid("may contain only letters, digits and underscores");
    }
    if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        return invalid("is an SQL keyword");
    }
    if name.to_ascii_lowercase().starts_with("larder_") {
        return invalid("starts with larder_, which is reserved");
    }
    Ok(())
}

fn validate_text(what: &str, text: &str) -> Result<(), CatalogError> {
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(CatalogError::Invalid(format!(
            "the {what} is longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(())
}

/// The URI's shape (the edge has already parsed it precisely) and the format it implies.
fn validate_uri(uri: &str, format: Option<Format>) -> Result<Format, CatalogError> {
    if uri.is_empty() {
        return Err(CatalogError::Invalid("a snapshot needs a URI".into()));
    }
    if uri.len() > MAX_URI_BYTES {
        return Err(CatalogError::Invalid(format!(
            "URIs are at most {MAX_URI_BYTES} bytes"
        )));
    }
    if !(uri.starts_with("store://") || uri.starts_with("https://")) {
        return Err(CatalogError::Invalid(format!(
            "{uri:?} is not a snapshot URI: write store://<backend>/<key> or https://..."
        )));
    }
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    format.or_else(|| Format::detect(path)).ok_or_else(|| {
        CatalogError::Invalid(format!(
            "cannot tell the format of {uri:?} from its name: choose parquet, ndjson, json or csv"
        ))
    })
}

fn table_key(id: &Uuid) -> String {
    format!("table/{id}")
}
fn snapshot_key(id: &Uuid) -> String {
    format!("snap/{id}")
}
fn schema_key(id: &Uuid) -> String {
    format!("schema/{id}")
}
fn commit_key(seq: Seq) -> String {
    format!("commit/{seq:020}")
}

/// One user's catalog in memory: exactly what the store holds.
#[derive(Debug, Default)]
pub(crate) struct Book {
    tables: HashMap<Uuid, Table>,
    /// Lower-cased names of every table, live or deleted: names are unique among both, so a
    /// deleted table can always be restored under its name.
    names: HashMap<String, Uuid>,
    snapshots: HashMap<Uuid, Snapshot>,
    schemas: HashMap<Uuid, SnapshotSchema>,
    /// `commits[i].seq == i + 1`.
    commits: Vec<Commit>,
    by_table: HashMap<Uuid, Vec<Seq>>,
}

impl Book {
    pub(crate) fn load(p: &Partition) -> Result<Book, StoreError> {
        let mut book = Book::default();
        for (_, t) in p.scan::<Table>("table/")? {
            book.names.insert(t.name.to_lowercase(), t.id);
            book.tables.insert(t.id, t);
        }
        for (_, s) in p.scan::<Snapshot>("snap/")? {
            book.snapshots.insert(s.id, s);
        }
        for (key, s) in p.scan::<SnapshotSchema>("schema/")? {
            if let Ok(id) = key["schema/".len()..].parse() {
                book.schemas.insert(id, s);
            }
        }
        for (_, c) in p.scan::<Commit>("commit/")? {
            book.by_table.entry(c.table).or_default().push(c.seq);
            book.commits.push(c);
        }
        Ok(book)
    }

    pub(crate) fn seq(&self) -> Seq {
        self.commits.len() as Seq
    }

    fn find(&self, name: &str) -> Result<&Table, CatalogError> {
        self.names
            .get(&name.to_lowercase())
            .and_then(|id| self.tables.get(id))
            .ok_or_else(|| CatalogError::NoSuchTable(name.to_owned()))
    }

    fn live(&self, name: &str) -> Result<&Table, CatalogError> {
        let t = self.find(name)?;
        if t.deleted_at.is_some() {
            return Err(CatalogError::Deleted(t.name.clone()));
        }
        Ok(t)
    }

    pub(crate) fn view(&self, t: &Table) -> TableView {
        let snapshot = t.snapshot.and_then(|id| self.snapshots.get(&id)).cloned();
        let schema = t.snapshot.and_then(|id| self.schemas.get(&id)).cloned();
        TableView {
            table: t.clone(),
            snapshot,
            schema,
        }
    }

    /// Every table, by name; deleted ones only when asked.
    pub(crate) fn catalog(&self, include_deleted: bool) -> CatalogView {
        let mut tables: Vec<TableView> = self
            .tables
            .values()
            .filter(|t| include_deleted || t.deleted_at.is_none())
            .map(|t| self.view(t))
            .collect();
        tables.sort_by(|a, b| {
            a.table
                .name
                .to_lowercase()
                .cmp(&b.table.name.to_lowercase())
        });
        CatalogView {
            seq: self.seq(),
            tables,
        }
    }

    pub(crate) fn table(&self, name: &str) -> Option<TableView> {
        self.find(name).ok().map(|t| self.view(t))
    }

    /// The table's commits, newest first, older than `before` when given.
    pub(crate) fn history(
        &self,
        name: &str,
        before: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<Commit>, CatalogError> {
        let t = self.find(name)?;
        let seqs = self.by_table.get(&t.id).map(Vec::as_slice).unwrap_or(&[]);
        Ok(seqs
            .iter()
            .rev()
            .filter(|s| before.is_none_or(|b| **s < b))
            .take(limit)
            .map(|s| self.commits[*s as usize - 1].clone())
            .collect())
    }

    /// Commits after `seq`, oldest first, at most `limit`.
    pub(crate) fn since(&self, seq: Seq, limit: usize) -> Vec<Commit> {
        self.commits
            .iter()
            .skip(seq.min(self.seq()) as usize)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Where the table's data was as of commit `seq` (inclusive).
    pub(crate) fn as_of(&self, name: &str, seq: Seq) -> Result<Commit, CatalogError> {
        let t = self.find(name)?;
        if seq == 0 || seq > self.seq() {
            return Err(CatalogError::NotAtCommit(format!(
                "there is no commit {seq}: commits run from 1 to {}",
                self.seq()
            )));
        }
        let seqs = self.by_table.get(&t.id).map(Vec::as_slice).unwrap_or(&[]);
        let at = seqs.partition_point(|s| *s <= seq);
        let Some(last) = at.checked_sub(1).map(|i| seqs[i]) else {
            return Err(CatalogError::NotAtCommit(format!(
                "{} did not exist yet at commit {seq}",
                t.name
            )));
        };
        let commit = &self.commits[last as usize - 1];
        if matches!(commit.kind, CommitKind::Delete) {
            return Err(CatalogError::NotAtCommit(format!(
                "{} was deleted at commit {seq}",
                t.name
            )));
        }
        if commit.snapshot.is_none() {
            return Err(CatalogError::NotAtCommit(format!(
                "{} had no data at commit {seq}",
                t.name
            )));
        }
        Ok(commit.clone())
    }

    /// Remembers what a snapshot's file holds. `Ok(false)` if the snapshot is gone or was
    /// edited to point elsewhere meanwhile (`uri` no longer matches): nothing is stored.
    pub(crate) fn set_schema(
        &mut self,
        snapshot: Uuid,
        uri: &str,
        schema: SnapshotSchema,
    ) -> Result<Option<Changes>, CatalogError> {
        let Some(s) = self.snapshots.get(&snapshot) else {
            return Ok(None);
        };
        if s.uri != uri {
            return Ok(None);
        }
        let mut snap = s.clone();
        snap.size = schema.size.or(snap.size);
        snap.rows = schema.rows.or(snap.rows);
        let mut changes = Changes::new();
        changes
            .put(schema_key(&snapshot), &schema)
            .map_err(storage)?;
        changes
            .put(snapshot_key(&snapshot), &snap)
            .map_err(storage)?;
        self.schemas.insert(snapshot, schema);
        self.snapshots.insert(snapshot, snap);
        Ok(Some(changes))
    }

    /// Validates `req` and, if it is allowed, makes it the next commit: memory is changed and
    /// the records to store are returned. Nothing changes when it is refused.
    pub(crate) fn apply(
        &mut self,
        req: ChangeRequest,
        now: UnixMillis,
    ) -> Result<(Committed, Changes), CatalogError> {
        validate_text("commit message", &req.message)?;
        let seq = self.seq() + 1;
        let mut changes = Changes::new();
        let mut new_snapshot: Option<Snapshot> = None;
        let mut drop_schema: Option<Uuid> = None;
        let (mut table, kind) = match req.change {
            Change::Snapshot {
                table: name,
                uri,
                format,
                description,
                size,
            } => {
                let format = validate_uri(&uri, format)?;
                if let Some(d) = &description {
                    validate_text("description", d)?;
                }
                let (mut table, created) = match self.find(&name) {
                    Ok(t) => (t.clone(), false),
                    Err(_) => {
                        validate_name(&name)?;
                        if self.tables.len() >= MAX_TABLES {
                            return Err(CatalogError::Invalid(format!(
                                "at most {MAX_TABLES} tables"
                            )));
                        }
                        let t = Table {
                            id: Uuid::now_v7(),
                            name,
                            description: String::new(),
                            created_at: now,
                            deleted_at: None,
                            snapshot: None,
                            last_commit: 0,
                        };
                        (t, true)
                    }
                };
                let snap = Snapshot {
                    id: Uuid::now_v7(),
                    table: table.id,
                    uri,
                    format,
                    created_at: now,
                    size,
                    rows: None,
                };
                table.snapshot = Some(snap.id);
                table.deleted_at = None;
                if let Some(d) = description {
                    table.description = d;
                }
                new_snapshot = Some(snap);
                (table, CommitKind::Snapshot { created })
            }
            Change::Edit { table, uri, format } => {
                let table = self.live(&table)?.clone();
                let Some(current) = table.snapshot.and_then(|id| self.snapshots.get(&id)) else {
                    return Err(CatalogError::Invalid(format!(
                        "{} has no snapshot to edit",
                        table.name
                    )));
                };
                if uri.is_none() && format.is_none() {
                    return Err(CatalogError::Invalid(
                        "an edit changes the URI, the format or both".into(),
                    ));
                }
                let uri = uri.unwrap_or_else(|| current.uri.clone());
                let format = match format {
                    Some(f) => f,
                    None if uri == current.uri => current.format,
                    None => validate_uri(&uri, None).unwrap_or(current.format),
                };
                validate_uri(&uri, Some(format))?;
                let mut snap = current.clone();
                if snap.uri != uri {
                    snap.size = None;
                    snap.rows = None;
                }
                snap.uri = uri;
                snap.format = format;
                drop_schema = Some(snap.id);
                new_snapshot = Some(snap);
                (table, CommitKind::Edit)
            }
            Change::Describe { table, description } => {
                validate_text("description", &description)?;
                let mut table = self.live(&table)?.clone();
                table.description = description;
                (table, CommitKind::Describe)
            }
            Change::Rename { table, to } => {
                let mut t = self.live(&table)?.clone();
                validate_name(&to)?;
                if let Some(other) = self.names.get(&to.to_lowercase())
                    && *other != t.id
                {
                    return Err(CatalogError::NameTaken(to));
                }
                let from = std::mem::replace(&mut t.name, to);
                (t, CommitKind::Rename { from })
            }
            Change::Delete { table } => {
                let mut t = self.live(&table)?.clone();
                t.deleted_at = Some(now);
                (t, CommitKind::Delete)
            }
            Change::Restore { table } => {
                let mut t = self.find(&table)?.clone();
                if t.deleted_at.is_none() {
                    return Err(CatalogError::Invalid(format!("{} is not deleted", t.name)));
                }
                t.deleted_at = None;
                (t, CommitKind::Restore)
            }
        };
        table.last_commit = seq;
        let snapshot = table.snapshot.map(|id| {
            let s = new_snapshot
                .as_ref()
                .filter(|s| s.id == id)
                .or_else(|| self.snapshots.get(&id))
                .expect("a table's snapshot is always stored");
            SnapshotRef {
                id,
                uri: s.uri.clone(),
                format: s.format,
            }
        });
        let commit = Commit {
            seq,
            at: now,
            table: table.id,
            table_name: table.name.clone(),
            kind,
            snapshot,
            message: req.message,
            author: req.author,
        };
        changes.put(table_key(&table.id), &table).map_err(storage)?;
        if let Some(s) = &new_snapshot {
            changes.put(snapshot_key(&s.id), s).map_err(storage)?;
        }
        if let Some(id) = drop_schema {
            changes.delete(schema_key(&id));
        }
        changes.put(commit_key(seq), &commit).map_err(storage)?;

        // Everything is encoded: now change memory.
        if let Some(old) = self.tables.get(&table.id) {
            self.names.remove(&old.name.to_lowercase());
        }
        self.names.insert(table.name.to_lowercase(), table.id);
        if let Some(id) = drop_schema {
            self.schemas.remove(&id);
        }
        if let Some(s) = new_snapshot {
            self.snapshots.insert(s.id, s);
        }
        self.tables.insert(table.id, table.clone());
        self.by_table.entry(table.id).or_default().push(seq);
        self.commits.push(commit.clone());
        Ok((
            Committed {
                commit,
                table: self.view(&table),
            },
            changes,
        ))
    }
}

fn storage(e: StoreError) -> CatalogError {
    CatalogError::Storage(e.to_string())
}
