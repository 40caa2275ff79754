//! `Catalog`: one user's tables, snapshots and commits.
//!
//! A child of the user's [`UserSupervisor`](crate::user::UserSupervisor), loaded from its
//! [`Partition`] in `pre_start`. Every change is one [`Commit`] with the next sequence number;
//! the table, snapshot and commit records of a change are applied in one atomic batch, and the
//! caller is answered only once that batch is durable. Writes are pipelined (see
//! [`crate::acks`]): the actor applies a change and moves on while the store's flusher thread
//! fsyncs, so one fsync acknowledges every commit made meanwhile (group commit).
//!
//! Once durable, each commit is handed to the user's `Session` (which tells the user's open
//! tabs); that hand-off is also where transforms will hook their triggers.
//!
//! The rules (names, formats, what a change may do) live in [`book`], apart from the actor.

mod book;
mod format;
mod model;

use std::sync::{Arc, RwLock};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use book::{MAX_NAME_CHARS, MAX_TABLES, MAX_TEXT_CHARS, MAX_URI_BYTES, validate_name};
pub use format::Format;
pub use model::*;

use crate::acks::Acks;
use crate::ids::{UserId, now_millis};
use crate::roster::{ActorKey, ActorKind, Roster};
use crate::session::SessionMsg;
use crate::store::Partition;
use book::Book;

/// The most commits one `Since` or `History` answer carries.
pub const MAX_PAGE: u32 = 1_000;

/// Which table's history, and how much of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryQuery {
    pub table: String,
    /// Only commits older than this one.
    pub before: Option<Seq>,
    /// At most this many (capped at [`MAX_PAGE`]).
    pub limit: u32,
}

/// A table as of a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsOfQuery {
    pub table: String,
    pub seq: Seq,
}

/// The commits after `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinceQuery {
    pub seq: Seq,
    pub limit: u32,
}

/// The schema read from a snapshot's file, to keep with the snapshot. `uri` is the URI the
/// file was read from: if the snapshot was edited meanwhile, the schema is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaUpdate {
    pub snapshot: Uuid,
    pub uri: String,
    pub schema: SnapshotSchema,
}

/// Messages to a user's [`Catalog`]. Serializable: the edge of any node may send them.
#[derive(RactorClusterMessage)]
pub enum CatalogMsg {
    /// Makes one change; answered once it is durable.
    #[rpc]
    Commit(ChangeRequest, RpcReplyPort<Result<Committed, CatalogError>>),
    /// Every table with its current snapshot (and deleted ones when `true`).
    #[rpc]
    Catalog(bool, RpcReplyPort<CatalogView>),
    /// One table by name (case-insensitive), deleted or not.
    #[rpc]
    Table(String, RpcReplyPort<Option<TableView>>),
    #[rpc]
    History(
        HistoryQuery,
        RpcReplyPort<Result<Vec<Commit>, CatalogError>>,
    ),
    /// Commits after a sequence number, oldest first: how a tab catches up.
    #[rpc]
    Since(SinceQuery, RpcReplyPort<Vec<Commit>>),
    /// The commit that defined a table's data as of a sequence number.
    #[rpc]
    AsOf(AsOfQuery, RpcReplyPort<Result<Commit, CatalogError>>),
    /// Keeps a snapshot's schema; `Ok(false)` if the snapshot changed meanwhile.
    #[rpc]
    SetSchema(SchemaUpdate, RpcReplyPort<Result<bool, CatalogError>>),
    /// Panics inside the handler: fault injection for supervision tests.
    InjectPanic,
}

/// Where durable commits are announced: the user's `Session`, whichever incarnation of it is
/// running. Owned by the user's supervisor, which points it at each new Session.
#[derive(Debug, Clone, Default)]
pub struct Announcer(Arc<RwLock<Option<ActorRef<SessionMsg>>>>);

impl Announcer {
    pub fn set(&self, session: Option<ActorRef<SessionMsg>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = session;
    }

    fn announce(&self, commit: Commit) {
        let session = self.0.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(session) = session {
            // A Session that is down misses it; tabs catch up from the log when they rejoin.
            let _ = session.cast(SessionMsg::Committed(commit));
        }
    }
}

pub struct Catalog;

pub struct CatalogArgs {
    pub user: UserId,
    pub partition: Partition,
    pub roster: Roster,
    pub announcer: Announcer,
}

pub struct CatalogState {
    key: ActorKey,
    partition: Partition,
    roster: Roster,
    announcer: Announcer,
    acks: Acks,
    book: Book,
}

impl Actor for Catalog {
    type Msg = CatalogMsg;
    type State = CatalogState;
    type Arguments = CatalogArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: CatalogArgs,
    ) -> Result<CatalogState, ActorProcessingErr> {
        let partition = args.partition;
        let book = tokio::task::spawn_blocking({
            let p = partition.clone();
            move || Book::load(&p)
        })
        .await??;
        let key = ActorKey::user(ActorKind::Catalog, args.user);
        args.roster.started(key);
        Ok(CatalogState {
            key,
            partition,
            roster: args.roster,
            announcer: args.announcer,
            acks: Acks::start(myself.get_cell()),
            book,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut CatalogState,
    ) -> Result<(), ActorProcessingErr> {
        state.roster.stopped(&state.key);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: CatalogMsg,
        state: &mut CatalogState,
    ) -> Result<(), ActorProcessingErr> {
        state.roster.handled(&state.key);
        match msg {
            CatalogMsg::Commit(req, reply) => state.commit(req, reply)?,
            CatalogMsg::Catalog(include_deleted, reply) => {
                let view = state.book.catalog(include_deleted);
                state.acks.answer(move || {
                    let _ = reply.send(view);
                });
            }
            CatalogMsg::Table(name, reply) => {
                let view = state.book.table(&name);
                state.acks.answer(move || {
                    let _ = reply.send(view);
                });
            }
            CatalogMsg::History(q, reply) => {
                let limit = q.limit.clamp(1, MAX_PAGE) as usize;
                let got = state.book.history(&q.table, q.before, limit);
                state.acks.answer(move || {
                    let _ = reply.send(got);
                });
            }
            CatalogMsg::Since(q, reply) => {
                let got = state.book.since(q.seq, q.limit.clamp(1, MAX_PAGE) as usize);
                state.acks.answer(move || {
                    let _ = reply.send(got);
                });
            }
            CatalogMsg::AsOf(q, reply) => {
                let got = state.book.as_of(&q.table, q.seq);
                state.acks.answer(move || {
                    let _ = reply.send(got);
                });
            }
            CatalogMsg::SetSchema(update, reply) => {
                match state
                    .book
                    .set_schema(update.snapshot, &update.uri, update.schema)
                {
                    Ok(Some(changes)) => match state.partition.apply(changes) {
                        Ok(durable) => state.acks.after(durable, move |r| {
                            let _ = reply.send(r.map(|()| true).map_err(storage));
                        }),
                        Err(e) => return fail(reply, e),
                    },
                    Ok(None) => state.acks.answer(move || {
                        let _ = reply.send(Ok(false));
                    }),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            CatalogMsg::InjectPanic => panic!("injected panic in catalog handler"),
        }
        Ok(())
    }
}

impl CatalogState {
    fn commit(
        &mut self,
        req: ChangeRequest,
        reply: RpcReplyPort<Result<Committed, CatalogError>>,
    ) -> Result<(), ActorProcessingErr> {
        let (committed, changes) = match self.book.apply(req, now_millis()) {
            Ok(done) => done,
            Err(e) => {
                // Refused: nothing changed, but answer in order behind pending commits.
                self.acks.answer(move || {
                    let _ = reply.send(Err(e));
                });
                return Ok(());
            }
        };
        match self.partition.apply(changes) {
            Ok(durable) => {
                let announcer = self.announcer.clone();
                self.acks.after(durable, move |r| match r {
                    Ok(()) => {
                        announcer.announce(committed.commit.clone());
                        metrics::counter!("larder_catalog_commits_total").increment(1);
                        let _ = reply.send(Ok(committed));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(storage(e)));
                    }
                });
            }
            // Memory is ahead of the store now: fail, so the supervisor reloads.
            Err(e) => return fail(reply, e),
        }
        Ok(())
    }
}

fn storage(e: Arc<str>) -> CatalogError {
    CatalogError::Storage(e.to_string())
}

fn fail<T: Send + 'static>(
    reply: RpcReplyPort<Result<T, CatalogError>>,
    e: crate::store::StoreError,
) -> Result<(), ActorProcessingErr> {
    let _ = reply.send(Err(CatalogError::Storage(e.to_string())));
    Err(format!("a catalog write failed: {e}; restarting to reload").into())
}

#[cfg(test)]
mod tests;
