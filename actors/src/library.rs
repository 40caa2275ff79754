//! `Library`: one user's saved queries and preferences.
//!
//! A child of the user's [`UserSupervisor`](crate::user::UserSupervisor). State is loaded from
//! its [`Partition`] in `pre_start`, so a restart after a crash or a passivation comes back with
//! exactly what was acknowledged. Every change is committed (durably) before the reply; a failed
//! commit leaves the in-memory state untouched and answers with an error.

use std::collections::BTreeMap;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{UnixMillis, UserId, now_millis};
use crate::roster::{ActorKey, ActorKind, Roster};
use crate::store::{Changes, Partition};
use crate::supervision::reply_or_reload;

/// Longest saved SQL text, in bytes.
pub const MAX_SQL_BYTES: usize = 100 * 1024;
/// Longest saved-query name, in characters.
pub const MAX_NAME_CHARS: usize = 120;
/// Most saved queries one user may keep.
pub const MAX_SAVED_QUERIES: usize = 5_000;

/// A named SQL text a user kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedQuery {
    pub id: Uuid,
    pub name: String,
    pub sql: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// A request to create or replace a saved query. With an `id` it is an upsert, so a caller that
/// retries after a lost reply cannot create a duplicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveQuery {
    pub id: Option<Uuid>,
    pub name: String,
    pub sql: String,
}

/// How the query page behaves for this user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Preferences {
    /// Result rows per page (10..=1000).
    pub page_size: u32,
    /// `system`, `light` or `dark`.
    pub theme: Theme,
}

impl Default for Preferences {
    fn default() -> Self {
        Preferences {
            page_size: 50,
            theme: Theme::System,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

impl Theme {
    pub fn as_str(self) -> &'static str {
        match self {
            Theme::System => "system",
            Theme::Light => "light",
            Theme::Dark => "dark",
        }
    }
}

/// Why a library operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum LibraryError {
    #[error("{0}")]
    Invalid(String),
    #[error("a saved query named \"{0}\" already exists")]
    NameTaken(String),
    #[error("no such saved query")]
    NotFound,
    #[error("could not store the change: {0}")]
    Storage(String),
}

/// Messages to a user's [`Library`]. Serializable: the edge of any node may send them.
#[derive(RactorClusterMessage)]
pub enum LibraryMsg {
    /// Every saved query, most recently updated first.
    #[rpc]
    List(RpcReplyPort<Vec<SavedQuery>>),
    #[rpc]
    Get(Uuid, RpcReplyPort<Option<SavedQuery>>),
    #[rpc]
    Save(SaveQuery, RpcReplyPort<Result<SavedQuery, LibraryError>>),
    /// `Ok(false)` when there was nothing to delete (deleting is idempotent).
    #[rpc]
    Delete(Uuid, RpcReplyPort<Result<bool, LibraryError>>),
    #[rpc]
    GetPreferences(RpcReplyPort<Preferences>),
    #[rpc]
    SetPreferences(Preferences, RpcReplyPort<Result<Preferences, LibraryError>>),
    /// Panics inside the handler: fault injection for supervision tests and the operator, so a
    /// restart-with-state can be observed on a live node.
    InjectPanic,
}

pub struct Library;

pub struct LibraryArgs {
    pub user: UserId,
    pub partition: Partition,
    pub roster: Roster,
}

pub struct LibraryState {
    key: ActorKey,
    partition: Partition,
    roster: Roster,
    queries: BTreeMap<Uuid, SavedQuery>,
    preferences: Preferences,
}

const PREFERENCES_KEY: &str = "preferences";

fn query_key(id: &Uuid) -> String {
    format!("query/{id}")
}

impl Actor for Library {
    type Msg = LibraryMsg;
    type State = LibraryState;
    type Arguments = LibraryArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: LibraryArgs,
    ) -> Result<LibraryState, ActorProcessingErr> {
        let queries = args
            .partition
            .scan::<SavedQuery>("query/")?
            .into_iter()
            .map(|(_, q)| (q.id, q))
            .collect();
        let preferences = args.partition.get(PREFERENCES_KEY)?.unwrap_or_default();
        let key = ActorKey::user(ActorKind::Library, args.user);
        args.roster.started(key);
        Ok(LibraryState {
            key,
            partition: args.partition,
            roster: args.roster,
            queries,
            preferences,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut LibraryState,
    ) -> Result<(), ActorProcessingErr> {
        state.roster.stopped(&state.key);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: LibraryMsg,
        state: &mut LibraryState,
    ) -> Result<(), ActorProcessingErr> {
        state.roster.handled(&state.key);
        match msg {
            LibraryMsg::List(reply) => {
                let mut all: Vec<SavedQuery> = state.queries.values().cloned().collect();
                all.sort_by(|a, b| {
                    b.updated_at
                        .cmp(&a.updated_at)
                        .then_with(|| a.name.cmp(&b.name))
                });
                let _ = reply.send(all);
            }
            LibraryMsg::Get(id, reply) => {
                let _ = reply.send(state.queries.get(&id).cloned());
            }
            LibraryMsg::Save(req, reply) => {
                reply_or_reload(reply, state.save(req).await, is_storage)?;
            }
            LibraryMsg::Delete(id, reply) => {
                reply_or_reload(reply, state.delete(id).await, is_storage)?;
            }
            LibraryMsg::GetPreferences(reply) => {
                let _ = reply.send(state.preferences.clone());
            }
            LibraryMsg::SetPreferences(prefs, reply) => {
                reply_or_reload(reply, state.set_preferences(prefs).await, is_storage)?;
            }
            LibraryMsg::InjectPanic => panic!("injected panic in library handler"),
        }
        Ok(())
    }
}

impl LibraryState {
    async fn save(&mut self, req: SaveQuery) -> Result<SavedQuery, LibraryError> {
        let name = req.name.trim().to_owned();
        if name.is_empty() {
            return Err(LibraryError::Invalid("a saved query needs a name".into()));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(LibraryError::Invalid(format!(
                "names are at most {MAX_NAME_CHARS} characters"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(LibraryError::Invalid(
                "names cannot contain control characters".into(),
            ));
        }
        if req.sql.trim().is_empty() {
            return Err(LibraryError::Invalid("there is no SQL to save".into()));
        }
        if req.sql.len() > MAX_SQL_BYTES {
            return Err(LibraryError::Invalid(format!(
                "SQL is limited to {} KB",
                MAX_SQL_BYTES / 1024
            )));
        }
        let id = req.id.unwrap_or_else(Uuid::now_v7);
        let lower = name.to_lowercase();
        if self
            .queries
            .values()
            .any(|q| q.id != id && q.name.to_lowercase() == lower)
        {
            return Err(LibraryError::NameTaken(name));
        }
        let existing = self.queries.get(&id);
        if existing.is_none() && self.queries.len() >= MAX_SAVED_QUERIES {
            return Err(LibraryError::Invalid(format!(
                "at most {MAX_SAVED_QUERIES} saved queries"
            )));
        }
        let now = now_millis();
        let query = SavedQuery {
            id,
            name,
            sql: req.sql,
            created_at: existing.map_or(now, |q| q.created_at),
            updated_at: now,
        };
        let mut changes = Changes::new();
        changes.put(query_key(&id), &query).map_err(storage)?;
        self.partition.commit(changes).await.map_err(storage)?;
        self.queries.insert(id, query.clone());
        Ok(query)
    }

    async fn delete(&mut self, id: Uuid) -> Result<bool, LibraryError> {
        if !self.queries.contains_key(&id) {
            return Ok(false);
        }
        let mut changes = Changes::new();
        changes.delete(query_key(&id));
        self.partition.commit(changes).await.map_err(storage)?;
        self.queries.remove(&id);
        Ok(true)
    }

    async fn set_preferences(&mut self, prefs: Preferences) -> Result<Preferences, LibraryError> {
        if !(10..=1000).contains(&prefs.page_size) {
            return Err(LibraryError::Invalid(
                "page size must be between 10 and 1000 rows".into(),
            ));
        }
        let mut changes = Changes::new();
        changes.put(PREFERENCES_KEY, &prefs).map_err(storage)?;
        self.partition.commit(changes).await.map_err(storage)?;
        self.preferences = prefs.clone();
        Ok(prefs)
    }
}

fn storage(e: crate::store::StoreError) -> LibraryError {
    tracing::error!(error = %e, "library commit failed");
    LibraryError::Storage(e.to_string())
}

fn is_storage(e: &LibraryError) -> bool {
    matches!(e, LibraryError::Storage(_))
}
