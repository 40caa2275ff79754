//! `Catalog`: one user's tables, snapshots and commits.

mod format;

pub use format::Format;
