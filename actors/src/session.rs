//! `Session`: one user's open tabs, and the fan-out of catalog events to them.
//!
//! Each open tab (one WebSocket on whichever node's edge serves it) is a [`Tab`] actor in the
//! process group [`tabs_group`] of its user, so the user's `Session` reaches every tab through
//! the group wherever it lives, and a tab that closes (or dies) leaves the group by itself. The
//! Session keeps what it knows about each tab (for the inspector, and later the MCP relay and
//! job dispatch); it holds no state worth persisting: after a restart tabs rejoin (they ask
//! [`SessionMsg::Knows`] periodically) and catch up on commits from the catalog's log.
//!
//! Events are never dropped silently: a tab whose socket cannot keep up is closed, and the
//! browser reconnects and catches up from the last commit it saw.

use std::collections::HashMap;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::catalog::Commit;
use crate::ids::{UnixMillis, UserId};
use crate::roster::{ActorKey, ActorKind, Roster};

/// The process group of a user's tabs.
pub fn tabs_group(user: UserId) -> String {
    format!("larder.tabs.{user}")
}

/// What the Session knows about an open tab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TabInfo {
    pub tab: Uuid,
    pub opened_at: UnixMillis,
    /// The node whose edge holds the tab's socket.
    pub node: String,
}

/// Messages to a user's [`Session`].
#[derive(RactorClusterMessage)]
pub enum SessionMsg {
    /// A durable commit, from the user's Catalog: tell every tab.
    Committed(Commit),
    /// A tab opened (its [`Tab`] actor is already in the group).
    #[rpc]
    Join(TabInfo, RpcReplyPort<()>),
    /// A tab closed.
    Leave(Uuid),
    /// Whether the Session knows the tab (false after a Session restart: rejoin and catch up).
    #[rpc]
    Knows(Uuid, RpcReplyPort<bool>),
    /// The open tabs.
    #[rpc]
    Tabs(RpcReplyPort<Vec<TabInfo>>),
    /// Panics inside the handler: fault injection for supervision tests.
    InjectPanic,
}

pub struct Session;

pub struct SessionArgs {
    pub user: UserId,
    pub roster: Roster,
}

pub struct SessionState {
    key: ActorKey,
    group: String,
    roster: Roster,
    tabs: HashMap<Uuid, TabInfo>,
}

impl Actor for Session {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SessionArgs,
    ) -> Result<SessionState, ActorProcessingErr> {
        let key = ActorKey::user(ActorKind::Session, args.user);
        args.roster.started(key);
        Ok(SessionState {
            key,
            group: tabs_group(args.user),
            roster: args.roster,
            tabs: HashMap::new(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        state.roster.stopped(&state.key);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        state.roster.handled(&state.key);
        match msg {
            SessionMsg::Committed(commit) => {
                let members = ractor::pg::get_members(&state.group);
                for cell in members {
                    let tab: ActorRef<TabMsg> = cell.into();
                    let _ = tab.cast(TabMsg::Commit(commit.clone()));
                }
            }
            SessionMsg::Join(info, reply) => {
                state.tabs.insert(info.tab, info);
                let _ = reply.send(());
            }
            SessionMsg::Leave(tab) => {
                state.tabs.remove(&tab);
            }
            SessionMsg::Knows(tab, reply) => {
                let _ = reply.send(state.tabs.contains_key(&tab));
            }
            SessionMsg::Tabs(reply) => {
                let mut tabs: Vec<TabInfo> = state.tabs.values().cloned().collect();
                tabs.sort_by_key(|t| t.opened_at);
                let _ = reply.send(tabs);
            }
            SessionMsg::InjectPanic => panic!("injected panic in session handler"),
        }
        Ok(())
    }
}

/// Messages to a [`Tab`].
#[derive(RactorClusterMessage)]
pub enum TabMsg {
    Commit(Commit),
}

/// One open tab's end of the fan-out, living next to its socket: forwards events into the
/// socket's queue. Stops itself (leaving the group) when the queue is full or gone; the socket
/// then closes and the browser reconnects and catches up.
pub struct Tab;

/// How many events may wait for a slow socket before the tab is dropped.
pub const TAB_QUEUE: usize = 4_096;

pub struct TabArgs {
    pub user: UserId,
    pub events: mpsc::Sender<Commit>,
}

impl Tab {
    /// Starts a tab for `user` and joins it to the user's group; events arrive on the receiver.
    pub async fn open(
        user: UserId,
    ) -> Result<(ActorRef<TabMsg>, mpsc::Receiver<Commit>), ActorProcessingErr> {
        let (events, rx) = mpsc::channel(TAB_QUEUE);
        let (tab, _) = Actor::spawn(None, Tab, TabArgs { user, events }).await?;
        Ok((tab, rx))
    }
}

impl Actor for Tab {
    type Msg = TabMsg;
    type State = mpsc::Sender<Commit>;
    type Arguments = TabArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: TabArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let cell: ActorCell = myself.get_cell();
        ractor::pg::join(tabs_group(args.user), vec![cell]);
        Ok(args.events)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: TabMsg,
        events: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TabMsg::Commit(commit) => {
                if events.try_send(commit).is_err() {
                    metrics::counter!("larder_tabs_dropped_total").increment(1);
                    myself.stop(Some("the tab's socket fell behind or closed".into()));
                }
            }
        }
        Ok(())
    }
}
