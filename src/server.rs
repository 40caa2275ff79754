//! A running node: opens the store, starts the actor system, serves HTTP and the control
//! socket, prints the login link, and shuts down gracefully (stop accepting, finish in-flight
//! requests, drain actors, flush the store).

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use larder_actors::Node;
use larder_actors::store::Store;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::control;
use crate::edge::{self, AppState, Assets, PrometheusHandle};

/// `larder serve`: logs, metrics, the configured listener, and SIGINT/SIGTERM for shutdown.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,tower_http=warn,sled=warn")
            }),
        )
        .init();
    let metrics = edge::install_recorder()?;
    let listener = TcpListener::bind(config.http.addr)
        .await
        .with_context(|| format!("cannot listen on {} (http.addr)", config.http.addr))?;
    run(config, listener, shutdown_signal(), metrics).await
}

/// Runs a node on an already-bound listener until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    metrics: PrometheusHandle,
) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    create_private_dir(&data_dir)?;
    let assets = Assets::load(&config.assets.dir)?;
    let store = Store::open(&data_dir.join("state")).with_context(|| {
        format!(
            "cannot open the database in {} (is another Larder running on this data dir?)",
            data_dir.join("state").display()
        )
    })?;
    let node = Node::start(store, config.node_config()).await?;

    let local = listener.local_addr()?;
    let base_url = match &config.http.public_url {
        Some(url) => url.as_str().trim_end_matches('/').to_owned(),
        None => format!("http://{local}"),
    };
    let state = AppState {
        placement: node.placement(),
        config: Arc::new(config),
        assets: Arc::new(assets),
        metrics,
        base_url: Arc::from(base_url.as_str()),
    };

    let control_task = tokio::spawn(control::run(control::bind(&data_dir)?, state.clone()));

    tracing::info!(%local, data_dir = %data_dir.display(), "Larder is listening");
    if state.config.auth.local.enabled {
        let user = state.config.auth.local.default_user.clone();
        match edge::login_link(&state, &user).await {
            Ok(url) => {
                write_private_file(&data_dir.join("login-url"), &format!("{url}\n"))?;
                println!(
                    "\n  Larder is running at {base_url}\n  Sign in (one-time link, for {user}):\n\n    {url}\n"
                );
                println!("  Need another link later? Run: larder login-link [--user NAME]\n");
            }
            Err(e) => tracing::error!(error = %e, "could not issue the start-up login link"),
        }
    }

    let grace = state.config.http.shutdown_grace;
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, edge::app(state)).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
        let _ = stopping_tx.send(());
    });
    let deadline = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result.context("HTTP server failed")?,
        () = deadline => tracing::warn!(?grace, "in-flight requests did not finish within the grace period"),
    }

    control_task.abort();
    let _ = std::fs::remove_file(control::socket_path(&data_dir));
    node.shutdown().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create data_dir {}", dir.display()))?;
    }
    Ok(())
}

/// Writes `contents` to `path`, readable by the owner only.
fn write_private_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // An existing file keeps its mode on open: enforce it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
