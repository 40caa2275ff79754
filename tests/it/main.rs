//! Integration tests: each spawns the real `larder` binary (see `common`) and drives it over
//! HTTP, its CLI and signals.

mod common;

mod auth;
mod catalog;
mod durability;
mod edge;
mod extensions;
mod identity;
mod lifecycle;
mod oauth;
mod storage;
mod tokens;
