//! Larder's actors: every piece of state that must survive a request lives here, owned by a
//! supervised ractor actor and persisted through [`store`].
//!
//! # Layout
//! - [`node`]: `NodeSupervisor`, the root of a node's tree, and [`Node`], the binary's handle.
//! - [`user`]: `UserSupervisor`, one user's tree (virtual: activated on use, passivated when idle).
//! - [`library`]: a user's saved queries and preferences.
//! - [`catalog`]: a user's tables, snapshots and commits (time travel, the commit log).
//! - [`session`]: a user's open tabs and the fan-out of catalog events to them.
//! - [`accounts`]: node-global users, login tokens and browser sessions.
//! - [`vault`]: sealed credentials and backend configurations (per user), and the keyring.
//! - [`placement`]: how the edge reaches actors without knowing where they live.
//! - [`store`]: the durable state interface (sled underneath); the only module that touches sled.
//! - `acks`: ordered replies for actors that pipeline commits (group commit).
//! - [`roster`]: live-actor bookkeeping for the inspector and metrics.
//! - [`supervision`]: the restart back-off policy.
//!
//! Messages that may cross nodes derive `RactorClusterMessage` (serde-encoded through ractor's
//! `blanket_serde`); node-internal supervision messages derive `RactorMessage`.

#![warn(unreachable_pub)]

pub mod accounts;
mod acks;
pub mod catalog;
mod ids;
pub mod library;
pub mod node;
pub mod oauth;
pub mod placement;
pub mod roster;
mod secret;
pub mod session;
pub mod store;
pub mod supervision;
pub mod user;
pub mod vault;

pub use ids::{UnixMillis, UserId, now_millis};
pub use node::{Node, NodeConfig, NodeError};
pub use placement::{ActorError, Placement};
