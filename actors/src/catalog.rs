//! `Catalog`: one user's tables, snapshots and commits.
//!
//! A child of the user's [`UserSupervisor`](crate::user::UserSupervisor), loaded from its
//! [`Partition`] in `pre_start`. Every change is one [`Commit`] with the next sequence number;
//! the table, snapshot and commit records of a change are applied in one atomic batch, and the
//! caller is answered only once that batch is durable. Writes are batched and pipelined: the
//! commits waiting in the mailbox are applied to memory one by one and written to the store in
//! one atomic apply (`WriteBatch`, which the actor sends itself after the first of them); the
//! actor then moves on while the store's flusher thread fsyncs (see [`crate::acks`]), so one
//! fsync acknowledges every commit made meanwhile (group commit).
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
    /// The number of the last durable commit (0 before the first).
    #[rpc]
    Head(RpcReplyPort<Seq>),
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
    /// Internal: writes the commits gathered since the last write (sent by the actor to
    /// itself after the first one, so it runs after every commit already in the mailbox).
    WriteBatch,
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
    /// Commits applied to `book` but not yet to the store, with their answers.
    batch: Option<Batch>,
}

type Deliver = Box<dyn FnOnce(Result<(), Arc<str>>) + Send>;

/// Commits waiting for the next store write: one write (and one flush request) for every
/// commit that was in the mailbox, so the per-write cost is shared.
struct Batch {
    changes: crate::store::Changes,
    answers: Vec<Deliver>,
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
            batch: None,
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
        myself: ActorRef<Self::Msg>,
        msg: CatalogMsg,
        state: &mut CatalogState,
    ) -> Result<(), ActorProcessingErr> {
        state.roster.handled(&state.key);
        if !matches!(msg, CatalogMsg::Commit(..)) {
            // Whatever else comes must see (and queue behind) every commit before it.
            state.write_batch()?;
        }
        match msg {
            CatalogMsg::Commit(req, reply) => state.commit(&myself, req, reply),
            CatalogMsg::WriteBatch => {}
            CatalogMsg::Catalog(include_deleted, reply) => {
                let view = state.book.catalog(include_deleted);
                state.acks.answer(move || {
                    let _ = reply.send(view);
                });
            }
            CatalogMsg::Head(reply) => {
                let seq = state.book.seq();
                state.acks.answer(move || {
                    let _ = reply.send(seq);
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
    /// Applies a change to memory and adds it to the batch; the answer waits for the batch's
    /// flush.
    fn commit(
        &mut self,
        myself: &ActorRef<CatalogMsg>,
        req: ChangeRequest,
        reply: RpcReplyPort<Result<Committed, CatalogError>>,
    ) {
        let (committed, changes) = match self.book.apply(req, now_millis()) {
            Ok(done) => done,
            Err(e) => {
                // Refused: nothing changed; answered behind the commits before it.
                let answer: Deliver = Box::new(move |_| {
                    let _ = reply.send(Err(e));
                });
                self.add(myself, crate::store::Changes::new(), answer);
                return;
            }
        };
        let announcer = self.announcer.clone();
        let answer: Deliver = Box::new(move |r| match r {
            Ok(()) => {
                announcer.announce(committed.commit.clone());
                metrics::counter!("larder_catalog_commits_total").increment(1);
                let _ = reply.send(Ok(committed));
            }
            Err(e) => {
                let _ = reply.send(Err(storage(e)));
            }
        });
        self.add(myself, changes, answer);
    }

    fn add(
        &mut self,
        myself: &ActorRef<CatalogMsg>,
        changes: crate::store::Changes,
        answer: Deliver,
    ) {
        let batch = self.batch.get_or_insert_with(|| {
            // After every message already queued: that is what makes the batch.
            let _ = myself.cast(CatalogMsg::WriteBatch);
            Batch {
                changes: crate::store::Changes::new(),
                answers: Vec::new(),
            }
        });
        batch.changes.append(changes);
        batch.answers.push(answer);
    }

    /// Writes the batch to the store in one atomic apply; its answers go out once it is
    /// durable. A failed write fails the actor: memory is ahead of the store, so it reloads.
    fn write_batch(&mut self) -> Result<(), ActorProcessingErr> {
        let Some(batch) = self.batch.take() else {
            return Ok(());
        };
        match self.partition.apply(batch.changes) {
            Ok(durable) => {
                let answers = batch.answers;
                self.acks.after(durable, move |r| {
                    for answer in answers {
                        answer(r.clone());
                    }
                });
                Ok(())
            }
            Err(e) => {
                let message: Arc<str> = Arc::from(e.to_string());
                for answer in batch.answers {
                    answer(Err(message.clone()));
                }
                Err(format!("a catalog write failed: {e}; restarting to reload").into())
            }
        }
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
