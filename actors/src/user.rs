//! `UserSupervisor`: the root of one user's actor tree on their home node.
//!
//! A *virtual* actor: the node spawns it on first use and drains it after an idle timeout; its
//! children reload their state from the store, so activation is invisible to callers. It restarts
//! a failed child with back-off and, while the child is down, holds requests for handles until
//! the child is back. Catalog, Session and Scheduler join [`UserHandles`] in later issues.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use ractor_cluster::RactorMessage;

use crate::UserId;
use crate::library::{Library, LibraryArgs, LibraryMsg};
use crate::roster::{ActorKey, ActorKind, Roster};
use crate::store::{Owner, Store};
use crate::supervision::{Backoff, RestartPolicy};

/// The user's actors, as the edge reaches them. Obtained from [`Placement`](crate::Placement);
/// never cached across requests (an idle user's actors are passivated).
#[derive(Debug, Clone)]
pub struct UserHandles {
    pub user: UserId,
    pub library: ActorRef<LibraryMsg>,
}

/// Messages to a [`UserSupervisor`]. Node-local: remote edges reach the children directly.
#[derive(RactorMessage)]
pub enum UserMsg {
    /// The user's children, once all are running.
    Handles(RpcReplyPort<UserHandles>),
    /// Internal: the back-off after a library failure has elapsed.
    RestartLibrary,
}

pub struct UserSupervisor;

pub struct UserArgs {
    pub user: UserId,
    pub store: Store,
    pub roster: Roster,
    pub restart: RestartPolicy,
}

pub struct UserState {
    user: UserId,
    key: ActorKey,
    store: Store,
    roster: Roster,
    library: Option<ActorRef<LibraryMsg>>,
    library_backoff: Backoff,
    waiting: Vec<RpcReplyPort<UserHandles>>,
}

impl UserState {
    async fn spawn_library(
        &mut self,
        myself: &ActorRef<UserMsg>,
    ) -> Result<(), ActorProcessingErr> {
        let args = LibraryArgs {
            user: self.user,
            partition: self.store.partition("library", &Owner::User(self.user)),
            roster: self.roster.clone(),
        };
        let (library, _) = Actor::spawn_linked(None, Library, args, myself.get_cell()).await?;
        self.library_backoff.started();
        self.library = Some(library.clone());
        for reply in self.waiting.drain(..) {
            let _ = reply.send(UserHandles {
                user: self.user,
                library: library.clone(),
            });
        }
        Ok(())
    }

    fn schedule_library_restart(&mut self, myself: &ActorRef<UserMsg>, error: &str) {
        let key = ActorKey::user(ActorKind::Library, self.user);
        self.roster.failed(&key, error);
        metrics::counter!("larder_actor_restarts_total", "kind" => "library").increment(1);
        let delay = self.library_backoff.next_delay();
        tracing::warn!(user = %self.user, error, ?delay, "library actor failed; restarting");
        myself.send_after(delay, || UserMsg::RestartLibrary);
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
            library: None,
            library_backoff: Backoff::new(args.restart),
            waiting: Vec::new(),
        };
        state.spawn_library(&myself).await?;
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
            UserMsg::Handles(reply) => match &state.library {
                Some(library) => {
                    let _ = reply.send(UserHandles {
                        user: state.user,
                        library: library.clone(),
                    });
                }
                None => state.waiting.push(reply),
            },
            UserMsg::RestartLibrary => {
                if state.library.is_none()
                    && let Err(e) = state.spawn_library(&myself).await
                {
                    state.schedule_library_restart(&myself, &format!("restart failed: {e}"));
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
        let is_library = |cell: &ractor::ActorCell| {
            state
                .library
                .as_ref()
                .is_some_and(|l| l.get_id() == cell.get_id())
        };
        let failure = match &evt {
            SupervisionEvent::ActorFailed(cell, err) if is_library(cell) => Some(err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) if is_library(cell) => {
                Some(format!(
                    "stopped unexpectedly: {}",
                    reason.as_deref().unwrap_or("no reason")
                ))
            }
            _ => None,
        };
        if let Some(error) = failure {
            state.library = None;
            state.schedule_library_restart(&myself, &error);
        }
        Ok(())
    }
}
