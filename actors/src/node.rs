//! `NodeSupervisor`: the root of this node's supervision tree, and [`Node`], its owner's handle.
//!
//! It owns the node-global actors (`Accounts`, `OAuth`; each restarted with back-off) and the map of active
//! users: it activates a user's [`UserSupervisor`] on first use and drains it once the user has
//! been idle for `idle_timeout` (passivation). Shutting the node down drains every child, so
//! queued requests finish, then flushes the store.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use ractor_cluster::RactorMessage;

use crate::UserId;
use crate::accounts::{Accounts, AccountsArgs, AccountsConfig, AccountsMsg};
use crate::oauth::{OAuth, OAuthArgs, OAuthConfig, OAuthMsg};
use crate::placement::Placement;
use crate::roster::{ActorKey, ActorKind, Roster};
use crate::store::{Owner, Store};
use crate::supervision::{Backoff, RestartPolicy};
use crate::user::{UserArgs, UserMsg, UserSupervisor};
use crate::vault::{Keyring, SharedKeyring, VaultKey};

/// How this node's actors behave. Built by the binary from its config.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// A user's actors are passivated after this long without a request.
    pub idle_timeout: Duration,
    /// Upper bound on any edge-to-actor call.
    pub call_timeout: Duration,
    pub restart: RestartPolicy,
    pub accounts: AccountsConfig,
    pub oauth: OAuthConfig,
    /// The vault keys (shared with rotation).
    pub keyring: SharedKeyring,
}

/// Defaults for tests and tools: note the keyring is a fresh random key, so vault records
/// sealed with it cannot be opened by another process.
impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            idle_timeout: Duration::from_secs(15 * 60),
            call_timeout: Duration::from_secs(10),
            restart: RestartPolicy::default(),
            accounts: AccountsConfig::default(),
            oauth: OAuthConfig::default(),
            keyring: Arc::new(RwLock::new(Keyring::new([(1, VaultKey::generate())]))),
        }
    }
}

/// Messages to the [`NodeSupervisor`]. Node-local.
#[derive(RactorMessage)]
pub enum NodeMsg {
    /// The user's supervisor, activated if needed; marks the user active.
    Activate(UserId, RpcReplyPort<Result<ActorRef<UserMsg>, String>>),
    /// The Accounts actor, once it is running.
    Accounts(RpcReplyPort<ActorRef<AccountsMsg>>),
    /// The OAuth actor, once it is running.
    OAuth(RpcReplyPort<ActorRef<OAuthMsg>>),
    /// Internal: passivate users idle for longer than the timeout.
    SweepIdle,
    /// Internal: a user's supervisor finished starting (or failed to).
    Started(UserId, Result<ActorRef<UserMsg>, String>),
    /// Internal: the back-off after a global actor's failure has elapsed.
    Restart(Global),
}

pub struct NodeSupervisor;

pub struct NodeArgs {
    pub store: Store,
    pub roster: Roster,
    pub config: NodeConfig,
}

type ActivateReply = RpcReplyPort<Result<ActorRef<UserMsg>, String>>;

/// Where one user's tree is in its life. Only one tree per user exists at any time: a request
/// for a user whose tree is starting or stopping waits for that to finish.
enum Slot {
    /// Spawning in a task of its own (loading state must not stall the root).
    Starting { waiters: Vec<ActivateReply> },
    Running {
        supervisor: ActorRef<UserMsg>,
        last_active: Instant,
    },
    /// Draining after passivation; restarted once it has terminated if anyone asked meanwhile.
    Stopping {
        supervisor: ractor::ActorId,
        waiters: Vec<ActivateReply>,
    },
}

/// The node-global actors, each supervised by the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    Accounts,
    OAuth,
}

impl Global {
    fn kind(self) -> ActorKind {
        match self {
            Global::Accounts => ActorKind::Accounts,
            Global::OAuth => ActorKind::OAuth,
        }
    }
}

/// One node-global actor: its handle while it runs, the callers waiting while it restarts.
struct GlobalSlot<M: ractor::Message> {
    actor: Option<ActorRef<M>>,
    backoff: Backoff,
    waiting: Vec<RpcReplyPort<ActorRef<M>>>,
}

impl<M: ractor::Message> GlobalSlot<M> {
    fn new(restart: RestartPolicy) -> Self {
        GlobalSlot {
            actor: None,
            backoff: Backoff::new(restart),
            waiting: Vec::new(),
        }
    }

    fn running(&mut self, actor: ActorRef<M>) {
        self.backoff.started();
        for reply in self.waiting.drain(..) {
            let _ = reply.send(actor.clone());
        }
        self.actor = Some(actor);
    }

    fn ask(&mut self, reply: RpcReplyPort<ActorRef<M>>) {
        match &self.actor {
            Some(a) => {
                let _ = reply.send(a.clone());
            }
            None => self.waiting.push(reply),
        }
    }

    /// Forgets the actor if `id` was it.
    fn ended(&mut self, id: ractor::ActorId) -> bool {
        let was = self.actor.as_ref().is_some_and(|a| a.get_id() == id);
        if was {
            self.actor = None;
        }
        was
    }
}

pub struct NodeState {
    store: Store,
    roster: Roster,
    config: NodeConfig,
    users: HashMap<UserId, Slot>,
    accounts: GlobalSlot<AccountsMsg>,
    oauth: GlobalSlot<OAuthMsg>,
}

const NODE_KEY: ActorKey = ActorKey {
    kind: ActorKind::Node,
    user: None,
};

impl NodeState {
    /// Starts a global actor unless it runs already.
    async fn spawn_global(
        &mut self,
        myself: &ActorRef<NodeMsg>,
        which: Global,
    ) -> Result<(), ActorProcessingErr> {
        let partition = |name| self.store.partition(name, &Owner::Global);
        match which {
            Global::Accounts if self.accounts.actor.is_none() => {
                let args = AccountsArgs {
                    partition: partition("accounts"),
                    roster: self.roster.clone(),
                    config: self.config.accounts,
                };
                let (a, _) = Actor::spawn_linked(None, Accounts, args, myself.get_cell()).await?;
                self.accounts.running(a);
            }
            Global::OAuth if self.oauth.actor.is_none() => {
                let args = OAuthArgs {
                    partition: partition("oauth"),
                    roster: self.roster.clone(),
                    config: self.config.oauth,
                };
                let (a, _) = Actor::spawn_linked(None, OAuth, args, myself.get_cell()).await?;
                self.oauth.running(a);
            }
            _ => {}
        }
        Ok(())
    }

    fn schedule_restart(&mut self, myself: &ActorRef<NodeMsg>, which: Global, error: &str) {
        let kind = which.kind();
        self.roster.failed(&ActorKey::global(kind), error);
        metrics::counter!("larder_actor_restarts_total", "kind" => kind.as_str()).increment(1);
        let delay = match which {
            Global::Accounts => self.accounts.backoff.next_delay(),
            Global::OAuth => self.oauth.backoff.next_delay(),
        };
        tracing::warn!(
            error,
            ?delay,
            actor = kind.as_str(),
            "global actor failed; restarting"
        );
        myself.send_after(delay, move || NodeMsg::Restart(which));
    }

    fn activate(&mut self, myself: &ActorRef<NodeMsg>, user: UserId, reply: ActivateReply) {
        match self.users.get_mut(&user) {
            Some(Slot::Running {
                supervisor,
                last_active,
            }) => {
                *last_active = Instant::now();
                let _ = reply.send(Ok(supervisor.clone()));
            }
            Some(Slot::Starting { waiters } | Slot::Stopping { waiters, .. }) => {
                waiters.push(reply)
            }
            None => {
                self.users.insert(
                    user,
                    Slot::Starting {
                        waiters: vec![reply],
                    },
                );
                self.start_user(myself, user);
            }
        }
    }

    /// Spawns the user's tree off the root's handler; the result comes back as `Started`.
    fn start_user(&self, myself: &ActorRef<NodeMsg>, user: UserId) {
        let args = UserArgs {
            user,
            store: self.store.clone(),
            roster: self.roster.clone(),
            restart: self.config.restart,
            keyring: self.config.keyring.clone(),
        };
        let root = myself.clone();
        tokio::spawn(async move {
            let result = Actor::spawn_linked(None, UserSupervisor, args, root.get_cell())
                .await
                .map(|(supervisor, _)| supervisor)
                .map_err(|e| format!("could not activate the user's actors: {e}"));
            let _ = root.send_message(NodeMsg::Started(user, result));
        });
    }

    fn started(&mut self, user: UserId, result: Result<ActorRef<UserMsg>, String>) {
        let Some(Slot::Starting { waiters }) = self.users.remove(&user) else {
            // Not expected; never leave a tree nobody can reach.
            if let Ok(supervisor) = result {
                supervisor.stop(Some("orphaned activation".into()));
            }
            return;
        };
        for reply in waiters {
            let _ = reply.send(result.clone());
        }
        if let Ok(supervisor) = result {
            metrics::counter!("larder_actor_activations_total").increment(1);
            tracing::debug!(%user, "activated user");
            self.users.insert(
                user,
                Slot::Running {
                    supervisor,
                    last_active: Instant::now(),
                },
            );
        }
    }

    fn sweep_idle(&mut self) {
        let timeout = self.config.idle_timeout;
        for (user, slot) in self.users.iter_mut() {
            if let Slot::Running {
                supervisor,
                last_active,
            } = slot
                && last_active.elapsed() >= timeout
            {
                // Drain, not stop: anything already queued is still answered.
                let _ = supervisor.drain();
                metrics::counter!("larder_actor_passivations_total").increment(1);
                tracing::debug!(%user, "passivating idle user");
                *slot = Slot::Stopping {
                    supervisor: supervisor.get_id(),
                    waiters: Vec::new(),
                };
            }
        }
    }

    /// A user supervisor ended: passivated, or crashed. Either way its slot is freed, and
    /// restarted at once if requests are waiting for it.
    fn user_ended(
        &mut self,
        myself: &ActorRef<NodeMsg>,
        id: ractor::ActorId,
        failure: Option<String>,
    ) {
        let Some(user) = self.users.iter().find_map(|(u, slot)| match slot {
            Slot::Running { supervisor, .. } if supervisor.get_id() == id => Some(*u),
            Slot::Stopping { supervisor, .. } if *supervisor == id => Some(*u),
            _ => None,
        }) else {
            return;
        };
        match self.users.remove(&user) {
            Some(Slot::Stopping { waiters, .. }) if !waiters.is_empty() => {
                self.users.insert(user, Slot::Starting { waiters });
                self.start_user(myself, user);
            }
            Some(Slot::Running { .. }) => {
                let error = failure.unwrap_or_else(|| "stopped unexpectedly".to_owned());
                self.roster
                    .failed(&ActorKey::user(ActorKind::User, user), &error);
                self.roster.stopped(&ActorKey::user(ActorKind::User, user));
                metrics::counter!("larder_actor_restarts_total", "kind" => "user").increment(1);
                tracing::warn!(%user, error, "user supervisor failed; it will be reactivated on next use");
            }
            _ => {}
        }
    }
}

fn sweep_period(idle_timeout: Duration) -> Duration {
    (idle_timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(30))
}

impl Actor for NodeSupervisor {
    type Msg = NodeMsg;
    type State = NodeState;
    type Arguments = NodeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<NodeMsg>,
        args: NodeArgs,
    ) -> Result<NodeState, ActorProcessingErr> {
        let mut state = NodeState {
            store: args.store,
            roster: args.roster,
            accounts: GlobalSlot::new(args.config.restart),
            oauth: GlobalSlot::new(args.config.restart),
            config: args.config,
            users: HashMap::new(),
        };
        state.spawn_global(&myself, Global::Accounts).await?;
        state.spawn_global(&myself, Global::OAuth).await?;
        myself.send_interval(sweep_period(state.config.idle_timeout), || {
            NodeMsg::SweepIdle
        });
        state.roster.started(NODE_KEY);
        Ok(state)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<NodeMsg>,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        myself
            .drain_children_and_wait(Some(Duration::from_secs(30)))
            .await;
        state.store.flush()?;
        state.roster.stopped(&NODE_KEY);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<NodeMsg>,
        msg: NodeMsg,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        state.roster.handled(&NODE_KEY);
        match msg {
            NodeMsg::Activate(user, reply) => state.activate(&myself, user, reply),
            NodeMsg::Started(user, result) => state.started(user, result),
            NodeMsg::Accounts(reply) => state.accounts.ask(reply),
            NodeMsg::OAuth(reply) => state.oauth.ask(reply),
            NodeMsg::SweepIdle => state.sweep_idle(),
            NodeMsg::Restart(which) => {
                if let Err(e) = state.spawn_global(&myself, which).await {
                    state.schedule_restart(&myself, which, &format!("restart failed: {e}"));
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<NodeMsg>,
        evt: SupervisionEvent,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failure) = match &evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(err.to_string())),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.clone().map(|r| format!("stopped: {r}")))
            }
            _ => return Ok(()),
        };
        let id = cell.get_id();
        let global = if state.accounts.ended(id) {
            Some(Global::Accounts)
        } else if state.oauth.ended(id) {
            Some(Global::OAuth)
        } else {
            None
        };
        if let Some(which) = global {
            let error = failure.unwrap_or_else(|| "stopped unexpectedly".to_owned());
            state.schedule_restart(&myself, which, &error);
            return Ok(());
        }
        state.user_ended(&myself, id, failure);
        Ok(())
    }
}

/// A running node's actor system. Dropping it does not stop the actors: call [`Node::shutdown`].
pub struct Node {
    root: ActorRef<NodeMsg>,
    handle: tokio::task::JoinHandle<()>,
    roster: Roster,
    call_timeout: Duration,
}

/// Why the actor system could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NodeError(String);

impl Node {
    /// Starts the supervision tree over `store`.
    pub async fn start(store: Store, config: NodeConfig) -> Result<Node, NodeError> {
        let roster = Roster::new();
        let call_timeout = config.call_timeout;
        let args = NodeArgs {
            store,
            roster: roster.clone(),
            config,
        };
        let (root, handle) = Actor::spawn(None, NodeSupervisor, args)
            .await
            .map_err(|e| NodeError(format!("could not start the actor system: {e}")))?;
        Ok(Node {
            root,
            handle,
            roster,
            call_timeout,
        })
    }

    /// How the edge reaches actors.
    pub fn placement(&self) -> Placement {
        Placement::new(self.root.clone(), self.roster.clone(), self.call_timeout)
    }

    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// Drains every actor (queued requests are answered), then flushes the store.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        self.root
            .drain()
            .map_err(|e| NodeError(format!("could not stop the actor system: {e}")))?;
        self.handle
            .await
            .map_err(|e| NodeError(format!("the actor system did not stop cleanly: {e}")))
    }
}
