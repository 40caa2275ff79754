//! The node's roster of live actors: what the inspector shows and `/metrics` counts.
//!
//! Every actor registers itself when it starts, bumps its message count as it works and leaves
//! when it stops; supervisors record restarts and the last error. Entries are keyed by the
//! *logical* actor ([`ActorKey`]: kind + user), so a restarted actor keeps its restart count and
//! last error. The roster observes; it never controls an actor.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::ids::{UnixMillis, UserId, now_millis};

/// What kind of actor an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ActorKind {
    Node,
    Accounts,
    OAuth,
    User,
    Library,
    Vault,
    Catalog,
    Session,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Node => "node",
            ActorKind::Accounts => "accounts",
            ActorKind::OAuth => "oauth",
            ActorKind::User => "user",
            ActorKind::Library => "library",
            ActorKind::Vault => "vault",
            ActorKind::Catalog => "catalog",
            ActorKind::Session => "session",
        }
    }
}

/// A logical actor: survives restarts of the process-level actor behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActorKey {
    pub kind: ActorKind,
    pub user: Option<UserId>,
}

impl ActorKey {
    pub fn global(kind: ActorKind) -> ActorKey {
        ActorKey { kind, user: None }
    }

    pub fn user(kind: ActorKind, user: UserId) -> ActorKey {
        ActorKey {
            kind,
            user: Some(user),
        }
    }
}

/// One row of the inspector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorInfo {
    pub key: ActorKey,
    /// `running`, or `restarting` while a supervisor waits out its back-off.
    pub state: String,
    pub started_at: UnixMillis,
    pub messages: u64,
    pub restarts: u32,
    pub last_error: Option<String>,
}

/// Shared by every actor of one node. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    entries: Arc<Mutex<BTreeMap<ActorKey, ActorInfo>>>,
}

impl Roster {
    pub fn new() -> Roster {
        Roster::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<ActorKey, ActorInfo>) -> R) -> R {
        // A poisoned roster only means a panic elsewhere while it was held; its data is counters.
        let mut guard = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// An actor (re)started. Keeps restart count and last error of an earlier incarnation.
    pub fn started(&self, key: ActorKey) {
        self.with(|m| {
            let entry = m.entry(key).or_insert_with(|| ActorInfo {
                key,
                state: String::new(),
                started_at: 0,
                messages: 0,
                restarts: 0,
                last_error: None,
            });
            entry.state = "running".to_owned();
            entry.started_at = now_millis();
        });
    }

    /// An actor handled one message.
    pub fn handled(&self, key: &ActorKey) {
        self.with(|m| {
            if let Some(e) = m.get_mut(key) {
                e.messages += 1;
            }
        });
    }

    /// A supervisor saw `key` fail and will restart it.
    pub fn failed(&self, key: &ActorKey, error: &str) {
        self.with(|m| {
            if let Some(e) = m.get_mut(key) {
                e.restarts += 1;
                e.last_error = Some(error.to_owned());
                e.state = "restarting".to_owned();
            }
        });
    }

    /// An actor stopped for good (passivated or shut down).
    pub fn stopped(&self, key: &ActorKey) {
        self.with(|m| {
            m.remove(key);
        });
    }

    /// Every live actor, ordered by kind then user.
    pub fn snapshot(&self) -> Vec<ActorInfo> {
        self.with(|m| m.values().cloned().collect())
    }

    pub fn get(&self, key: &ActorKey) -> Option<ActorInfo> {
        self.with(|m| m.get(key).cloned())
    }
}
