//! `larder`: the node binary. Parses the command line, loads the configuration and dispatches;
//! everything else lives in the library modules below.
//!
//! # Layout
//! - [`config`]: the layered, validated configuration.
//! - [`server`]: a running node: store, actors, HTTP edge, control socket, graceful shutdown.
//! - [`edge`]: the axum application (pages, htmx fragments, JSON API, assets, metrics).
//! - [`control`]: the host-local control socket (`larder login-link`, `larder allow`).
//! - [`keys`]: the node's secret keys (vault keyring, proxy-credential MAC).
//! - [`md5sum`]: MD5 for ETags and `Content-MD5`, through AWS-LC.
//! - [`storage`]: storage backends (`local`, `s3`) behind one trait.
//! - [`data`]: table files read server-side (schemas, Arrow record batches) and encoded for HTTP.
//! - [`s3`]: the S3 proxy (SigV4, operations, proxy credentials).
//! - [`extensions`]: the DuckDB extension mirror (a directory, optionally filled from an
//!   upstream repository).

mod catalog;
mod config;
mod control;
mod data;
mod edge;
mod extensions;
mod keys;
mod md5sum;
mod s3;
mod server;
#[allow(dead_code)] // wired up by the S3 proxy
mod storage;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Larder: a self-hosted personal data warehouse. SQL runs in your browser; data stays yours.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// A TOML configuration file (see cluster.toml for every key). `LARDER_*` environment
    /// variables override it (`__` nests: LARDER_HTTP__ADDR).
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node. With no configuration: data in ./larder-data, HTTP on 127.0.0.1:8080,
    /// local login (a one-time link is printed and written to <data_dir>/login-url).
    Serve,
    /// Print a fresh one-time login link from the running node (through its control socket,
    /// which only the host user running Larder can open).
    LoginLink {
        /// The local user to sign in as; created on first use. Defaults to
        /// `auth.local.default_user`.
        #[arg(long)]
        user: Option<String>,
    },
    /// Print the effective configuration (defaults + file + environment) as TOML.
    Config,
    /// Manage the vault that seals credentials at rest.
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Manage who may sign up through an OpenID provider, on the running node. Existing users
    /// are never affected.
    #[command(subcommand)]
    Allow(AllowCommand),
}

#[derive(Debug, Subcommand)]
enum AllowCommand {
    /// Admit sign-ups matching PATTERN: `alice@example.com` (that address), `@example.com`
    /// (that domain) or `*.example.com` (its subdomains).
    Add { pattern: String },
    /// Stop admitting sign-ups matching PATTERN (people who already signed up stay).
    Remove { pattern: String },
    /// Print the allowlist, one pattern a line.
    List,
}

#[derive(Debug, Subcommand)]
enum VaultCommand {
    /// Make a new vault key current and re-seal every user's records under it, on the running
    /// node. (With keys set in the configuration, add the new version there first, restart,
    /// then run this.)
    Rotate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match config::Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("larder: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Serve => run_async(server::serve(config)),
        Command::LoginLink { user } => run_async(async move {
            let url = control::request_login_link(&config.data_dir, user.as_deref()).await?;
            println!("{url}");
            Ok(())
        }),
        Command::Vault(VaultCommand::Rotate) => run_async(async move {
            println!(
                "{}",
                control::request_vault_rotation(&config.data_dir).await?
            );
            Ok(())
        }),
        Command::Allow(command) => run_async(async move {
            let command = match command {
                AllowCommand::Add { pattern } => edge::AllowCommand::Add(pattern),
                AllowCommand::Remove { pattern } => edge::AllowCommand::Remove(pattern),
                AllowCommand::List => edge::AllowCommand::List,
            };
            let text = control::request_allowlist(&config.data_dir, command).await?;
            if !text.is_empty() {
                println!("{text}");
            }
            Ok(())
        }),
        Command::Config => {
            print!("{}", config.to_toml());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("larder: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}
