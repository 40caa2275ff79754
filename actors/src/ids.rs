//! Identifiers that travel between the edge, the actors and (later) other nodes.

use serde::{Deserialize, Serialize};

/// A user's stable id. Placement hashes it; storage partitions by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub uuid::Uuid);

impl UserId {
    /// A fresh, time-ordered id.
    pub fn new() -> UserId {
        UserId(uuid::Uuid::now_v7())
    }
}

impl Default for UserId {
    fn default() -> Self {
        UserId::new()
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for UserId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(UserId)
    }
}

/// Milliseconds since the Unix epoch: the one timestamp type in messages and records.
pub type UnixMillis = i64;

/// Now, as [`UnixMillis`].
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
