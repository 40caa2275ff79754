//! `UserSupervisor`: the root of one user's actor tree on their home node.
//!
//! A *virtual* actor: the node spawns it on first use and drains it after an idle timeout; its
//! children reload their state from the store, so activation is invisible to callers. It restarts
//! a failed child with back-off and, while the child is down, holds requests for handles until
//! the child is back. Its children: `Library`, `Vault`, `Catalog` and `Session` (the Scheduler
//! joins [`UserHandles`] with load jobs). It owns the catalog's [`Announcer`] and points it at
//! each new Session.

use std::collections::HashMap;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use ractor_cluster::RactorMessage;

use crate::UserId;
use crate::catalog::{Announcer, Catalog, CatalogArgs, CatalogMsg};
use crate::library::{Library, LibraryArgs, LibraryMsg};
use crate::roster::{ActorKey, ActorKind, Roster};
use crate::session::{Session, SessionArgs, SessionMsg};
use crate::store::{Owner, Store};
use crate::supervision::{Backoff, RestartPolicy};
use crate::vault::{SharedKeyring, Vault, VaultArgs, VaultMsg};

/// The user's actors, as the edge reaches them. Obtained from [`Placement`](crate::Placement);
/// never cached across requests (an idle user's actors are passivated).
#[derive(Debug, Clone)]
pub struct UserHandles {
    pub user: UserId,
    pub library: ActorRef<LibraryMsg>,
    pub vault: ActorRef<VaultMsg>,
    pub catalog: ActorRef<CatalogMsg>,
    pub session: ActorRef<SessionMsg>,
}

/// Messages to a [`UserSupervisor`]. Node-local: remote edges reach the children directly.
#[derive(RactorMessage)]
pub enum UserMsg {
    /// The user's children, once all are running.
    Handles(RpcReplyPort<UserHandles>),
    /// Internal: the back-off after a child's failure has elapsed.
    Restart(ActorKind),
}

/// The kinds of child every user tree has, in start order (the Session before the Catalog, so
/// the first commits already have someone to announce them to).
const CHILDREN: [ActorKind; 4] = [
    ActorKind::Library,
    ActorKind::Vault,
    ActorKind::Session,
    ActorKind::Catalog,
];

pub struct UserSupervisor;

pub struct UserArgs {
    pub user: UserId,
    pub store: Store,
    pub roster: Roster,
    pub restart: RestartPolicy,
    pub keyring: SharedKeyring,
}

pub struct UserState {
    user: UserId,
    key: ActorKey,
    store: Store,
    roster: Roster,
    keyring: SharedKeyring,
    library: Option<ActorRef<LibraryMsg>>,
    vault: Option<ActorRef<VaultMsg>>,
    catalog: Option<ActorRef<CatalogMsg>>,
    session: Option<ActorRef<SessionMsg>>,
    announcer: Announcer,
    backoff: HashMap<ActorKind, Backoff>,
    waiting: Vec<RpcReplyPort<UserHandles>>,
}

impl UserState {
    fn handles(&self) -> Option<UserHandles> {
        Some(UserHandles {
            user: self.user,
            library: self.library.clone()?,
            vault: self.vault.clone()?,
            catalog: self.catalog.clone()?,
            session: self.session.clone()?,
        })
    }

    async fn spawn_child(
        &mut self,
        myself: &ActorRef<UserMsg>,
        kind: ActorKind,
    ) -> Result<(), ActorProcessingErr> {
        let owner = Owner::User(self.user);
        let supervisor = myself.get_cell();
        match kind {
            ActorKind::Library => {
                let args = LibraryArgs {
                    user: self.user,
                    partition: self.store.partition("library", &owner),
                    roster: self.roster.clone(),
                };
                self.library = Some(
                    Actor::spawn_linked(None, Library, args, supervisor)
                        .await?
                        .0,
                );
            }
            ActorKind::Vault => {
                let args = VaultArgs {
                    user: self.user,
                    partition: self.store.partition("vault", &owner),
                    roster: self.roster.clone(),
                    keyring: self.keyring.clone(),
                };
                self.vault = Some(Actor::spawn_linked(None, Vault, args, supervisor).await?.0);
            }
            ActorKind::Catalog => {
                let args = CatalogArgs {
                    user: self.user,
                    partition: self.store.partition("catalog", &owner),
                    roster: self.roster.clone(),
                    announcer: self.announcer.clone(),
                };
                self.catalog = Some(
                    Actor::spawn_linked(None, Catalog, args, supervisor)
                        .await?
                        .0,
                );
            }
            ActorKind::Session => {
                let args = SessionArgs {
                    user: self.user,
                    roster: self.roster.clone(),
                };
                let session = Actor::spawn_linked(None, Session, args, supervisor)
                    .await?
                    .0;
                self.announcer.set(Some(session.clone()));
                self.session = Some(session);
            }
            other => unreachable!("{other:?} is not a child of a user's tree"),
        }
        if let Some(b) = self.backoff.get_mut(&kind) {
            b.started();
        }
        if let Some(handles) = self.handles() {
            for reply in self.waiting.drain(..) {
                let _ = reply.send(handles.clone());
            }
        }
        Ok(())
    }

    /// Which child, if any, `cell` is.
    fn child_kind(&self, cell: &ActorCell) -> Option<ActorKind> {
        let id = cell.get_id();
        let is = |a: Option<ActorCell>| a.is_some_and(|a| a.get_id() == id);
        if is(self.library.as_ref().map(|a| a.get_cell())) {
            Some(ActorKind::Library)
        } else if is(self.vault.as_ref().map(|a| a.get_cell())) {
            Some(ActorKind::Vault)
        } else if is(self.catalog.as_ref().map(|a| a.get_cell())) {
            Some(ActorKind::Catalog)
        } else if is(self.session.as_ref().map(|a| a.get_cell())) {
            Some(ActorKind::Session)
        } else {
            None
        }
    }

    fn forget(&mut self, kind: ActorKind) {
        match kind {
            ActorKind::Library => self.library = None,
            ActorKind::Vault => self.vault = None,
            ActorKind::Catalog => self.catalog = None,
            ActorKind::Session => {
                self.announcer.set(None);
                self.session = None;
            }
            _ => {}
        }
    }

    fn is_running(&self, kind: ActorKind) -> bool {
        match kind {
            ActorKind::Library => self.library.is_some(),
            ActorKind::Vault => self.vault.is_some(),
            ActorKind::Catalog => self.catalog.is_some(),
            ActorKind::Session => self.session.is_some(),
            _ => true,
        }
    }

    fn schedule_restart(&mut self, myself: &ActorRef<UserMsg>, kind: ActorKind, error: &str) {
        self.roster.failed(&ActorKey::user(kind, self.user), error);
        metrics::counter!("larder_actor_restarts_total", "kind" => kind.as_str()).increment(1);
        let delay = self
            .backoff
            .get_mut(&kind)
            .map_or(std::time::Duration::ZERO, Backoff::next_delay);
        tracing::warn!(user = %self.user, kind = kind.as_str(), error, ?delay, "actor failed; restarting");
        myself.send_after(delay, move || UserMsg::Restart(kind));
    }
}

impl Actor for UserSupervisor {
    type Msg = UserMsg;
    type State = UserState;
    type Arguments = UserArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<UserMsg>,
        args: UserArgs,
    ) -> Result<UserState, ActorProcessingErr> {
        let key = ActorKey::user(ActorKind::User, args.user);
        let mut state = UserState {
            user: args.user,
            key,
            store: args.store,
            roster: args.roster,
            keyring: args.keyring,
            library: None,
            vault: None,
            catalog: None,
            session: None,
            announcer: Announcer::default(),
            backoff: CHILDREN
                .iter()
                .map(|k| (*k, Backoff::new(args.restart)))
                .collect(),
            waiting: Vec::new(),
        };
        for kind in CHILDREN {
            state.spawn_child(&myself, kind).await?;
        }
        state.roster.started(key);
        Ok(state)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<UserMsg>,
        state: &mut UserState,
    ) -> Result<(), ActorProcessingErr> {
        // Let children finish what is already queued: nothing acknowledged is lost.
        myself
            .drain_children_and_wait(Some(std::time::Duration::from_secs(10)))
            .await;
        state.roster.stopped(&state.key);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<UserMsg>,
        msg: UserMsg,
        state: &mut UserState,
    ) -> Result<(), ActorProcessingErr> {
        state.roster.handled(&state.key);
        match msg {
            UserMsg::Handles(reply) => match state.handles() {
                Some(handles) => {
                    let _ = reply.send(handles);
                }
                None => state.waiting.push(reply),
            },
            UserMsg::Restart(kind) => {
                if !state.is_running(kind)
                    && let Err(e) = state.spawn_child(&myself, kind).await
                {
                    state.schedule_restart(&myself, kind, &format!("restart failed: {e}"));
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<UserMsg>,
        evt: SupervisionEvent,
        state: &mut UserState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, error) = match &evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                format!(
                    "stopped unexpectedly: {}",
                    reason.as_deref().unwrap_or("no reason")
                ),
            ),
            _ => return Ok(()),
        };
        if let Some(kind) = state.child_kind(cell) {
            state.forget(kind);
            state.schedule_restart(&myself, kind, &error);
        }
        Ok(())
    }
}
