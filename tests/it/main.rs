//! Integration tests: each spawns the real `larder` binary (see `common`) and drives it over
//! HTTP, its CLI and signals.

mod common;

mod auth;
mod durability;
mod edge;
mod extensions;
mod lifecycle;
mod storage;
