//! The catalog as every surface uses it (JSON API, pages, WebSocket, later MCP and load jobs):
//! the user's `Catalog` actor plus what only the edge can do — check that a snapshot's object
//! exists and canonicalise its URI before committing, read a snapshot's schema from its file
//! and keep it with the snapshot, and find the object a table (or a table as of a commit)
//! reads.
//!
//! Must not: decide catalog rules (names, formats, what a change may do): the actor does.

use std::sync::Arc;

use axum::http::StatusCode;
use larder_actors::catalog::{
    AsOfQuery, Author, CatalogError, CatalogMsg, Change, ChangeRequest, Column, Committed,
    SchemaUpdate, Seq, SnapshotRef, SnapshotSchema, TableView,
};
use larder_actors::{ActorError, Placement, UserId};

use crate::storage::registry::{Registry, ResolveError};
use crate::storage::uri::StorageUri;
use crate::storage::{Backend, ObjectKey, StorageError};

/// Why a catalog operation was refused, with the HTTP status every surface answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: StatusCode,
    pub message: String,
}

impl Refused {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Refused {
        Refused {
            status,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<CatalogError> for Refused {
    fn from(e: CatalogError) -> Self {
        let status = match &e {
            CatalogError::Invalid(_) | CatalogError::Deleted(_) => StatusCode::UNPROCESSABLE_ENTITY,
            CatalogError::NoSuchTable(_) | CatalogError::NotAtCommit(_) => StatusCode::NOT_FOUND,
            CatalogError::NameTaken(_) => StatusCode::CONFLICT,
            CatalogError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Refused::new(status, e.to_string())
    }
}

impl From<ActorError> for Refused {
    fn from(e: ActorError) -> Self {
        tracing::error!(error = %e, "catalog call failed");
        Refused::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl From<ResolveError> for Refused {
    fn from(e: ResolveError) -> Self {
        let status = match &e {
            ResolveError::NotFound(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ResolveError::Misconfigured { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ResolveError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Refused::new(status, e.to_string())
    }
}

/// The catalog operations of one node's edge. Cheap to clone.
#[derive(Clone)]
pub struct Catalogs {
    placement: Placement,
    registry: Arc<Registry>,
}

/// The object a table reads, resolved.
pub struct Source {
    pub snapshot: SnapshotRef,
    pub backend: Arc<dyn Backend>,
    pub key: ObjectKey,
}

impl Catalogs {
    pub fn new(placement: Placement, registry: Arc<Registry>) -> Catalogs {
        Catalogs {
            placement,
            registry,
        }
    }

    /// Makes one change as `author`. A snapshot URI is canonicalised (`r2://` becomes
    /// `store://`) and, for a backend object, must exist: its size is recorded. Once the commit
    /// is durable, the new snapshot's schema is read in the background.
    pub async fn commit(
        &self,
        user: UserId,
        mut change: Change,
        message: String,
        author: Author,
    ) -> Result<Committed, Refused> {
        match &mut change {
            Change::Snapshot { uri, size, .. } => {
                let (canonical, found) = self.check_uri(user, uri).await?;
                *uri = canonical;
                *size = found.or(*size);
            }
            Change::Edit { uri: Some(uri), .. } => {
                *uri = self.check_uri(user, uri).await?.0;
            }
            _ => {}
        }
        let req = ChangeRequest {
            change,
            message,
            author,
        };
        let committed = self
            .placement
            .catalog(user, |r| CatalogMsg::Commit(req.clone(), r))
            .await??;
        if let Some(snapshot) = &committed.commit.snapshot
            && committed.table.schema.is_none()
            && matches!(
                committed.commit.kind,
                larder_actors::catalog::CommitKind::Snapshot { .. }
                    | larder_actors::catalog::CommitKind::Edit
            )
        {
            let this = self.clone();
            let snapshot = snapshot.clone();
            tokio::spawn(async move {
                if let Err(e) = this.refresh_schema(user, &snapshot).await {
                    tracing::info!(%user, uri = %snapshot.uri, error = %e, "schema not read");
                }
            });
        }
        Ok(committed)
    }

    /// The canonical form of `uri` and, for a backend object, its size. Refuses URIs that do
    /// not parse, name a backend the user does not have, or an object that is not there.
    async fn check_uri(&self, user: UserId, uri: &str) -> Result<(String, Option<u64>), Refused> {
        let parsed = StorageUri::parse(uri)
            .map_err(|e| Refused::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
        match &parsed {
            StorageUri::Https(_) => Ok((parsed.to_string(), None)),
            StorageUri::Store { backend, key } => {
                let resolved = self.registry.resolve(user, backend).await?;
                match resolved.backend.head(key).await {
                    Ok(meta) => Ok((parsed.to_string(), Some(meta.size))),
                    Err(StorageError::NotFound(_)) => Err(Refused::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("there is no object at {parsed}: upload it first"),
                    )),
                    Err(e) => Err(Refused::new(
                        StatusCode::BAD_GATEWAY,
                        format!("cannot check {parsed}: {e}"),
                    )),
                }
            }
        }
    }

    /// One table, deleted or not.
    pub async fn table(&self, user: UserId, name: &str) -> Result<TableView, Refused> {
        self.placement
            .catalog(user, |r| CatalogMsg::Table(name.to_owned(), r))
            .await?
            .ok_or_else(|| Refused::from(CatalogError::NoSuchTable(name.to_owned())))
    }

    /// Where a live table's data is, now or as of commit `as_of`.
    pub async fn snapshot_of(
        &self,
        user: UserId,
        name: &str,
        as_of: Option<Seq>,
    ) -> Result<SnapshotRef, Refused> {
        if let Some(seq) = as_of {
            let commit = self
                .placement
                .catalog(user, |r| {
                    CatalogMsg::AsOf(
                        AsOfQuery {
                            table: name.to_owned(),
                            seq,
                        },
                        r,
                    )
                })
                .await??;
            return commit
                .snapshot
                .ok_or_else(|| Refused::new(StatusCode::NOT_FOUND, "no data at that commit"));
        }
        let view = self.table(user, name).await?;
        if view.table.deleted_at.is_some() {
            return Err(CatalogError::Deleted(view.table.name).into());
        }
        let s = view.snapshot.ok_or_else(|| {
            Refused::new(StatusCode::NOT_FOUND, format!("{name} has no snapshot"))
        })?;
        Ok(SnapshotRef {
            id: s.id,
            uri: s.uri,
            format: s.format,
        })
    }

    /// The backend object behind a snapshot. Public `https://` data is read by the browser
    /// itself; the server does not fetch arbitrary URLs for users.
    pub async fn source(&self, user: UserId, snapshot: SnapshotRef) -> Result<Source, Refused> {
        let parsed = StorageUri::parse(&snapshot.uri)
            .map_err(|e| Refused::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
        match parsed {
            StorageUri::Https(_) => Err(Refused::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "{} is public data on the web: Larder does not fetch it for you; query it in the browser",
                    snapshot.uri
                ),
            )),
            StorageUri::Store { backend, key } => {
                let resolved = self.registry.resolve(user, &backend).await?;
                Ok(Source {
                    snapshot,
                    backend: resolved.backend,
                    key,
                })
            }
        }
    }

    /// Reads a snapshot's schema from its file and keeps it with the snapshot.
    pub async fn refresh_schema(
        &self,
        user: UserId,
        snapshot: &SnapshotRef,
    ) -> Result<SnapshotSchema, Refused> {
        let source = self.source(user, snapshot.clone()).await?;
        let schema = read_schema(&source).await?;
        let update = SchemaUpdate {
            snapshot: snapshot.id,
            uri: snapshot.uri.clone(),
            schema: schema.clone(),
        };
        self.placement
            .catalog(user, |r| CatalogMsg::SetSchema(update.clone(), r))
            .await??;
        Ok(schema)
    }
}

/// The columns of a source's file (Parquet: from its footer; text formats: by sampling).
pub async fn read_schema(source: &Source) -> Result<SnapshotSchema, Refused> {
    let schema = crate::data::schema(source.backend.clone(), &source.key, source.snapshot.format)
        .await
        .map_err(|e| Refused::new(e.status(), e.to_string()))?;
    Ok(SnapshotSchema {
        columns: schema
            .columns
            .into_iter()
            .map(|c| Column {
                name: c.name,
                data_type: c.data_type,
                nullable: c.nullable,
            })
            .collect(),
        rows: schema.rows,
        size: Some(schema.size),
    })
}

/// The table a reference names: a plain name, or a `catalog://<table>` URI (as MCP tools and
/// load jobs write it).
pub fn table_of(reference: &str) -> Result<&str, Refused> {
    let name = match reference.split_once("://") {
        None => reference,
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("catalog") => {
            rest.trim_end_matches('/')
        }
        Some((scheme, _)) => {
            return Err(Refused::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "{reference:?}: {scheme}:// does not name a table; write catalog://<table> or the table's name"
                ),
            ));
        }
    };
    if name.is_empty() {
        return Err(Refused::new(
            StatusCode::BAD_REQUEST,
            format!("{reference:?} names no table"),
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::table_of;

    #[test]
    fn tables_are_named_plainly_or_by_catalog_uri() {
        assert_eq!(table_of("orders").unwrap(), "orders");
        assert_eq!(table_of("catalog://orders").unwrap(), "orders");
        assert_eq!(table_of("CATALOG://orders/").unwrap(), "orders");
        assert!(table_of("catalog://").is_err());
        assert!(
            table_of("store://local/x.csv")
                .unwrap_err()
                .message
                .contains("does not name a table")
        );
    }
}
